// Package graceful runs CMD as PID 1 of an application container in a
// mesh: it holds CMD until the sidecar can route, reaps every zombie,
// forwards signals to CMD's process group, and on SIGTERM drains — turns
// unready, waits until callers stop sending, and only then tells CMD.
//
// It knows processes and signals only. What "the sidecar can route", "turn
// unready" and "inbound is quiet" mean comes in as funcs in Config.
//
// When CMD exits, whatever remains of its process group gets SIGTERM, then
// SIGKILL after Grace, before Run returns CMD's code: as PID 1 the kernel
// would end them with us, but in a shared PID namespace or run by hand
// nothing else would.
//
// Every signal's fate is decided in one place, Run's loop (onSignal):
//
//	SIGCHLD          reap every exited child (CMD and re-parented orphans)
//	SIGURG           dropped: the Go runtime preempts its own threads with it
//	SIGPIPE          dropped: the kernel's answer to our own write to a closed pipe
//	SIGTERM, SIGINT  holding: exit 143/130 without starting CMD
//	                 running: drain, then SIGTERM to CMD's group
//	                 draining: skip the rest of the drain
//	                 terminating: forwarded
//	anything else    forwarded to CMD's process group (logged and dropped while holding)
package graceful

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"syscall"
	"time"
)

// quitSidecarBudget bounds Config.QuitSidecar: the pod must end even when
// the sidecar does not answer.
const quitSidecarBudget = 5 * time.Second

// activityReadTimeout bounds one Activity call when PollInterval is shorter.
const activityReadTimeout = time.Second

// Run starts CMD per cfg, supervises it as described in the package doc,
// and returns the code the process should exit with: CMD's own, 128+n if
// CMD died of signal n, 69 when the sidecar never became ready and
// cfg.ExitOnStartTimeout is set, 126/127 when CMD cannot be run, 2 when
// cfg is invalid, 128+n when signal n arrived before CMD started.
//
// Run reaps every child of the process (wait4(-1)): nothing else in the
// process may start or wait for child processes while it runs. Cancelling
// ctx acts as one SIGTERM.
func Run(ctx context.Context, cfg Config) int {
	if err := cfg.Validate(); err != nil {
		log := cfg.Logger
		if log == nil {
			log = slog.Default()
		}
		log.Error("bad configuration: "+err.Error(), "exit", ExitBadConfig)
		return ExitBadConfig
	}
	s := &supervisor{cfg: cfg.withDefaults()}
	s.log = s.cfg.Logger
	code := s.run(ctx)
	s.quitSidecar()
	return code
}

// supervisor is Run's state; only Run's goroutine touches it.
type supervisor struct {
	cfg Config
	log *slog.Logger

	phase      Phase
	phaseStart time.Time

	path string
	pid  int // CMD's pid, which is also its process group id; 0 until started

	holdCtx    context.Context
	holdCancel context.CancelFunc
	holdDone   chan error
	holdTimer  *time.Timer

	drainStart  time.Time
	drainCancel context.CancelFunc
	readings    chan reading
	quiet       quietWatch
	minTimer    *time.Timer
	minPassed   bool
	maxTimer    *time.Timer
	unknownSaid bool
	noSidecar   bool // Activity said ErrNoSidecar
	failing     bool // the last Activity read failed (not ErrSidecarGone)
	goneSaid    bool

	graceTimer *time.Timer

	// After CMD exits, what remains of its process group (a background
	// child it left) gets SIGTERM, then SIGKILL after Grace, before Run
	// returns CMD's code: when we are not PID 1, nothing else would stop it.
	leftovers   bool
	leftCode    int
	leftKilled  bool
	leftTimer   *time.Timer
	leftPoll    *time.Ticker
	leftStarted time.Time

	code int
	done bool
}

type reading struct {
	activity Activity
	err      error
	at       time.Time
}

