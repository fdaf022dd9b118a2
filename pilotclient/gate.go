package pilotclient

import (
	"context"
	"errors"
	"math/rand/v2"
	"net/http"
	"sync"
	"time"

	"github.com/hashicorp/go-retryablehttp"
)

// maxRetryAfter bounds how long a Retry-After header (from Pilot or a proxy
// in front of it) may hold the client back.
const maxRetryAfter = time.Minute

// gate enforces the client's load rules on Pilot:
//   - one request in flight: calls for the same question share one request
//     (and its answer); calls for different questions queue;
//   - after an error, or an answer that shows the proxy not synced yet, the
//     next request waits a jittered exponential delay (min → max). A call
//     made before then returns at once: the last not-synced answer when it
//     is for the same question (marked Cached), else an ErrBackoff error
//     that wraps the last failure;
//   - a synced answer clears the delay.
type gate struct {
	sem      chan struct{}
	min, max time.Duration

	mu      sync.Mutex
	streak  int       // consecutive errors or not-synced answers
	next    time.Time // no request before this
	lastErr *Error    // set when the last outcome was an error
	cache   *cachedAnswer
	flights map[string]*flight
}

type cachedAnswer struct {
	key string
	val any
}

type flight struct {
	done chan struct{}
	val  any
	err  error
}

func newGate(min, max time.Duration) *gate {
	return newSharedGate(make(chan struct{}, 1), min, max)
}

// newSharedGate is a gate whose request slot is sem, shared with others.
func newSharedGate(sem chan struct{}, min, max time.Duration) *gate {
	return &gate{sem: sem, min: min, max: max, flights: map[string]*flight{}}
}

// newGates makes one gate per source, all sharing one request slot.
func newGates(min, max time.Duration, sources ...string) map[string]*gate {
	sem := make(chan struct{}, 1)
	g := make(map[string]*gate, len(sources))
	for _, s := range sources {
		g[s] = newSharedGate(sem, min, max)
	}
	return g
}

// call is what the gate runs: ask Pilot once.
type call struct {
	key    string // same key ⇒ same question
	source string
	target string
	run    func(ctx context.Context) (any, error)
	synced func(any) bool // nil: every answer counts as not synced (spaced)
	cached func(any) any  // marks a cached answer
}

func (g *gate) do(ctx context.Context, c call) (any, error) {
	g.mu.Lock()
	if f, ok := g.flights[c.key]; ok {
		g.mu.Unlock()
		select {
		case <-f.done:
			if e, ok := errors.AsType[*Error](f.err); ok && e.kind == kindCanceled && ctx.Err() == nil {
				return g.do(ctx, c) // the caller that owned it gave up; this one has not
			}
			return f.val, f.err
		case <-ctx.Done():
			return nil, &Error{Source: c.source, Target: c.target, kind: kindCanceled, Err: ctx.Err()}
		}
	}
	if v, err, held := g.heldLocked(ctx, c); held {
		g.mu.Unlock()
		return v, err
	}
	f := &flight{done: make(chan struct{})}
	g.flights[c.key] = f
	g.mu.Unlock()

	f.val, f.err = g.run(ctx, c)

	g.mu.Lock()
	delete(g.flights, c.key)
	g.mu.Unlock()
	close(f.done)
	return f.val, f.err
}

