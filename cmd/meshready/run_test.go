package main

import (
	"bytes"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/meshready/meshready/internal/standin"
)

// meshreadyProcess starts the test binary as `meshready args…`.
func meshreadyProcess(t *testing.T, args ...string) (*exec.Cmd, *bytes.Buffer) {
	t.Helper()
	cmd := exec.Command(os.Args[0], args...)
	cmd.Env = append(os.Environ(), "MESHREADY_TEST_AS_MAIN=1")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill() })
	return cmd, &stderr
}

func exitCode(t *testing.T, cmd *exec.Cmd) int {
	t.Helper()
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case <-done:
	case <-time.After(30 * time.Second):
		cmd.Process.Kill()
		t.Fatal("meshready did not exit")
	}
	return cmd.ProcessState.ExitCode()
}

func getHealth(url string) (int, string) {
	resp, err := http.Get(url)
	if err != nil {
		return 0, err.Error()
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func eventually(t *testing.T, what string, within time.Duration, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(within); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		if cond() {
			return
		}
	}
	t.Fatalf("%s: not within %s", what, within)
}

// The whole life through the real command line: held until the stand-in
// has config, ready, SIGTERM → 503 draining at once → the app sees SIGTERM
// only after --drain-min → the app's exit code comes through.
func TestRunHoldServeDrain(t *testing.T) {
	t.Parallel()
	s := standin.LiveSynced()
	s.CDSSuccess, s.LDSSuccess = 0, 0
	envoy := standin.NewEnvoy(s)
	defer envoy.Close()
	dir := t.TempDir()
	started, termed := filepath.Join(dir, "started"), filepath.Join(dir, "termed")
	port := freePort(t)
	health := fmt.Sprintf("http://127.0.0.1:%d/health", port)
	script := fmt.Sprintf(`trap 'date +%%s%%N > %s; exit 7' TERM; date > %s; while :; do sleep 0.05; done`, termed, started)
	cmd, stderr := meshreadyProcess(t, "run", fmt.Sprintf("--listen=127.0.0.1:%d", port), "--envoy-admin="+envoy.URL,
		"--sidecar=required", "--drain-min=700ms", "--drain-quiet=100ms", "--drain-max=5s", "--grace=5s", "--interval=50ms",
		"--", "/bin/sh", "-c", script)

	eventually(t, "/health answers", 10*time.Second, func() bool { c, _ := getHealth(health); return c != 0 })
	if c, body := getHealth(health); c != 503 || !strings.Contains(body, "config not received") {
		t.Fatalf("before config: %d %q", c, body)
	}
	time.Sleep(300 * time.Millisecond)
	if _, err := os.Stat(started); err == nil {
		t.Fatal("the app started before the sidecar had config")
	}
	envoy.Set(func(s *standin.EnvoyState) { s.CDSSuccess, s.LDSSuccess = 1, 1 })
	eventually(t, "app started after config", 5*time.Second, func() bool { _, err := os.Stat(started); return err == nil })
	eventually(t, "/health 200", 5*time.Second, func() bool { c, _ := getHealth(health); return c == 200 })

	sigAt := time.Now()
	cmd.Process.Signal(syscall.SIGTERM)
	eventually(t, "/health draining", time.Second, func() bool { c, b := getHealth(health); return c == 503 && b == "draining\n" })
	if _, err := os.Stat(termed); err == nil {
		t.Fatal("the app got SIGTERM while /health was still turning 503")
	}
	if code := exitCode(t, cmd); code != 7 {
		t.Fatalf("exit %d, want the app's 7\n%s", code, stderr)
	}
	b, err := os.ReadFile(termed)
	if err != nil {
		t.Fatalf("the app never saw SIGTERM: %v\n%s", err, stderr)
	}
	var ns int64
	fmt.Sscan(string(b), &ns)
	if gap := time.Unix(0, ns).Sub(sigAt); gap < 700*time.Millisecond {
		t.Fatalf("the app saw SIGTERM %s after ours, before --drain-min", gap)
	}
	if !strings.Contains(stderr.String(), "drain") {
		t.Errorf("no drain in the log:\n%s", stderr)
	}
}

func TestRunExitCodes(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name string
		args []string
		code int
		msg  string
	}{
		{"app's code", []string{"--", "/bin/sh", "-c", "exit 3"}, 3, ""},
		{"app killed by a signal", []string{"--", "/bin/sh", "-c", "kill -USR1 $$"}, 128 + 10, ""},
		{"not found", []string{"--", "/no/such/app"}, 127, "/no/such/app"},
		{"not executable", []string{"--", "/etc/hostname"}, 126, "/etc/hostname"},
		{"no command", []string{"--"}, 2, "no command"},
		{"bad drain", []string{"--drain-min=10s", "--drain-max=1s", "--", "true"}, 2, "--drain-max"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			args := append([]string{"run", fmt.Sprintf("--listen=127.0.0.1:%d", freePort(t)), "--sidecar=none", "--drain-min=0s"}, tc.args...)
			cmd, stderr := meshreadyProcess(t, args...)
			if code := exitCode(t, cmd); code != tc.code {
				t.Fatalf("exit %d, want %d\n%s", code, tc.code, stderr)
			}
			if !strings.Contains(stderr.String(), tc.msg) {
				t.Fatalf("stderr lacks %q:\n%s", tc.msg, stderr)
			}
		})
	}
}

