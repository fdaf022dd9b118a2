package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/go-logr/logr"

	"github.com/meshready/meshready/lint/cluster"
	"github.com/meshready/meshready/release"
)

// ControllerCmd is `meshrelease controller`: the release controller
// (package release). This only wires flags to release.Options.
type ControllerCmd struct {
	Kubeconfig    string        `help:"Kubeconfig file (default: the in-cluster service account)."`
	Context       string        `name:"kube-context" help:"With --kubeconfig: the context to use."`
	QPS           float32       `default:"20" help:"Kubernetes API requests per second (client-go limiter)."`
	Burst         int           `default:"40" help:"Kubernetes API burst."`
	LeaderElect   bool          `help:"Elect a leader (run more than one replica safely)."`
	LeaderNS      string        `name:"leader-election-namespace" default:"meshready-system" help:"Namespace of the leader election Lease."`
	MetricsAddr   string        `default:":8080" help:"Address of /metrics (0 turns it off)."`
	HealthAddr    string        `default:":8081" help:"Address of /healthz and /readyz (0 turns it off)."`
	Pilot         []string      `help:"istiod debug URLs to use as the replicas (e.g. http://127.0.0.1:15014); default: the endpoints of --istiod-service."`
	IstiodService string        `default:"istio-system/istiod" help:"The istiod Service whose endpoints are the replicas the gate asks."`
	IstiodPort    int           `default:"15014" help:"istiod's debug HTTP port on each replica."`
	PilotToken    string        `name:"pilot-token-file" type:"path" help:"A token istiod accepts for debug calls from outside its host (sent over https only)."`
	PilotTimeout  time.Duration `default:"10s" help:"Deadline of each istiod request."`
	Prometheus    string        `required:"" help:"Prometheus base URL (the windows' numbers)."`
	PollInterval  time.Duration `default:"1s" help:"The propagation gate's shared syncz poll, while any gate is open."`
	Settle        time.Duration `default:"3s" help:"How long after a window's end its numbers are read (Prometheus' scrape interval plus margin)."`
}

// Run runs the controller until SIGTERM or SIGINT.
func (c *ControllerCmd) Run(env *Env) error {
	cfg, err := cluster.RESTConfig(c.Kubeconfig, c.Context)
	if err != nil {
		return fmt.Errorf("controller: %w", err)
	}
	if c.PollInterval < 100*time.Millisecond {
		return errors.New("controller: --poll-interval below 100ms would be a load on istiod")
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	log := logr.FromSlogHandler(slog.NewTextHandler(env.Stderr, nil))
	err = release.Run(ctx, release.Options{
		RESTConfig: cfg, QPS: c.QPS, Burst: c.Burst,
		LeaderElect: c.LeaderElect, LeaderElectionNamespace: c.LeaderNS,
		MetricsAddr: c.MetricsAddr, HealthAddr: c.HealthAddr,
		Pilot: c.Pilot, IstiodService: c.IstiodService, IstiodPort: c.IstiodPort,
		PilotTokenFile: c.PilotToken, PilotTimeout: c.PilotTimeout,
		PrometheusURL: c.Prometheus, PollInterval: c.PollInterval, Settle: c.Settle,
		Log: log,
	})
	if err != nil && ctx.Err() == nil {
		return fmt.Errorf("controller: %w", err)
	}
	return nil
}
