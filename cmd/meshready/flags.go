package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/meshready/meshready/envoyadmin"
	"github.com/meshready/meshready/graceful"
	"github.com/meshready/meshready/internal/redact"
	"github.com/meshready/meshready/probe"
)

// AgentFlags are the flags every command that checks readiness shares:
// where the sidecar, Pilot and the app are. The probe server's own flags are
// ServerFlags (serve and run only), so check, sync and wait --help list only
// what they use.
type AgentFlags struct {
	EnvoyAdmin   string        `default:"http://127.0.0.1:15000" help:"Envoy's admin API."`
	Sidecar      string        `enum:"auto,required,none" default:"auto" help:"Whether the pod has an Envoy sidecar: auto (Downward API annotations, else whether the admin port answers within --start-timeout), required or none."`
	Podinfo      string        `default:"/etc/podinfo" help:"Downward API directory (annotations, labels)."`
	AppReady     string        `help:"The app's readiness endpoint: http(s)://host:port/path, tcp://host:port or grpc://host:port[/service]. Empty: the app is not checked."`
	StartTimeout time.Duration `default:"60s" help:"How long to wait for the sidecar: the hold before the app starts, and sidecar auto-detection."`

	PilotFlags `embed:""`
}

// ServerFlags are the probe server's flags: serve and run only.
type ServerFlags struct {
	Listen        string        `default:":54321" help:"Address /health, /health/live and /metrics are served on."`
	AppLive       string        `help:"The app's liveness endpoint for /health/live (same forms as --app-ready). Empty: /health/live only says the agent serves."`
	Interval      time.Duration `default:"1s" help:"How often checks refresh at most; a verdict is reused within it."`
	VerboseRemote bool          `help:"Answer ?verbose=1 in full to non-loopback clients too (it shows proxy id, versions and app URLs)."`
}

// Validate runs when kong parses: every bad value is one line naming the
// flag, the value and what is accepted.
func (f *AgentFlags) Validate() error {
	// URL flags are echoed redacted (no userinfo, no query): the inner
	// errors name the value that way.
	if _, err := envoyadmin.New(f.EnvoyAdmin); err != nil {
		return fmt.Errorf("--envoy-admin: %v", err)
	}
	if err := checkAddress(f.EnvoyAdmin); err != nil {
		return fmt.Errorf("--envoy-admin=%q: %v", redact.URL(f.EnvoyAdmin), err)
	}
	if err := checkAppFlag("--app-ready", f.AppReady); err != nil {
		return err
	}
	if f.StartTimeout <= 0 {
		return fmt.Errorf("--start-timeout=%s: must be a positive duration such as 1s or 800ms", f.StartTimeout)
	}
	return nil
}

// Validate checks the server's flags.
func (f *ServerFlags) Validate() error {
	if _, err := listenPort(f.Listen); err != nil {
		return fmt.Errorf("--listen=%q: want host:port or :port (e.g. :54321): %v", f.Listen, err)
	}
	if h, _, _ := net.SplitHostPort(f.Listen); h != "" {
		if err := checkHost(h); err != nil {
			return fmt.Errorf("--listen=%q: want host:port or :port (e.g. :54321): %v", f.Listen, err)
		}
	}
	if err := checkAppFlag("--app-live", f.AppLive); err != nil {
		return err
	}
	if f.Interval <= 0 {
		return fmt.Errorf("--interval=%s: must be a positive duration such as 1s or 800ms", f.Interval)
	}
	return nil
}

func checkAppFlag(flag, val string) error {
	if val == "" {
		return nil
	}
	if _, err := probe.ParseAppTarget(val); err != nil {
		return fmt.Errorf("%s: %v", flag, err)
	}
	if err := checkAddress(val); err != nil {
		return fmt.Errorf("%s=%q: %v", flag, redact.URL(val), err)
	}
	return nil
}

// checkAddress checks the host and port of an address flag's URL (the
// packages' own parsers check the scheme and the form): a port is 1–65535,
// a host is an IP address or a DNS name. A typo must be exit 2 at start,
// not a check that fails for ever.
func checkAddress(raw string) error {
	u, err := url.Parse(raw)
	if err != nil {
		return nil // the package's parser has said why
	}
	if err := checkHost(u.Hostname()); err != nil {
		return err
	}
	if p := u.Port(); p != "" {
		if n, err := strconv.Atoi(p); err != nil || n < 1 || n > 65535 {
			return fmt.Errorf("port %q is not a number from 1 to 65535", p)
		}
	} else if strings.HasSuffix(u.Host, ":") {
		return errors.New("empty port after ':'")
	}
	return nil
}

// checkHost accepts an IP address or a DNS name (RFC 1123 labels; '_' is
// tolerated, as resolvers do).
func checkHost(h string) error {
	if _, err := netip.ParseAddr(h); err == nil {
		return nil
	}
	bad := fmt.Errorf("host %q is neither an IP address nor a DNS name", h)
	if h == "" || len(h) > 253 {
		return bad
	}
	for _, label := range strings.Split(strings.TrimSuffix(h, "."), ".") {
		if label == "" || len(label) > 63 || label[0] == '-' || label[len(label)-1] == '-' {
			return bad
		}
		for _, r := range label {
			if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_') {
				return bad
			}
		}
	}
	if _, err := strconv.Atoi(strings.ReplaceAll(h, ".", "")); err == nil {
		return bad // all digits but not an IP: 1.2.3.999, 300
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
	sync *probe.Mesh

	checkTimeout time.Duration
	interval     time.Duration
}

