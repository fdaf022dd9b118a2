package graceful_test

// Run in this process, with injected signals. None of these tests is
// parallel: Run reaps every child of the process, and the parallel PID-1
// tests' children are this process's children too. Go runs all sequential
// tests before releasing the parallel ones, so they never overlap.

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/meshready/meshready/graceful"
)

// logTo returns a logger writing to a buffer, and the buffer.
func logTo() (*slog.Logger, *syncBuffer) {
	buf := &syncBuffer{}
	return slog.New(slog.NewTextHandler(buf, nil)), buf
}

func errorLines(log string) []string {
	var lines []string
	for _, l := range strings.Split(log, "\n") {
		if strings.Contains(l, "level=ERROR") {
			lines = append(lines, l)
		}
	}
	return lines
}

// phases records OnPhase calls.
type phases struct {
	mu   sync.Mutex
	seen []graceful.Phase
}

func (p *phases) on(ph graceful.Phase) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.seen = append(p.seen, ph)
}

func (p *phases) saw(ph graceful.Phase) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, s := range p.seen {
		if s == ph {
			return true
		}
	}
	return false
}

func TestRunRejectsBadConfig(t *testing.T) {
	log, buf := logTo()
	code := graceful.Run(context.Background(), graceful.Config{Argv: []string{"true"}, DrainMin: -time.Second, Logger: log})
	if code != graceful.ExitBadConfig {
		t.Errorf("exit code %d, want %d", code, graceful.ExitBadConfig)
	}
	if lines := errorLines(buf.String()); len(lines) != 1 || !strings.Contains(lines[0], "drain-min=-1s") {
		t.Errorf("want one error line naming drain-min, got %q", lines)
	}
}