// A pod without a sidecar (auto, no annotations, nothing on the admin port)
// starts its app without waiting out --start-timeout for ever, and
// `--on-start-timeout=exit` with a required-but-broken sidecar exits 69.
func TestRunStartTimeout(t *testing.T) {
	t.Parallel()
	dead := closedURL(t)
	cmd, stderr := meshreadyProcess(t, "run", fmt.Sprintf("--listen=127.0.0.1:%d", freePort(t)), "--envoy-admin="+dead,
		"--podinfo="+t.TempDir(), "--start-timeout=500ms", "--drain-min=0s", "--", "/bin/sh", "-c", "exit 4")
	if code := exitCode(t, cmd); code != 4 {
		t.Fatalf("auto without a sidecar: exit %d, want the app's 4\n%s", code, stderr)
	}
	cmd, stderr = meshreadyProcess(t, "run", fmt.Sprintf("--listen=127.0.0.1:%d", freePort(t)), "--envoy-admin="+dead,
		"--sidecar=required", "--start-timeout=300ms", "--on-start-timeout=exit", "--", "/bin/sh", "-c", "exit 4")
	if code := exitCode(t, cmd); code != 69 {
		t.Fatalf("required sidecar never ready: exit %d, want 69\n%s", code, stderr)
	}
	// The log shows the flag's value, not the internal slack added to it.
	if out := stderr.String(); !strings.Contains(out, "start_timeout=300ms") {
		t.Errorf("hold log does not show start_timeout=300ms:\n%s", out)
	}
}

// Under --sidecar=required, --start-timeout is the hold's real bound: the
// auto-detection slack (--timeout + 1s) applies only under auto. Before,
// --start-timeout=1s --timeout=2s held for 4s.
func TestRunStartTimeoutIsTheBoundUnderRequired(t *testing.T) {
	t.Parallel()
	start := time.Now()
	cmd, stderr := meshreadyProcess(t, "run", fmt.Sprintf("--listen=127.0.0.1:%d", freePort(t)), "--envoy-admin="+closedURL(t),
		"--sidecar=required", "--start-timeout=1s", "--timeout=2s", "--on-start-timeout=exit", "--", "/bin/true")
	if code := exitCode(t, cmd); code != 69 {
		t.Fatalf("exit %d, want 69\n%s", code, stderr)
	}
	if took := time.Since(start); took < time.Second || took > 2500*time.Millisecond {
		t.Fatalf("held %s with --start-timeout=1s (want about 1s)\n%s", took.Round(time.Millisecond), stderr)
	}
}

