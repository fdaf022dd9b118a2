// Package envoyadmin reads the facts a readiness agent needs from Envoy's
// admin API (server state, xDS subscription counters, config versions,
// inbound activity) and sends the few mutations a graceful shutdown needs.
//
// It runs in every application container beside an Istio sidecar, polled once
// a second, so it is built to be cheap and to fail loudly but boundedly: every
// call has a deadline, every body is capped, parsers keep only the fields they
// need, and every failure is one *Error line that says what went wrong and
// what to check. It knows Envoy and nothing else: no Pilot, no verdicts.
//
// Supported Envoy outputs range from 1.8 (plain-text /server_info, v2alpha
// config dumps) to current releases; the tests run against real captures in
// testdata/fixtures/envoy.
package envoyadmin

import (
	"github.com/meshready/meshready/internal/redact"

	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"mime"
	"net"
	"net/http"
	"net/url"
	"strings"
	"time"
)

// Defaults. The timeout sits below kubelet's 1 s probe budget only when the
// caller passes a shorter context; on its own it bounds a hung Envoy.
const (
	DefaultTimeout = 2 * time.Second
	DefaultMaxBody = 4 << 20
)

// Client talks to one Envoy admin endpoint. It is safe for concurrent use.
type Client struct {
	base    *url.URL
	hc      *http.Client
	timeout time.Duration
	maxBody int64
	exclude []int
}

// Option configures a Client.
type Option func(*options)

type options struct {
	hc      *http.Client
	timeout time.Duration
	maxBody int64
	exclude []int
}

// WithHTTPClient replaces the default client. The per-call deadline and body
// cap still apply; timeouts and proxy settings on hc are the caller's.
func WithHTTPClient(hc *http.Client) Option { return func(o *options) { o.hc = hc } }

// WithTimeout bounds each call when the caller's context has no sooner
// deadline (default 2s).
func WithTimeout(d time.Duration) Option { return func(o *options) { o.timeout = d } }

// WithMaxBody caps how many bytes of a response are read (default 4 MiB). A
// larger body is an error, never an allocation: a full config dump of a big
// mesh can run to tens of MiB, so ask for less (ConfigDumpQuery) or raise it.
func WithMaxBody(n int64) Option { return func(o *options) { o.maxBody = n } }

// WithExcludePorts names ports whose inbound traffic never counts as
// application activity (the agent's own probe port, for instance).
func WithExcludePorts(ports ...int) Option {
	return func(o *options) { o.exclude = append(o.exclude, ports...) }
}