func (s *supervisor) run(ctx context.Context) int {
	path, code, err := resolve(s.cfg.Argv[0])
	if err != nil {
		s.log.Error(err.Error(), "exit", code)
		s.finish(code)
		return code
	}
	s.path = path
	for _, w := range s.cfg.Warnings() {
		s.log.Warn(w)
	}

	// SIGCHLD gets its own channel so that reaping never depends on an
	// injected signal source. One buffered slot suffices: each reap
	// collects every exited child, so a coalesced SIGCHLD loses nothing.
	chld := make(chan os.Signal, 1)
	signal.Notify(chld, syscall.SIGCHLD)
	defer signal.Stop(chld)
	sigs := s.cfg.Signals
	if sigs == nil {
		all := make(chan os.Signal, 64)
		signal.Notify(all)
		defer signal.Stop(all)
		sigs = all
	}
	if how, err := becomeReaper(); err != nil {
		s.log.Warn("neither PID 1 nor able to become a subreaper: orphans of CMD will not be reaped here", "err", err)
	} else {
		s.log.Debug("reaping orphans as "+how, "pid", os.Getpid())
	}
	defer s.cleanup()

	if s.cfg.Hold == nil {
		s.startCmd()
	} else {
		s.startHold(ctx)
	}
	ctxDone := ctx.Done()
	for !s.done {
		select {
		case sig := <-sigs:
			s.onSignal(sig)
		case <-chld:
			s.reap()
		case err := <-s.holdDone:
			s.onHoldDone(err)
		case <-timerC(s.holdTimer):
			s.onHoldFailed(s.holdTimedOut())
		case r := <-s.readings:
			s.onReading(r)
		case <-timerC(s.minTimer):
			s.onDrainMin()
		case <-timerC(s.maxTimer):
			s.endDrain(DrainEndMax)
		case <-timerC(s.graceTimer):
			s.kill()
		case <-tickerC(s.leftPoll):
			s.checkLeftovers()
		case <-timerC(s.leftTimer):
			s.onLeftoverTimer()
		case <-ctxDone:
			ctxDone = nil
			s.log.Info("context cancelled: acting as SIGTERM")
			s.onStop(syscall.SIGTERM)
		}
	}
	return s.code
}

// onSignal is the one place where a signal's fate is decided.
func (s *supervisor) onSignal(sig os.Signal) {
	n, ok := sig.(syscall.Signal)
	if !ok {
		return
	}
	switch n {
	case syscall.SIGURG:
		// The Go runtime sends itself SIGURG to preempt goroutines;
		// forwarding it hands CMD a stream of signals nobody sent
		// (scuttle#44).
	case syscall.SIGPIPE:
		// Only our own write to a closed stdout/stderr raises it (with
		// Notify, Go turns it into EPIPE); forwarding would kill CMD for
		// our log line. Not logged either: the log may be that pipe.
	case syscall.SIGCHLD:
		s.reap()
	case syscall.SIGTERM, syscall.SIGINT:
		s.onStop(n)
	default:
		s.forward(n)
	}
}

func (s *supervisor) onStop(sig syscall.Signal) {
	switch s.phase {
	case PhaseHolding:
		code := exitSignalBase + int(sig)
		s.log.Warn(signalName(sig)+" while holding: CMD not started", "exit", code)
		s.finish(code)
	case PhaseRunning:
		s.startDrain(sig)
	case PhaseDraining:
		s.log.Info(signalName(sig) + " again: skipping the rest of the drain")
		s.endDrain(DrainEndSignal)
	default: // terminating, killed: CMD already has SIGTERM; pass on whatever follows
		s.forward(sig)
	}
}

func (s *supervisor) forward(sig syscall.Signal) {
	if s.pid == 0 {
		s.log.Info(signalName(sig)+" ignored: CMD not started yet", "phase", s.phase)
		return
	}
	err := signalGroup(s.pid, sig)
	switch {
	case errors.Is(err, syscall.ESRCH):
		s.log.Debug(signalName(sig)+" not forwarded: CMD's group is gone", "pgid", s.pid)
	case err != nil:
		s.log.Warn(signalName(sig)+" not forwarded", "pgid", s.pid, "err", err)
	default:
		s.log.Debug(signalName(sig)+" forwarded", "pgid", s.pid)
	}
}