func (g *gate) run(ctx context.Context, c call) (any, error) {
	select {
	case g.sem <- struct{}{}:
	case <-ctx.Done():
		return nil, &Error{Source: c.source, Target: c.target, kind: kindCanceled, Err: ctx.Err()}
	}
	defer func() { <-g.sem }()

	// Another question may have failed while this one queued.
	g.mu.Lock()
	if v, err, held := g.heldLocked(ctx, c); held {
		g.mu.Unlock()
		return v, err
	}
	g.mu.Unlock()

	v, err := c.run(ctx)

	g.mu.Lock()
	defer g.mu.Unlock()
	now := time.Now()
	if err != nil {
		e, ok := errors.AsType[*Error](err)
		if ok && e.kind == kindCanceled {
			return v, err // the caller gave up: says nothing about Pilot
		}
		if !ok {
			e = &Error{Source: c.source, Target: c.target, Err: err}
			err = e
		}
		g.streak++
		if e.kind == kindForbidden || e.kind == kindUnauthenticated || e.kind == kindToken {
			g.streak = max(g.streak, 32) // will not heal soon: straight to the longest delay
		}
		g.next = now.Add(g.delay(e.retryAfter))
		g.lastErr, g.cache = e, nil
		return v, err
	}
	if c.synced != nil && c.synced(v) {
		g.streak, g.next, g.lastErr, g.cache = 0, time.Time{}, nil, nil
		return v, nil
	}
	g.streak++
	g.next = now.Add(g.delay(0))
	g.lastErr, g.cache = nil, &cachedAnswer{key: c.key, val: v}
	return v, nil
}

// heldLocked answers a call without asking Pilot while the gate holds
// requests back. A call marked WithChange skips the spacing that follows a
// not-synced answer (never the backoff after an error): the caller has seen
// the proxy accept something new, so Pilot's answer has likely changed.
func (g *gate) heldLocked(ctx context.Context, c call) (any, error, bool) {
	wait := time.Until(g.next)
	if wait <= 0 {
		return nil, nil, false
	}
	if g.lastErr == nil && changed(ctx) {
		return nil, nil, false
	}
	if g.lastErr != nil {
		return nil, &Error{Source: c.source, Target: c.target, kind: kindBackoff, Err: g.lastErr, retryIn: wait}, true
	}
	if g.cache != nil && g.cache.key == c.key {
		return c.cached(g.cache.val), nil, true
	}
	return nil, &Error{Source: c.source, Target: c.target, kind: kindBackoff, retryIn: wait,
		detail: "Pilot's last answer showed this proxy not synced yet, and requests are spaced while it syncs"}, true
}

// delay is the wait after g.streak bad outcomes: exponential from min,
// capped at max, with "equal jitter" (half fixed, half random) so agents
// started together spread out yet never come back sooner than half the
// step. A Retry-After longer than that is honoured up to maxRetryAfter.
func (g *gate) delay(retryAfter time.Duration) time.Duration {
	step := retryablehttp.DefaultBackoff(g.min, g.max, min(g.streak, 62)-1, nil)
	d := step/2 + rand.N(step/2+1)
	if retryAfter > d {
		d = min(retryAfter, maxRetryAfter)
	}
	return d
}

// jitterBackoff is the retryablehttp.Backoff for retries inside one call
// (WithRetries): the same equal-jitter exponential, honouring Retry-After.
func jitterBackoff(min, max time.Duration, attempt int, resp *http.Response) time.Duration {
	step := retryablehttp.DefaultBackoff(min, max, attempt, nil)
	d := step/2 + rand.N(step/2+1)
	if ra := retryAfterOf(resp); ra > d {
		d = ra
	}
	return d
}

// retryAfterOf reads a Retry-After header on a 429 or 503 (as
// retryablehttp does), bounded by maxRetryAfter; 0 when there is none.
func retryAfterOf(resp *http.Response) time.Duration {
	if resp == nil || (resp.StatusCode != http.StatusTooManyRequests && resp.StatusCode != http.StatusServiceUnavailable) ||
		resp.Header.Get("Retry-After") == "" {
		return 0
	}
	return min(retryablehttp.DefaultBackoff(0, 0, 0, resp), maxRetryAfter)
}

type changeKey struct{}

// WithChange marks a call as following a change the caller saw on the
// proxy's side (Envoy accepted a new version): it may skip the spacing
// after a not-synced answer, so an ACK shows within one check interval
// instead of after the backoff. Errors are still backed off. The caller
// must mark only real changes: each one can cost Pilot one request.
func WithChange(ctx context.Context) context.Context {
	return context.WithValue(ctx, changeKey{}, true)
}

func changed(ctx context.Context) bool {
	b, _ := ctx.Value(changeKey{}).(bool)
	return b
}
