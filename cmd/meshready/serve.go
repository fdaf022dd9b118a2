package main

import (
	"context"
	"os/signal"
	"syscall"

	"github.com/meshready/meshready/internal/redact"
	"github.com/meshready/meshready/probe"
)

// ServeCmd is `meshready serve`: the probe target alone, for containers
// whose entrypoint is not meshready (use `run` to also hold and drain).
type ServeCmd struct {
	AgentFlags   `embed:""`
	CheckTimeout `embed:""`
}

// Run serves until SIGTERM or SIGINT.
func (c *ServeCmd) Run(env *Env) error {
	a, err := c.build(env.Log, c.Timeout)
	if err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	env.Log.Info("serving", "listen", c.Listen, "envoy_admin", redact.URL(c.EnvoyAdmin), "sidecar", c.Sidecar, "app_ready", redact.URL(c.AppReady), "version", version)
	err = probe.Serve(ctx, c.Listen, probe.ServerOptions{
		Ready: a.ready, Live: a.live, Metrics: a.metrics, VerboseRemote: c.VerboseRemote, Logger: env.Log,
	})
	if err != nil {
		return codeErrorf(exitBadConfig, "%s", probe.ListenHint(c.Listen, err))
	}
	env.Log.Info("stopped")
	return nil
}
