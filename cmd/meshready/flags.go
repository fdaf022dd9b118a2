package main

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"strconv"
	"time"

	"github.com/meshready/meshready/envoyadmin"
	"github.com/meshready/meshready/probe"
)

// AgentFlags are the flags every command that checks readiness shares.
type AgentFlags struct {
	Listen        string        `default:":54321" help:"Address /health, /health/live and /metrics are served on."`
	EnvoyAdmin    string        `default:"http://127.0.0.1:15000" help:"Envoy's admin API."`
	Sidecar       string        `enum:"auto,required,none" default:"auto" help:"Whether the pod has an Envoy sidecar: auto (Downward API annotations, else whether the admin port answers within --start-timeout), required or none."`
	Podinfo       string        `default:"/etc/podinfo" help:"Downward API directory (annotations, labels)."`
	AppReady      string        `help:"The app's readiness endpoint: http(s)://host:port/path, tcp://host:port or grpc://host:port[/service]. Empty: the app is not checked."`
	AppLive       string        `help:"The app's liveness endpoint for /health/live (same forms as --app-ready). Empty: /health/live only says the agent serves."`
	Interval      time.Duration `default:"1s" help:"How often checks refresh at most; a verdict is reused within it."`
	Timeout       time.Duration `default:"800ms" help:"Deadline of each check (below kubelet's 1s default probe timeout)."`
	StartTimeout  time.Duration `default:"60s" help:"How long to wait for the sidecar: the hold before the app starts, and sidecar auto-detection."`
	VerboseRemote bool          `help:"Answer ?verbose=1 in full to non-loopback clients too (it shows proxy id, versions and app URLs)."`
}

// Validate runs when kong parses: every bad value is one line naming the
// flag, the value and what is accepted.
func (f *AgentFlags) Validate() error {
	if _, err := envoyadmin.New(f.EnvoyAdmin); err != nil {
		return fmt.Errorf("--envoy-admin=%q: %v", f.EnvoyAdmin, err)
	}
	if _, err := listenPort(f.Listen); err != nil {
		return fmt.Errorf("--listen=%q: want host:port or :port (e.g. :54321): %v", f.Listen, err)
	}
	for _, u := range []struct{ flag, val string }{{"--app-ready", f.AppReady}, {"--app-live", f.AppLive}} {
		if u.val == "" {
			continue
		}
		if _, err := probe.ParseAppTarget(u.val); err != nil {
			return fmt.Errorf("%s=%q: %v", u.flag, u.val, err)
		}
	}
	for _, d := range []struct {
		flag string
		val  time.Duration
	}{{"--interval", f.Interval}, {"--timeout", f.Timeout}, {"--start-timeout", f.StartTimeout}} {
		if d.val <= 0 {
			return fmt.Errorf("%s=%s: must be a positive duration such as 1s or 800ms", d.flag, d.val)
		}
	}
	return nil
}

func listenPort(addr string) (int, error) {
	_, p, err := net.SplitHostPort(addr)
	if err != nil {
		return 0, err
	}
	n, err := strconv.Atoi(p)
	if err != nil || n < 0 || n > 65535 {
		return 0, fmt.Errorf("port %q is not a number from 0 to 65535", p)
	}
	return n, nil
}

// agent is the wired-up readiness machinery one command uses.
type agent struct {
	admin   *envoyadmin.Client
	sidecar *probe.Sidecar
	metrics *probe.Metrics
	ready   *probe.Aggregator
	live    *probe.Aggregator // nil without --app-live
	// mesh holds the checks that say the sidecar can route (no app): the
	// hold before the app starts waits on these alone.
	mesh []probe.Check
}

func (f *AgentFlags) build(log *slog.Logger) (*agent, error) {
	port, _ := listenPort(f.Listen)
	admin, err := envoyadmin.New(f.EnvoyAdmin, envoyadmin.WithTimeout(f.Timeout), envoyadmin.WithExcludePorts(port))
	if err != nil {
		return nil, fmt.Errorf("--envoy-admin=%q: %v", f.EnvoyAdmin, err)
	}
	a := &agent{admin: admin, metrics: probe.NewMetrics(version, commit)}
	a.sidecar = probe.NewSidecar(probe.SidecarMode(f.Sidecar), f.Podinfo, f.StartTimeout, log)
	a.mesh = probe.EnvoyChecks(admin, a.sidecar)

	opts := probe.AppOptions{UserAgent: "meshready/" + version}
	appCheck := probe.Check{Name: "app", Run: skipCheck("no --app-ready set: the app's own readiness is not checked")}
	if f.AppReady != "" {
		t, err := probe.ParseAppTarget(f.AppReady)
		if err != nil {
			return nil, fmt.Errorf("--app-ready=%q: %v", f.AppReady, err)
		}
		appCheck.Run = probe.AppCheck(t, opts)
	}
	checks := append(append([]probe.Check{}, a.mesh...), appCheck)
	a.ready = probe.NewAggregator(checks, probe.AggregatorOptions{Interval: f.Interval, Timeout: f.Timeout, Observe: a.metrics.ObserveVerdict})
	if f.AppLive != "" {
		t, err := probe.ParseAppTarget(f.AppLive)
		if err != nil {
			return nil, fmt.Errorf("--app-live=%q: %v", f.AppLive, err)
		}
		a.live = probe.NewAggregator([]probe.Check{{Name: "app.live", Run: probe.AppCheck(t, opts)}},
			probe.AggregatorOptions{Interval: f.Interval, Timeout: f.Timeout})
	}
	return a, nil
}

func skipCheck(why string) probe.CheckFunc {
	r := probe.Result{Status: probe.Skip, Message: why}
	return func(_ context.Context) (probe.Result, error) { return r, nil }
}