// holdPoll is how often the hold (and `wait`) re-reads the sidecar: local
// admin calls are cheap, and every poll saved is time the app waits.
func (a *agent) holdPoll() time.Duration { return min(a.interval, 200*time.Millisecond) }

// waitMesh blocks until the sidecar can route (envoy.live, envoy.config and,
// with the Pilot gate, mesh.synced; not app: it is not started yet), or ctx
// ends. Each poll is a fresh round.
func (a *agent) waitMesh(ctx context.Context, log *slog.Logger) error {
	hold := probe.NewAggregator(a.mesh, probe.AggregatorOptions{Interval: time.Nanosecond, Timeout: a.checkTimeout})
	if err := pollReady(ctx, hold, a.holdPoll(), log); err != nil {
		return err
	}
	if present, decided, _ := a.sidecar.State(); decided && !present {
		// Auto-detection found none: the mesh checks skipped, not passed.
		return graceful.ErrNoSidecar
	}
	return nil
}

// pollReady refreshes agg until it is ready or ctx ends, logging each new
// reason once so a stuck start says why.
func pollReady(ctx context.Context, agg *probe.Aggregator, every time.Duration, log *slog.Logger) error {
	last := ""
	for {
		v := agg.Refresh(ctx)
		if v.Ready {
			return nil
		}
		if v.Reason != last {
			log.Info("waiting for the sidecar", "reason", v.Reason)
			last = v.Reason
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%s", last)
		case <-time.After(every):
		}
	}
}

// CheckTimeout is --timeout for the commands where it bounds each check
// (`wait` has its own --timeout: how long to wait).
type CheckTimeout struct {
	Timeout time.Duration `default:"800ms" help:"Deadline of each check (below kubelet's 1s default probe timeout)."`
}

// Validate checks --timeout.
func (c *CheckTimeout) Validate() error {
	if c.Timeout <= 0 {
		return fmt.Errorf("--timeout=%s: must be a positive duration such as 800ms", c.Timeout)
	}
	return nil
}

// defaultCheckTimeout bounds each check where no flag sets it (`wait`).
const defaultCheckTimeout = 800 * time.Millisecond

// build wires the checks. srv is the probe server's flags (serve, run);
// nil for the one-shot commands (check, sync, wait).
func (f *AgentFlags) build(log *slog.Logger, checkTimeout time.Duration, srv *ServerFlags) (*agent, error) {
	if srv == nil {
		srv = &ServerFlags{Interval: time.Second}
	}
	adminOpts := []envoyadmin.Option{envoyadmin.WithTimeout(checkTimeout)}
	if port, _ := listenPort(srv.Listen); port > 0 {
		// Our own port's inbound traffic (the kubelet's probes through
		// Envoy) is not the app's: the drain does not wait on it.
		adminOpts = append(adminOpts, envoyadmin.WithExcludePorts(port))
	}
	admin, err := envoyadmin.New(f.EnvoyAdmin, adminOpts...)
	if err != nil {
		return nil, fmt.Errorf("--envoy-admin: %v", err)
	}
	a := &agent{admin: admin, metrics: probe.NewMetrics(version, commit), checkTimeout: checkTimeout, interval: srv.Interval}
	a.sidecar = probe.NewSidecar(probe.SidecarMode(f.Sidecar), f.Podinfo, f.StartTimeout, log)
	mo, err := f.PilotFlags.meshOptions(f, a.metrics, checkTimeout)
	if err != nil {
		return nil, err
	}
	mo.Log = log
	a.mesh, a.sync = probe.SidecarChecks(admin, a.sidecar, mo)

	opts := probe.AppOptions{UserAgent: "meshready/" + version}
	appCheck := probe.Check{Name: "app", Run: skipCheck("no --app-ready set: the app's own readiness is not checked")}
	if f.AppReady != "" {
		t, err := probe.ParseAppTarget(f.AppReady)
		if err != nil {
			return nil, fmt.Errorf("--app-ready: %v", err)
		}
		appCheck.Run = probe.AppCheck(t, opts)
	}
	checks := append(append([]probe.Check{}, a.mesh...), appCheck)
	a.ready = probe.NewAggregator(checks, probe.AggregatorOptions{Interval: srv.Interval, Timeout: checkTimeout, Observe: a.metrics.ObserveVerdict})
	if srv.AppLive != "" {
		t, err := probe.ParseAppTarget(srv.AppLive)
		if err != nil {
			return nil, fmt.Errorf("--app-live: %v", err)
		}
		a.live = probe.NewAggregator([]probe.Check{{Name: "app.live", Run: probe.AppCheck(t, opts)}},
			probe.AggregatorOptions{Interval: srv.Interval, Timeout: checkTimeout})
	}
	return a, nil
}

func skipCheck(why string) probe.CheckFunc {
	r := probe.Result{Status: probe.Skip, Message: why}
	return func(_ context.Context) (probe.Result, error) { return r, nil }
}
