package integration

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/meshready/meshready/internal/localcluster"
)

// The agent under test is the real binary, built once by TestMain from the
// repository's cmd/meshready.
var (
	agentBin, greeterBin string
	agentBuildErr        error
)

func TestMain(m *testing.M) {
	// Every test runs in a private network namespace: the real control
	// plane's pods need 10.244.x.y (clustermesh_test.go), and the in-process
	// Pilot's tests keep their 127.x addresses there too.
	// grpc-go reads its default xDS bootstrap at init: the release tests'
	// CSDS caller (DialShopDefaultPool) needs it set before the re-exec
	// into the netns.
	if os.Getenv("GRPC_XDS_BOOTSTRAP_CONFIG") == "" {
		_ = os.Setenv("GRPC_XDS_BOOTSTRAP_CONFIG", string(CallerBootstrap(localcluster.IstiodXDS, CSDSCaller)))
	}
	localcluster.EnterNetns()
	flag.Parse()
	dir, err := os.MkdirTemp("", "meshready-integration-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	quietIstioLogs()
	start := time.Now()
	agentBin, greeterBin, agentBuildErr = BuildBinaries(".", dir)
	if agentBuildErr == nil && testing.Verbose() {
		fmt.Printf("built the agent and the greeter in %s\n", time.Since(start).Round(time.Millisecond))
	}
	code := m.Run()
	stopClusterMesh(code != 0)
	_ = os.RemoveAll(dir)
	os.Exit(code)
}

func needAgent(t testing.TB) {
	t.Helper()
	if agentBuildErr != nil {
		t.Fatal(agentBuildErr)
	}
}

// needFlags fails the test (not skips: the contract says they exist) when
// the built agent lacks a flag.
var helpOnce sync.Once
var serveHelp string

func needServeFlags(t testing.TB, flags ...string) {
	t.Helper()
	needAgent(t)
	helpOnce.Do(func() {
		out, _ := exec.Command(agentBin, "serve", "--help").CombinedOutput()
		serveHelp = string(out)
	})
	for _, f := range flags {
		if !strings.Contains(serveHelp, "--"+f) {
			t.Fatalf("the agent's `serve --help` has no --%s (DESIGN.md's flags are not landed yet)", f)
		}
	}
	// Under --pilot-source=auto the agent first asks Istio's agent debug
	// proxy on the admin host's port 15004; the stand-in listens on
	// 127.0.0.1, so that port must be free for the scenarios to mean what
	// they say.
	if c, err := net.DialTimeout("tcp", "127.0.0.1:15004", 200*time.Millisecond); err == nil {
		c.Close()
		t.Fatalf("something listens on 127.0.0.1:15004; the agent would take it for Istio's agent debug proxy")
	}
}

// Agent is one `meshready serve` process.
type Agent struct {
	t    testing.TB
	cmd  *exec.Cmd
	URL  string
	Args []string
	log  *syncBuffer
	done chan struct{}
	err  error
	hc   *http.Client
	// quietOnFail keeps a failing test from printing this agent's log (the
	// load test has hundreds).
	quietOnFail bool
}

func freePort(t testing.TB) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// agentArgs are the flags every scenario passes: the stand-in's admin API,
// a sidecar that must be there, Pilot's debug HTTP, this pod's proxy id,
// and a short interval.
func agentArgs(p *Pilot, d *DataPlane, extra ...string) []string {
	return append([]string{
		"--envoy-admin=" + d.AdminURL(), "--sidecar=required", "--pilot=" + p.DebugURL(),
		"--proxy-id=" + d.ProxyID(), "--interval=100ms",
	}, extra...)
}

// startAgent runs `meshready serve --listen=127.0.0.1:P args…` and waits
// until it answers /health/live. It is stopped (SIGTERM) at cleanup, and
// its log is printed when the test failed.
func startAgent(t testing.TB, args ...string) *Agent {
	t.Helper()
	a := spawnAgent(t, args...)
	deadline := time.Now().Add(10 * time.Second)
	for {
		select {
		case <-a.done:
			t.Fatalf("agent exited at start (%v): %s", a.err, a.log.String())
		default:
		}
		if resp, err := a.hc.Get(a.URL + "/health/live"); err == nil {
			resp.Body.Close()
			return a
		}
		if time.Now().After(deadline) {
			t.Fatalf("agent did not serve %s within 10s: %s", a.URL, a.log.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// spawnAgent starts the process and returns at once.
func spawnAgent(t testing.TB, args ...string) *Agent {
	t.Helper()
	return spawnAgentOn(t, fmt.Sprintf("127.0.0.1:%d", freePort(t)), args...)
}

// spawnAgentOn is spawnAgent listening on listen (host:port): many agents
// beside many ephemeral listeners take fixed ports on addresses of their
// own, as a free port picked and closed can be taken before the agent binds it.
func spawnAgentOn(t testing.TB, listen string, args ...string) *Agent {
	t.Helper()
	needAgent(t)
	a := &Agent{t: t, URL: "http://" + listen, log: &syncBuffer{}, done: make(chan struct{}),
		hc: &http.Client{Timeout: 2 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}}
	a.Args = append([]string{"serve", "--listen=" + listen}, args...)
	a.cmd = exec.Command(agentBin, a.Args...)
	a.cmd.Stdout, a.cmd.Stderr = a.log, a.log
	a.cmd.Env = append(os.Environ(), "POD_NAME=", "POD_NAMESPACE=")
	if err := a.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { a.err = a.cmd.Wait(); close(a.done) }()
	t.Cleanup(func() {
		a.Stop()
		if t.Failed() && !a.quietOnFail {
			t.Logf("agent %s log:\n%s", strings.Join(a.Args, " "), tail(a.log.String(), 40))
		}
	})
	return a
}

func tail(s string, lines int) string {
	l := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(l) > lines {
		l = l[len(l)-lines:]
	}
	return strings.Join(l, "\n")
}

// Stop sends SIGTERM and waits (SIGKILL after 5s).
func (a *Agent) Stop() {
	select {
	case <-a.done:
		return
	default:
	}
	_ = a.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-a.done:
	case <-time.After(5 * time.Second):
		_ = a.cmd.Process.Kill()
		<-a.done
	}
}

// Log is what the agent wrote so far.
func (a *Agent) Log() string { return a.log.String() }

// Health is one GET /health: the code and the one-line body.
func (a *Agent) Health() (int, string, error) {
	resp, err := a.hc.Get(a.URL + "/health")
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, strings.TrimSpace(string(b)), nil
}

// Verbose is the body of /health?verbose=1 (DESIGN.md).
type Verbose struct {
	Status     string         `json:"status"`
	Reason     string         `json:"reason"`
	Checks     []VerboseCheck `json:"checks"`
	SyncSource string         `json:"sync_source"`
	code       int
	raw        string
}

// VerboseCheck is one check in it.
type VerboseCheck struct {
	Name    string `json:"name"`
	Status  string `json:"status"`
	Message string `json:"message"`
}

// Check returns the named check.
func (v Verbose) Check(name string) VerboseCheck {
	for _, c := range v.Checks {
		if c.Name == name {
			return c
		}
	}
	return VerboseCheck{Name: name, Status: "(absent)"}
}

func (v Verbose) String() string { return fmt.Sprintf("%d %s", v.code, v.raw) }

// Verbose is one GET /health?verbose=1.
func (a *Agent) Verbose() (Verbose, error) {
	resp, err := a.hc.Get(a.URL + "/health?verbose=1")
	if err != nil {
		return Verbose{}, err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	v := Verbose{code: resp.StatusCode, raw: strings.TrimSpace(string(b))}
	if err := json.Unmarshal(b, &v); err != nil {
		return v, fmt.Errorf("verbose body is not JSON: %v: %s", err, b)
	}
	return v, nil
}

// WaitHealth polls /health every 10ms until cond holds or d passes; it
// returns the last answer and when cond first held.
func (a *Agent) WaitHealth(d time.Duration, cond func(code int, body string) bool) (int, string, time.Time, error) {
	deadline := time.Now().Add(d)
	var code int
	var body string
	var err error
	for {
		code, body, err = a.Health()
		if err == nil && cond(code, body) {
			return code, body, time.Now(), nil
		}
		if time.Now().After(deadline) {
			if err == nil {
				err = fmt.Errorf("condition not met within %s (last: %d %q)", d, code, body)
			}
			return code, body, time.Time{}, err
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// WaitVerbose polls /health?verbose=1 until cond holds or d passes.
func (a *Agent) WaitVerbose(d time.Duration, cond func(Verbose) bool) (Verbose, error) {
	deadline := time.Now().Add(d)
	for {
		v, err := a.Verbose()
		if err == nil && cond(v) {
			return v, nil
		}
		if time.Now().After(deadline) {
			if err == nil {
				err = fmt.Errorf("condition not met within %s (last: %s)", d, v)
			}
			return v, err
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// PilotRequestsMetric sums the agent's own meshready_pilot_requests_total
// (every request it reached for Pilot with, answered or not).
func (a *Agent) PilotRequestsMetric() (float64, error) {
	resp, err := a.hc.Get(a.URL + "/metrics")
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	var sum float64
	found := false
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		line := sc.Text()
		if !strings.HasPrefix(line, "meshready_pilot_requests_total") {
			continue
		}
		f := strings.Fields(line)
		v, err := strconv.ParseFloat(f[len(f)-1], 64)
		if err == nil {
			sum += v
			found = true
		}
	}
	if !found && sum == 0 {
		return 0, nil // no request made yet: the vector has no series
	}
	return sum, sc.Err()
}

// SyncRow and SyncReport are `meshready sync --output=json` (DESIGN.md: one
// row per xDS type with TYPE, ENVOY VERSION, PILOT SENT, PILOT ACKED,
// STATE, AGE, SOURCE).
type SyncRow struct {
	Type         string `json:"type"`
	EnvoyVersion string `json:"envoy_version"`
	PilotSent    string `json:"pilot_sent"`
	PilotAcked   string `json:"pilot_acked"`
	State        string `json:"state"`
	Age          string `json:"age"`
	Source       string `json:"source"`
}

// SyncReport is the whole answer.
type SyncReport struct {
	ProxyID string    `json:"proxy_id"`
	Synced  bool      `json:"synced"`
	Status  string    `json:"status"`
	Reason  string    `json:"reason"`
	Source  string    `json:"source"`
	Rows    []SyncRow `json:"types"`
	Exit    int       `json:"-"`
	Raw     string    `json:"-"`
}

// Row returns the row for a short type name (CDS, LDS, …).
func (r SyncReport) Row(typ string) (SyncRow, bool) {
	for _, row := range r.Rows {
		if strings.EqualFold(row.Type, typ) || ShortType(row.Type) == typ {
			return row, true
		}
	}
	return SyncRow{}, false
}

// runSync runs `meshready sync --output=json args…` once.
func runSync(t testing.TB, args ...string) SyncReport {
	t.Helper()
	needAgent(t)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	// --interval is the probe server's (serve, run): sync refuses it since
	// the flag groups were split (issue 10).
	var keep []string
	for _, a := range args {
		if !strings.HasPrefix(a, "--interval=") {
			keep = append(keep, a)
		}
	}
	cmd := exec.CommandContext(ctx, agentBin, append([]string{"sync", "--output=json"}, keep...)...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	rep := SyncReport{Raw: stdout.String()}
	var ee *exec.ExitError
	switch {
	case err == nil:
	case errors.As(err, &ee):
		rep.Exit = ee.ExitCode()
	default:
		t.Fatalf("meshready sync: %v (%s)", err, stderr.String())
	}
	if err := json.Unmarshal(stdout.Bytes(), &rep); err != nil {
		t.Fatalf("meshready sync --output=json (exit %d) is not JSON: %v\nstdout: %s\nstderr: %s", rep.Exit, err, stdout.String(), stderr.String())
	}
	return rep
}

// namesRejected reports whether msg says typ (cds, lds, …) was rejected:
// the part of msg about typ (up to the next ';') speaks of a rejection or
// an error and is not "0 rejected".
func namesRejected(msg, typ string) bool {
	re := regexp.MustCompile(`(?i)\b` + regexp.QuoteMeta(typ) + `\b[^;]*`)
	for _, seg := range re.FindAllString(msg, -1) {
		if regexp.MustCompile(`(?i)reject|nack|error`).MatchString(seg) && !regexp.MustCompile(`(?i)\b0 rejected`).MatchString(seg) {
			return true
		}
	}
	// "Envoy rejected CDS: …": the type follows the word.
	return regexp.MustCompile(`(?i)(rejected|nacked)\s+` + regexp.QuoteMeta(typ) + `\b`).MatchString(msg)
}

func TestNamesRejected(t *testing.T) {
	for _, c := range []struct {
		msg, typ string
		want     bool
	}{
		{"envoy.config: config received but rejected: cds updates: 0 successful, 1 rejected; lds updates: 1 successful, 0 rejected", "cds", true},
		{"envoy.config: config received but rejected: cds updates: 0 successful, 1 rejected; lds updates: 1 successful, 0 rejected", "lds", false},
		{"mesh.synced: not synced: Envoy rejected LDS: bad listener (source syncz)", "lds", true},
		{"mesh.synced: not synced: Envoy rejected LDS: bad listener (source syncz)", "cds", false},
		{"mesh.synced: not synced: CDS STALE (sent a, acked b)", "cds", false},
	} {
		if got := namesRejected(c.msg, c.typ); got != c.want {
			t.Errorf("namesRejected(%q, %q) = %v", c.msg, c.typ, got)
		}
	}
}
