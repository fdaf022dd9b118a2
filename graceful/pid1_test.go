package graceful_test

// These tests run the supervisor as a separate process — under `unshare
// --pid --fork --mount-proc` it is PID 1 of a fresh PID namespace, as in a
// container — and drive it from outside with real signals. Timing
// assertions are strict on order and lower bounds, loose on upper bounds:
// CI shares two cores.

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
	"unsafe"
)

// slack is what an upper bound may overrun by on a busy machine.
const slack = 2 * time.Second

var (
	unshareOnce sync.Once
	unshareErr  error
)

func requireUnshare(t *testing.T) {
	t.Helper()
	unshareOnce.Do(func() {
		out, err := exec.Command("unshare", "--pid", "--fork", "--mount-proc", "true").CombinedOutput()
		if err != nil {
			unshareErr = fmt.Errorf("%v: %s", err, bytes.TrimSpace(out))
		}
	})
	if unshareErr != nil {
		t.Skipf("!!!!! PID-1 TEST SKIPPED: `unshare --pid --fork --mount-proc` failed (%v). "+
			"These tests need root and util-linux; CI has both, so there they run. !!!!!", unshareErr)
	}
}

// supervised is one supervisor process started by a test.
type supervised struct {
	t      *testing.T
	spec   supervisorSpec
	pid    int // the supervisor's pid as seen from here (it sees itself as 1)
	out    *syncBuffer
	exited chan struct{}
	code   int
}

// startSupervisor starts the supervisor as PID 1 of a new PID namespace,
// or, with pid1 false, as a plain child (then it must become a subreaper).
func startSupervisor(t *testing.T, spec supervisorSpec, pid1 bool, adjust ...func(*exec.Cmd)) *supervised {
	t.Helper()
	if pid1 {
		requireUnshare(t)
	}
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	if spec.Events == "" {
		spec.Events = eventsFile(t)
	}
	specJSON, err := json.Marshal(spec)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(self)
	if pid1 {
		cmd = exec.Command("unshare", "--pid", "--fork", "--mount-proc", self)
	}
	cmd.Env = withEnv(withEnv(os.Environ(), roleEnv, "supervisor"), specEnv, string(specJSON))
	// Under -race every process sleeps 1s at exit (atexit_sleep_ms); the
	// timings here are about the supervisor, not the race detector.
	cmd.Env = withEnv(cmd.Env, "GORACE", strings.TrimSpace(os.Getenv("GORACE")+" atexit_sleep_ms=0"))
	s := &supervised{t: t, spec: spec, out: &syncBuffer{}, exited: make(chan struct{})}
	cmd.Stdout, cmd.Stderr = s.out, s.out
	cmd.WaitDelay = 5 * time.Second
	for _, f := range adjust {
		f(cmd)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		_ = cmd.Wait()
		s.code = cmd.ProcessState.ExitCode()
		close(s.exited)
	}()
	s.pid = cmd.Process.Pid
	if pid1 {
		s.pid = waitChild(t, cmd.Process.Pid)
	}
	t.Cleanup(func() {
		select {
		case <-s.exited:
		default:
			_ = syscall.Kill(s.pid, syscall.SIGKILL) // PID 1 gone: the kernel kills the whole namespace
			_ = cmd.Process.Kill()
			<-s.exited
		}
		if t.Failed() {
			t.Logf("supervisor's output:\n%s", s.out)
			t.Logf("events:\n%s", s.eventsText())
		}
	})
	return s
}

// waitChild finds the process unshare forked: the supervisor.
func waitChild(t *testing.T, ppid int) int {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		dirs, _ := os.ReadDir("/proc")
		for _, d := range dirs {
			pid, err := strconv.Atoi(d.Name())
			if err != nil {
				continue
			}
			if procField(pid, "PPid") == strconv.Itoa(ppid) {
				return pid
			}
		}
		time.Sleep(5 * time.Millisecond)
	}
	t.Fatalf("unshare (pid %d) started no child", ppid)
	return 0
}

func (s *supervised) signal(sig syscall.Signal) {
	s.t.Helper()
	if err := syscall.Kill(s.pid, sig); err != nil {
		s.t.Fatalf("kill(%d, %v): %v", s.pid, sig, err)
	}
}

// wait returns the supervisor's exit code.
func (s *supervised) wait(within time.Duration) int {
	s.t.Helper()
	select {
	case <-s.exited:
		return s.code
	case <-time.After(within):
		s.t.Fatalf("supervisor still running after %s", within)
		return -1
	}
}

