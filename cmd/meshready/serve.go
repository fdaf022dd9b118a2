package main

import (
	"context"
	"net"
	"os/signal"
	"syscall"

	"github.com/meshready/meshready/internal/redact"
	"github.com/meshready/meshready/probe"
)

// ServeCmd is `meshready serve`: the probe target alone, for containers
// whose entrypoint is not meshready (use `run` to also hold and drain).
type ServeCmd struct {
	AgentFlags   `embed:""`
	ServerFlags  `embed:""`
	CheckTimeout `embed:""`
}

// Run serves until SIGTERM or SIGINT.
func (c *ServeCmd) Run(env *Env) error {
	a, err := c.build(env.Log, c.Timeout, &c.ServerFlags)
	if err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	// Bind first: "serving" is said only once the port is ours, so a taken
	// port is never logged as a success.
	ln, err := net.Listen("tcp", c.Listen)
	if err != nil {
		return codeErrorf(exitBadConfig, "%s", probe.ListenHint(c.Listen, err))
	}
	env.Log.Info("serving", "listen", ln.Addr().String(), "envoy_admin", redact.URL(c.EnvoyAdmin), "sidecar", c.Sidecar, "app_ready", redact.URL(c.AppReady), "version", version)
	err = probe.ServeListener(ctx, ln, probe.ServerOptions{
		Ready: a.ready, Live: a.live, Metrics: a.metrics, VerboseRemote: c.VerboseRemote, Logger: env.Log,
	})
	if err != nil {
		return codeErrorf(exitBadConfig, "serving on %s: %v", c.Listen, err)
	}
	env.Log.Info("stopped")
	return nil
}
