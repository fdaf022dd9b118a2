package graceful

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"time"
)

// Exit codes Run returns besides CMD's own (DESIGN.md, "run" exit codes).
const (
	ExitBadConfig     = 2   // Config.Validate failed
	ExitStartTimeout  = 69  // EX_UNAVAILABLE, as linkerd-await: the sidecar never became ready and ExitOnStartTimeout is set
	ExitNotExecutable = 126 // CMD exists but cannot be executed (shell convention)
	ExitNotFound      = 127 // CMD does not exist (shell convention)
)

// exitSignalBase: CMD died of signal n → 128+n, as a shell reports it (not
// scuttle's 255, not linkerd-await's 71).
const exitSignalBase = 128

const defaultPollInterval = 250 * time.Millisecond

// Activity is what the sidecar says about inbound traffic at one moment.
// graceful never interprets Envoy's formats; the caller sums whatever
// inbound stats it trusts into these two numbers.
type Activity struct {
	// Active is the number of inbound requests (or connections) in flight.
	Active uint64
	// Total is a counter that moves whenever inbound work arrives (e.g. the
	// sum of inbound request counters). Only its changes matter.
	Total uint64
	// Known is false when the sidecar gave nothing usable (no inbound
	// stats, e.g. a pod with no inbound listeners). Such a reading is no
	// evidence of traffic: the drain then rests on DrainMin.
	Known bool
}

// ErrNoSidecar is what an Activity func returns when it finds there is no
// sidecar to ask (known only at run time, e.g. after auto-detection): the
// drain is then DrainMin alone, as with a nil Activity.
var ErrNoSidecar = errors.New("no sidecar")

// ErrSidecarGone is what an Activity func returns (wrapped) when the
// sidecar is provably gone — its admin port refuses connections — so
// nothing can route to this pod any more: the reading counts as quiet.
// Every other error (a timeout, a 5xx, a malformed answer) is no evidence
// of quiet: the drain keeps going on the last known activity, up to
// DrainMax.
var ErrSidecarGone = errors.New("sidecar gone")

// Phase is where Run is in the life of CMD. Each change is logged with the
// time spent in the previous phase and reported through Config.OnPhase.
type Phase string

// The phases, in the order they can happen.
const (
	PhaseHolding     Phase = "holding"     // waiting for the sidecar; CMD not started
	PhaseRunning     Phase = "running"     // CMD started, signals forwarded
	PhaseDraining    Phase = "draining"    // SIGTERM/SIGINT received; readiness is 503; CMD still serving
	PhaseTerminating Phase = "terminating" // SIGTERM sent to CMD's group; Grace running
	PhaseKilled      Phase = "killed"      // Grace ran out; SIGKILL sent to CMD's group
	PhaseExited      Phase = "exited"      // CMD is gone (or never started); Run is returning
)

// DrainEnd says why a drain stopped; reported to Config.OnDrainEnd.
type DrainEnd string

// Why a drain ends.
const (
	DrainEndQuiet     DrainEnd = "quiet"      // inbound was quiet for DrainQuiet and DrainMin had passed
	DrainEndMax       DrainEnd = "max"        // DrainMax reached with inbound still busy (or never read)
	DrainEndMin       DrainEnd = "min"        // no Activity func (no sidecar): DrainMin is the whole drain
	DrainEndSignal    DrainEnd = "signal"     // a second SIGTERM/SIGINT cut it short
	DrainEndAppExited DrainEnd = "app-exited" // CMD exited on its own while draining
)