// reap collects every exited child; when CMD is among them, Run is done.
func (s *supervisor) reap() {
	ws, cmdDone := reapAll(s.pid, func(pid int, ws syscall.WaitStatus) {
		s.log.Debug("reaped orphan", "pid", pid, "code", exitCode(ws))
	})
	if s.leftovers {
		s.checkLeftovers()
		return
	}
	if !cmdDone {
		return
	}
	code := exitCode(ws)
	if s.phase == PhaseDraining {
		s.endDrain(DrainEndAppExited)
	}
	stopTimer(&s.graceTimer)
	s.log.Info("CMD exited", "pid", s.pid, "code", code, "status", describe(ws), "phase", s.phase)
	if groupAlive(s.pid) {
		s.startLeftovers(code)
		return
	}
	s.finish(code)
}

// startLeftovers stops what remains of CMD's process group: SIGTERM now,
// SIGKILL after Grace; Run returns CMD's code once the group is empty.
func (s *supervisor) startLeftovers(code int) {
	s.leftovers, s.leftCode, s.leftStarted = true, code, time.Now()
	s.log.Warn("CMD exited but processes of its group remain: SIGTERM to the group, SIGKILL after grace", "pgid", s.pid, "grace", s.cfg.Grace)
	_ = syscall.Kill(-s.pid, syscall.SIGTERM)
	s.leftTimer = time.NewTimer(s.cfg.Grace)
	// Leftovers are our children when we are PID 1 or a subreaper (their
	// exit is a SIGCHLD); the poll covers the case where we are neither.
	s.leftPoll = time.NewTicker(50 * time.Millisecond)
}

func (s *supervisor) checkLeftovers() {
	if !s.leftovers || groupAlive(s.pid) {
		return
	}
	s.log.Info("CMD's process group is empty", "took", time.Since(s.leftStarted).Round(time.Millisecond))
	s.stopLeftovers()
	s.finish(s.leftCode)
}

func (s *supervisor) onLeftoverTimer() {
	s.leftTimer = nil
	if s.leftKilled {
		// SIGKILL cannot be ignored; what is still there is a zombie whose
		// parent is not us. Do not wait on it.
		s.log.Warn("CMD's process group still not empty after SIGKILL; exiting anyway", "pgid", s.pid)
		s.stopLeftovers()
		s.finish(s.leftCode)
		return
	}
	s.leftKilled = true
	s.log.Warn("processes of CMD's group still running after grace: SIGKILL sent to the group", "pgid", s.pid, "grace", s.cfg.Grace)
	_ = syscall.Kill(-s.pid, syscall.SIGKILL)
	s.leftTimer = time.NewTimer(time.Second)
}

func (s *supervisor) stopLeftovers() {
	s.leftovers = false
	stopTimer(&s.leftTimer)
	if s.leftPoll != nil {
		s.leftPoll.Stop()
		s.leftPoll = nil
	}
}

func (s *supervisor) startHold(ctx context.Context) {
	s.enter(PhaseHolding)
	s.log.Info("holding CMD until the sidecar can route", "cmd", s.cfg.Argv[0], "start_timeout", s.cfg.StartTimeout)
	// The hold ends by our decision only (ready, deadline, signal): a
	// cancelled ctx reaches the loop as a SIGTERM, not as a failed hold.
	hctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), s.cfg.StartTimeout+s.cfg.HoldSlack)
	done := make(chan error, 1)
	s.holdCtx, s.holdCancel, s.holdDone = hctx, cancel, done
	// Our own timer acts at the deadline even if Hold ignores its context.
	s.holdTimer = time.NewTimer(s.cfg.StartTimeout + s.cfg.HoldSlack)
	go func() { done <- s.cfg.Hold(hctx) }()
}

func (s *supervisor) stopHold() {
	if s.holdCancel != nil {
		s.holdCancel()
	}
	stopTimer(&s.holdTimer)
	s.holdCtx, s.holdCancel, s.holdDone = nil, nil, nil
}

func (s *supervisor) onHoldDone(err error) {
	switch {
	case errors.Is(err, ErrNoSidecar):
		// Decided while holding (auto-detection): nothing to wait for.
		s.stopHold()
		s.log.Info("no sidecar: starting CMD", "held", time.Since(s.phaseStart).Round(time.Millisecond))
		s.startCmd()
	case err != nil:
		why := "sidecar not ready: " + err.Error()
		if s.holdCtxExpired() {
			why = s.holdTimeoutText(err)
		}
		s.onHoldFailed(why)
	default:
		s.stopHold()
		s.log.Info("sidecar ready", "held", time.Since(s.phaseStart).Round(time.Millisecond))
		s.startCmd()
	}
}

