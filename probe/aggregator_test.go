package probe

import (
	"context"
	"errors"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

func constCheck(name string, r Result) Check {
	return Check{Name: name, Run: func(context.Context) (Result, error) { return r, nil }}
}

func TestVerdictReasonIsFirstFailingCheck(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name      string
		checks    []Check
		ready     bool
		code      int
		body      string
		reasonHas string
	}{
		{"all pass", []Check{constCheck("a", passf("ok")), constCheck("b", passf("ok"))}, true, 200, "ok\n", ""},
		{"skip and degraded are ready", []Check{constCheck("a", Result{Status: Skip}), constCheck("b", Result{Status: Degraded, Message: "meh"})}, true, 200, "ok\n", ""},
		{"first failure names the reason", []Check{constCheck("a", passf("")), constCheck("b", failf("broken")), constCheck("c", failf("also"))}, false, 503, "not ready: b: broken\n", "b: broken"},
		{"multi-line message is flattened", []Check{constCheck("a", failf("one\ntwo\tthree"))}, false, 503, "not ready: a: one two three\n", "a: one two three"},
		{"an error is a failure", []Check{{Name: "e", Run: func(context.Context) (Result, error) { return Result{}, errors.New("could not probe") }}}, false, 503, "not ready: e: could not probe\n", "e: could not probe"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			a := NewAggregator(tc.checks, AggregatorOptions{})
			v := a.Verdict(context.Background())
			if v.Ready != tc.ready || v.Code() != tc.code || string(v.Body()) != tc.body || !strings.Contains(v.Reason, tc.reasonHas) {
				t.Fatalf("got ready=%v code=%d body=%q reason=%q", v.Ready, v.Code(), v.Body(), v.Reason)
			}
		})
	}
}

func TestLongReasonIsCut(t *testing.T) {
	t.Parallel()
	a := NewAggregator([]Check{constCheck("a", failf(strings.Repeat("x", 5000)))}, AggregatorOptions{})
	v := a.Verdict(context.Background())
	if len(v.Body()) > maxReasonLen+20 || !strings.HasSuffix(string(v.Body()), "…\n") {
		t.Fatalf("body not cut to one short line: %d bytes", len(v.Body()))
	}
}

// A burst of probes must cost one round of checks.
func TestConcurrentRequestsCollapseIntoOneRound(t *testing.T) {
	t.Parallel()
	var runs atomic.Int64
	release := make(chan struct{})
	slow := Check{Name: "slow", Run: func(ctx context.Context) (Result, error) {
		runs.Add(1)
		<-release
		return passf("ok"), nil
	}}
	a := NewAggregator([]Check{slow}, AggregatorOptions{Interval: time.Hour, Timeout: 10 * time.Second})
	var wg sync.WaitGroup
	const callers = 1000
	codes := make([]int, callers)
	for i := range callers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			codes[i] = a.Verdict(context.Background()).Code()
		}()
	}
	time.Sleep(50 * time.Millisecond) // let the callers pile up on the round
	close(release)
	wg.Wait()
	if got := runs.Load(); got != 1 {
		t.Fatalf("%d callers ran the check %d times, want 1", callers, got)
	}
	for i, c := range codes {
		if c != 200 {
			t.Fatalf("caller %d got %d", i, c)
		}
	}
}

func TestVerdictIsReusedWithinIntervalOnly(t *testing.T) {
	t.Parallel()
	var runs atomic.Int64
	c := Check{Name: "c", Run: func(context.Context) (Result, error) { runs.Add(1); return passf(""), nil }}
	a := NewAggregator([]Check{c}, AggregatorOptions{Interval: time.Second})
	var mu sync.Mutex
	now := time.Unix(1000, 0)
	a.now = func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	advance := func(d time.Duration) { mu.Lock(); now = now.Add(d); mu.Unlock() }

	a.Verdict(context.Background())
	a.Verdict(context.Background())
	advance(999 * time.Millisecond)
	a.Verdict(context.Background())
	if got := runs.Load(); got != 1 {
		t.Fatalf("within the interval: %d rounds, want 1", got)
	}
	advance(2 * time.Millisecond)
	a.Verdict(context.Background())
	if got := runs.Load(); got != 2 {
		t.Fatalf("after the interval: %d rounds, want 2", got)
	}
}

func TestCheckThatNeverAnswersFailsAtTimeout(t *testing.T) {
	t.Parallel()
	hang := Check{Name: "hang", Run: func(ctx context.Context) (Result, error) {
		<-ctx.Done()
		return Result{}, ctx.Err()
	}}
	a := NewAggregator([]Check{constCheck("ok", passf("")), hang}, AggregatorOptions{Timeout: 50 * time.Millisecond})
	start := time.Now()
	v := a.Verdict(context.Background())
	if took := time.Since(start); took < 50*time.Millisecond || took > 5*time.Second {
		t.Fatalf("round took %s", took)
	}
	if v.Ready || !strings.Contains(v.Reason, "hang: no answer within") || !strings.Contains(v.Reason, "--timeout") {
		t.Fatalf("reason %q", v.Reason)
	}
}

