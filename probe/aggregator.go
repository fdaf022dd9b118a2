package probe

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Aggregator runs the checks and keeps the verdict. It refreshes at most once
// per interval and collapses concurrent requests onto one round, so a burst
// of probes (or a hostile client) costs Envoy, Pilot and the app one round.
type Aggregator struct {
	checks   []Check
	interval time.Duration
	timeout  time.Duration
	observe  func(*Verdict)
	now      func() time.Time

	current  atomic.Pointer[Verdict]
	draining atomic.Bool
	rounds   atomic.Uint64

	mu       sync.Mutex
	inflight chan struct{} // closed when the running round has stored its verdict
}

// AggregatorOptions configure an Aggregator.
type AggregatorOptions struct {
	// Interval is the longest a verdict is reused; --interval.
	Interval time.Duration
	// Timeout bounds each check of a round; --timeout.
	Timeout time.Duration
	// Observe, when set, sees every new verdict (metrics, logs). It runs on
	// the round's goroutine and must not block.
	Observe func(*Verdict)
}

// NewAggregator makes an aggregator over checks, run in the order given (the
// first failing one names the reason).
func NewAggregator(checks []Check, o AggregatorOptions) *Aggregator {
	if o.Interval <= 0 {
		o.Interval = time.Second
	}
	if o.Timeout <= 0 {
		o.Timeout = 800 * time.Millisecond
	}
	return &Aggregator{checks: checks, interval: o.Interval, timeout: o.Timeout, observe: o.Observe, now: time.Now}
}

// Verdict returns a verdict no older than the interval, running a round if
// needed. Callers that arrive while a round runs wait for that round. If ctx
// ends first, the previous verdict is returned (or a not-ready one when there
// is none), so a slow check never holds a caller past its own deadline.
func (a *Aggregator) Verdict(ctx context.Context) *Verdict {
	if v := a.current.Load(); v != nil && a.now().Sub(v.At) < a.interval {
		return a.withDrain(v)
	}
	done := a.startRound()
	select {
	case <-done:
		return a.withDrain(a.current.Load())
	case <-ctx.Done():
		if v := a.current.Load(); v != nil {
			return a.withDrain(v)
		}
		return a.withDrain(pendingVerdict(a.now()))
	}
}

// Refresh runs a new round now (unless one is running, which it joins) and
// returns its verdict. The hold before the app starts and `meshready wait`
// use it; the HTTP path uses Verdict.
func (a *Aggregator) Refresh(ctx context.Context) *Verdict {
	done := a.startRound()
	select {
	case <-done:
	case <-ctx.Done():
	}
	if v := a.current.Load(); v != nil {
		return a.withDrain(v)
	}
	return a.withDrain(pendingVerdict(a.now()))
}

// Last returns the latest verdict without running checks (nil before the
// first round ends).
func (a *Aggregator) Last() *Verdict {
	v := a.current.Load()
	if v == nil {
		return nil
	}
	return a.withDrain(v)
}

// Drain turns the verdict into "draining" at once and for good: the pod is
// going away and callers' proxies must stop routing here.
func (a *Aggregator) Drain() {
	if a.draining.CompareAndSwap(false, true) && a.observe != nil {
		if v := a.current.Load(); v != nil {
			a.observe(a.withDrain(v))
		} else {
			a.observe(a.withDrain(pendingVerdict(a.now())))
		}
	}
}

// Draining reports whether Drain was called.
func (a *Aggregator) Draining() bool { return a.draining.Load() }

// Rounds counts the rounds run so far (tests and benchmarks use it).
func (a *Aggregator) Rounds() uint64 { return a.rounds.Load() }

func (a *Aggregator) startRound() <-chan struct{} {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.inflight != nil {
		return a.inflight
	}
	done := make(chan struct{})
	a.inflight = done
	go a.round(done)
	return done
}

// round runs every check concurrently on a context of its own: the round is
// shared, so no single caller's cancellation may cut it short.
func (a *Aggregator) round(done chan struct{}) {
	a.rounds.Add(1)
	ctx, cancel := context.WithTimeout(withRound(context.Background(), roundSeq.Add(1)), a.timeout)
	defer cancel()

	outcomes := make([]Outcome, len(a.checks))
	var wg sync.WaitGroup
	for i, c := range a.checks {
		wg.Add(1)
		go func() {
			defer wg.Done()
			outcomes[i] = runCheck(ctx, c, a.now, a.timeout)
		}()
	}
	wg.Wait()

	v := newVerdict(a.now(), outcomes)
	a.current.Store(v)
	if a.observe != nil {
		a.observe(a.withDrain(v))
	}
	a.mu.Lock()
	a.inflight = nil
	a.mu.Unlock()
	close(done)
}

// runCheck runs one check and turns "could not probe" and panics into a
// failing result: a check must never take the agent down.
func runCheck(ctx context.Context, c Check, now func() time.Time, timeout time.Duration) (o Outcome) {
	start := now()
	o.Name = c.Name
	o.CheckedAt = start
	defer func() {
		if p := recover(); p != nil {
			o.Result = failf(fmt.Sprintf("check panicked: %v", p))
		}
		o.Duration = now().Sub(start)
	}()
	r, err := c.Run(ctx)
	switch {
	case err != nil && ctx.Err() != nil && isTimeout(err) && strings.Contains(err.Error(), " within "):
		// The check's own client timed out on the round's deadline and
		// says so ("no complete answer within 800ms…"): one deadline, once.
		o.Result = failf(err.Error())
	case err != nil && ctx.Err() != nil:
		o.Result = failf(fmt.Sprintf("no answer within %s (--timeout): %v", timeout, err))
	case err != nil:
		o.Result = failf(err.Error())
	default:
		o.Result = r
	}
	return o
}

// isTimeout reports whether err is a deadline running out (the clients'
// timeout errors then name it: "… within 800ms").
func isTimeout(err error) bool {
	if errors.Is(err, context.DeadlineExceeded) {
		return true
	}
	var t interface{ Timeout() bool }
	return errors.As(err, &t) && t.Timeout()
}

func (a *Aggregator) withDrain(v *Verdict) *Verdict {
	if !a.draining.Load() {
		return v
	}
	return v.draining()
}

// roundSeq numbers rounds across every aggregator of the process: checks
// that cache a read per round (the Envoy checks) are shared by the hold's
// aggregator and /health's, whose own counts would collide.
var roundSeq atomic.Uint64

// roundKey carries the round number, so checks that share one read of Envoy
// (envoy.live and envoy.config) can tell whether the read they have cached
// belongs to this round.
type roundKey struct{}

func withRound(ctx context.Context, n uint64) context.Context {
	return context.WithValue(ctx, roundKey{}, n)
}

// RoundOf returns the aggregator round ctx belongs to, 0 outside a round.
func RoundOf(ctx context.Context) uint64 {
	n, _ := ctx.Value(roundKey{}).(uint64)
	return n
}
