// Package pilotclient asks Pilot (istiod) what it has pushed to one proxy
// and what that proxy has acked, over the three debug surfaces Pilot has:
//
//   - HTTP GET /debug/syncz (Client.Syncz): nonces sent and acked per type,
//     Istio 1.0's flat format and the current one with resources{};
//   - an ADS stream asking for istio.io/debug/syncz (Client.XDSSyncz):
//     per type SYNCED / STALE / NOT_SENT / ERROR, over grpc:// or grpcs://
//     with a bearer token;
//   - HTTP GET /debug/config_dump?proxyID= (Client.ConfigDump): Pilot's
//     version per type. Costly for Pilot, which regenerates the proxy's
//     config for each call: meant for startup only.
//
// It knows Pilot and nothing of Envoy. It runs in every application pod of a
// mesh, so it is built never to become a load on Pilot: one request in
// flight per Client, a deadline on every call, a capped body that is
// stream-parsed, and a jittered exponential backoff (250 ms → 5 s) after an
// error or a not-synced answer, during which calls return at once without
// reaching Pilot.
//
// The xDS source speaks ADS with a small hand-written protobuf codec over
// grpc (see xds.go) instead of linking go-control-plane, whose status API
// would add ~9 MiB to a binary that ships in every image.
package pilotclient

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"mime"
	"net"
	"net/http"
	"net/url"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/hashicorp/go-retryablehttp"

	"github.com/meshready/meshready/internal/redact"
)

// Defaults.
const (
	// DefaultTimeout bounds each call when the caller's context has no
	// sooner deadline.
	DefaultTimeout = 2 * time.Second
	// DefaultMaxBody caps how many bytes of an answer are read. Answers are
	// stream-parsed, so the cap bounds transfer and time, not memory; it is
	// set above the ~30 MB a /debug/syncz of a large mesh reaches.
	DefaultMaxBody = 64 << 20
	// DefaultTokenFile is where Istio mounts the istio-ca audience token
	// (the istio-token projected volume).
	DefaultTokenFile = "/var/run/secrets/tokens/istio-token"
	// DefaultCAFile is Istio's root certificate as mounted from the
	// istio-ca-root-cert ConfigMap. Used for https:// and grpcs:// when it
	// exists and WithCAFile is not given.
	DefaultCAFile = "/var/run/secrets/istio/root-cert.pem"
	// DefaultBackoffMin and DefaultBackoffMax bound the spacing of requests
	// after errors and not-synced answers.
	DefaultBackoffMin = 250 * time.Millisecond
	DefaultBackoffMax = 5 * time.Second
)

// Default ports when the address has none.
var defaultPorts = map[string]string{"http": "15014", "https": "443", "grpc": "15010", "grpcs": "15012"}

const acceptedForms = "want http://HOST:15014 or https://HOST:PORT (Pilot's debug HTTP), or grpc://HOST:15010 or grpcs://HOST:15012 (xDS)"

// Client asks one Pilot address. It is safe for concurrent use; concurrent
// calls still make at most one request at a time.
type Client struct {
	scheme    string   // http, https, grpc, grpcs
	base      *url.URL // http(s): base URL, no trailing slash
	hostport  string   // grpc(s): host:port
	display   string
	timeout   time.Duration
	maxBody   int64
	tokenFile string
	tlsConf   *tls.Config
	userAgent string
	onRequest func(source, code string)
	hc        *retryablehttp.Client
	// gates space requests per source: a 403 on syncz must not hold back
	// config_dump, the one debug path istiod still allows a pod. They share
	// one slot, so the client still makes one request at a time.
	gates map[string]*gate
}

// Option configures a Client.
type Option func(*options)

type options struct {
	timeout    time.Duration
	maxBody    int64
	tokenFile  string
	caFile     string
	caSet      bool
	serverName string
	insecure   bool
	onRequest  func(source, code string)
	backoffMin time.Duration
	backoffMax time.Duration
	retries    int
	userAgent  string
}

// WithTimeout bounds each call when the caller's context has no sooner
// deadline (default 2s).
func WithTimeout(d time.Duration) Option { return func(o *options) { o.timeout = d } }