// Config is everything Run needs. graceful knows processes and signals
// only: everything about the sidecar comes in as plain funcs, so the
// caller decides what "ready", "drained" and "quit" mean.
type Config struct {
	// Argv is CMD and its arguments. Argv[0] is resolved like a shell does
	// (exec.LookPath): not found → 127, not executable → 126, one log line.
	Argv []string

	// Hold blocks until the sidecar can route, returning nil, or an error
	// when it gives up; ErrNoSidecar means it found there is no sidecar
	// (CMD starts at once, logged as such). It gets a context that ends at StartTimeout. A nil
	// Hold starts CMD at once (no sidecar).
	Hold func(ctx context.Context) error
	// StartTimeout bounds Hold; Run acts at the deadline even if Hold does
	// not return. Must be > 0 when Hold is set: never hang forever
	// (scuttle#27, #50).
	StartTimeout time.Duration
	// HoldSlack extends Hold's deadline past StartTimeout without showing in
	// logs: a Hold that itself gives up at StartTimeout (sidecar
	// auto-detection deciding "no sidecar") gets to answer first.
	HoldSlack time.Duration
	// ExitOnStartTimeout: when Hold fails or times out, exit 69 without
	// starting CMD; otherwise start CMD anyway. Both are logged loudly.
	ExitOnStartTimeout bool

	// DrainMin is the least time between the first SIGTERM and SIGTERM to
	// CMD: callers' proxies need it to stop routing here whatever Envoy
	// says (the endpoint-removal race, kubernetes#67592).
	DrainMin time.Duration
	// DrainQuiet is how long inbound must stay quiet (no request in
	// flight, counter unchanged) before the drain may end.
	DrainQuiet time.Duration
	// DrainMax bounds the drain whatever the traffic.
	DrainMax time.Duration
	// Grace is the time CMD gets between SIGTERM and SIGKILL.
	Grace time.Duration
	// TerminationGrace is the pod's terminationGracePeriodSeconds; only
	// used to warn when DrainMax+Grace would not fit. 0: unknown.
	TerminationGrace time.Duration
	// PollInterval is how often Activity is read while draining
	// (default 250ms).
	PollInterval time.Duration

	// OnDrain is called synchronously on the first SIGTERM/SIGINT, before
	// anything else happens: the caller turns readiness to 503 "draining"
	// here. It must not block.
	OnDrain func()
	// EnvoyDrain, when set, is called once as the drain starts (e.g. POST
	// /drain_listeners?inboundonly&graceful). It runs aside: its error is
	// logged and never delays the drain; ErrNoSidecar (nothing to drain)
	// is not logged.
	EnvoyDrain func(ctx context.Context) error
	// Activity reads the sidecar's inbound traffic. nil means there is no
	// sidecar: the drain is DrainMin only. ErrNoSidecar and ErrSidecarGone
	// have the meanings above; any other error is logged (once per run of
	// failures) and leaves the drain on the last known activity.
	Activity func(ctx context.Context) (Activity, error)
	// QuitSidecar, when set (Jobs), is called once as Run returns, on every
	// path once the config is valid — CMD exited, start timeout, CMD not
	// found, a signal while holding — so a Job's sidecar never outlives it
	// (scuttle#34, linkerd-await#571). Its context ends after 5s.
	// ErrNoSidecar means there was none to quit (logged at debug only).
	QuitSidecar func(ctx context.Context) error

	// OnPhase is called on each phase change, from Run's goroutine; it
	// must not block. For metrics.
	OnPhase func(Phase)
	// OnDrainEnd is called once when a drain ends, with its length and why.
	OnDrainEnd func(took time.Duration, why DrainEnd)

	// Logger receives one line per phase and per decision (default
	// slog.Default()).
	Logger *slog.Logger
	// Signals, when set, replaces signal.Notify for every signal but
	// SIGCHLD (which Run always watches itself, to reap): for tests, and for
	// callers that must catch signals before Run starts (meshready run
	// serves /health first).
	Signals <-chan os.Signal
}

// Validate reports the first thing that makes cfg unusable, as one line
// naming the setting by its flag name and the value.
func (c Config) Validate() error {
	if len(c.Argv) == 0 || c.Argv[0] == "" {
		return errors.New("no CMD given: usage is run [flags] -- CMD [ARGS…]")
	}
	for _, d := range []struct {
		name string
		v    time.Duration
	}{
		{"start-timeout", c.StartTimeout},
		{"drain-min", c.DrainMin},
		{"drain-quiet", c.DrainQuiet},
		{"drain-max", c.DrainMax},
		{"grace", c.Grace},
		{"termination-grace", c.TerminationGrace},
		{"poll interval", c.PollInterval},
	} {
		if d.v < 0 {
			return fmt.Errorf("%s=%s: must not be negative", d.name, d.v)
		}
	}
	if c.Hold != nil && c.StartTimeout == 0 {
		return errors.New("start-timeout=0s: must be > 0 (waiting forever for a sidecar that may never come hangs the pod)")
	}
	if c.DrainMin > c.DrainMax {
		return fmt.Errorf("drain-min=%s: must not exceed drain-max=%s", c.DrainMin, c.DrainMax)
	}
	return nil
}

// Warnings lists settings that are valid but will likely misbehave; Run
// logs them at start.
func (c Config) Warnings() []string {
	var w []string
	// Without a sidecar (Activity nil) the drain is drain-min only.
	longest, name := c.DrainMax, "drain-max"
	if c.Activity == nil {
		longest, name = c.DrainMin, "drain-min"
	}
	if c.TerminationGrace > 0 && longest+c.Grace > c.TerminationGrace {
		w = append(w, fmt.Sprintf(
			"%s (%s) + grace (%s) = %s exceeds termination-grace (%s): the kubelet may SIGKILL CMD before it has finished; raise terminationGracePeriodSeconds or lower %s/grace",
			name, longest, c.Grace, longest+c.Grace, c.TerminationGrace, name))
	}
	if c.Activity != nil && c.DrainQuiet > c.DrainMax {
		w = append(w, fmt.Sprintf(
			"drain-quiet (%s) exceeds drain-max (%s): inbound can never be seen quiet, every drain will last drain-max",
			c.DrainQuiet, c.DrainMax))
	}
	return w
}

func (c Config) withDefaults() Config {
	if c.PollInterval == 0 {
		c.PollInterval = defaultPollInterval
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	return c
}
