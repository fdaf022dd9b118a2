package pilotclient

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strings"
	"time"

	"github.com/meshready/meshready/internal/neterr"

	"github.com/meshready/meshready/internal/oneline"
)

// Sentinels for errors.Is. Every error a Client returns is an *Error; these
// let the caller branch without parsing text. ErrForbidden,
// ErrUnauthenticated and ErrUnsupported mean "this source cannot answer for
// this pod: try the next one".
var (
	// ErrForbidden: Pilot answered 403 (HTTP) or PermissionDenied (xDS).
	ErrForbidden = errors.New("Pilot refuses debug access from pods (ENABLE_DEBUG_ENDPOINT_AUTH)")
	// ErrUnauthenticated: Pilot answered 401 (HTTP) or Unauthenticated
	// (xDS), or there is no usable token to authenticate with (ErrToken).
	ErrUnauthenticated = errors.New("Pilot requires an authenticated caller for debug data")
	// ErrToken: the bearer token file is missing, unreadable or empty. It
	// also matches ErrUnauthenticated.
	ErrToken = errors.New("no usable Pilot token")
	// ErrProxyNotFound: Pilot answered, but has no entry for this proxy: it
	// has sent it nothing (NOT SENT), the proxy is connected to another
	// Pilot replica, or the proxy id is wrong.
	ErrProxyNotFound = errors.New("Pilot has no entry for this proxy")
	// ErrBackoff: the call was not sent, because the client is spacing its
	// requests after an error or a not-synced answer. The error also
	// matches the last failure's sentinels (errors.Is walks into it).
	ErrBackoff = errors.New("backing off")
	// ErrUnsupported: the source cannot be asked at this address (e.g.
	// /debug/syncz over a grpc:// address).
	ErrUnsupported = errors.New("source not available at this Pilot address")
	// ErrUnreachable: nothing answers at the address (connection refused,
	// no route, DNS failure).
	ErrUnreachable = errors.New("Pilot unreachable")
	// ErrTimeout: Pilot did not answer within the call's deadline.
	ErrTimeout = errors.New("Pilot did not answer in time")
	// ErrStatus: Pilot answered with an unexpected HTTP status or gRPC code.
	ErrStatus = errors.New("unexpected answer status from Pilot")
	// ErrMalformed: the answer is not in the format asked for.
	ErrMalformed = errors.New("malformed answer from Pilot")
	// ErrTooLarge: the answer exceeded the body cap (WithMaxBody).
	ErrTooLarge = errors.New("answer from Pilot too large")
)

type errKind uint8

const (
	kindOther errKind = iota
	kindForbidden
	kindUnauthenticated
	kindToken
	kindNotFound
	kindBackoff
	kindUnsupported
	kindUnreachable
	kindTimeout
	kindCanceled
	kindStatus
	kindMalformed
	kindTooLarge
)

var kindSentinel = map[errKind]error{
	kindForbidden:       ErrForbidden,
	kindUnauthenticated: ErrUnauthenticated,
	kindToken:           ErrToken,
	kindNotFound:        ErrProxyNotFound,
	kindBackoff:         ErrBackoff,
	kindUnsupported:     ErrUnsupported,
	kindUnreachable:     ErrUnreachable,
	kindTimeout:         ErrTimeout,
	kindStatus:          ErrStatus,
	kindMalformed:       ErrMalformed,
	kindTooLarge:        ErrTooLarge,
}

// Error is what every Client call returns on failure. Error() is one line
// naming the source, the address, what failed and what to do: it ends up in
// a readiness body, a log line or a CLI's stderr.
type Error struct {
	Source     string // SourceSyncz, SourceXDS or SourceConfigDump
	Target     string // the URL or gRPC address asked (no query, never the token)
	StatusCode int    // HTTP status, when Pilot answered over HTTP
	GRPCCode   string // gRPC code name, when Pilot answered over xDS
	Err        error  // the cause; for ErrBackoff, the last failure (*Error)

	kind       errKind
	detail     string        // rendered instead of Err's text when set
	budget     time.Duration // the deadline that ran out (kindTimeout)
	retryIn    time.Duration // kindBackoff: time until the next request is allowed
	retryAfter time.Duration // a Retry-After header Pilot (or a proxy) sent
}