func (s *supervised) events() []event { return readEvents(s.spec.Events) }

func (s *supervised) eventsText() string {
	var b strings.Builder
	for _, e := range s.events() {
		fmt.Fprintf(&b, "  %s %s\n", e.at.Format("15:04:05.000"), e)
	}
	return b.String()
}

// waitEvent waits for the first event of who/what whose detail starts with
// the given words.
func (s *supervised) waitEvent(who, what string, detail ...string) event {
	s.t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		if i := find(s.events(), who, what, detail...); i >= 0 {
			return s.events()[i]
		}
		select {
		case <-s.exited:
			if i := find(s.events(), who, what, detail...); i >= 0 {
				return s.events()[i]
			}
			s.t.Fatalf("supervisor exited (code %d) before %s %s %v", s.code, who, what, detail)
		case <-time.After(10 * time.Millisecond):
		}
	}
	s.t.Fatalf("no event %s %s %v", who, what, detail)
	return event{}
}

// find is the index of the first matching event, or -1.
func find(evs []event, who, what string, detail ...string) int {
next:
	for i, e := range evs {
		if e.who != who || e.what != what || len(e.detail) < len(detail) {
			continue
		}
		for j, d := range detail {
			if e.detail[j] != d {
				continue next
			}
		}
		return i
	}
	return -1
}

func count(evs []event, who, what string, detail ...string) int {
	n := 0
	for i := range evs {
		if find(evs[i:i+1], who, what, detail...) == 0 {
			n++
		}
	}
	return n
}

// envoyStandIn answers the few Envoy admin endpoints the harness reads, in
// Envoy's formats; the test drives its state and its inbound counters.
type envoyStandIn struct {
	mu            sync.Mutex
	live, config  bool
	active, total uint64
	busy          bool // every /stats read sees new requests
	drainQueries  []string
	quitAt        time.Time
	url           string
}

func newStandIn(t *testing.T) *envoyStandIn {
	e := &envoyStandIn{}
	srv := httptest.NewServer(http.HandlerFunc(e.serve))
	t.Cleanup(srv.Close)
	e.url = srv.URL
	return e
}

func (e *envoyStandIn) serve(w http.ResponseWriter, r *http.Request) {
	e.mu.Lock()
	defer e.mu.Unlock()
	post := r.Method == http.MethodPost
	switch {
	case r.URL.Path == "/ready" && !post:
		if e.live {
			fmt.Fprintln(w, "LIVE")
			return
		}
		w.WriteHeader(http.StatusServiceUnavailable)
		fmt.Fprintln(w, "PRE_INITIALIZING")
	case r.URL.Path == "/stats" && !post:
		updates := 0
		if e.config {
			updates = 1
		}
		if e.busy {
			e.total += 3
		}
		filter, err := regexp.Compile(r.URL.Query().Get("filter"))
		if err != nil {
			http.Error(w, "bad filter", http.StatusBadRequest)
			return
		}
		// As a sidecar reports them, with what must not count: per-worker
		// copies, and the kubelet's probe connection on the health port.
		for _, st := range []struct {
			name string
			v    uint64
		}{
			{"cluster_manager.cds.update_success", uint64(updates)},
			{"listener_manager.lds.update_success", uint64(updates)},
			{"listener.0.0.0.0_15006.downstream_cx_active", e.active},
			{"listener.0.0.0.0_15006.downstream_cx_total", e.total},
			{"listener.0.0.0.0_15006.worker_0.downstream_cx_active", e.active},
			{"listener.0.0.0.0_15021.downstream_cx_active", 1},
			{"listener.0.0.0.0_15021.downstream_cx_total", e.total + 100},
			{"http.inbound_0.0.0.0_8080.downstream_rq_active", e.active},
			{"http.inbound_0.0.0.0_8080.downstream_rq_total", e.total},
		} {
			if filter.MatchString(st.name) {
				fmt.Fprintf(w, "%s: %d\n", st.name, st.v)
			}
		}
	case r.URL.Path == "/drain_listeners" && post:
		e.drainQueries = append(e.drainQueries, r.URL.RawQuery)
		fmt.Fprintln(w, "OK")
	case r.URL.Path == "/quitquitquit" && post:
		e.quitAt = time.Now()
		fmt.Fprintln(w, "OK")
	default: // Envoy answers mutations sent as GET with 400
		http.Error(w, "unexpected "+r.Method+" "+r.URL.Path, http.StatusBadRequest)
	}
}

