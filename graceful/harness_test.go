package graceful_test

// The test binary plays every part of a real pod's PID namespace, chosen
// by GRACEFUL_TEST_ROLE:
//
//	supervisor  graceful.Run with a config from GRACEFUL_TEST_SPEC; under
//	            `unshare --pid --fork --mount-proc` it is truly PID 1
//	app         CMD: records every signal it gets in the events file, can
//	            ignore SIGTERM, exit with a code, die of a signal, and leave
//	            an orphaned grandchild behind
//	middle      the app's child that starts the grandchild and exits at once
//	grandchild  the orphan: sleeps a little, then exits (a zombie unless reaped)
//
// Every part appends one line per event to a shared file with O_APPEND, so
// the file's order is the order in which things happened, whatever the
// clocks say.

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
	"unsafe"

	"github.com/meshready/meshready/envoyadmin"
	"github.com/meshready/meshready/graceful"
)

const (
	roleEnv = "GRACEFUL_TEST_ROLE"
	specEnv = "GRACEFUL_TEST_SPEC"
)

func TestMain(m *testing.M) {
	switch role := os.Getenv(roleEnv); role {
	case "":
		os.Exit(m.Run())
	case "supervisor":
		os.Exit(runSupervisor())
	case "app":
		runApp()
	case "middle":
		runMiddle()
	case "grandchild":
		time.Sleep(300 * time.Millisecond)
		os.Exit(0)
	default:
		fmt.Fprintf(os.Stderr, "unknown %s=%q\n", roleEnv, role)
		os.Exit(90)
	}
}

// supervisorSpec is what a test asks of the supervisor process.
type supervisorSpec struct {
	Events string // the shared events file
	App    appSpec

	StandIn     string // base URL of the Envoy admin stand-in; "" = no sidecar
	Hold        bool   // hold CMD until the stand-in is LIVE with config
	Activity    bool   // read inbound activity from the stand-in while draining
	EnvoyDrain  bool
	QuitSidecar bool

	StartTimeout, DrainMin, DrainQuiet, DrainMax, Grace, Poll time.Duration
	ExitOnStartTimeout                                        bool
}

// appSpec is what a test asks of CMD.
type appSpec struct {
	Orphan     bool          // leave a grandchild orphaned, and report whether it gets reaped
	ExitNow    bool          // exit with Exit right after start (and the orphan check)
	Exit       int           // code for ExitNow and ExitAfter
	DieBy      int           // die of this signal right after start
	IgnoreTERM bool          // record SIGTERM and carry on
	ExitAfter  time.Duration // exit with Exit after this long (default: 30s, code 99 — never hang)
}

// runSupervisor is graceful.Run as meshready run would wire it, with the
// probe package replaced by small readers of the stand-in.
func runSupervisor() int {
	var spec supervisorSpec
	if err := json.Unmarshal([]byte(os.Getenv(specEnv)), &spec); err != nil {
		fmt.Fprintln(os.Stderr, "bad spec:", err)
		return 91
	}
	note := func(what string, detail ...any) { appendEvent(spec.Events, "supervisor", what, detail...) }
	note("start", "pid="+strconv.Itoa(os.Getpid()))

	self, err := os.Executable()
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 92
	}
	appJSON, _ := json.Marshal(spec.App)
	// CMD inherits our environment: this is how it learns its part.
	// No async preemption in the app, so every SIGURG it sees was sent.
	os.Setenv(roleEnv, "app")
	os.Setenv(specEnv, string(appJSON))
	os.Setenv("GODEBUG", "asyncpreemptoff=1")
	os.Setenv("GRACEFUL_TEST_EVENTS", spec.Events)
	cfg := graceful.Config{
		Argv:               []string{self},
		StartTimeout:       spec.StartTimeout,
		ExitOnStartTimeout: spec.ExitOnStartTimeout,
		DrainMin:           spec.DrainMin,
		DrainQuiet:         spec.DrainQuiet,
		DrainMax:           spec.DrainMax,
		Grace:              spec.Grace,
		PollInterval:       spec.Poll,
		OnDrain:            func() { note("drain") },
		OnPhase:            func(p graceful.Phase) { note("phase", string(p)) },
		OnDrainEnd:         func(took time.Duration, why graceful.DrainEnd) { note("drained", string(why), took) },
		Logger:             slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug})),
	}
	if spec.Hold {
		cfg.Hold = standInClient{base: spec.StandIn}.holdUntilReady
	}
	if spec.StandIn != "" {
		envoy, err := envoyadmin.New(spec.StandIn)
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 92
		}
		if spec.Activity {
			cfg.Activity = inboundActivity(envoy)
		}
		if spec.EnvoyDrain {
			cfg.EnvoyDrain = func(ctx context.Context) error { return envoy.DrainListeners(ctx, true, true) }
		}
		if spec.QuitSidecar {
			cfg.QuitSidecar = envoy.QuitQuitQuit
		}
	}
	code := graceful.Run(context.Background(), cfg)
	note("exit", code)
	return code
}