func (e *Error) Error() string {
	var b strings.Builder
	b.WriteString("pilot ")
	b.WriteString(e.Source)
	if e.Target != "" {
		b.WriteByte(' ')
		b.WriteString(e.Target)
	}
	b.WriteString(": ")
	b.WriteString(oneLine(e.message(), 400))
	return b.String()
}

func (e *Error) message() string {
	cause := e.detail
	if cause == "" && e.Err != nil {
		cause = e.Err.Error()
	}
	switch e.kind {
	case kindBackoff:
		prefix := fmt.Sprintf("backing off for %s after: ", roundDur(e.retryIn))
		if last, ok := errors.AsType[*Error](e.Err); ok {
			return prefix + last.message()
		}
		return prefix + cause
	case kindUnreachable:
		return cause + " (is Pilot running and is --pilot right? Pilot serves debug HTTP on 15014, xDS on 15010 plaintext and 15012 TLS)"
	case kindTimeout:
		return fmt.Sprintf("no answer within %s (Pilot is overloaded, or the address accepts but never answers)", roundDur(e.budget))
	case kindCanceled:
		return "request canceled"
	}
	return cause
}

// Unwrap exposes the cause: context.DeadlineExceeded, a *net.OpError, or
// for ErrBackoff the last failure.
func (e *Error) Unwrap() error { return e.Err }

// Is matches the package sentinels by kind.
func (e *Error) Is(target error) bool {
	if target == ErrUnauthenticated && e.kind == kindToken {
		return true
	}
	s, ok := kindSentinel[e.kind]
	return ok && s == target
}

// RetryIn is, for an ErrBackoff error, how long until the client will ask
// Pilot again; 0 otherwise.
func (e *Error) RetryIn() time.Duration {
	if e.kind == kindBackoff {
		return e.retryIn
	}
	return 0
}

func roundDur(d time.Duration) time.Duration {
	switch {
	case d >= 10*time.Second:
		return d.Round(time.Second)
	case d >= time.Second:
		return d.Round(100 * time.Millisecond)
	default:
		return d.Round(time.Millisecond)
	}
}

// unreachableCause names why a dial failed, or "" when err is not a
// nothing-listens-there failure.
func unreachableCause(err error) string { return neterr.Unreachable(err) }

// transportError classifies a failed request. ctx is the per-call context
// (with its deadline); budget is how long the call was allowed.
func transportError(ctx context.Context, e *Error, err error, budget time.Duration) *Error {
	e.Err = err
	switch {
	case errors.Is(ctx.Err(), context.DeadlineExceeded):
		e.kind, e.budget, e.Err = kindTimeout, budget, context.DeadlineExceeded
	case errors.Is(ctx.Err(), context.Canceled):
		e.kind, e.Err = kindCanceled, context.Canceled
	case unreachableCause(err) != "":
		e.kind, e.detail = kindUnreachable, unreachableCause(err)
	default:
		if ne, ok := errors.AsType[net.Error](err); ok && ne.Timeout() {
			e.kind, e.budget = kindTimeout, budget
		}
	}
	return e
}

// requestCode is the code reported to the OnRequest hook for a request that
// got no HTTP answer.
func requestCode(ctx context.Context, err error) string {
	switch {
	case errors.Is(ctx.Err(), context.DeadlineExceeded):
		return "timeout"
	case errors.Is(ctx.Err(), context.Canceled):
		return "canceled"
	case unreachableCause(err) != "":
		return "unreachable"
	}
	if ne, ok := errors.AsType[net.Error](err); ok && ne.Timeout() {
		return "timeout"
	}
	return "error"
}

func statusText(code int) string {
	if t := http.StatusText(code); t != "" {
		return fmt.Sprintf("HTTP %d %s", code, t)
	}
	return fmt.Sprintf("HTTP %d", code)
}

// oneLine makes s safe for a one-line message, cut at max runes.
func oneLine(s string, max int) string { return oneline.Cut(s, max) }

// parseError carries a parser's one-line message while matching a sentinel.
type parseError struct {
	sentinel error
	msg      string
}

func (e *parseError) Error() string { return e.msg }
func (e *parseError) Unwrap() error { return e.sentinel }

func malformed(format string, args ...any) error {
	return &parseError{ErrMalformed, fmt.Sprintf(format, args...)}
}