func (e *envoyStandIn) set(f func(*envoyStandIn)) {
	e.mu.Lock()
	defer e.mu.Unlock()
	f(e)
}

// standInCalls is what the stand-in was asked to do.
type standInCalls struct {
	drainQueries []string
	quitAt       time.Time
}

func (e *envoyStandIn) get() standInCalls {
	e.mu.Lock()
	defer e.mu.Unlock()
	return standInCalls{drainQueries: append([]string(nil), e.drainQueries...), quitAt: e.quitAt}
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}

// --- the tests ---

// The supervisor is PID 1; the app's orphaned grandchild is re-parented to
// it and reaped: gone from the namespace's /proc, not left a zombie.
func TestPID1ReapsOrphanedGrandchild(t *testing.T) {
	t.Parallel()
	s := startSupervisor(t, supervisorSpec{App: appSpec{Orphan: true, ExitNow: true}}, true)
	if code := s.wait(30 * time.Second); code != 0 {
		t.Fatalf("exit code %d, want 0", code)
	}
	evs := s.events()
	if i := find(evs, "supervisor", "start", "pid=1"); i < 0 {
		t.Error("supervisor was not PID 1")
	}
	if i := find(evs, "app", "start"); i < 0 || !strings.Contains(evs[i].String(), "ppid=1 ") {
		t.Error("app is not a child of PID 1")
	}
	if i := find(evs, "app", "orphan", "reaped", "ppid=1"); i < 0 {
		t.Error("orphaned grandchild not re-parented to PID 1 and reaped")
	}
}

// Not PID 1: the supervisor makes itself a child subreaper, so orphans
// still come to it and are reaped (tini -s).
func TestSubreaperReapsOrphanedGrandchild(t *testing.T) {
	t.Parallel()
	s := startSupervisor(t, supervisorSpec{App: appSpec{Orphan: true, ExitNow: true}}, false)
	if code := s.wait(30 * time.Second); code != 0 {
		t.Fatalf("exit code %d, want 0", code)
	}
	evs := s.events()
	me := "ppid=" + strconv.Itoa(s.pid)
	if i := find(evs, "app", "orphan", "reaped", me); i < 0 {
		t.Errorf("orphaned grandchild not re-parented to the supervisor (pid %d) and reaped", s.pid)
	}
}

// Every signal but the drain-handled ones reaches CMD; SIGURG never does,
// neither sent from outside nor from the supervisor's own runtime.
func TestPID1ForwardsSignals(t *testing.T) {
	t.Parallel()
	s := startSupervisor(t, supervisorSpec{Grace: 5 * time.Second}, true)
	s.waitEvent("app", "ready")
	s.signal(syscall.SIGURG)
	for _, sig := range []syscall.Signal{syscall.SIGHUP, syscall.SIGUSR1, syscall.SIGUSR2, syscall.SIGQUIT, syscall.SIGWINCH} {
		s.signal(sig)
		s.waitEvent("app", "signal", signalName(sig))
	}
	s.signal(syscall.SIGURG)
	time.Sleep(300 * time.Millisecond)
	if n := count(s.events(), "app", "signal", "SIGURG"); n > 0 {
		t.Errorf("SIGURG reached CMD %d times", n)
	}
	t.Logf("supervisor (test binary) while supervising: VmRSS %s kB", procField(s.pid, "VmRSS"))
	s.signal(syscall.SIGTERM)
	if code := s.wait(20 * time.Second); code != 143 {
		t.Fatalf("exit code %d, want 143", code)
	}
}

// CMD's exit code comes through, and 128+n when it died of signal n.
func TestPID1ExitCodes(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		app  appSpec
		want int
	}{
		{"exit 0", appSpec{ExitNow: true, Exit: 0}, 0},
		{"exit 3", appSpec{ExitNow: true, Exit: 3}, 3},
		{"killed by SIGKILL", appSpec{DieBy: int(syscall.SIGKILL)}, 137},
		{"killed by SIGTERM", appSpec{DieBy: int(syscall.SIGTERM)}, 143},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			s := startSupervisor(t, supervisorSpec{App: tc.app}, true)
			if code := s.wait(30 * time.Second); code != tc.want {
				t.Errorf("exit code %d, want %d", code, tc.want)
			}
		})
	}
}

