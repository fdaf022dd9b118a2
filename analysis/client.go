package analysis

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	promapi "github.com/prometheus/client_golang/api"
	promv1 "github.com/prometheus/client_golang/api/prometheus/v1"
	"github.com/prometheus/common/model"
)

// Defaults for Config's zero values.
const (
	DefaultQueryTimeout = 10 * time.Second
	DefaultMaxBodyBytes = 4 << 20
)

// Config says which Prometheus to ask and how patiently.
type Config struct {
	// URL is Prometheus' base URL ("http://prometheus.istio-system:9090").
	URL string
	// QueryTimeout bounds each query, client side (the request's deadline)
	// and server side (the API's timeout parameter). Default 10s.
	QueryTimeout time.Duration
	// MaxBodyBytes caps each answer's body; a bigger one is an error.
	// Default 4 MiB (a window's answers are a few hundred bytes).
	MaxBodyBytes int64
	// RoundTripper carries the requests (default: a clone of
	// http.DefaultTransport).
	RoundTripper http.RoundTripper
}

// ErrBodyTooLarge is returned (wrapped) when an answer exceeds MaxBodyBytes.
var ErrBodyTooLarge = errors.New("answer body too large")

// QueryError is a query Prometheus could not answer: Kind names the
// failure, Error() is one line saying what failed and what to do.
type QueryError struct {
	Kind   ErrorKind
	URL    string
	Query  string
	Status int    // HTTP status, 0 when none arrived
	Detail string // Prometheus' or the transport's own words
	Err    error
}

// ErrorKind classifies a failed query.
type ErrorKind string

const (
	KindUnreachable ErrorKind = "unreachable" // no connection (refused, DNS, no route)
	KindTimeout     ErrorKind = "timeout"     // no answer in time, or Prometheus' own query timeout
	KindBadQuery    ErrorKind = "bad-query"   // 4xx: Prometheus rejected the query (a bug here, or a proxy in between)
	KindServer      ErrorKind = "server"      // 5xx
	KindMalformed   ErrorKind = "malformed"   // not Prometheus' JSON, or not the shape asked for
	KindTooLarge    ErrorKind = "too-large"   // the body exceeded MaxBodyBytes
	KindCanceled    ErrorKind = "canceled"    // the caller's context ended
)

func (e *QueryError) Error() string {
	var what, do string
	switch e.Kind {
	case KindUnreachable:
		what, do = "unreachable", "check the Prometheus URL and that Prometheus is running"
	case KindTimeout:
		what, do = "timed out", "Prometheus is overloaded or the network is slow; a timeout is never a pass"
	case KindBadQuery:
		what, do = fmt.Sprintf("rejected the query (HTTP %d)", e.Status), "check the URL points at Prometheus' API; report the query if it does"
	case KindServer:
		what, do = fmt.Sprintf("failed (HTTP %d)", e.Status), "check Prometheus' health and logs"
	case KindMalformed:
		what, do = "answered something that is not a Prometheus query result", "check the URL points at Prometheus (not a proxy or login page)"
	case KindTooLarge:
		what, do = "answered more than the body cap", "check the URL points at Prometheus; the window's answers are small"
	case KindCanceled:
		what, do = "query canceled", "the controller is stopping"
	default:
		what, do = "failed", "check Prometheus"
	}
	s := "prometheus " + what
	if e.Detail != "" {
		s += ": " + oneLine(e.Detail, 200)
	}
	return s + " (" + e.URL + "); " + do
}

func (e *QueryError) Unwrap() error { return e.Err }

// client asks one Prometheus, with a deadline on every query.
type client struct {
	url     string
	api     promv1.API
	timeout time.Duration
}

func newClient(c Config) (*client, error) {
	if c.URL == "" {
		return nil, errors.New("analysis: no Prometheus URL")
	}
	u, err := url.Parse(c.URL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("analysis: Prometheus URL %q is not http(s)://host[:port][/path]", c.URL)
	}
	if c.QueryTimeout <= 0 {
		c.QueryTimeout = DefaultQueryTimeout
	}
	if c.MaxBodyBytes <= 0 {
		c.MaxBodyBytes = DefaultMaxBodyBytes
	}
	rt := c.RoundTripper
	if rt == nil {
		rt = http.DefaultTransport.(*http.Transport).Clone()
	}
	pc, err := promapi.NewClient(promapi.Config{
		Address:      c.URL,
		RoundTripper: &cappedTransport{next: rt, max: c.MaxBodyBytes},
	})
	if err != nil {
		return nil, fmt.Errorf("analysis: %w", err)
	}
	return &client{url: u.Redacted(), api: promv1.NewAPI(pc), timeout: c.QueryTimeout}, nil
}

// answer is one instant query's result.
type answer struct {
	vector   model.Vector
	warnings []string
}

// query evaluates q at ts; the result must be an instant vector.
func (c *client) query(ctx context.Context, q string, ts time.Time) (answer, error) {
	var status atomic.Int32
	ctx = context.WithValue(ctx, statusKey{}, &status)
	qctx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	v, warnings, _, err := c.api.Query(qctx, q, ts, promv1.WithTimeout(c.timeout))
	if err != nil {
		return answer{}, c.classify(ctx, q, int(status.Load()), err)
	}
	vec, ok := v.(model.Vector)
	if !ok {
		t := "nothing"
		if v != nil {
			t = v.Type().String()
		}
		return answer{}, &QueryError{Kind: KindMalformed, URL: c.url, Query: q, Status: int(status.Load()),
			Detail: "result is " + t + ", want a vector"}
	}
	return answer{vector: vec, warnings: warnings}, nil
}

