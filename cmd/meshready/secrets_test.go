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

// No secret reaches a log line, a body or stderr: credentials and queries
// in URL flags, and the Pilot token's content, are planted and grepped for
// in everything the agent says. Before, --app-ready's userinfo and query
// were logged at start ("serving … app_ready=…"), echoed in bad-flag errors
// and in the check's message (with url.Redacted: the user name and the
// query stayed).
func TestNoSecretInLogsOrBodies(t *testing.T) {
	t.Parallel()
	const secret = "s3cr3t"
	dir := t.TempDir()
	token := filepath.Join(dir, "istio-token")
	if err := os.WriteFile(token, []byte("eyJhbGciOi."+secret+"-token-content.sig\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	closed := strings.TrimPrefix(closedURL(t), "http://")

	// Bad flags: one line on stderr, exit 2, the value named without its secret parts.
	for _, args := range [][]string{
		{"check", "--envoy-admin=http://admin:" + secret + "-pw@127.0.0.1:15000"},
		{"check", "--envoy-admin=http://127.0.0.1:15000/?key=" + secret},
		{"check", "--pilot=http://pilot:" + secret + "-pw@istiod:15014"},
		{"check", "--pilot=grpcs://istiod:15012?token=" + secret},
		{"check", "--app-ready=ftp://app:" + secret + "@x/?t=" + secret},
		{"check", "--app-ready=http://app:" + secret + "@:bad/ready"},
		{"check", "--app-live=tcp://app:" + secret + "@127.0.0.1:80"},
		{"check", "--app-ready=127.0.0.1:8080/ready?token=" + secret},
	} {
		code, out, stderr := runCLI(args...)
		if code != 2 || strings.Count(stderr, "\n") != 1 {
			t.Errorf("%v: exit %d, stderr %q; want exit 2 and one line", args, code, stderr)
		}
		if strings.Contains(out+stderr, secret) {
			t.Errorf("%v leaks the secret: %q", args, out+stderr)
		}
	}

	// A serving agent, logging at debug, probed on every endpoint.
	e := standin.NewEnvoy(standin.LiveSynced())
	defer e.Close()
	port := freePort(t)
	cmd := exec.Command(os.Args[0], "--log-level=debug", "serve", fmt.Sprintf("--listen=127.0.0.1:%d", port), "--envoy-admin="+e.URL, "--sidecar=required",
		"--app-ready=http://app:"+secret+"-pw@"+closed+"/ready?token="+secret+"-query",
		"--app-live=http://app:"+secret+"-pw@"+closed+"/live?token="+secret+"-query#"+secret,
		"--pilot=grpcs://"+closed, "--pilot-token="+token, "--proxy-id=app-1.default", "--sync-gate=always")
	cmd.Env = append(os.Environ(), "MESHREADY_TEST_AS_MAIN=1")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Process.Kill()
	base := fmt.Sprintf("http://127.0.0.1:%d", port)
	var bodies strings.Builder
	get := func(path string) bool {
		resp, err := http.Get(base + path)
		if err != nil {
			return false
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		fmt.Fprintf(&bodies, "%s → %d %s\n", path, resp.StatusCode, b)
		return true
	}
	eventually(t, "serve answers", 10*time.Second, func() bool { return get("/health") })
	for range 2 {
		for _, p := range []string{"/health", "/health?verbose=1", "/health/live", "/health/live?verbose=1", "/metrics"} {
			get(p)
		}
		time.Sleep(1100 * time.Millisecond) // a second round of checks, Pilot asked again
	}
	cmd.Process.Signal(syscall.SIGTERM)
	cmd.Wait()
	all := bodies.String() + stderr.String()
	if !strings.Contains(all, "app_ready=http://"+closed+"/ready") || !strings.Contains(bodies.String(), "http://"+closed+"/ready: connection refused") {
		t.Errorf("the redacted URLs should still be shown:\n%s", all)
	}
	for _, line := range strings.Split(all, "\n") {
		if strings.Contains(line, secret) {
			t.Errorf("secret leaked: %s", line)
		}
	}
}
