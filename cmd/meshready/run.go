package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/meshready/meshready/envoyadmin"
	"github.com/meshready/meshready/graceful"
	"github.com/meshready/meshready/probe"
)

// RunCmd is `meshready run -- CMD ARGS…`: the probe target, plus CMD held
// until the sidecar can route, supervised as PID 1, and drained on SIGTERM
// before it sees the signal.
type RunCmd struct {
	AgentFlags   `embed:""`
	ServerFlags  `embed:""`
	CheckTimeout `embed:""`

	DrainMin         time.Duration `default:"5s" help:"After SIGTERM, wait at least this long before signalling the app (callers' proxies need time to stop routing here)."`
	DrainQuiet       time.Duration `default:"2s" help:"Then wait until Envoy's inbound traffic has been quiet this long..."`
	DrainMax         time.Duration `default:"20s" help:"...but never longer than this after SIGTERM."`
	Grace            time.Duration `default:"10s" help:"After SIGTERM reaches the app, SIGKILL it after this long."`
	EnvoyDrain       bool          `help:"On SIGTERM, POST Envoy's /drain_listeners?inboundonly&graceful (off: Istio's own agent drains Envoy)."`
	TerminationGrace time.Duration `default:"30s" help:"The pod's terminationGracePeriodSeconds; a warning is logged when drain-max + grace exceed it."`
	OnStartTimeout   string        `enum:"start,exit" default:"start" help:"When the sidecar is not ready within --start-timeout: start the app anyway, or exit 69."`
	QuitSidecar      bool          `help:"After the app exits, ask the sidecar to quit (Istio's agent on :15020, else Envoy's /quitquitquit) — for Jobs."`

	Command []string `arg:"" passthrough:"" name:"command" help:"The app and its arguments, after --."`
}

// Validate checks the drain flags; graceful.Config.Validate says the rest.
func (c *RunCmd) Validate() error {
	for _, d := range []struct {
		flag string
		val  time.Duration
	}{{"--drain-min", c.DrainMin}, {"--drain-quiet", c.DrainQuiet}, {"--drain-max", c.DrainMax}, {"--grace", c.Grace}, {"--termination-grace", c.TerminationGrace}} {
		if d.val < 0 {
			return fmt.Errorf("%s=%s: must not be negative", d.flag, d.val)
		}
	}
	if c.DrainMax < c.DrainMin {
		return fmt.Errorf("--drain-max=%s is below --drain-min=%s: the drain would end before it may", c.DrainMax, c.DrainMin)
	}
	if len(c.Command) > 0 && c.Command[0] == "--" {
		c.Command = c.Command[1:]
	}
	if len(c.Command) == 0 {
		return fmt.Errorf("no command: use meshready run [flags] -- CMD [ARGS...]")
	}
	return nil
}