// holdTimedOut is the hold's deadline firing on our own timer: the Hold
// ends at the same deadline, so give it a moment to say its last reason
// (which check, why) instead of reporting only that time ran out.
func (s *supervisor) holdTimedOut() string {
	done := s.holdDone
	if s.holdCancel != nil {
		s.holdCancel()
	}
	select {
	case err := <-done:
		if err != nil && !errors.Is(err, ErrNoSidecar) {
			return s.holdTimeoutText(err)
		}
	case <-time.After(holdReasonWait):
	}
	return s.holdTimeoutText(nil)
}

// holdReasonWait is how long a timed-out Hold gets to return its reason.
const holdReasonWait = 200 * time.Millisecond

func (s *supervisor) holdCtxExpired() bool {
	return s.holdCtx != nil && s.holdCtx.Err() != nil
}

// holdTimeoutText names the one deadline that fired (--start-timeout, as
// given: the slack is internal) and, when the Hold said it, why.
func (s *supervisor) holdTimeoutText(err error) string {
	why := fmt.Sprintf("sidecar not ready after --start-timeout %s", s.cfg.StartTimeout)
	if err != nil && err.Error() != "" {
		why += ": " + err.Error()
	}
	return why
}

// onHoldFailed applies on-start-timeout, loudly: either way the pod is not
// what its author asked for. why is the whole reason ("sidecar not ready…").
func (s *supervisor) onHoldFailed(why string) {
	s.stopHold()
	if s.cfg.ExitOnStartTimeout {
		s.log.Error(why+"; exiting without starting CMD (on-start-timeout=exit)", "exit", ExitStartTimeout)
		s.finish(ExitStartTimeout)
		return
	}
	s.log.Error(why + "; starting CMD anyway (on-start-timeout=start): its connections may fail until the sidecar is ready")
	s.startCmd()
}

func (s *supervisor) startCmd() {
	pid, err := start(s.path, s.cfg.Argv)
	if err != nil {
		code := execFailureCode(err)
		s.log.Error(fmt.Sprintf("cannot execute CMD %q: %v", s.path, err), "exit", code)
		s.finish(code)
		return
	}
	s.pid = pid
	s.enter(PhaseRunning)
	s.log.Info("CMD started", "pid", pid, "cmd", s.path)
}

func (s *supervisor) startDrain(sig syscall.Signal) {
	s.drainStart = time.Now()
	if s.cfg.OnDrain != nil {
		s.cfg.OnDrain()
	}
	s.enter(PhaseDraining)
	if s.cfg.Activity == nil {
		s.log.Info(signalName(sig)+": draining for drain-min (no sidecar: no inbound traffic to watch); CMD keeps serving", "drain_min", s.cfg.DrainMin)
	} else {
		s.log.Info(signalName(sig)+": draining; CMD keeps serving until inbound is quiet",
			"drain_min", s.cfg.DrainMin, "drain_quiet", s.cfg.DrainQuiet, "drain_max", s.cfg.DrainMax)
	}

	if s.cfg.EnvoyDrain != nil {
		go s.envoyDrain()
	}
	s.minTimer = time.NewTimer(s.cfg.DrainMin)
	if s.cfg.Activity == nil {
		return // no sidecar: DrainMin is the whole drain
	}
	s.maxTimer = time.NewTimer(s.cfg.DrainMax)
	ctx, cancel := context.WithCancel(context.Background())
	s.drainCancel = cancel
	s.readings = make(chan reading, 1)
	go pollActivity(ctx, s.cfg.Activity, s.cfg.PollInterval, s.readings)
}

// envoyDrain runs aside the loop: the drain's timing never waits on it, and
// a drain cut short does not cut it short — Envoy draining its listeners
// still helps while CMD terminates.
func (s *supervisor) envoyDrain() {
	ctx, cancel := context.WithTimeout(context.Background(), max(s.cfg.DrainMax, activityReadTimeout))
	defer cancel()
	start := time.Now()
	if err := s.cfg.EnvoyDrain(ctx); errors.Is(err, ErrNoSidecar) {
		return
	} else if err != nil {
		s.log.Warn("asking the sidecar to drain inbound listeners failed; draining anyway", "err", err)
		return
	}
	s.log.Info("sidecar draining inbound listeners", "took", time.Since(start).Round(time.Millisecond))
}