// A CMD that ignores SIGTERM is SIGKILLed once Grace has passed.
func TestPID1KillsAfterGrace(t *testing.T) {
	t.Parallel()
	const grace = 500 * time.Millisecond
	s := startSupervisor(t, supervisorSpec{App: appSpec{IgnoreTERM: true}, Grace: grace}, true)
	s.waitEvent("app", "ready")
	s.signal(syscall.SIGTERM)
	if code := s.wait(20 * time.Second); code != 137 {
		t.Fatalf("exit code %d, want 137", code)
	}
	evs := s.events()
	if find(evs, "app", "signal", "SIGTERM") < 0 {
		t.Error("CMD never saw SIGTERM")
	}
	term, killed := find(evs, "supervisor", "phase", "terminating"), find(evs, "supervisor", "phase", "killed")
	if term < 0 || killed < 0 {
		t.Fatal("no terminating → killed phases")
	}
	if d := evs[killed].at.Sub(evs[term].at); d < grace {
		t.Errorf("SIGKILL %s after SIGTERM, before grace %s", d, grace)
	}
}

// The drain order: /health is 503 (OnDrain) before CMD sees SIGTERM; CMD
// sees it no earlier than drain-min, and — with inbound quiet — near
// drain-min; with inbound busy, at drain-max.
func TestPID1DrainOrder(t *testing.T) {
	t.Parallel()
	const (
		drainMin = 1 * time.Second
		drainMax = 4 * time.Second
	)
	for _, tc := range []struct {
		name    string
		busy    bool
		why     string
		atLeast time.Duration
		atMost  time.Duration
	}{
		{"quiet", false, "quiet", drainMin, drainMin + slack},
		{"busy", true, "max", drainMax, drainMax + slack},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			envoy := newStandIn(t)
			envoy.set(func(e *envoyStandIn) { e.live, e.config, e.total = true, true, 41 })
			s := startSupervisor(t, supervisorSpec{
				StandIn: envoy.url, Activity: true, EnvoyDrain: true,
				DrainMin: drainMin, DrainQuiet: 300 * time.Millisecond, DrainMax: drainMax,
				Poll: 100 * time.Millisecond, Grace: 5 * time.Second,
			}, true)
			s.waitEvent("app", "ready")
			if tc.busy {
				envoy.set(func(e *envoyStandIn) { e.busy, e.active = true, 2 })
			}
			s.signal(syscall.SIGTERM)
			if code := s.wait(30 * time.Second); code != 143 {
				t.Fatalf("exit code %d, want 143", code)
			}
			evs := s.events()
			drain, appTerm := find(evs, "supervisor", "drain"), find(evs, "app", "signal", "SIGTERM")
			if drain < 0 || appTerm < 0 {
				t.Fatal("missing drain or CMD's SIGTERM")
			}
			if drain > appTerm {
				t.Fatal("CMD saw SIGTERM before readiness turned 503")
			}
			d := evs[appTerm].at.Sub(evs[drain].at)
			t.Logf("CMD got SIGTERM %s after the drain began", d)
			if d < tc.atLeast || d > tc.atMost {
				t.Errorf("CMD got SIGTERM %s after the drain began; want within [%s, %s]", d, tc.atLeast, tc.atMost)
			}
			if find(evs, "supervisor", "drained", tc.why) < 0 {
				t.Errorf("drain did not end for %q", tc.why)
			}
			if strings.Contains(s.out.String(), "inbound activity unknown") {
				t.Error("the stand-in's inbound stats were not understood")
			}
			if q := envoy.get().drainQueries; len(q) != 1 || q[0] != "inboundonly&graceful" {
				t.Errorf("drain_listeners calls: %q, want one with inboundonly&graceful", q)
			}
		})
	}
}

// A second SIGTERM skips the rest of the drain; CMD gets one SIGTERM.
func TestPID1SecondSIGTERMShortCuts(t *testing.T) {
	t.Parallel()
	const drainMin = 10 * time.Second
	envoy := newStandIn(t)
	envoy.set(func(e *envoyStandIn) { e.live, e.config, e.busy, e.active = true, true, true, 1 })
	s := startSupervisor(t, supervisorSpec{
		StandIn: envoy.url, Activity: true,
		DrainMin: drainMin, DrainQuiet: time.Second, DrainMax: 2 * drainMin,
		Poll: 100 * time.Millisecond, Grace: 5 * time.Second,
	}, true)
	s.waitEvent("app", "ready")
	s.signal(syscall.SIGTERM)
	s.waitEvent("supervisor", "drain")
	s.signal(syscall.SIGTERM)
	if code := s.wait(20 * time.Second); code != 143 {
		t.Fatalf("exit code %d, want 143", code)
	}
	evs := s.events()
	drain, appTerm := find(evs, "supervisor", "drain"), find(evs, "app", "signal", "SIGTERM")
	if appTerm < 0 || drain > appTerm {
		t.Fatal("CMD did not get SIGTERM after the drain began")
	}
	if d := evs[appTerm].at.Sub(evs[drain].at); d >= drainMin/2 {
		t.Errorf("CMD got SIGTERM %s after the drain began: the second SIGTERM did not cut drain-min %s short", d, drainMin)
	}
	if find(evs, "supervisor", "drained", "signal") < 0 {
		t.Error("drain did not end for the second signal")
	}
	if n := count(evs, "app", "signal", "SIGTERM"); n != 1 {
		t.Errorf("CMD got SIGTERM %d times, want once", n)
	}
}