// runApp is CMD.
func runApp() {
	var spec appSpec
	if err := json.Unmarshal([]byte(os.Getenv(specEnv)), &spec); err != nil {
		fmt.Fprintln(os.Stderr, "bad app spec:", err)
		os.Exit(93)
	}
	events := os.Getenv("GRACEFUL_TEST_EVENTS")
	note := func(what string, detail ...any) { appendEvent(events, "app", what, detail...) }
	sigs := make(chan os.Signal, 64)
	signal.Notify(sigs)
	note("start", fmt.Sprintf("pid=%d ppid=%d pgid=%d", os.Getpid(), os.Getppid(), syscall.Getpgrp()))
	var fg int32
	if _, _, errno := syscall.Syscall(syscall.SYS_IOCTL, 0, syscall.TIOCGPGRP, uintptr(unsafe.Pointer(&fg))); errno == 0 {
		note("tty", fmt.Sprintf("foreground=%d pgid=%d", fg, syscall.Getpgrp()))
	}

	if spec.Orphan {
		note("orphan", checkOrphan()...)
	}
	if spec.ExitNow {
		note("exit", spec.Exit)
		os.Exit(spec.Exit)
	}
	if spec.DieBy != 0 {
		dieBy(syscall.Signal(spec.DieBy), note)
	}
	if spec.ExitAfter == 0 {
		spec.ExitAfter, spec.Exit = 30*time.Second, 99
	}
	exitAfter := time.After(spec.ExitAfter)
	note("ready")
	for {
		select {
		case sig := <-sigs:
			n := sig.(syscall.Signal)
			if n == syscall.SIGCHLD { // from our own child in checkOrphan
				continue
			}
			note("signal", signalName(n))
			if n == syscall.SIGTERM && !spec.IgnoreTERM {
				dieBy(n, note)
			}
		case <-exitAfter:
			note("exit", spec.Exit)
			os.Exit(spec.Exit)
		}
	}
}

func dieBy(sig syscall.Signal, note func(string, ...any)) {
	note("dying", signalName(sig))
	signal.Reset(sig)
	_ = syscall.Kill(os.Getpid(), sig)
	time.Sleep(10 * time.Second)
	os.Exit(94) // the signal did not kill us
}

// checkOrphan double-forks (app → middle → grandchild, middle exits at
// once) and watches the orphaned grandchild: it must be re-parented to the
// reaper, and gone from /proc — not a zombie — soon after it exits.
func checkOrphan() []any {
	self, _ := os.Executable()
	r, w, err := os.Pipe()
	if err != nil {
		return []any{"error", err}
	}
	env := withEnv(os.Environ(), roleEnv, "middle")
	middle, err := os.StartProcess(self, []string{self}, &os.ProcAttr{Env: env, Files: []*os.File{nil, w, os.Stderr}})
	w.Close()
	if err != nil {
		return []any{"error", err}
	}
	line, _ := bufio.NewReader(r).ReadString('\n')
	r.Close()
	_, _ = middle.Wait()
	gpid, err := strconv.Atoi(strings.TrimSpace(line))
	if err != nil {
		return []any{"error", fmt.Sprintf("middle said %q", line)}
	}
	ppid := procField(gpid, "PPid")
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		if _, err := os.Stat(fmt.Sprintf("/proc/%d", gpid)); os.IsNotExist(err) {
			return []any{"reaped", "ppid=" + ppid, "gpid=" + strconv.Itoa(gpid)}
		}
		time.Sleep(10 * time.Millisecond)
	}
	return []any{"left", "state=" + procField(gpid, "State"), "ppid=" + ppid}
}

func runMiddle() {
	self, _ := os.Executable()
	devnull, _ := os.Open(os.DevNull)
	env := withEnv(os.Environ(), roleEnv, "grandchild")
	// The grandchild must not hold the pipe to the app open.
	p, err := os.StartProcess(self, []string{self}, &os.ProcAttr{Env: env, Files: []*os.File{devnull, devnull, os.Stderr}})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(95)
	}
	fmt.Println(p.Pid)
	os.Exit(0) // without waiting: the grandchild is now an orphan
}

// withEnv sets key in env. Appending is not enough: a Go child keeps the
// first of two duplicate keys.
func withEnv(env []string, key, value string) []string {
	out := []string{key + "=" + value}
	for _, kv := range env {
		if !strings.HasPrefix(kv, key+"=") {
			out = append(out, kv)
		}
	}
	return out
}

func procField(pid int, field string) string {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return "?"
	}
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, field+":"); ok {
			return strings.Fields(v)[0]
		}
	}
	return "?"
}