// pollActivity reads the sidecar's inbound activity now and every `every`
// until ctx ends. Each read is bounded, so a hung admin API costs one
// reading, never the drain's bound.
func pollActivity(ctx context.Context, read func(context.Context) (Activity, error), every time.Duration, out chan<- reading) {
	tick := time.NewTicker(every)
	defer tick.Stop()
	for {
		at := time.Now()
		rctx, cancel := context.WithTimeout(ctx, max(every, activityReadTimeout))
		a, err := read(rctx)
		cancel()
		if err != nil {
			a = Activity{}
		}
		select {
		case out <- reading{a, err, at}:
		case <-ctx.Done():
			return
		}
		select {
		case <-tick.C:
		case <-ctx.Done():
			return
		}
	}
}

func (s *supervisor) onReading(r reading) {
	if errors.Is(r.err, ErrNoSidecar) {
		// No sidecar after all (decided at run time, e.g. auto-detection):
		// nothing to watch, DrainMin is the whole drain.
		if !s.noSidecar {
			s.noSidecar = true
			s.log.Info("no sidecar: the drain is --drain-min only")
		}
		if s.minPassed {
			s.endDrain(DrainEndMin)
		}
		return
	}
	switch {
	case errors.Is(r.err, ErrSidecarGone):
		if !s.goneSaid {
			s.goneSaid = true
			s.log.Info("the sidecar is gone ("+r.err.Error()+"): nothing can route here any more; counted as quiet, drain-min still holds", "drain_min", s.cfg.DrainMin)
		}
		r.activity = Activity{}
	case r.err != nil:
		// A hung, failing or garbled admin API says nothing about traffic:
		// keep draining on what was last known, up to drain-max.
		if !s.failing {
			s.failing = true
			s.log.Warn("cannot read inbound activity; draining on the last known activity until it reads again or drain-max", "err", r.err.Error(), "drain_max", s.cfg.DrainMax)
		}
		return
	case s.failing:
		s.failing = false
		s.log.Info("inbound activity readable again")
	}
	if !r.activity.Known && r.err == nil && !s.unknownSaid {
		s.unknownSaid = true
		s.log.Warn("inbound activity unknown (the sidecar reports no inbound stats): counted as quiet; drain-min still holds", "drain_min", s.cfg.DrainMin)
	}
	s.quiet.observe(r.activity, r.at)
	s.checkQuiet()
}

func (s *supervisor) onDrainMin() {
	s.minTimer, s.minPassed = nil, true
	if s.cfg.Activity == nil || s.noSidecar {
		s.endDrain(DrainEndMin)
		return
	}
	s.checkQuiet()
}

func (s *supervisor) checkQuiet() {
	if !s.minPassed {
		return
	}
	if d, ok := s.quiet.quietFor(); ok && d >= s.cfg.DrainQuiet {
		s.endDrain(DrainEndQuiet)
	}
}

// endDrain stops every drain activity and, unless CMD is already gone,
// tells CMD to stop.
func (s *supervisor) endDrain(why DrainEnd) {
	took := time.Since(s.drainStart)
	s.stopDrain()
	s.log.Info("drain ended", "why", string(why), "took", took.Round(time.Millisecond))
	if s.cfg.OnDrainEnd != nil {
		s.cfg.OnDrainEnd(took, why)
	}
	if why != DrainEndAppExited {
		s.terminate()
	}
}

func (s *supervisor) stopDrain() {
	if s.drainCancel != nil {
		s.drainCancel()
		s.drainCancel = nil
	}
	stopTimer(&s.minTimer)
	stopTimer(&s.maxTimer)
	s.readings = nil
}

func (s *supervisor) terminate() {
	s.enter(PhaseTerminating)
	s.forward(syscall.SIGTERM)
	s.log.Info("SIGTERM sent to CMD's process group", "pgid", s.pid, "grace", s.cfg.Grace)
	s.graceTimer = time.NewTimer(s.cfg.Grace)
}