// WithMaxBody caps the bytes read of one answer (default 64 MiB). A larger
// answer is an ErrTooLarge error.
func WithMaxBody(n int64) Option { return func(o *options) { o.maxBody = n } }

// WithToken sets the bearer token file (default DefaultTokenFile, "" for
// none). It is read at every call (tokens rotate) and sent only over TLS:
// required for grpcs://, sent when readable for https://, never sent over
// http:// or grpc://, where it would travel in clear.
func WithToken(path string) Option { return func(o *options) { o.tokenFile = path } }

// WithCAFile verifies Pilot's TLS certificate against the PEM roots in path
// (Istio's root-cert.pem). Without it, DefaultCAFile is used when it exists,
// else the system roots.
func WithCAFile(path string) Option { return func(o *options) { o.caFile, o.caSet = path, true } }

// WithServerName sets the name Pilot's certificate is checked against
// (default: the address's host; istiod's certificate names
// istiod.istio-system.svc).
func WithServerName(name string) Option { return func(o *options) { o.serverName = name } }

// WithInsecureSkipVerify does not verify Pilot's certificate, as istioctl
// does. The token is then sent to whoever answers: use it only where the
// network path to Pilot is trusted.
func WithInsecureSkipVerify() Option { return func(o *options) { o.insecure = true } }

// WithOnRequest calls fn after every request that reached for Pilot, with
// the source (SourceSyncz, SourceXDS, SourceConfigDump) and a code: the
// HTTP status ("200", "403"), the gRPC code name ("OK",
// "Unauthenticated"), or "timeout", "unreachable", "canceled", "error"
// when there was no answer. Calls answered by the backoff are not
// requests and are not reported. fn must be quick and safe for concurrent
// use.
func WithOnRequest(fn func(source, code string)) Option {
	return func(o *options) { o.onRequest = fn }
}

// WithBackoff sets the spacing after errors and not-synced answers (default
// 250ms growing to 5s).
func WithBackoff(min, max time.Duration) Option {
	return func(o *options) { o.backoffMin, o.backoffMax = min, max }
}

// WithRetries lets one HTTP call retry up to n times within its deadline, on
// connection errors, 429 and 5xx, with the same jittered backoff (default
// 0: a periodic caller gets its retries from calling again, spaced by the
// backoff; a one-shot command may want a few).
func WithRetries(n int) Option { return func(o *options) { o.retries = n } }

// WithUserAgent sets the User-Agent of HTTP requests and of the gRPC stream
// (default "meshready").
func WithUserAgent(ua string) Option { return func(o *options) { o.userAgent = ua } }