// appendEvent writes one line "<unix ns> <who> <what> <detail…>" with one
// write(2) on an O_APPEND file: concurrent writers never interleave.
func appendEvent(path, who, what string, detail ...any) {
	if path == "" {
		return
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o644)
	if err != nil {
		return
	}
	defer f.Close()
	fields := []string{strconv.FormatInt(time.Now().UnixNano(), 10), who, what}
	for _, d := range detail {
		fields = append(fields, fmt.Sprint(d))
	}
	_, _ = f.WriteString(strings.Join(fields, " ") + "\n")
}

type event struct {
	at     time.Time
	who    string
	what   string
	detail []string
}

func (e event) String() string {
	return strings.Join(append([]string{e.who, e.what}, e.detail...), " ")
}

func readEvents(path string) []event {
	b, _ := os.ReadFile(path)
	var evs []event
	for _, l := range strings.Split(string(b), "\n") {
		f := strings.Fields(l)
		if len(f) < 3 {
			continue
		}
		ns, err := strconv.ParseInt(f[0], 10, 64)
		if err != nil {
			continue
		}
		evs = append(evs, event{at: time.Unix(0, ns), who: f[1], what: f[2], detail: f[3:]})
	}
	return evs
}

// standInClient is a minimal reader of the Envoy admin stand-in for what
// the probe package decides in production: is the sidecar LIVE with
// config? Inbound activity and the mutations go through the real
// envoyadmin client instead.
type standInClient struct{ base string }

var httpClient = &http.Client{Timeout: 2 * time.Second}

func (c standInClient) get(ctx context.Context, path string) (int, string, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, c.base+path, nil)
	if err != nil {
		return 0, "", err
	}
	resp, err := httpClient.Do(req)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	var b strings.Builder
	_, err = bufio.NewReader(resp.Body).WriteTo(&b)
	return resp.StatusCode, b.String(), err
}

// stats parses Envoy's text /stats ("name: value" per line).
func (c standInClient) stats(ctx context.Context, filter string) (map[string]uint64, error) {
	code, body, err := c.get(ctx, "/stats?filter="+filter)
	if err != nil {
		return nil, err
	}
	if code != http.StatusOK {
		return nil, fmt.Errorf("/stats: %d", code)
	}
	m := map[string]uint64{}
	for _, l := range strings.Split(body, "\n") {
		name, v, ok := strings.Cut(l, ": ")
		if !ok {
			continue
		}
		if n, err := strconv.ParseUint(strings.TrimSpace(v), 10, 64); err == nil {
			m[name] = n
		}
	}
	return m, nil
}

// holdUntilReady is envoy.live ∧ envoy.config: /ready says LIVE, and CDS
// and LDS have each accepted an update.
func (c standInClient) holdUntilReady(ctx context.Context) error {
	for {
		if code, _, err := c.get(ctx, "/ready"); err == nil && code == http.StatusOK {
			st, err := c.stats(ctx, "update_success")
			if err == nil && st["cluster_manager.cds.update_success"] > 0 && st["listener_manager.lds.update_success"] > 0 {
				return nil
			}
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// inboundActivity reads the stand-in with the real Envoy reader and maps
// its answer the way meshready run should: requests in flight when Envoy
// reports them, else connections (Istio's default stats inclusion keeps only
// downstream_cx_active); any total that moves counts as new work; nothing
// reported at all is unknown.
func inboundActivity(admin *envoyadmin.Client) func(context.Context) (graceful.Activity, error) {
	return func(ctx context.Context) (graceful.Activity, error) {
		a, err := admin.InboundActivity(ctx)
		if err != nil {
			return graceful.Activity{}, err
		}
		g := graceful.Activity{Active: a.ActiveConnections, Total: a.TotalRequests + a.TotalConnections, Known: a.Series > 0}
		if a.HasActiveRequests {
			g.Active = a.ActiveRequests
		}
		return g, nil
	}
}

func signalName(sig syscall.Signal) string {
	names := map[syscall.Signal]string{
		syscall.SIGHUP: "SIGHUP", syscall.SIGINT: "SIGINT", syscall.SIGQUIT: "SIGQUIT",
		syscall.SIGUSR1: "SIGUSR1", syscall.SIGUSR2: "SIGUSR2", syscall.SIGTERM: "SIGTERM",
		syscall.SIGURG: "SIGURG", syscall.SIGWINCH: "SIGWINCH", syscall.SIGKILL: "SIGKILL",
	}
	if n, ok := names[sig]; ok {
		return n
	}
	return "signal" + strconv.Itoa(int(sig))
}

// eventsFile is a fresh events file for one test.
func eventsFile(t *testing.T) string {
	return filepath.Join(t.TempDir(), "events")
}