// A caller whose own deadline is shorter than the round gets an answer by
// its deadline: the previous verdict, or not ready before the first.
func TestCallerDeadlineBoundsTheWait(t *testing.T) {
	t.Parallel()
	release := make(chan struct{})
	defer close(release)
	var first atomic.Bool
	c := Check{Name: "c", Run: func(ctx context.Context) (Result, error) {
		if first.CompareAndSwap(false, true) {
			return passf(""), nil
		}
		<-release
		return failf("late"), nil
	}}
	a := NewAggregator([]Check{c}, AggregatorOptions{Interval: time.Nanosecond, Timeout: time.Minute})
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	if v := a.Verdict(context.Background()); !v.Ready {
		t.Fatalf("first round: %q", v.Reason)
	}
	v := a.Verdict(ctx)
	if !v.Ready {
		t.Fatalf("a caller cut short should get the previous verdict, got %q", v.Reason)
	}

	b := NewAggregator([]Check{{Name: "never", Run: func(ctx context.Context) (Result, error) { <-release; return passf(""), nil }}}, AggregatorOptions{Timeout: time.Minute})
	ctx2, cancel2 := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel2()
	if v := b.Verdict(ctx2); v.Ready || !strings.Contains(v.Reason, "first checks still running") {
		t.Fatalf("before any round: %q", v.Reason)
	}
}

func TestPanickingCheckFailsInsteadOfCrashing(t *testing.T) {
	t.Parallel()
	a := NewAggregator([]Check{{Name: "p", Run: func(context.Context) (Result, error) { panic("boom") }}}, AggregatorOptions{})
	if v := a.Verdict(context.Background()); v.Ready || !strings.Contains(v.Reason, "panicked: boom") {
		t.Fatalf("reason %q", v.Reason)
	}
}

func TestDrainTurnsUnreadyAtOnce(t *testing.T) {
	t.Parallel()
	var observed []string
	var mu sync.Mutex
	a := NewAggregator([]Check{constCheck("a", passf(""))}, AggregatorOptions{Interval: time.Hour, Observe: func(v *Verdict) {
		mu.Lock()
		observed = append(observed, v.Status())
		mu.Unlock()
	}})
	if v := a.Verdict(context.Background()); v.Code() != 200 {
		t.Fatal("not ready before drain")
	}
	a.Drain()
	a.Drain() // idempotent
	v := a.Verdict(context.Background())
	if v.Code() != 503 || string(v.Body()) != "draining\n" || !v.Draining || v.Status() != "draining" {
		t.Fatalf("after Drain: %d %q", v.Code(), v.Body())
	}
	if got := a.Rounds(); got != 1 {
		t.Fatalf("Drain ran checks: %d rounds", got)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(observed) != 2 || observed[1] != "draining" {
		t.Fatalf("observer saw %v", observed)
	}
}

func TestChecksShareTheRoundNumber(t *testing.T) {
	t.Parallel()
	var mu sync.Mutex
	seen := map[uint64]int{}
	c := func(name string) Check {
		return Check{Name: name, Run: func(ctx context.Context) (Result, error) {
			mu.Lock()
			seen[RoundOf(ctx)]++
			mu.Unlock()
			return passf(""), nil
		}}
	}
	a := NewAggregator([]Check{c("x"), c("y")}, AggregatorOptions{Interval: time.Nanosecond})
	a.Refresh(context.Background())
	a.Refresh(context.Background())
	// A second aggregator sharing the same checks never reuses a number.
	b := NewAggregator([]Check{c("x"), c("y")}, AggregatorOptions{Interval: time.Nanosecond})
	b.Refresh(context.Background())
	mu.Lock()
	defer mu.Unlock()
	if len(seen) != 3 || seen[0] != 0 {
		t.Fatalf("round numbers seen: %v", seen)
	}
	for n, checks := range seen {
		if checks != 2 {
			t.Fatalf("round %d ran %d checks, want 2 (all: %v)", n, checks, seen)
		}
	}
}

func BenchmarkVerdictCached(b *testing.B) {
	a := NewAggregator([]Check{constCheck("a", passf(""))}, AggregatorOptions{Interval: time.Hour})
	a.Verdict(context.Background())
	ctx := context.Background()
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if a.Verdict(ctx).Code() != 200 {
				b.Fatal("not ready")
			}
		}
	})
}
