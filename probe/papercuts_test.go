package probe

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

// Before: "no answer within 497ms (--timeout): envoy admin GET …: no
// complete answer within 500ms" — two deadlines, one of them skewed. Now the
// one that fired, once: the client's own timeout text as is, or the
// configured --timeout when the check's error does not say it.
func TestTimeoutNamesOneDeadline(t *testing.T) {
	t.Parallel()
	timedOut := func(ctx context.Context) (Result, error) {
		<-ctx.Done()
		return Result{}, fmt.Errorf("envoy admin GET /stats: no complete answer within 50ms: %w", ctx.Err())
	}
	other := func(ctx context.Context) (Result, error) {
		<-ctx.Done()
		return Result{}, fmt.Errorf("read failed")
	}
	a := NewAggregator([]Check{{Name: "a", Run: timedOut}, {Name: "b", Run: other}}, AggregatorOptions{Timeout: 50 * time.Millisecond})
	v := a.Refresh(context.Background())
	ao, _ := v.Outcome("a")
	if m := ao.Result.Message; strings.Count(m, "within") != 1 || strings.Contains(m, "--timeout") {
		t.Errorf("a: %q", m)
	}
	bo, _ := v.Outcome("b")
	if m := bo.Result.Message; m != "no answer within 50ms (--timeout): read failed" {
		t.Errorf("b: %q", m)
	}
}

// Before: /health/live?verbose=1 without --app-live had checked_at
// "0001-01-01T00:00:00Z".
func TestLiveVerboseHasCheckedAt(t *testing.T) {
	t.Parallel()
	a := NewAggregator(nil, AggregatorOptions{})
	rec := httptest.NewRecorder()
	req := httptest.NewRequest("GET", "/health/live?verbose=1", nil)
	req.RemoteAddr = "127.0.0.1:5000"
	Handler(ServerOptions{Ready: a}).ServeHTTP(rec, req)
	var body VerboseBody
	if err := json.Unmarshal(rec.Body.Bytes(), &body); err != nil || len(body.Checks) != 1 {
		t.Fatalf("%v %s", err, rec.Body)
	}
	at, err := time.Parse(time.RFC3339Nano, body.Checks[0].CheckedAt)
	if err != nil || time.Since(at) > time.Minute || time.Since(at) < 0 {
		t.Fatalf("checked_at %q", body.Checks[0].CheckedAt)
	}
	// The plain body is unchanged.
	rec = httptest.NewRecorder()
	Handler(ServerOptions{Ready: a}).ServeHTTP(rec, httptest.NewRequest("GET", "/health/live", nil))
	if rec.Code != 200 || rec.Body.String() != "ok\n" {
		t.Fatalf("%d %q", rec.Code, rec.Body)
	}
}