// New returns a Client for baseURL, e.g. "http://127.0.0.1:15000".
func New(baseURL string, opts ...Option) (*Client, error) {
	u, err := url.Parse(baseURL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Hostname() == "" ||
		u.RawQuery != "" || u.Fragment != "" || u.User != nil {
		why := ""
		if err == nil && (u.User != nil || u.RawQuery != "") {
			why = " (no user, password or query: the admin API takes none)"
		}
		// Echoed without userinfo or query: they may hold a secret.
		return nil, fmt.Errorf("invalid Envoy admin URL %q%s: want http://HOST:PORT or https://HOST:PORT, e.g. http://127.0.0.1:15000", redact.URL(baseURL), why)
	}
	u.Path = strings.TrimRight(u.Path, "/")
	u.RawPath = ""
	o := options{timeout: DefaultTimeout, maxBody: DefaultMaxBody}
	for _, opt := range opts {
		opt(&o)
	}
	if o.timeout <= 0 {
		return nil, fmt.Errorf("invalid Envoy admin timeout %s: want a positive duration, e.g. 2s", o.timeout)
	}
	if o.maxBody <= 0 {
		return nil, fmt.Errorf("invalid Envoy admin body cap %d: want a positive number of bytes", o.maxBody)
	}
	for _, p := range o.exclude {
		if p <= 0 || p > 65535 {
			return nil, fmt.Errorf("invalid excluded port %d: want 1-65535", p)
		}
	}
	if o.hc == nil {
		o.hc = defaultHTTPClient(o.timeout)
	}
	return &Client{base: u, hc: o.hc, timeout: o.timeout, maxBody: o.maxBody, exclude: o.exclude}, nil
}

// BaseURL is the admin address the client was built with, without a trailing
// slash.
func (c *Client) BaseURL() string { return c.base.String() }

// defaultHTTPClient never uses a proxy (the admin API is local; an
// HTTP_PROXY in the app's environment must not capture it), does not follow
// redirects (Envoy's admin never redirects, so one means something else
// answered) and keeps one or two idle connections for the per-second poll.
func defaultHTTPClient(timeout time.Duration) *http.Client {
	return &http.Client{
		Transport: &http.Transport{
			Proxy:                  nil,
			DialContext:            (&net.Dialer{Timeout: 2 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
			TLSHandshakeTimeout:    2 * time.Second,
			ResponseHeaderTimeout:  timeout,
			MaxIdleConns:           2,
			MaxIdleConnsPerHost:    2,
			IdleConnTimeout:        30 * time.Second,
			MaxResponseHeaderBytes: 64 << 10,
			DisableCompression:     true,
		},
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
}

// call is one admin request. read consumes the (capped) body of a 2xx answer
// that is not HTML; it may be nil when the body does not matter.
func (c *Client) call(ctx context.Context, method, path, rawQuery string, read func(r io.Reader) error) error {
	// budget is only for the message: "no complete answer within 800ms" names
	// the limit that actually applied, the caller's when it was sooner.
	budget := c.timeout
	if dl, ok := ctx.Deadline(); ok && time.Until(dl) < budget {
		budget = max(time.Until(dl), 0).Round(10 * time.Millisecond)
	}
	ctx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()

	u := *c.base
	u.Path += path
	shown := u.String()
	req, err := http.NewRequestWithContext(ctx, method, shown, nil)
	if err != nil {
		return &Error{Op: method, URL: shown, Err: err}
	}
	req.URL.RawQuery = rawQuery // kept verbatim: see rawQueryValue
	resp, err := c.hc.Do(req)
	if err != nil {
		return transportError(ctx, method, shown, err, budget)
	}
	defer resp.Body.Close()

	body := &capReader{r: io.LimitReader(resp.Body, c.maxBody+1), max: c.maxBody}
	br := bufio.NewReaderSize(body, 4096)
	fail := func(err error) error {
		if body.over() || errors.Is(err, errTooLarge) {
			return &Error{Op: method, URL: shown, Err: ErrTooLarge, kind: kindTooLarge,
				detail: fmt.Sprintf("response larger than %d bytes (ask for less, or raise the cap)", c.maxBody)}
		}
		if ctx.Err() != nil {
			return transportError(ctx, method, shown, err, budget)
		}
		if errors.Is(err, ErrMalformed) {
			return &Error{Op: method, URL: shown, Err: err, kind: kindMalformed}
		}
		if errors.Is(err, ErrNotAdmin) {
			return &Error{Op: method, URL: shown, Err: err, kind: kindNotAdmin}
		}
		return transportError(ctx, method, shown, err, budget)
	}

	if isHTML(resp.Header.Get("Content-Type"), br) {
		e := &Error{Op: method, URL: shown, Err: ErrNotAdmin, kind: kindNotAdmin, detail: "not Envoy's admin API: got an HTML page"}
		if resp.StatusCode/100 != 2 {
			e.StatusCode = resp.StatusCode
			e.detail = fmt.Sprintf("not Envoy's admin API: got an HTML page with HTTP %d", resp.StatusCode)
		}
		return e
	}
	if resp.StatusCode/100 != 2 {
		snip := make([]byte, 100)
		n, _ := io.ReadFull(br, snip)
		detail := "HTTP " + resp.Status
		if s := oneLine(string(snip[:n]), 100); s != "" {
			detail += fmt.Sprintf(": %q", s)
		}
		if resp.StatusCode == http.StatusNotFound {
			detail += " (this Envoy may be too old for this endpoint)"
		}
		return &Error{Op: method, URL: shown, StatusCode: resp.StatusCode, Err: ErrStatus, kind: kindStatus, detail: detail}
	}
	if read != nil {
		if err := read(br); err != nil {
			return fail(err)
		}
	}
	// Drain what the parser left (a trailing newline, usually) so the
	// connection can be reused; still bounded by the cap.
	if _, err := io.Copy(io.Discard, br); err != nil {
		return fail(err)
	}
	return nil
}

// isHTML spots a web page where Envoy's text or JSON was expected: a wrong
// port often lands on some app's UI, and Envoy's own admin home page is HTML.
func isHTML(contentType string, br *bufio.Reader) bool {
	if mt, _, err := mime.ParseMediaType(contentType); err == nil && mt == "text/html" {
		return true
	}
	peek, _ := br.Peek(64)
	s := strings.TrimLeft(string(peek), " \t\r\n")
	return strings.HasPrefix(s, "<")
}

var errTooLarge = errors.New("body over the cap")

// capReader counts what it reads from an io.LimitReader(cap+1) and turns the
// cap+1st byte into errTooLarge, so a parser stops at the cap instead of
// buffering a runaway body, and the caller can tell "too large" from "cut
// short".
type capReader struct {
	r   io.Reader
	n   int64
	max int64
}

func (c *capReader) Read(p []byte) (int, error) {
	if c.n > c.max {
		return 0, errTooLarge
	}
	n, err := c.r.Read(p)
	c.n += int64(n)
	if c.n > c.max {
		return n, errTooLarge
	}
	return n, err
}

func (c *capReader) over() bool { return c.n > c.max }

// rawQueryValue escapes only what would break the query string. Regex
// metacharacters such as ^ $ | ( ) \ are sent as they are, as Istio's agent
// does: older Envoys did not percent-decode admin query parameters, so
// a fully escaped filter would reach its regex engine still escaped.
func rawQueryValue(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		ch := s[i]
		switch {
		case ch == '%' || ch == '&' || ch == '#' || ch == '+' || ch == ' ' || ch == '"' || ch == '<' || ch == '>' || ch == '`' || ch == '{' || ch == '}' || ch < 0x21 || ch >= 0x7f:
			fmt.Fprintf(&b, "%%%02X", ch)
		default:
			b.WriteByte(ch)
		}
	}
	return b.String()
}

// query builds a raw query from flag and key=value parts, skipping empty ones.
func query(parts ...string) string {
	var nonEmpty []string
	for _, p := range parts {
		if p != "" {
			nonEmpty = append(nonEmpty, p)
		}
	}
	return strings.Join(nonEmpty, "&")
}