// Run supervises the app and returns with its exit code.
func (c *RunCmd) Run(env *Env) error {
	log := env.Log
	// Catch every signal before /health can answer: a SIGTERM in the first
	// milliseconds must start a drain, not kill the agent by default action.
	sigs := make(chan os.Signal, 64)
	signal.Notify(sigs)
	defer signal.Stop(sigs)
	a, err := c.build(log, c.Timeout, &c.ServerFlags)
	if err != nil {
		return err
	}
	// Listen before anything starts, so a taken port stops us before CMD
	// does, with exit 2.
	ln, err := net.Listen("tcp", c.Listen)
	if err != nil {
		return codeErrorf(exitBadConfig, "%s", probe.ListenHint(c.Listen, err))
	}
	phase := prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "meshready_phase", Help: "1 for the phase the app is in (holding, running, draining, terminating, killed, exited)."}, []string{"phase"})
	drainSeconds := prometheus.NewGauge(prometheus.GaugeOpts{Name: "meshready_drain_duration_seconds", Help: "How long the last drain took, from SIGTERM to the app's SIGTERM."})
	drainEnds := prometheus.NewCounterVec(prometheus.CounterOpts{Name: "meshready_drain_end_total", Help: "Drains by why they ended (quiet, max, min, signal, app-exited)."}, []string{"reason"})
	a.metrics.Register(phase, drainSeconds, drainEnds)

	serveCtx, stopServing := context.WithCancel(context.Background())
	served := make(chan error, 1)
	go func() {
		served <- probe.ServeListener(serveCtx, ln, probe.ServerOptions{Ready: a.ready, Live: a.live, Metrics: a.metrics, VerboseRemote: c.VerboseRemote, Logger: log})
	}()
	defer func() {
		stopServing()
		<-served
	}()

	cfg := graceful.Config{
		Argv:               c.Command,
		Signals:            sigs,
		Hold:               func(ctx context.Context) error { return a.waitMesh(ctx, log) },
		StartTimeout:       c.StartTimeout,
		HoldSlack:          holdSlack(c.Sidecar, c.Timeout),
		ExitOnStartTimeout: c.OnStartTimeout == "exit",
		DrainMin:           c.DrainMin,
		DrainQuiet:         c.DrainQuiet,
		DrainMax:           c.DrainMax,
		Grace:              c.Grace,
		TerminationGrace:   c.TerminationGrace,
		OnDrain:            a.ready.Drain,
		Activity:           a.inboundActivity,
		Logger:             log,
		OnPhase: func(p graceful.Phase) {
			phase.Reset()
			phase.WithLabelValues(string(p)).Set(1)
		},
		OnDrainEnd: func(took time.Duration, why graceful.DrainEnd) {
			drainSeconds.Set(took.Seconds())
			drainEnds.WithLabelValues(string(why)).Inc()
		},
	}
	if c.EnvoyDrain {
		cfg.EnvoyDrain = func(ctx context.Context) error {
			if !a.hasSidecar() {
				return graceful.ErrNoSidecar
			}
			return a.admin.DrainListeners(ctx, true, true)
		}
	}
	if c.QuitSidecar {
		cfg.QuitSidecar = a.quitSidecar(c.EnvoyAdmin)
	}
	if c.Sidecar == string(probe.SidecarNone) {
		// No sidecar by configuration: nothing to hold for, nothing to
		// watch while draining (the drain is --drain-min), no sidecar
		// lines in the log.
		cfg.Hold, cfg.Activity = nil, nil
	}
	if err := cfg.Validate(); err != nil {
		return codeErrorf(exitBadConfig, "%v", err)
	}
	// graceful.Run logs cfg.Warnings() itself, once.
	code := graceful.Run(context.Background(), cfg)
	if code != 0 {
		return codeError(code)
	}
	return nil
}

// holdSlack: under --sidecar=auto, auto-detection gives up at
// --start-timeout too, and the slack lets its "no sidecar" verdict start the
// app instead of the hold's own deadline firing first. Under required (or
// none) there is nothing to detect: --start-timeout is the hold's real bound.
func holdSlack(sidecar string, checkTimeout time.Duration) time.Duration {
	if sidecar == string(probe.SidecarAuto) {
		return checkTimeout + time.Second
	}
	return 0
}

func (a *agent) hasSidecar() bool {
	present, decided, _ := a.sidecar.State()
	return present && decided
}

// inboundActivity maps Envoy's inbound stats to what the drain watches:
// requests in flight when Envoy reports them, else connections (Istio's
// default stats inclusion keeps only downstream_cx_active); any total that
// moves is new work; no sidecar or no inbound stats is "unknown", and the
// drain then rests on --drain-min. An admin port that refuses connections is
// graceful.ErrSidecarGone (quiet); any other failure is passed on as is.
func (a *agent) inboundActivity(ctx context.Context) (graceful.Activity, error) {
	if !a.hasSidecar() {
		return graceful.Activity{}, graceful.ErrNoSidecar
	}
	s, err := a.admin.InboundActivity(ctx)
	if errors.Is(err, syscall.ECONNREFUSED) {
		// Envoy is gone: nothing can route here any more. Only this counts
		// as quiet; a timeout, a 5xx or garbage keeps the drain going.
		return graceful.Activity{}, fmt.Errorf("%w: %v", graceful.ErrSidecarGone, err)
	}
	if err != nil {
		return graceful.Activity{}, err
	}
	g := graceful.Activity{Active: s.ActiveConnections, Total: s.TotalRequests + s.TotalConnections, Known: s.Series > 0}
	if s.HasActiveRequests {
		g.Active = s.ActiveRequests
	}
	return g, nil
}

// quitSidecar asks Istio's agent (:15020 on the admin host) to quit, which
// stops Envoy with it; without Istio's agent, Envoy's own /quitquitquit.
func (a *agent) quitSidecar(envoyAdmin string) func(ctx context.Context) error {
	return func(ctx context.Context) error {
		if !a.hasSidecar() {
			return graceful.ErrNoSidecar
		}
		u, err := url.Parse(envoyAdmin)
		if err != nil {
			return err
		}
		u.Host = net.JoinHostPort(u.Hostname(), "15020")
		if agent, err := envoyadmin.New(u.String(), envoyadmin.WithTimeout(2*time.Second)); err == nil {
			if err := agent.QuitQuitQuit(ctx); err == nil {
				return nil
			}
		}
		return a.admin.QuitQuitQuit(ctx)
	}
}
