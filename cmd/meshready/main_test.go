package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/meshready/meshready/internal/standin"
)

// TestMain lets the test binary act as meshready itself, so the tests can run
// it as a real process (signals, ports) without building it first.
func TestMain(m *testing.M) {
	if os.Getenv("MESHREADY_TEST_AS_MAIN") == "1" {
		os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
	}
	os.Exit(m.Run())
}

func runCLI(args ...string) (code int, stdout, stderr string) {
	var o, e bytes.Buffer
	code = run(args, &o, &e)
	return code, o.String(), e.String()
}

func TestBadConfigIsOneLineAndExit2(t *testing.T) {
	t.Parallel()
	cases := []struct {
		args []string
		want []string // all must appear in the one stderr line
	}{
		{[]string{"check", "--sidecar=maybe"}, []string{"--sidecar", "maybe", "auto", "required", "none"}},
		{[]string{"check", "--envoy-admin=ftp://127.0.0.1:15000"}, []string{"--envoy-admin", "ftp://127.0.0.1:15000"}},
		{[]string{"check", "--envoy-admin=://"}, []string{"--envoy-admin"}},
		{[]string{"check", "--app-ready=ftp://x:1"}, []string{"--app-ready", "ftp://x:1"}},
		{[]string{"check", "--app-ready=tcp://nohost"}, []string{"--app-ready", "tcp://nohost"}},
		{[]string{"serve", "--app-live=grpc://"}, []string{"--app-live"}},
		{[]string{"serve", "--interval=-1s"}, []string{"--interval", "positive"}},
		{[]string{"check", "--timeout=0s"}, []string{"--timeout", "positive"}},
		{[]string{"check", "--timeout=soon"}, []string{"--timeout", "soon"}},
		{[]string{"serve", "--listen=54321"}, []string{"--listen", "54321"}},
		{[]string{"serve", "--listen=:99999"}, []string{"--listen", "99999"}},
		{[]string{"check", "--output=yaml"}, []string{"--output", "yaml", "table", "json"}},
		{[]string{"--log-level=loud", "check"}, []string{"--log-level", "loud"}},
		{[]string{"check", "--nope"}, []string{"--nope"}},
		// Ports and hosts in every address flag (before: accepted, and the
		// check failed for ever).
		{[]string{"check", "--envoy-admin=http://127.0.0.1:99999"}, []string{"--envoy-admin", "99999", "1 to 65535"}},
		{[]string{"check", "--envoy-admin=http://127.0.0.1:0"}, []string{"--envoy-admin", `port "0"`}},
		{[]string{"check", "--envoy-admin=http://envoy..local:15000"}, []string{"--envoy-admin", `host "envoy..local"`}},
		{[]string{"check", "--envoy-admin=http://1.2.3.999:15000"}, []string{"--envoy-admin", `host "1.2.3.999"`}},
		{[]string{"check", "--app-ready=http://app_-:8080/ready"}, []string{"--app-ready", `host "app_-"`}},
		{[]string{"check", "--app-ready=http://127.0.0.1:70000/ready"}, []string{"--app-ready", "70000"}},
		{[]string{"serve", "--app-live=tcp://-bad:80"}, []string{"--app-live", `host "-bad"`}},
		{[]string{"check", "--pilot=http://istiod.istio-system:0"}, []string{"--pilot", "port"}},
		{[]string{"check", "--pilot=grpc://isti*d:15010"}, []string{"--pilot", `host "isti*d"`}},
		{[]string{"serve", "--listen=no*host:54321"}, []string{"--listen", `host "no*host"`}},
		{[]string{"frobnicate"}, []string{"frobnicate"}},
	}
	for _, tc := range cases {
		t.Run(strings.Join(tc.args, " "), func(t *testing.T) {
			t.Parallel()
			code, stdout, stderr := runCLI(tc.args...)
			if code != 2 {
				t.Fatalf("exit %d, want 2 (stderr %q)", code, stderr)
			}
			if stdout != "" {
				t.Errorf("stdout %q", stdout)
			}
			if n := strings.Count(stderr, "\n"); n != 1 {
				t.Errorf("stderr has %d lines, want 1: %q", n, stderr)
			}
			for _, w := range tc.want {
				if !strings.Contains(stderr, w) {
					t.Errorf("stderr %q lacks %q", stderr, w)
				}
			}
		})
	}
}

// Flags also come from MESHREADY_* (not parallel: it sets the environment).
func TestFlagsFromEnvironment(t *testing.T) {
	t.Setenv("MESHREADY_SIDECAR", "sometimes")
	code, _, stderr := runCLI("check")
	if code != 2 || !strings.Contains(stderr, "sometimes") {
		t.Fatalf("exit %d, stderr %q", code, stderr)
	}
	e := standin.NewEnvoy(standin.LiveSynced())
	defer e.Close()
	t.Setenv("MESHREADY_SIDECAR", "required")
	t.Setenv("MESHREADY_ENVOY_ADMIN", e.URL)
	if code, out, stderr := runCLI("check"); code != 0 {
		t.Fatalf("exit %d: %s %s", code, out, stderr)
	}
}