// New returns a Client for pilot: http://HOST:15014 or https://HOST:PORT
// for the HTTP sources (Syncz, ConfigDump), grpc://HOST:15010 or
// grpcs://HOST:15012 for XDSSyncz. A missing port takes the default in
// those examples. A bad address is an error naming the value and the
// accepted forms.
func New(pilot string, opts ...Option) (*Client, error) {
	u, err := url.Parse(pilot)
	bad := func(why string) error {
		// Echoed without userinfo or query: they may hold a secret.
		return fmt.Errorf("invalid Pilot address %q: %s; %s", clip(redact.URL(pilot)), why, acceptedForms)
	}
	switch {
	case pilot == "":
		return nil, bad("empty")
	case err != nil:
		return nil, bad("not a URL")
	case defaultPorts[u.Scheme] == "":
		return nil, bad("unknown scheme")
	case u.Hostname() == "":
		return nil, bad("no host")
	case u.User != nil:
		return nil, bad("credentials in the URL are not accepted (use --pilot-token)")
	case u.RawQuery != "" || u.Fragment != "" || u.ForceQuery:
		return nil, bad("no query or fragment allowed")
	case (u.Scheme == "grpc" || u.Scheme == "grpcs") && strings.Trim(u.Path, "/") != "":
		return nil, bad("a grpc address has no path")
	}
	if p := u.Port(); p != "" {
		if n, err := strconv.Atoi(p); err != nil || n < 1 || n > 65535 {
			return nil, bad("bad port")
		}
	} else {
		u.Host = net.JoinHostPort(u.Hostname(), defaultPorts[u.Scheme])
	}
	o := options{
		timeout: DefaultTimeout, maxBody: DefaultMaxBody, tokenFile: DefaultTokenFile,
		backoffMin: DefaultBackoffMin, backoffMax: DefaultBackoffMax, userAgent: "meshready",
	}
	for _, opt := range opts {
		opt(&o)
	}
	switch {
	case o.timeout <= 0:
		return nil, fmt.Errorf("invalid Pilot timeout %s: want a positive duration, e.g. 2s", o.timeout)
	case o.maxBody <= 0:
		return nil, fmt.Errorf("invalid Pilot body cap %d: want a positive number of bytes", o.maxBody)
	case o.backoffMin <= 0 || o.backoffMax < o.backoffMin:
		return nil, fmt.Errorf("invalid Pilot backoff %s → %s: want 0 < min ≤ max, e.g. 250ms → 5s", o.backoffMin, o.backoffMax)
	case o.retries < 0:
		return nil, fmt.Errorf("invalid Pilot retries %d: want 0 or more", o.retries)
	}
	u.Path = strings.TrimRight(u.Path, "/")
	u.RawPath = ""
	c := &Client{
		scheme: u.Scheme, timeout: o.timeout, maxBody: o.maxBody, tokenFile: o.tokenFile,
		userAgent: o.userAgent, onRequest: o.onRequest, gates: newGates(o.backoffMin, o.backoffMax, SourceSyncz, SourceConfigDump, SourceXDS),
		display: u.String(),
	}
	if u.Scheme == "https" || u.Scheme == "grpcs" {
		if c.tlsConf, err = tlsConfig(u.Hostname(), o); err != nil {
			return nil, err
		}
	}
	if u.Scheme == "grpc" || u.Scheme == "grpcs" {
		c.hostport = u.Host
		return c, nil
	}
	c.base = u
	var rt http.RoundTripper = &http.Transport{
		Proxy:                  nil, // Pilot is in-cluster: an HTTP_PROXY in the app's env must not capture it
		DialContext:            (&net.Dialer{Timeout: o.timeout, KeepAlive: 30 * time.Second}).DialContext,
		TLSClientConfig:        c.tlsConf,
		TLSHandshakeTimeout:    o.timeout,
		ResponseHeaderTimeout:  o.timeout,
		MaxIdleConns:           1,
		MaxIdleConnsPerHost:    1,
		IdleConnTimeout:        30 * time.Second,
		MaxResponseHeaderBytes: 64 << 10,
		ForceAttemptHTTP2:      true,
	}
	c.hc = &retryablehttp.Client{
		HTTPClient: &http.Client{
			Transport:     &countingTransport{next: rt, hook: c.onRequest},
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		},
		RetryWaitMin: o.backoffMin,
		RetryWaitMax: o.backoffMax,
		RetryMax:     o.retries,
		CheckRetry:   retryablehttp.DefaultRetryPolicy,
		Backoff:      jitterBackoff,
		ErrorHandler: retryablehttp.PassthroughErrorHandler,
	}
	return c, nil
}

func tlsConfig(host string, o options) (*tls.Config, error) {
	conf := &tls.Config{MinVersion: tls.VersionTLS12, ServerName: host, InsecureSkipVerify: o.insecure} //nolint:gosec // opt-in
	if o.serverName != "" {
		conf.ServerName = o.serverName
	}
	caFile := o.caFile
	if !o.caSet {
		if _, err := os.Stat(DefaultCAFile); err != nil {
			return conf, nil // system roots
		}
		caFile = DefaultCAFile
	}
	pem, err := os.ReadFile(caFile)
	if err != nil {
		return nil, fmt.Errorf("cannot read Pilot CA file %s: %v (mount Istio's root cert, ConfigMap istio-ca-root-cert)", caFile, errors.Unwrap(err))
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("Pilot CA file %s holds no PEM certificate", caFile)
	}
	conf.RootCAs = pool
	return conf, nil
}

// Address is the Pilot address the client asks, with its port.
func (c *Client) Address() string { return c.display }

// Close drops idle connections. The client stays usable.
func (c *Client) Close() {
	if c.hc != nil {
		c.hc.HTTPClient.CloseIdleConnections()
	}
}

