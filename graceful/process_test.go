package graceful

import (
	"os"
	"path/filepath"
	"syscall"
	"testing"
)

func TestExitCode(t *testing.T) {
	t.Parallel()
	// Linux wait status layout: exit status in bits 8–15, terminating
	// signal in bits 0–6.
	for _, tc := range []struct {
		ws   syscall.WaitStatus
		want int
	}{
		{0 << 8, 0},
		{3 << 8, 3},
		{255 << 8, 255},
		{syscall.WaitStatus(syscall.SIGKILL), 137},
		{syscall.WaitStatus(syscall.SIGTERM), 143},
		{syscall.WaitStatus(syscall.SIGINT), 130},
	} {
		if got := exitCode(tc.ws); got != tc.want {
			t.Errorf("exitCode(%#x) = %d, want %d", uint32(tc.ws), got, tc.want)
		}
	}
}

func TestResolve(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	notExec := filepath.Join(dir, "script")
	if err := os.WriteFile(notExec, []byte("#!/bin/sh\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name     string
		wantCode int
	}{
		{"sh", 0},
		{"/bin/sh", 0},
		{"meshready-no-such-command", ExitNotFound},
		{filepath.Join(dir, "missing"), ExitNotFound},
		{notExec, ExitNotExecutable},
		{dir, ExitNotExecutable},
	} {
		path, code, err := resolve(tc.name)
		if code != tc.wantCode {
			t.Errorf("resolve(%q) = %q, %d, %v; want code %d", tc.name, path, code, err, tc.wantCode)
		}
		if (err == nil) != (tc.wantCode == 0) {
			t.Errorf("resolve(%q): err = %v with code %d", tc.name, err, code)
		}
	}
}

func TestExecFailureCode(t *testing.T) {
	t.Parallel()
	for errno, want := range map[syscall.Errno]int{
		syscall.ENOENT:  ExitNotFound, // e.g. a missing #! interpreter
		syscall.ENOTDIR: ExitNotFound,
		syscall.EACCES:  ExitNotExecutable,
		syscall.ENOEXEC: ExitNotExecutable,
	} {
		if got := execFailureCode(errno); got != want {
			t.Errorf("execFailureCode(%v) = %d, want %d", errno, got, want)
		}
	}
}

func TestSignalName(t *testing.T) {
	t.Parallel()
	for sig, want := range map[syscall.Signal]string{
		syscall.SIGTERM:  "SIGTERM",
		syscall.SIGWINCH: "SIGWINCH",
		syscall.SIGSYS:   "SIGSYS",
		40:               "signal 40",
	} {
		if got := signalName(sig); got != want {
			t.Errorf("signalName(%d) = %q, want %q", int(sig), got, want)
		}
	}
}