func (s *supervisor) kill() {
	s.graceTimer = nil
	s.enter(PhaseKilled)
	s.forward(syscall.SIGKILL)
	s.log.Warn("CMD still running after grace: SIGKILL sent to its process group", "pgid", s.pid, "grace", s.cfg.Grace)
}

func (s *supervisor) finish(code int) {
	s.code, s.done = code, true
	s.enter(PhaseExited)
}

func (s *supervisor) cleanup() {
	s.stopHold()
	s.stopDrain()
	stopTimer(&s.graceTimer)
	s.stopLeftovers()
}

// enter records a phase change: one log line with the time spent in the
// previous phase, and OnPhase for metrics.
func (s *supervisor) enter(p Phase) {
	now := time.Now()
	if s.phase != "" {
		s.log.Info("phase "+string(p), "after", string(s.phase), "took", now.Sub(s.phaseStart).Round(time.Millisecond))
	} else {
		s.log.Info("phase " + string(p))
	}
	s.phase, s.phaseStart = p, now
	if s.cfg.OnPhase != nil {
		s.cfg.OnPhase(p)
	}
}

func (s *supervisor) quitSidecar() {
	if s.cfg.QuitSidecar == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), quitSidecarBudget)
	defer cancel()
	start := time.Now()
	if err := s.cfg.QuitSidecar(ctx); errors.Is(err, ErrNoSidecar) {
		s.log.Debug("no sidecar to tell to quit")
		return
	} else if err != nil {
		s.log.Warn("could not tell the sidecar to quit: the pod may keep running after CMD", "err", err)
		return
	}
	s.log.Info("sidecar told to quit", "took", time.Since(start).Round(time.Millisecond))
}

func timerC(t *time.Timer) <-chan time.Time {
	if t == nil {
		return nil
	}
	return t.C
}

func tickerC(t *time.Ticker) <-chan time.Time {
	if t == nil {
		return nil
	}
	return t.C
}

func stopTimer(t **time.Timer) {
	if *t != nil {
		(*t).Stop()
		*t = nil
	}
}

func describe(ws syscall.WaitStatus) string {
	if ws.Signaled() {
		return "killed by " + signalName(ws.Signal())
	}
	return fmt.Sprintf("exit status %d", ws.ExitStatus())
}

// signalName gives the name users grep for ("SIGTERM"), which
// syscall.Signal's String ("terminated") is not.
func signalName(sig syscall.Signal) string {
	if int(sig) < len(signalNames) && signalNames[sig] != "" {
		return signalNames[sig]
	}
	return fmt.Sprintf("signal %d", int(sig))
}

var signalNames = [...]string{
	syscall.SIGHUP: "SIGHUP", syscall.SIGINT: "SIGINT", syscall.SIGQUIT: "SIGQUIT",
	syscall.SIGILL: "SIGILL", syscall.SIGTRAP: "SIGTRAP", syscall.SIGABRT: "SIGABRT",
	syscall.SIGBUS: "SIGBUS", syscall.SIGFPE: "SIGFPE", syscall.SIGKILL: "SIGKILL",
	syscall.SIGUSR1: "SIGUSR1", syscall.SIGSEGV: "SIGSEGV", syscall.SIGUSR2: "SIGUSR2",
	syscall.SIGPIPE: "SIGPIPE", syscall.SIGALRM: "SIGALRM", syscall.SIGTERM: "SIGTERM",
	syscall.SIGSTKFLT: "SIGSTKFLT", syscall.SIGCHLD: "SIGCHLD", syscall.SIGCONT: "SIGCONT",
	syscall.SIGSTOP: "SIGSTOP", syscall.SIGTSTP: "SIGTSTP", syscall.SIGTTIN: "SIGTTIN",
	syscall.SIGTTOU: "SIGTTOU", syscall.SIGURG: "SIGURG", syscall.SIGXCPU: "SIGXCPU",
	syscall.SIGXFSZ: "SIGXFSZ", syscall.SIGVTALRM: "SIGVTALRM", syscall.SIGPROF: "SIGPROF",
	syscall.SIGWINCH: "SIGWINCH", syscall.SIGIO: "SIGIO", syscall.SIGPWR: "SIGPWR",
	syscall.SIGSYS: "SIGSYS",
}