func (c *Client) isHTTP() bool { return c.scheme == "http" || c.scheme == "https" }

// Syncz asks Pilot's GET /debug/syncz for the proxy (pod.namespace, or a
// full node id) and returns its entry. The request carries
// ?namespace=<the proxy's namespace>, which current Istio uses to cut the
// answer down and older Istio ignores; the answer is stream-parsed and
// reading stops at the proxy's entry.
//
// No entry is an ErrProxyNotFound error (NOT SENT). 401 and 403 are
// ErrUnauthenticated and ErrForbidden: with ENABLE_DEBUG_ENDPOINT_AUTH
// (the default) Pilot answers /debug/syncz only to callers on its own host
// or in its own namespace, so from an application pod the answer is to
// use another source. A not-synced answer spaces the next request: until
// then Syncz returns that answer again with Cached set.
func (c *Client) Syncz(ctx context.Context, proxyID string) (ProxyStatus, error) {
	id, err := ProxyIDFromNodeID(proxyID)
	if err != nil {
		return ProxyStatus{}, &Error{Source: SourceSyncz, Target: c.target("/debug/syncz"), Err: err}
	}
	if !c.isHTTP() {
		return ProxyStatus{}, c.unsupported(SourceSyncz, "/debug/syncz is served over HTTP: give an http(s):// Pilot address (port 15014)")
	}
	v, err := c.gates[SourceSyncz].do(ctx, call{
		key: SourceSyncz + "|" + id, source: SourceSyncz, target: c.target("/debug/syncz"),
		run: func(ctx context.Context) (any, error) {
			var st ProxyStatus
			var found bool
			err := c.get(ctx, SourceSyncz, "/debug/syncz", "namespace="+url.QueryEscape(namespaceOf(id)), func(r io.Reader) error {
				var err error
				st, found, err = ParseSyncz(r, id)
				return err
			})
			if err != nil {
				return nil, err
			}
			if !found {
				c.Close() // a keep-alive connection sticks to one replica; the next call may meet another
				return nil, c.notFound(SourceSyncz, c.target("/debug/syncz"), id, "")
			}
			st.FetchedAt = time.Now()
			return st, nil
		},
		synced: func(v any) bool { return v.(ProxyStatus).Synced() },
		cached: markCached,
	})
	if err != nil {
		return ProxyStatus{}, err
	}
	return cloneStatus(v.(ProxyStatus)), nil
}

// ConfigVersions is Pilot's version per config kind for one proxy.
type ConfigVersions struct {
	ProxyID   string
	Versions  map[string]string // KindClusters, KindListeners, … → version_info
	FetchedAt time.Time
	Cached    bool // answered from the last result (see ConfigDump)
}

// ConfigDump asks Pilot's GET /debug/config_dump?proxyID= for the version
// of each kind it would push to the proxy now. Pilot regenerates the
// proxy's whole config for this, so it is for startup only, and every
// answer spaces the next request like a not-synced one: a call within the
// backoff returns the last answer with Cached set. Pilot's own 404 (the
// proxy is not connected to this Pilot replica) is ErrProxyNotFound; any
// other 404 (debug endpoints off, ENABLE_DEBUG_ON_HTTP=false) is
// ErrUnsupported, as on /debug/syncz.
func (c *Client) ConfigDump(ctx context.Context, proxyID string) (ConfigVersions, error) {
	id, err := ProxyIDFromNodeID(proxyID)
	if err != nil {
		return ConfigVersions{}, &Error{Source: SourceConfigDump, Target: c.target("/debug/config_dump"), Err: err}
	}
	if !c.isHTTP() {
		return ConfigVersions{}, c.unsupported(SourceConfigDump, "/debug/config_dump is served over HTTP: give an http(s):// Pilot address (port 15014)")
	}
	v, err := c.gates[SourceConfigDump].do(ctx, call{
		key: SourceConfigDump + "|" + id, source: SourceConfigDump, target: c.target("/debug/config_dump"),
		run: func(ctx context.Context) (any, error) {
			var vers map[string]string
			err := c.get(ctx, SourceConfigDump, "/debug/config_dump", "proxyID="+url.QueryEscape(id), func(r io.Reader) error {
				var err error
				vers, err = ParseConfigDumpVersions(r)
				return err
			})
			if err != nil {
				if e, ok := errors.AsType[*Error](err); ok && e.StatusCode == http.StatusNotFound && e.kind == kindStatus {
					c.Close()
					return nil, c.notFound(SourceConfigDump, e.Target, id, e.detail)
				}
				return nil, err
			}
			return ConfigVersions{ProxyID: id, Versions: vers, FetchedAt: time.Now()}, nil
		},
		cached: func(v any) any {
			cv := v.(ConfigVersions)
			cv.Cached = true
			return cv
		},
	})
	if err != nil {
		return ConfigVersions{}, err
	}
	cv := v.(ConfigVersions)
	m := make(map[string]string, len(cv.Versions))
	for k, s := range cv.Versions {
		m[k] = s
	}
	cv.Versions = m
	return cv, nil
}