// CMD not found → 127, not executable → 126, each with one clear line, and
// without waiting for the sidecar first.
func TestRunCMDCannotStart(t *testing.T) {
	dir := t.TempDir()
	script := filepath.Join(dir, "script.sh")
	if err := os.WriteFile(script, []byte("#!/bin/sh\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		argv0 string
		code  int
		says  string
	}{
		{"meshready-no-such-command", 127, "not found"},
		{filepath.Join(dir, "missing"), 127, "not found"},
		{script, 126, "not executable"},
	} {
		log, buf := logTo()
		held := false
		code := graceful.Run(context.Background(), graceful.Config{
			Argv:         []string{tc.argv0, "arg"},
			Hold:         func(context.Context) error { held = true; return nil },
			StartTimeout: time.Minute,
			Logger:       log,
		})
		if code != tc.code {
			t.Errorf("%s: exit code %d, want %d", tc.argv0, code, tc.code)
		}
		if lines := errorLines(buf.String()); len(lines) != 1 || !strings.Contains(lines[0], tc.says) || !strings.Contains(lines[0], tc.argv0) {
			t.Errorf("%s: want one error line saying %q, got %q", tc.argv0, tc.says, lines)
		}
		if held {
			t.Errorf("%s: held for the sidecar before finding out CMD cannot run", tc.argv0)
		}
	}
}

// A missing #! interpreter is an execve ENOENT: 127, like a shell.
func TestRunMissingInterpreter(t *testing.T) {
	script := filepath.Join(t.TempDir(), "script.sh")
	if err := os.WriteFile(script, []byte("#!/no/such/interpreter\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	log, buf := logTo()
	code := graceful.Run(context.Background(), graceful.Config{Argv: []string{script}, Logger: log})
	if code != graceful.ExitNotFound {
		t.Errorf("exit code %d, want 127", code)
	}
	if lines := errorLines(buf.String()); len(lines) != 1 || !strings.Contains(lines[0], "cannot execute") {
		t.Errorf("want one error line, got %q", lines)
	}
}

// SIGTERM/SIGINT while holding abort the hold and exit 128+n without
// starting CMD; other signals are logged and dropped.
func TestRunSignalWhileHolding(t *testing.T) {
	for _, tc := range []struct {
		sig  syscall.Signal
		code int
	}{
		{syscall.SIGTERM, 143},
		{syscall.SIGINT, 130},
	} {
		sigs := make(chan os.Signal, 3)
		holding := make(chan struct{})
		holdEnded := make(chan struct{})
		var ph phases
		log, buf := logTo()
		go func() {
			<-holding
			sigs <- syscall.SIGHUP
			sigs <- syscall.SIGURG
			sigs <- tc.sig
		}()
		code := graceful.Run(context.Background(), graceful.Config{
			Argv: []string{"/bin/true"},
			Hold: func(ctx context.Context) error {
				close(holding)
				<-ctx.Done()
				close(holdEnded)
				return ctx.Err()
			},
			StartTimeout: time.Minute,
			Signals:      sigs,
			OnPhase:      ph.on,
			Logger:       log,
		})
		if code != tc.code {
			t.Errorf("%v: exit code %d, want %d", tc.sig, code, tc.code)
		}
		if ph.saw(graceful.PhaseRunning) {
			t.Errorf("%v: CMD started", tc.sig)
		}
		select {
		case <-holdEnded:
		case <-time.After(5 * time.Second):
			t.Errorf("%v: Hold's context not cancelled", tc.sig)
		}
		if !strings.Contains(buf.String(), "SIGHUP ignored: CMD not started yet") {
			t.Errorf("%v: SIGHUP during the hold not logged as ignored:\n%s", tc.sig, buf)
		}
	}
}

// At the start timeout Run acts even when Hold ignores its context, and a
// Job's sidecar is told to quit.
func TestRunStartTimeoutExit(t *testing.T) {
	release := make(chan struct{})
	defer close(release)
	var quits int
	var ph phases
	start := time.Now()
	code := graceful.Run(context.Background(), graceful.Config{
		Argv:               []string{"/bin/true"},
		Hold:               func(context.Context) error { <-release; return nil },
		StartTimeout:       200 * time.Millisecond,
		ExitOnStartTimeout: true,
		QuitSidecar:        func(context.Context) error { quits++; return nil },
		OnPhase:            ph.on,
		Signals:            make(chan os.Signal),
		Logger:             slog.New(slog.DiscardHandler),
	})
	if code != graceful.ExitStartTimeout {
		t.Errorf("exit code %d, want 69", code)
	}
	if took := time.Since(start); took < 200*time.Millisecond || took > 200*time.Millisecond+slack {
		t.Errorf("gave up after %s, want start-timeout 200ms", took)
	}
	if ph.saw(graceful.PhaseRunning) {
		t.Error("CMD started")
	}
	if quits != 1 {
		t.Errorf("QuitSidecar called %d times, want once", quits)
	}
}

// A Hold that fails (not just times out) is a start timeout too.
func TestRunHoldErrorStartsCMDAnyway(t *testing.T) {
	var ph phases
	log, buf := logTo()
	code := graceful.Run(context.Background(), graceful.Config{
		Argv:         []string{"/bin/sh", "-c", "exit 7"},
		Hold:         func(context.Context) error { return errors.New("sidecar required but absent") },
		StartTimeout: time.Minute,
		OnPhase:      ph.on,
		Signals:      make(chan os.Signal),
		Logger:       log,
	})
	if code != 7 {
		t.Errorf("exit code %d, want CMD's 7", code)
	}
	if lines := errorLines(buf.String()); len(lines) != 1 || !strings.Contains(lines[0], "sidecar required but absent") || !strings.Contains(lines[0], "starting CMD anyway") {
		t.Errorf("want one loud line with the reason, got %q", lines)
	}
}

// Cancelling Run's context is one SIGTERM: here, while holding.
func TestRunContextCancelIsSIGTERM(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	code := graceful.Run(ctx, graceful.Config{
		Argv:         []string{"/bin/true"},
		Hold:         func(ctx context.Context) error { cancel(); <-ctx.Done(); return ctx.Err() },
		StartTimeout: time.Minute,
		Signals:      make(chan os.Signal),
		Logger:       slog.New(slog.DiscardHandler),
	})
	if code != 143 {
		t.Errorf("exit code %d, want 143", code)
	}
}

// CMD exiting on its own mid-drain ends the drain, with CMD's code.
func TestRunCMDExitsDuringDrain(t *testing.T) {
	sigs := make(chan os.Signal, 1)
	var ends []graceful.DrainEnd
	code := graceful.Run(context.Background(), graceful.Config{
		Argv:     []string{"/bin/sh", "-c", "sleep 0.5; exit 4"},
		DrainMin: 5 * time.Second, DrainMax: 10 * time.Second, Grace: time.Second,
		Activity: func(context.Context) (graceful.Activity, error) {
			return graceful.Activity{Active: 1, Known: true}, nil
		},
		OnPhase: func(p graceful.Phase) {
			if p == graceful.PhaseRunning {
				sigs <- syscall.SIGTERM
			}
		},
		OnDrainEnd: func(_ time.Duration, why graceful.DrainEnd) { ends = append(ends, why) },
		Signals:    sigs,
		Logger:     slog.New(slog.DiscardHandler),
	})
	if code != 4 {
		t.Errorf("exit code %d, want 4", code)
	}
	if len(ends) != 1 || ends[0] != graceful.DrainEndAppExited {
		t.Errorf("drain ends %v, want [app-exited]", ends)
	}
}

// An admin API that stops answering mid-drain is not quiet: only a sidecar
// that is gone (connection refused) is. Before the fix, three failed reads
// ended the drain why=quiet and CMD got SIGTERM with requests in flight.
func TestRunDrainAdminFailingIsNotQuiet(t *testing.T) {
	for _, tc := range []struct {
		name     string
		err      error
		wantWhy  graceful.DrainEnd
		wantLog  string
		minTook  time.Duration
		maxTook  time.Duration
		lastBusy bool
	}{
		{"timeout", context.DeadlineExceeded, graceful.DrainEndMax, "cannot read inbound activity", 900 * time.Millisecond, 3 * time.Second, true},
		{"HTTP 503", errors.New("envoy admin GET /stats: HTTP 503 Service Unavailable"), graceful.DrainEndMax, "cannot read inbound activity", 900 * time.Millisecond, 3 * time.Second, true},
		{"malformed", errors.New("malformed answer from Envoy"), graceful.DrainEndMax, "cannot read inbound activity", 900 * time.Millisecond, 3 * time.Second, false},
		{"connection refused: sidecar gone", fmt.Errorf("%w: connection refused", graceful.ErrSidecarGone), graceful.DrainEndQuiet, "the sidecar is gone", 150 * time.Millisecond, 800 * time.Millisecond, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			sigs := make(chan os.Signal, 1)
			var mu sync.Mutex
			reads := 0
			var why graceful.DrainEnd
			var took time.Duration
			log, buf := logTo()
			graceful.Run(context.Background(), graceful.Config{
				Argv:     []string{"/bin/sleep", "30"},
				DrainMin: 150 * time.Millisecond, DrainQuiet: 100 * time.Millisecond, DrainMax: time.Second, Grace: time.Second,
				PollInterval: 20 * time.Millisecond,
				Activity: func(context.Context) (graceful.Activity, error) {
					mu.Lock()
					defer mu.Unlock()
					reads++
					if reads == 1 { // the last known activity: a request in flight, or quiet
						if tc.lastBusy {
							return graceful.Activity{Active: 1, Total: 7, Known: true}, nil
						}
						return graceful.Activity{Total: 7, Known: true}, nil
					}
					return graceful.Activity{}, tc.err
				},
				OnPhase: func(p graceful.Phase) {
					if p == graceful.PhaseRunning {
						sigs <- syscall.SIGTERM
					}
				},
				OnDrainEnd: func(d time.Duration, w graceful.DrainEnd) { why, took = w, d },
				Signals:    sigs,
				Logger:     log,
			})
			if why != tc.wantWhy || took < tc.minTook || took > tc.maxTook {
				t.Errorf("drain ended why=%s after %s, want why=%s within [%s, %s]", why, took.Round(time.Millisecond), tc.wantWhy, tc.minTook, tc.maxTook)
			}
			if n := strings.Count(buf.String(), tc.wantLog); n != 1 {
				t.Errorf("%q logged %d times, want once:\n%s", tc.wantLog, n, buf.String())
			}
		})
	}
}

// When meshready is not PID 1 (a shared PID namespace, or run by hand),
// nothing else stops what CMD left running in its process group: after CMD
// exits, the group gets SIGTERM, then SIGKILL after Grace, and only then
// does Run return CMD's code. Before, Run returned at once and the
// leftovers outlived the wrapper.
func TestRunStopsCMDsLeftovers(t *testing.T) {
	for _, tc := range []struct {
		name    string
		script  string
		minTook time.Duration
	}{
		// CMD exits only once its leftover has written its pid (after its
		// trap is set), so the test never races the leftover's start.
		{"leftover stops on SIGTERM", `sh -c 'echo $$ > "$PIDFILE"; exec sleep 30' & while [ ! -s "$PIDFILE" ]; do sleep 0.01; done; exit 3`, 0},
		{"leftover ignores SIGTERM: SIGKILL after grace", `sh -c 'trap "" TERM; echo $$ > "$PIDFILE"; exec sleep 30' & while [ ! -s "$PIDFILE" ]; do sleep 0.01; done; exit 3`, 300 * time.Millisecond},
	} {
		t.Run(tc.name, func(t *testing.T) {
			pidfile := filepath.Join(t.TempDir(), "pid")
			t.Setenv("PIDFILE", pidfile)
			log, buf := logTo()
			start := time.Now()
			code := graceful.Run(context.Background(), graceful.Config{
				Argv:    []string{"/bin/sh", "-c", tc.script},
				Grace:   300 * time.Millisecond,
				Signals: make(chan os.Signal),
				Logger:  log,
			})
			took := time.Since(start)
			if code != 3 {
				t.Errorf("exit code %d, want CMD's 3", code)
			}
			b, err := os.ReadFile(pidfile)
			if err != nil {
				t.Fatal(err)
			}
			var pid int
			fmt.Sscan(string(b), &pid)
			if pid <= 0 {
				t.Fatalf("no leftover pid in %q", b)
			}
			if err := syscall.Kill(pid, 0); !errors.Is(err, syscall.ESRCH) {
				syscall.Kill(pid, syscall.SIGKILL)
				t.Fatalf("leftover %d still there after Run returned (kill 0: %v)\n%s", pid, err, buf.String())
			}
			if took < tc.minTook || took > tc.minTook+3*time.Second {
				t.Errorf("Run took %s, want about %s", took.Round(time.Millisecond), tc.minTook)
			}
			if !strings.Contains(buf.String(), "processes of its group remain") {
				t.Errorf("not logged:\n%s", buf.String())
			}
		})
	}
}
