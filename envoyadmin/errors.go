package envoyadmin

import (
	"context"
	"errors"
	"fmt"
	"net"
	neturl "net/url"
	"strings"
	"time"

	"github.com/meshready/meshready/internal/neterr"

	"github.com/meshready/meshready/internal/oneline"
)

// Sentinels for errors.Is. Every failed request returns an *Error; these let
// callers branch on the failure without parsing text.
var (
	// ErrNotAdmin: something answered, but not Envoy's admin API (an HTML
	// page, or a body that is not the format asked for).
	ErrNotAdmin = errors.New("not Envoy's admin API")
	// ErrTooLarge: the body exceeded the client's cap (WithMaxBody).
	ErrTooLarge = errors.New("response too large")
	// ErrMalformed: the body was cut short or is not valid for its endpoint.
	ErrMalformed = errors.New("malformed answer from Envoy")
	// ErrStatus: Envoy answered with a non-2xx status.
	ErrStatus = errors.New("unexpected HTTP status")
)

type errKind uint8

const (
	kindOther errKind = iota
	kindUnreachable
	kindTimeout
	kindCanceled
	kindStatus
	kindNotAdmin
	kindTooLarge
	kindMalformed
)

// Error is what every Client call returns on failure. Its Error() is one line
// that names the request, what failed and what to do, because it ends up
// verbatim in a readiness body, a log line or a CLI's stderr, read by someone
// who does not know this package.
type Error struct {
	Op         string // HTTP method
	URL        string // scheme://host/path, without the query (filters are long and add nothing)
	StatusCode int    // set for non-2xx answers
	Err        error  // the cause

	kind    errKind
	detail  string        // rendered instead of Err's text when set
	timeout time.Duration // the budget that ran out, for kindTimeout
}

func (e *Error) Error() string {
	var b strings.Builder
	b.WriteString("envoy admin ")
	b.WriteString(e.Op)
	b.WriteByte(' ')
	b.WriteString(e.URL)
	b.WriteString(": ")
	b.WriteString(oneLine(e.message(), 300))
	return b.String()
}

func (e *Error) message() string {
	cause := e.detail
	if cause == "" && e.Err != nil {
		cause = e.Err.Error()
	}
	switch e.kind {
	case kindUnreachable:
		return cause + " (is the sidecar running? check --envoy-admin, or --sidecar=none for pods without one)"
	case kindTimeout:
		return fmt.Sprintf("no complete answer within %s (Envoy is hung or overloaded, or --envoy-admin points at something that accepts but never answers)", e.timeout)
	case kindCanceled:
		return "request canceled"
	case kindStatus:
		return cause
	case kindNotAdmin:
		return cause + " (check --envoy-admin: it must be Envoy's admin address, default http://127.0.0.1:15000)"
	}
	return cause
}

// Unwrap exposes the cause (e.g. context.DeadlineExceeded, a *net.OpError).
func (e *Error) Unwrap() error { return e.Err }

// Is matches the package sentinels by kind, so errors.Is(err, ErrTooLarge)
// works whatever the cause chain holds.
func (e *Error) Is(target error) bool {
	switch target {
	case ErrNotAdmin:
		return e.kind == kindNotAdmin
	case ErrTooLarge:
		return e.kind == kindTooLarge
	case ErrMalformed:
		return e.kind == kindMalformed
	case ErrStatus:
		return e.kind == kindStatus
	}
	return false
}

// IsUnreachable reports whether err means nothing listens at the admin
// address (connection refused, no route, DNS failure). The caller uses it to
// tell "this pod has no sidecar" from "the sidecar is there but broken": a
// timeout, a 500 or garbage are not "unreachable".
func IsUnreachable(err error) bool {
	if e, ok := errors.AsType[*Error](err); ok {
		return e.kind == kindUnreachable
	}
	return unreachableCause(err) != ""
}

// unreachableCause names why a dial failed, or "" when err is not a
// nothing-listens-there failure.
func unreachableCause(err error) string { return neterr.Unreachable(err) }

// transportError classifies a failure of http.Client.Do or of reading the
// body. ctx is the per-call context (with its deadline); budget is how long
// the call was allowed, for the message.
func transportError(ctx context.Context, op, url string, err error, budget time.Duration) *Error {
	// *url.Error repeats the method and URL the message already starts with.
	if ue, ok := errors.AsType[*neturl.Error](err); ok {
		err = ue.Err
	}
	e := &Error{Op: op, URL: url, Err: err}
	switch {
	case errors.Is(ctx.Err(), context.DeadlineExceeded):
		e.kind, e.timeout, e.Err = kindTimeout, budget, context.DeadlineExceeded
	case errors.Is(ctx.Err(), context.Canceled):
		e.kind, e.Err = kindCanceled, context.Canceled
	case unreachableCause(err) != "":
		e.kind, e.detail = kindUnreachable, unreachableCause(err)
	default:
		if ne, ok := errors.AsType[net.Error](err); ok && ne.Timeout() {
			e.kind, e.timeout = kindTimeout, budget
		}
	}
	return e
}

// oneLine makes s safe for a one-line message, cut at max runes.
func oneLine(s string, max int) string { return oneline.Cut(s, max) }

// parseError carries a parser's own one-line message while matching a
// sentinel with errors.Is, so messages do not repeat the sentinel's text.
type parseError struct {
	sentinel error
	msg      string
}

func (e *parseError) Error() string { return e.msg }
func (e *parseError) Unwrap() error { return e.sentinel }

func malformed(format string, args ...any) error {
	return &parseError{ErrMalformed, fmt.Sprintf(format, args...)}
}

func notAdmin(format string, args ...any) error {
	return &parseError{ErrNotAdmin, "not Envoy's admin API: " + fmt.Sprintf(format, args...)}
}