// CMD starts only once the sidecar is LIVE *and* has accepted config.
func TestPID1HoldsUntilSidecarRoutes(t *testing.T) {
	t.Parallel()
	envoy := newStandIn(t)
	s := startSupervisor(t, supervisorSpec{
		StandIn: envoy.url, Hold: true, StartTimeout: 30 * time.Second,
		App: appSpec{ExitNow: true},
	}, true)
	s.waitEvent("supervisor", "phase", "holding")
	notYet := func(why string) {
		time.Sleep(300 * time.Millisecond)
		if find(s.events(), "app", "start") >= 0 {
			t.Fatalf("CMD started %s", why)
		}
	}
	notYet("before the sidecar was LIVE")
	appendEvent(s.spec.Events, "test", "envoy-live")
	envoy.set(func(e *envoyStandIn) { e.live = true })
	notYet("while the sidecar was LIVE but had no config")
	appendEvent(s.spec.Events, "test", "envoy-config")
	envoy.set(func(e *envoyStandIn) { e.config = true })
	if code := s.wait(20 * time.Second); code != 0 {
		t.Fatalf("exit code %d, want 0", code)
	}
	evs := s.events()
	if find(evs, "app", "start") < find(evs, "test", "envoy-config") {
		t.Error("CMD started before the sidecar had config")
	}
}

// The start timeout, both ways, loudly; a Job's sidecar is told to quit
// even when CMD never ran.
func TestPID1StartTimeout(t *testing.T) {
	t.Parallel()
	const timeout = 500 * time.Millisecond
	t.Run("exit", func(t *testing.T) {
		t.Parallel()
		envoy := newStandIn(t)
		s := startSupervisor(t, supervisorSpec{
			StandIn: envoy.url, Hold: true, StartTimeout: timeout, ExitOnStartTimeout: true, QuitSidecar: true,
			App: appSpec{ExitNow: true},
		}, true)
		if code := s.wait(20 * time.Second); code != 69 {
			t.Fatalf("exit code %d, want 69", code)
		}
		if find(s.events(), "app", "start") >= 0 {
			t.Error("CMD started")
		}
		if !strings.Contains(s.out.String(), "level=ERROR") || !strings.Contains(s.out.String(), "exiting without starting CMD") {
			t.Error("no loud log line saying CMD was not started")
		}
		if envoy.get().quitAt.IsZero() {
			t.Error("sidecar not told to quit")
		}
	})
	t.Run("start", func(t *testing.T) {
		t.Parallel()
		envoy := newStandIn(t)
		s := startSupervisor(t, supervisorSpec{
			StandIn: envoy.url, Hold: true, StartTimeout: timeout,
			App: appSpec{ExitNow: true},
		}, true)
		if code := s.wait(20 * time.Second); code != 0 {
			t.Fatalf("exit code %d, want 0", code)
		}
		evs := s.events()
		hold, start := find(evs, "supervisor", "phase", "holding"), find(evs, "app", "start")
		if hold < 0 || start < 0 {
			t.Fatal("no hold, or CMD never started")
		}
		if d := evs[start].at.Sub(evs[hold].at); d < timeout {
			t.Errorf("CMD started %s into the hold, before start-timeout %s", d, timeout)
		}
		if !strings.Contains(s.out.String(), "level=ERROR") || !strings.Contains(s.out.String(), "starting CMD anyway") {
			t.Error("no loud log line saying CMD was started anyway")
		}
	})
}

