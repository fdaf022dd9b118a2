package probe

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/url"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/meshready/meshready/internal/neterr"
	"github.com/meshready/meshready/internal/redact"
)

// AppTarget is a parsed --app-ready / --app-live value.
type AppTarget struct {
	URL         *url.URL
	Kind        string // "http", "https", "tcp" or "grpc"
	GRPCService string // grpc only; "" asks about the server as a whole
}

const appForms = "http(s)://host[:port]/path, tcp://host:port or grpc://host:port[/service]"

// ParseAppTarget accepts the forms the kubelet's httpGet, tcpSocket and grpc
// probes can express. The error names the value and the accepted forms, so
// the CLI can print it as it is.
func ParseAppTarget(raw string) (AppTarget, error) {
	bad := func(why string) (AppTarget, error) {
		// The value is echoed without userinfo or query: they may hold a secret.
		return AppTarget{}, fmt.Errorf("invalid app target %q: %s; accepted: %s", redact.URL(raw), why, appForms)
	}
	if raw == "" {
		return bad("empty")
	}
	u, err := url.Parse(raw)
	if err != nil && !strings.Contains(raw, "://") {
		return bad("no scheme (did you mean http://" + redact.URL(raw) + "?)")
	}
	if err != nil {
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		return bad(err.Error())
	}
	t := AppTarget{URL: u, Kind: u.Scheme}
	if _, ok := appProbers[t.Kind]; !ok {
		if !strings.Contains(raw, "://") {
			// "localhost:8080" parses as scheme "localhost"; "8080" or
			// ":8080" as a path.
			return bad("no scheme (did you mean http://" + redact.URL(strings.TrimPrefix(raw, "//")) + "?)")
		}
		if u.Scheme == "" {
			return bad("no scheme")
		}
		return bad("scheme " + strconv.Quote(u.Scheme) + " not supported")
	}
	if u.Hostname() == "" {
		return bad("no host")
	}
	if p := u.Port(); p != "" {
		if n, err := strconv.Atoi(p); err != nil || n < 1 || n > 65535 {
			return bad("port " + strconv.Quote(p) + " out of range")
		}
	} else if t.Kind == "tcp" || t.Kind == "grpc" {
		return bad(t.Kind + " needs a port")
	}
	if t.Kind == "http" || t.Kind == "https" {
		return t, nil
	}
	if u.User != nil || u.RawQuery != "" || u.ForceQuery || u.Fragment != "" {
		return bad(t.Kind + " takes no user, query or fragment")
	}
	path := strings.TrimPrefix(u.Path, "/")
	switch {
	case t.Kind == "tcp" && path != "":
		return bad("tcp takes no path")
	case strings.Contains(path, "/"):
		return bad("a grpc service name has no '/'")
	}
	t.GRPCService = path
	return t, nil
}

// AppProber probes one target once. Like the kubelet's probers, a target that
// answers "no" (or not at all) is a Fail Result; the error is only for "could
// not probe" (the caller gave up).
type AppProber func(ctx context.Context, t AppTarget, opts AppOptions) (Result, error)

// AppOptions are the knobs a probe has. There is no TLS setting: like the
// kubelet, https is never verified and gRPC is plaintext.
type AppOptions struct {
	UserAgent string // "meshready/<version>"; "meshready" if empty

	// Connection state AppCheck builds once per target so that probing every
	// interval does not rebuild it. A prober called without it builds its own
	// for that one call.
	http *httpProbe
	grpc *grpcConn
}

var appProbers = map[string]AppProber{
	"http":  probeHTTP,
	"https": probeHTTP,
	"tcp":   probeTCP,
	"grpc":  probeGRPC,
}

// appFallbackTimeout bounds a probe whose ctx has no deadline (the kubelet's
// default timeoutSeconds), so that no caller can hang on a silent app.
const appFallbackTimeout = time.Second

// AppCheck returns the CheckFunc for the "app" check. It is safe for
// concurrent use; the deadline comes from ctx.
func AppCheck(t AppTarget, opts AppOptions) CheckFunc {
	probe, ok := appProbers[t.Kind]
	if !ok || t.URL == nil {
		err := fmt.Errorf("app target %q: not from ParseAppTarget", t.Kind)
		return func(context.Context) (Result, error) { return Result{}, err }
	}
	switch t.Kind {
	case "http", "https":
		opts.http = newHTTPProbe(t, userAgent(opts))
	case "grpc":
		opts.grpc = &grpcConn{}
	}
	return func(ctx context.Context) (Result, error) {
		if _, ok := ctx.Deadline(); !ok {
			var cancel context.CancelFunc
			ctx, cancel = context.WithTimeout(ctx, appFallbackTimeout)
			defer cancel()
		}
		return probe(ctx, t, opts)
	}
}

func userAgent(opts AppOptions) string {
	if opts.UserAgent == "" {
		return "meshready"
	}
	return opts.UserAgent
}

// appFailure turns a dial or request error into a Fail naming the target with
// one short reason instead of Go's nested error chain. A ctx cancelled by the
// caller (not its deadline) means nobody wants the answer: that is an error.
func appFailure(ctx context.Context, target *url.URL, err error) (Result, error) {
	if errors.Is(ctx.Err(), context.Canceled) {
		return Result{}, ctx.Err()
	}
	return failf(redact.URL(target.String()) + ": " + netReason(err)), nil
}

func netReason(err error) string {
	var ne net.Error
	switch {
	case errors.Is(err, context.DeadlineExceeded), errors.As(err, &ne) && ne.Timeout():
		return "timed out"
	case errors.Is(err, syscall.ECONNRESET):
		return "connection reset"
	}
	if why := neterr.Unreachable(err); why != "" {
		return why
	}
	// Peel the wrappers that only repeat the operation and address.
	for {
		var ue *url.Error
		var oe *net.OpError
		switch {
		case errors.As(err, &ue):
			err = ue.Err
		case errors.As(err, &oe):
			err = oe.Err
		default:
			return err.Error()
		}
	}
}