// classify turns the client's error into one QueryError line. ctx is the
// caller's context (without the query deadline): its end is "canceled", the
// query's own deadline is a timeout.
func (c *client) classify(ctx context.Context, q string, status int, err error) *QueryError {
	e := &QueryError{URL: c.url, Query: q, Status: status, Err: err}
	var apiErr *promv1.Error
	var netErr net.Error
	switch {
	case errors.Is(err, ErrBodyTooLarge):
		e.Kind, e.Detail = KindTooLarge, innermost(err).Error()
	case ctx.Err() != nil && !errors.Is(context.Cause(ctx), context.DeadlineExceeded):
		e.Kind, e.Detail = KindCanceled, context.Cause(ctx).Error()
	case errors.Is(err, context.DeadlineExceeded) && ctx.Err() != nil:
		e.Kind, e.Detail = KindTimeout, "no answer before the caller's deadline"
	case errors.Is(err, context.DeadlineExceeded):
		e.Kind, e.Detail = KindTimeout, fmt.Sprintf("no answer within %s", c.timeout)
	case errors.As(err, &apiErr):
		typ, msg := string(apiErr.Type), apiErr.Msg
		// For statuses other than 400 and 422 the client keeps the body
		// as Detail: Prometheus' own {"errorType","error"} (a 503 query
		// timeout) names the failure better than "server error: 503".
		var body struct{ ErrorType, Error string }
		if d := strings.TrimSpace(apiErr.Detail); d != "" {
			if json.Unmarshal([]byte(d), &body) == nil && body.Error != "" {
				typ, msg = body.ErrorType, body.Error
			} else {
				msg += ": " + d
			}
		}
		switch {
		case typ == string(promv1.ErrTimeout) || typ == string(promv1.ErrCanceled):
			// Prometheus' own query timeout, or it canceled the query
			// (shutting down).
			e.Kind = KindTimeout
		case status >= 500:
			e.Kind = KindServer
		case status >= 400:
			e.Kind = KindBadQuery
		case apiErr.Type == promv1.ErrBadResponse:
			e.Kind = KindMalformed
		default:
			e.Kind = KindServer
		}
		e.Detail = msg
		if typ != "" && e.Kind != KindMalformed {
			e.Detail = typ + ": " + msg
		}
	case errors.As(err, &netErr) && netErr.Timeout():
		e.Kind, e.Detail = KindTimeout, fmt.Sprintf("no answer within %s: %v", c.timeout, innermost(err))
	case status != 0:
		// The answer had begun (status line and headers) and broke off.
		e.Kind, e.Detail = KindMalformed, fmt.Sprintf("answer cut off after HTTP %d: %v", status, innermost(err))
	case isUnreachable(err):
		e.Kind, e.Detail = KindUnreachable, innermost(err).Error()
	default:
		// A connection that broke mid-answer, TLS, ...: nothing usable
		// arrived.
		e.Kind, e.Detail = KindUnreachable, innermost(err).Error()
		if status != 0 {
			e.Kind = KindMalformed
		}
	}
	return e
}

func isUnreachable(err error) bool {
	var op *net.OpError
	var dns *net.DNSError
	return errors.As(err, &op) || errors.As(err, &dns) ||
		errors.Is(err, syscall.ECONNREFUSED) || errors.Is(err, syscall.ECONNRESET) ||
		errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF)
}

// innermost drops the url.Error wrapping ("Post \"http://…\": dial tcp …"),
// the URL is named once by QueryError.
func innermost(err error) error {
	var u *url.Error
	if errors.As(err, &u) {
		return u.Err
	}
	return err
}

func oneLine(s string, max int) string {
	s = strings.Join(strings.Fields(s), " ")
	if len(s) > max {
		s = s[:max] + "…"
	}
	return s
}

type statusKey struct{}

// cappedTransport records the HTTP status for the error line and caps the
// body: reading past max bytes fails with ErrBodyTooLarge (a Content-Length
// above max fails at once, before any of it is read).
type cappedTransport struct {
	next http.RoundTripper
	max  int64
}

func (t *cappedTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	resp, err := t.next.RoundTrip(r)
	if err != nil {
		return nil, err
	}
	if s, ok := r.Context().Value(statusKey{}).(*atomic.Int32); ok {
		s.Store(int32(resp.StatusCode))
	}
	if resp.ContentLength > t.max {
		resp.Body.Close()
		return nil, fmt.Errorf("%w: Content-Length %d > %d bytes", ErrBodyTooLarge, resp.ContentLength, t.max)
	}
	resp.Body = &cappedBody{rc: resp.Body, left: t.max, max: t.max}
	return resp, nil
}

type cappedBody struct {
	rc   io.ReadCloser
	left int64
	max  int64
}

func (b *cappedBody) Read(p []byte) (int, error) {
	if b.left <= 0 {
		// One byte more tells a body of exactly max from a bigger one.
		var one [1]byte
		n, err := b.rc.Read(one[:])
		if n > 0 {
			return 0, fmt.Errorf("%w: more than %d bytes", ErrBodyTooLarge, b.max)
		}
		return 0, err
	}
	if int64(len(p)) > b.left {
		p = p[:b.left]
	}
	n, err := b.rc.Read(p)
	b.left -= int64(n)
	return n, err
}

func (b *cappedBody) Close() error { return b.rc.Close() }