// Without a sidecar, CMD starts at once and the drain is drain-min only.
func TestPID1NoSidecar(t *testing.T) {
	t.Parallel()
	const drainMin = 500 * time.Millisecond
	s := startSupervisor(t, supervisorSpec{DrainMin: drainMin, DrainMax: 10 * time.Second, Grace: 5 * time.Second}, true)
	s.waitEvent("app", "ready")
	evs := s.events()
	if find(evs, "supervisor", "phase", "holding") >= 0 {
		t.Error("held CMD with no sidecar")
	}
	if d := evs[find(evs, "app", "start")].at.Sub(evs[find(evs, "supervisor", "start")].at); d > slack {
		t.Errorf("CMD started %s after the supervisor", d)
	}
	s.signal(syscall.SIGTERM)
	if code := s.wait(20 * time.Second); code != 143 {
		t.Fatalf("exit code %d, want 143", code)
	}
	evs = s.events()
	drain, appTerm := find(evs, "supervisor", "drain"), find(evs, "app", "signal", "SIGTERM")
	if drain < 0 || appTerm < drain {
		t.Fatal("CMD's SIGTERM not after the drain began")
	}
	if d := evs[appTerm].at.Sub(evs[drain].at); d < drainMin || d > drainMin+slack {
		t.Errorf("CMD got SIGTERM %s after the drain began; want drain-min %s", d, drainMin)
	}
	if find(evs, "supervisor", "drained", "min") < 0 {
		t.Error("drain did not end at drain-min")
	}
}

// Jobs: when CMD exits, the sidecar is told to quit, and CMD's code stands.
func TestPID1QuitsSidecarAfterCMD(t *testing.T) {
	t.Parallel()
	envoy := newStandIn(t)
	s := startSupervisor(t, supervisorSpec{StandIn: envoy.url, QuitSidecar: true, App: appSpec{ExitNow: true, Exit: 3}}, true)
	if code := s.wait(20 * time.Second); code != 3 {
		t.Fatalf("exit code %d, want 3", code)
	}
	quitAt := envoy.get().quitAt
	appExit := find(s.events(), "app", "exit")
	if quitAt.IsZero() || appExit < 0 {
		t.Fatal("sidecar not told to quit, or CMD did not exit")
	}
	if quitAt.Before(s.events()[appExit].at) {
		t.Error("sidecar told to quit before CMD exited")
	}
}

// With a terminal (kubectl run -it), CMD's process group gets the
// terminal's foreground, as tini does: else CMD, in a group of its own,
// would be stopped by SIGTTIN on its first read.
func TestPID1HandsTerminalToCMD(t *testing.T) {
	t.Parallel()
	tty := openPTY(t)
	s := startSupervisor(t, supervisorSpec{App: appSpec{ExitNow: true}}, true, func(c *exec.Cmd) {
		c.Stdin = tty
		c.SysProcAttr = &syscall.SysProcAttr{Setsid: true, Setctty: true, Ctty: 0}
	})
	if code := s.wait(20 * time.Second); code != 0 {
		t.Fatalf("exit code %d, want 0", code)
	}
	evs := s.events()
	start, fg := find(evs, "app", "start"), find(evs, "app", "tty")
	if start < 0 || fg < 0 {
		t.Fatal("CMD did not start on the terminal")
	}
	pgid := evs[start].detail[2] // "pgid=N"
	if want := "foreground=" + strings.TrimPrefix(pgid, "pgid="); evs[fg].detail[0] != want {
		t.Errorf("terminal's foreground: %s, want CMD's group (%s)", evs[fg].detail[0], pgid)
	}
}

// openPTY opens a pseudo-terminal and returns its follower side.
func openPTY(t *testing.T) *os.File {
	t.Helper()
	leader, err := os.OpenFile("/dev/ptmx", os.O_RDWR|syscall.O_NOCTTY, 0)
	if err != nil {
		t.Skipf("no pseudo-terminals here: %v", err)
	}
	t.Cleanup(func() { leader.Close() })
	var unlock int32
	var n uint32
	if err := ioctl(leader, syscall.TIOCSPTLCK, unsafe.Pointer(&unlock)); err != nil {
		t.Fatal(err)
	}
	if err := ioctl(leader, syscall.TIOCGPTN, unsafe.Pointer(&n)); err != nil {
		t.Fatal(err)
	}
	follower, err := os.OpenFile("/dev/pts/"+strconv.Itoa(int(n)), os.O_RDWR|syscall.O_NOCTTY, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { follower.Close() })
	return follower
}

func ioctl(f *os.File, req uintptr, arg unsafe.Pointer) error {
	if _, _, errno := syscall.Syscall(syscall.SYS_IOCTL, f.Fd(), req, uintptr(arg)); errno != 0 {
		return errno
	}
	return nil
}
