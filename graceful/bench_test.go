package graceful_test

import (
	"context"
	"log/slog"
	"os"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/meshready/meshready/graceful"
)

// BenchmarkHoldToExec measures DESIGN.md's "sidecar ready → CMD exec'd"
// (budget ≤ 10ms): from Hold returning to CMD's execve having succeeded
// (syscall.ForkExec returns only then; OnPhase(running) follows at once).
// It also reports the process's RSS while it supervises CMD.
//
//	go test -run '^$' -bench HoldToExec ./graceful/
func BenchmarkHoldToExec(b *testing.B) {
	var (
		took   []time.Duration
		rssKiB int
	)
	for b.Loop() {
		var held, running time.Time
		code := graceful.Run(context.Background(), graceful.Config{
			Argv:         []string{"/bin/true"},
			Hold:         func(context.Context) error { held = time.Now(); return nil },
			StartTimeout: time.Minute,
			OnPhase: func(p graceful.Phase) {
				if p == graceful.PhaseRunning {
					running = time.Now()
					rssKiB = max(rssKiB, vmRSSKiB())
				}
			},
			Logger: slog.New(slog.DiscardHandler),
		})
		if code != 0 {
			b.Fatalf("exit code %d", code)
		}
		took = append(took, running.Sub(held))
	}
	slices.Sort(took)
	pct := func(p int) float64 { return float64(took[(len(took)-1)*p/100].Microseconds()) }
	b.ReportMetric(pct(50), "µs-hold-to-exec-p50")
	b.ReportMetric(pct(99), "µs-hold-to-exec-p99")
	b.ReportMetric(float64(rssKiB), "KiB-RSS-supervising")
}

func vmRSSKiB() int {
	n, _ := strconv.Atoi(procField(os.Getpid(), "VmRSS"))
	return n
}
