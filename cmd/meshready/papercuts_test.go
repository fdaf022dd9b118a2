package main

import (
	"fmt"
	"net"
	"strings"
	"syscall"
	"testing"
	"time"
)

// Issue 10's papercuts, through the real command line. Each failed before
// its fix (noted per test).

// Before: "sidecar not ready: sidecar not ready after start-timeout 1s",
// without the last reason.
func TestRunHoldTimeoutSaysItOnceWithTheReason(t *testing.T) {
	t.Parallel()
	cmd, stderr := meshreadyProcess(t, "run", fmt.Sprintf("--listen=127.0.0.1:%d", freePort(t)), "--envoy-admin="+closedURL(t),
		"--sidecar=required", "--start-timeout=300ms", "--on-start-timeout=exit", "--", "/bin/true")
	if code := exitCode(t, cmd); code != 69 {
		t.Fatalf("exit %d\n%s", code, stderr)
	}
	out := stderr.String()
	if strings.Count(out, "sidecar not ready") != 1 || !strings.Contains(out, "sidecar not ready after --start-timeout 300ms: envoy.live:") || !strings.Contains(out, "refused") {
		t.Fatalf("want one 'sidecar not ready after --start-timeout 300ms: envoy.live: …refused…':\n%s", out)
	}
}

// Before: --sidecar=none logged "holding CMD until the sidecar can route",
// "sidecar ready", a drain "until inbound is quiet" with drain_quiet, and
// "sidecar told to quit"; the termination-grace warning twice and about
// drain-max, which does not apply without a sidecar.
func TestRunWithoutSidecarSaysNothingOfOne(t *testing.T) {
	t.Parallel()
	port := freePort(t)
	cmd, stderr := meshreadyProcess(t, "run", fmt.Sprintf("--listen=127.0.0.1:%d", port), "--sidecar=none", "--quit-sidecar",
		"--drain-min=200ms", "--termination-grace=5s", "--", "/bin/sh", "-c", "trap 'exit 0' TERM; while :; do sleep 0.05; done")
	eventually(t, "/health 200", 10*time.Second, func() bool { c, _ := getHealth(fmt.Sprintf("http://127.0.0.1:%d/health", port)); return c == 200 })
	cmd.Process.Signal(syscall.SIGTERM)
	if code := exitCode(t, cmd); code != 0 {
		t.Fatalf("exit %d\n%s", code, stderr)
	}
	out := stderr.String()
	for _, bad := range []string{"holding CMD", "sidecar ready", "inbound is quiet", "drain_quiet", "told to quit", "drain-max"} {
		if strings.Contains(out, bad) {
			t.Errorf("log says %q without a sidecar:\n%s", bad, out)
		}
	}
	if n := strings.Count(out, "exceeds termination-grace"); n != 1 || !strings.Contains(out, "drain-min (200ms) + grace (10s)") {
		t.Errorf("termination-grace warning %d times (want once, about drain-min):\n%s", n, out)
	}
}

// Before: "serving" was logged before the bind, so a taken port looked
// like a start.
func TestServeSaysServingOnlyOnceBound(t *testing.T) {
	t.Parallel()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	code, _, stderr := runCLI("serve", "--listen="+ln.Addr().String(), "--sidecar=none")
	if code != 2 || strings.Contains(stderr, "msg=serving") || !strings.Contains(stderr, "meshready serve: cannot listen") {
		t.Fatalf("exit %d %q", code, stderr)
	}
}

// Before: check, sync and wait --help listed --listen, --interval,
// --verbose-remote and --app-live, which only the server uses; run --help
// said "run <command> ... [flags]".
func TestHelpShowsEachCommandsFlags(t *testing.T) {
	t.Parallel()
	serverOnly := []string{"--listen", "--interval", "--verbose-remote", "--app-live"}
	for _, c := range []string{"check", "sync", "wait"} {
		_, out, _ := runCLI(c, "--help")
		for _, f := range serverOnly {
			if strings.Contains(out, f+"=") || strings.Contains(out, f+" ") {
				t.Errorf("%s --help lists %s", c, f)
			}
		}
		if !strings.Contains(out, "--envoy-admin") {
			t.Errorf("%s --help lacks --envoy-admin", c)
		}
	}
	for _, c := range []string{"serve", "run"} {
		_, out, _ := runCLI(c, "--help")
		for _, f := range serverOnly {
			if !strings.Contains(out, f) {
				t.Errorf("%s --help lacks %s", c, f)
			}
		}
	}
	_, out, _ := runCLI("run", "--help")
	if !strings.HasPrefix(out, "Usage: meshready run [flags] -- CMD [ARGS...]\n") || !strings.Contains(out, "Flags go before --") {
		t.Errorf("run --help:\n%s", out)
	}
	// Server flags are still refused where they mean nothing, as one line.
	if code, _, stderr := runCLI("check", "--listen=:1"); code != 2 || !strings.Contains(stderr, "--listen") {
		t.Errorf("check --listen: exit %d %q", code, stderr)
	}
}

// Before: "meshready: check: …" from kong, "meshready: …" from Run, and
// the bare "meshready: not ready after" from wait.
func TestOneErrorPrefixStyle(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"check", "--output=xml"}, "meshready check: --output"},
		{[]string{"check", "--proxy-id=x"}, "meshready check: --proxy-id"},
		{[]string{"run", "--drain-min=-1s", "--", "true"}, "meshready run: --drain-min"},
		{[]string{"run"}, "meshready run: no command"},
		{[]string{"wait", "--sidecar=required", "--envoy-admin=" + closedURL(t), "--wait-timeout=200ms"}, "meshready wait: not ready after 200ms"},
		{[]string{"frobnicate"}, "meshready: unexpected argument frobnicate"},
	} {
		_, _, stderr := runCLI(tc.args...)
		lines := strings.Split(strings.TrimSpace(stderr), "\n")
		if last := lines[len(lines)-1]; !strings.HasPrefix(last, tc.want) {
			t.Errorf("%v: %q, want it to start %q", tc.args, last, tc.want)
		}
	}
}

// Before: the value was echoed twice, "want" said twice, and a non-ASCII
// character shown as its first byte ('Ã' for 'ö').
func TestProxyIDErrorEchoesSafelyOnce(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct{ id, says string }{
		{"pödé.default", "character 'ö'"},
		{"bad\xff.default", `\ufffd`},
		{"a\nb.c", `"a\nb.c"`},
		{"pod", "no pod.namespace"},
	} {
		code, _, stderr := runCLI("check", "--proxy-id="+tc.id)
		if code != 2 || strings.Count(stderr, "\n") != 1 {
			t.Fatalf("%q: exit %d %q", tc.id, code, stderr)
		}
		if strings.Count(stderr, "want") != 1 || strings.Count(stderr, "invalid proxy id") != 1 || !strings.Contains(stderr, tc.says) {
			t.Errorf("%q: %q (want one 'want', one echo, and %q)", tc.id, stderr, tc.says)
		}
	}
}