func TestWait(t *testing.T) {
	t.Parallel()
	envoy := standin.NewEnvoy(standin.LiveSynced())
	t.Cleanup(envoy.Close)
	code, out, stderr := runCLI("wait", "--envoy-admin="+envoy.URL, "--sidecar=required", "--wait-timeout=5s")
	if code != 0 || !strings.HasPrefix(out, "ready after") {
		t.Fatalf("exit %d %q %q", code, out, stderr)
	}
	start := time.Now()
	code, _, stderr = runCLI("wait", "--envoy-admin="+closedURL(t), "--sidecar=required", "--wait-timeout=400ms")
	if code != 1 || !strings.Contains(stderr, "not ready after 400ms (--wait-timeout)") || !strings.Contains(stderr, "refused") {
		t.Fatalf("exit %d %q", code, stderr)
	}
	if took := time.Since(start); took > 5*time.Second {
		t.Fatalf("wait --wait-timeout=400ms took %s", took)
	}
	// The old --timeout still works, and warns.
	code, _, stderr = runCLI("wait", "--envoy-admin="+closedURL(t), "--sidecar=required", "--timeout=300ms")
	if code != 1 || !strings.Contains(stderr, "not ready after 300ms") || strings.Count(stderr, "--timeout on wait is deprecated") != 1 {
		t.Fatalf("deprecated --timeout: exit %d %q", code, stderr)
	}
}

// MESHREADY_TIMEOUT is every other command's per-check deadline; set in a
// pod's env for serve, it must not become wait's total (before: wait gave
// up after 800ms). MESHREADY_WAIT_TIMEOUT is wait's own (not parallel: it
// sets the environment).
func TestWaitTimeoutFromEnvironment(t *testing.T) {
	t.Setenv("MESHREADY_TIMEOUT", "100ms")
	t.Setenv("MESHREADY_WAIT_TIMEOUT", "700ms")
	start := time.Now()
	code, _, stderr := runCLI("wait", "--envoy-admin="+closedURL(t), "--sidecar=required")
	took := time.Since(start)
	if code != 1 || !strings.Contains(stderr, "not ready after 700ms") || took < 650*time.Millisecond {
		t.Fatalf("exit %d after %s: %q", code, took, stderr)
	}
}

// --quit-sidecar: after the app exits, the sidecar is asked to quit (Istio's
// agent on :15020 is not there, so Envoy's own /quitquitquit), and the app's
// code still comes through — for Jobs.
func TestRunQuitSidecar(t *testing.T) {
	t.Parallel()
	envoy := standin.NewEnvoy(standin.LiveSynced())
	defer envoy.Close()
	cmd, stderr := meshreadyProcess(t, "run", fmt.Sprintf("--listen=127.0.0.1:%d", freePort(t)), "--envoy-admin="+envoy.URL,
		"--sidecar=required", "--quit-sidecar", "--", "/bin/sh", "-c", "exit 5")
	if code := exitCode(t, cmd); code != 5 {
		t.Fatalf("exit %d, want 5\n%s", code, stderr)
	}
	if posts := envoy.Posts(); len(posts) != 1 || posts[0] != "/quitquitquit" {
		t.Fatalf("posts to the sidecar: %v", posts)
	}
}

// Without a sidecar the drain is --drain-min alone: nothing to watch, so
// --drain-quiet must not stretch it.
func TestRunNoSidecarDrainIsDrainMin(t *testing.T) {
	t.Parallel()
	port := freePort(t)
	health := fmt.Sprintf("http://127.0.0.1:%d/health", port)
	cmd, stderr := meshreadyProcess(t, "run", fmt.Sprintf("--listen=127.0.0.1:%d", port), "--sidecar=none",
		"--drain-min=300ms", "--drain-quiet=5s", "--drain-max=10s", "--", "/bin/sh", "-c", "trap 'exit 0' TERM; while :; do sleep 0.05; done")
	eventually(t, "/health 200", 10*time.Second, func() bool { c, _ := getHealth(health); return c == 200 })
	start := time.Now()
	cmd.Process.Signal(syscall.SIGTERM)
	if code := exitCode(t, cmd); code != 0 {
		t.Fatalf("exit %d\n%s", code, stderr)
	}
	if took := time.Since(start); took < 300*time.Millisecond || took > 4*time.Second {
		t.Fatalf("drain took %s, want about --drain-min=300ms\n%s", took, stderr)
	}
}