func markCached(v any) any {
	st := v.(ProxyStatus)
	st.Cached = true
	return st
}

func cloneStatus(st ProxyStatus) ProxyStatus {
	st.Types = slices.Clone(st.Types)
	return st
}

func (c *Client) target(path string) string {
	if c.base != nil {
		return c.base.String() + path
	}
	return c.display
}

func (c *Client) unsupported(source, why string) *Error {
	return &Error{Source: source, Target: c.display, kind: kindUnsupported, Err: ErrUnsupported, detail: why}
}

func (c *Client) notFound(source, target, proxyID, pilotSaid string) *Error {
	d := fmt.Sprintf("Pilot has no entry for proxy %q (NOT SENT): the sidecar is not connected to this Pilot replica yet, or is connected to another one; check --proxy-id", proxyID)
	if pilotSaid != "" {
		d += "; Pilot said " + pilotSaid
	}
	return &Error{Source: source, Target: target, kind: kindNotFound, Err: ErrProxyNotFound, detail: d}
}

type sourceKey struct{}

// get sends one GET (through retryablehttp, which may retry within the
// deadline when WithRetries is set) and hands the capped body of a 200 to
// read.
func (c *Client) get(ctx context.Context, source, path, query string, read func(io.Reader) error) error {
	budget := c.timeout
	if dl, ok := ctx.Deadline(); ok && time.Until(dl) < budget {
		budget = max(time.Until(dl), 0)
	}
	ctx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	ctx = context.WithValue(ctx, sourceKey{}, source)

	target := c.target(path)
	e := &Error{Source: source, Target: target}
	req, err := retryablehttp.NewRequestWithContext(ctx, http.MethodGet, target+"?"+query, nil)
	if err != nil {
		e.Err = err
		return e
	}
	req.Header.Set("Accept", "application/json")
	req.Header.Set("User-Agent", c.userAgent)
	if c.scheme == "https" && c.tokenFile != "" {
		if tok, err := readToken(c.tokenFile); err == nil {
			req.Header.Set("Authorization", "Bearer "+tok)
		}
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		if resp != nil { // retryablehttp hands back both when the deadline ends between tries
			resp.Body.Close()
		}
		return transportError(ctx, e, err, budget)
	}
	defer resp.Body.Close()
	e.StatusCode = resp.StatusCode
	e.retryAfter = retryAfterOf(resp)

	body := &capReader{r: resp.Body, max: c.maxBody}
	switch {
	case resp.StatusCode == http.StatusUnauthorized:
		e.kind, e.Err = kindUnauthenticated, ErrUnauthenticated
		e.detail = statusText(resp.StatusCode) + ": " + ErrForbidden.Error() + ": it answers only authenticated callers" + c.authHint()
		return e
	case resp.StatusCode == http.StatusForbidden:
		e.kind, e.Err = kindForbidden, ErrForbidden
		e.detail = statusText(resp.StatusCode) + ": " + ErrForbidden.Error() + ": callers outside its namespace may read only config_dump, ndsz and edsz; use the xds source (grpcs://…:15012 with --pilot-token) or the next source"
		return e
	case resp.StatusCode == http.StatusNotFound:
		// Pilot's own 404 names the proxy ("Proxy not connected to this
		// Pilot instance"); any other — Go's "404 page not found" from an
		// istiod with ENABLE_DEBUG_ON_HTTP=false, or a proxy's — means the
		// endpoint is not served here: the next source decides.
		said := snippet(body)
		if strings.Contains(said, "not connected") {
			e.kind, e.Err = kindStatus, ErrStatus
			e.detail = statusText(resp.StatusCode) + said
			return e
		}
		e.kind, e.Err = kindUnsupported, ErrUnsupported
		e.detail = statusText(resp.StatusCode) + said + ": Pilot does not serve " + path + " here (debug endpoints off: ENABLE_DEBUG_ON_HTTP=false?); use the next source"
		return e
	case resp.StatusCode/100 != 2:
		e.kind, e.Err = kindStatus, ErrStatus
		e.detail = statusText(resp.StatusCode) + snippet(body)
		if resp.StatusCode/100 == 5 {
			e.detail += " (Pilot is failing; will back off)"
		}
		return e
	}
	if isHTML(resp.Header.Get("Content-Type")) {
		e.kind, e.Err = kindMalformed, ErrMalformed
		e.detail = "got an HTML page, not Pilot's JSON (is --pilot Pilot's debug address, port 15014?)"
		return e
	}
	if err := read(body); err != nil {
		switch {
		case body.over:
			e.kind, e.Err = kindTooLarge, ErrTooLarge
			e.detail = fmt.Sprintf("answer larger than %d bytes (raise the cap, or use the xds source)", c.maxBody)
		case ctx.Err() != nil:
			return transportError(ctx, e, err, budget)
		case errors.Is(err, ErrMalformed):
			e.kind, e.Err = kindMalformed, err
			e.detail = err.Error() + " (is --pilot Pilot's debug address?)"
		default:
			return transportError(ctx, e, err, budget)
		}
		return e
	}
	return nil
}