func TestVersionAndHelp(t *testing.T) {
	t.Parallel()
	code, out, _ := runCLI("version")
	if code != 0 || !strings.HasPrefix(out, "meshready dev (commit unknown, go") {
		t.Fatalf("exit %d %q", code, out)
	}
	code, out, _ = runCLI("--help")
	if code != 0 || !strings.Contains(out, "serve") || !strings.Contains(out, "check") {
		t.Fatalf("help: exit %d %q", code, out)
	}
	code, out, _ = runCLI("check", "--help")
	if code != 0 || !strings.Contains(out, "--envoy-admin") || !strings.Contains(out, "MESHREADY_ENVOY_ADMIN") {
		t.Fatalf("check help: exit %d %q", code, out)
	}
}

func TestCheck(t *testing.T) {
	t.Parallel()
	synced := standin.NewEnvoy(standin.LiveSynced())
	t.Cleanup(synced.Close)
	s := standin.LiveSynced()
	s.CDSSuccess, s.LDSSuccess = 0, 0
	fresh := standin.NewEnvoy(s)
	t.Cleanup(fresh.Close)
	app := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/ready" {
			w.WriteHeader(503)
		}
	}))
	t.Cleanup(app.Close)

	cases := []struct {
		name string
		args []string
		code int
		out  []string
	}{
		{"ready", []string{"--envoy-admin=" + synced.URL, "--sidecar=required", "--app-ready=" + app.URL + "/ready"},
			0, []string{"envoy.live", "pass", "LIVE", "envoy.config", "app", "verdict: ready"}},
		{"config not received", []string{"--envoy-admin=" + fresh.URL, "--sidecar=required"},
			1, []string{"envoy.config", "fail", "verdict: not ready: envoy.config: config not received from Pilot (is Pilot running?)"}},
		{"app not ready", []string{"--envoy-admin=" + synced.URL, "--sidecar=required", "--app-ready=" + app.URL + "/other"},
			1, []string{"verdict: not ready: app: HTTP probe failed with statuscode: 503"}},
		{"no sidecar, app only", []string{"--envoy-admin=" + closedURL(t), "--sidecar=none", "--app-ready=" + app.URL + "/ready"},
			0, []string{"envoy.live", "skip", "--sidecar=none", "verdict: ready"}},
		{"envoy down", []string{"--envoy-admin=" + closedURL(t), "--sidecar=required"},
			1, []string{"verdict: not ready: envoy.live:", "refused"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			code, out, stderr := runCLI(append([]string{"check"}, tc.args...)...)
			if code != tc.code {
				t.Fatalf("exit %d, want %d\n%s\n%s", code, tc.code, out, stderr)
			}
			for _, w := range tc.out {
				if !strings.Contains(out, w) {
					t.Errorf("output lacks %q:\n%s", w, out)
				}
			}
		})
	}

	code, out, _ := runCLI("check", "--output=json", "--envoy-admin="+fresh.URL, "--sidecar=required")
	var body struct {
		Status string `json:"status"`
		Checks []struct{ Name, Status, Message string }
	}
	if err := json.Unmarshal([]byte(out), &body); err != nil || code != 1 || body.Status != "not ready" || len(body.Checks) != 4 {
		t.Fatalf("json: exit %d err %v %+v\n%s", code, err, body, out)
	}
}

func closedURL(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return "http://" + ln.Addr().String()
}

func freePort(t *testing.T) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// serve, as a real process: answers /health from the stand-in, stops
// cleanly (exit 0) on SIGTERM.
func TestServeProcess(t *testing.T) {
	t.Parallel()
	e := standin.NewEnvoy(standin.LiveSynced())
	defer e.Close()
	port := freePort(t)
	cmd := exec.Command(os.Args[0], "serve", fmt.Sprintf("--listen=127.0.0.1:%d", port), "--envoy-admin="+e.URL, "--sidecar=required")
	cmd.Env = append(os.Environ(), "MESHREADY_TEST_AS_MAIN=1")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	url := fmt.Sprintf("http://127.0.0.1:%d/health", port)
	var resp *http.Response
	var err error
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		if resp, err = http.Get(url); err == nil {
			break
		}
	}
	if err != nil {
		cmd.Process.Kill()
		t.Fatalf("serve never answered: %v\n%s", err, stderr.String())
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Errorf("/health = %d", resp.StatusCode)
	}
	cmd.Process.Signal(syscall.SIGTERM)
	if err := cmd.Wait(); err != nil {
		t.Fatalf("serve did not stop cleanly: %v\n%s", err, stderr.String())
	}

	// The port taken: exit 2 with a hint.
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	defer ln.Close()
	code, _, errOut := runCLI("serve", "--listen="+ln.Addr().String(), "--sidecar=none")
	if code != 2 || !strings.Contains(errOut, "port is taken") {
		t.Fatalf("exit %d %q", code, errOut)
	}
}