func (c *Client) authHint() string {
	if c.scheme == "https" && c.tokenFile != "" {
		return ", and the token in " + c.tokenFile + " was missing or not accepted; use the next source"
	}
	return "; use the xds source (grpcs://…:15012 with --pilot-token) or the next source"
}

func snippet(r io.Reader) string {
	b := make([]byte, 120)
	n, _ := io.ReadFull(r, b)
	if s := oneLine(string(b[:n]), 100); s != "" {
		return ": " + strconv.Quote(s)
	}
	return ""
}

func isHTML(ct string) bool {
	mt, _, err := mime.ParseMediaType(ct)
	return err == nil && (mt == "text/html" || mt == "application/xhtml+xml")
}

// capReader fails once more than max bytes have been read.
type capReader struct {
	r    io.Reader
	max  int64
	n    int64
	over bool
}

var errTooLarge = errors.New("body over the cap")

func (c *capReader) Read(p []byte) (int, error) {
	if c.over {
		return 0, errTooLarge
	}
	if rem := c.max + 1 - c.n; int64(len(p)) > rem {
		p = p[:rem]
	}
	n, err := c.r.Read(p)
	c.n += int64(n)
	if c.n > c.max {
		c.over = true
		return n, errTooLarge
	}
	return n, err
}

// readToken reads a bearer token file (small, re-read at every call since
// projected tokens rotate).
func readToken(path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, 64<<10))
	if err != nil {
		return "", err
	}
	tok := strings.TrimSpace(string(b))
	if tok == "" {
		return "", errors.New("file is empty")
	}
	if strings.ContainsAny(tok, "\r\n\t ") {
		return "", errors.New("file holds more than one token")
	}
	return tok, nil
}

// countingTransport reports every HTTP attempt to the OnRequest hook.
type countingTransport struct {
	next http.RoundTripper
	hook func(source, code string)
}

func (t *countingTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	resp, err := t.next.RoundTrip(req)
	if t.hook != nil {
		src, _ := req.Context().Value(sourceKey{}).(string)
		code := ""
		if err != nil {
			code = requestCode(req.Context(), err)
		} else {
			code = strconv.Itoa(resp.StatusCode)
		}
		t.hook(src, code)
	}
	return resp, err
}
