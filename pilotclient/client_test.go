package pilotclient

import (
	"github.com/meshready/meshready/internal/redact"

	"bufio"
	"context"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/protobuf/encoding/protojson"

	"github.com/meshready/meshready/internal/fixture"
)

const (
	acked131   = "app-1.default" // fully synced in the 1.31 fixture
	unacked131 = "app-2.default" // never acked
)

// pilot is an httptest Pilot that counts requests and in-flight requests.
type pilot struct {
	*httptest.Server
	hits, inflight, maxInflight atomic.Int64
	mu                          sync.Mutex
	lastReq                     *http.Request
}

func newPilot(t *testing.T, h http.HandlerFunc) *pilot {
	t.Helper()
	p := &pilot{}
	p.Server = httptest.NewServer(p.wrap(h))
	t.Cleanup(p.Close)
	return p
}

func (p *pilot) wrap(h http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		p.hits.Add(1)
		n := p.inflight.Add(1)
		defer p.inflight.Add(-1)
		for {
			m := p.maxInflight.Load()
			if n <= m || p.maxInflight.CompareAndSwap(m, n) {
				break
			}
		}
		p.mu.Lock()
		p.lastReq = r.Clone(context.Background())
		p.mu.Unlock()
		h(w, r)
	}
}

func (p *pilot) last() *http.Request {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.lastReq
}

func serveBytes(b []byte) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write(b)
	}
}

func serveStatus(code int, body string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(code)
		_, _ = w.Write([]byte(body))
	}
}

func newClient(t *testing.T, addr string, opts ...Option) *Client {
	t.Helper()
	c, err := New(addr, opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	return c
}

func writeFile(t *testing.T, name, content string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func closedPort(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	return addr
}

func TestNew(t *testing.T) {
	t.Parallel()
	for in, want := range map[string]string{
		"http://istiod.istio-system:15014":  "http://istiod.istio-system:15014",
		"http://istiod.istio-system":        "http://istiod.istio-system:15014",
		"http://localhost:15004/":           "http://localhost:15004",
		"https://istiod":                    "https://istiod:443",
		"grpc://istiod.istio-system.svc":    "grpc://istiod.istio-system.svc:15010",
		"grpcs://istiod.istio-system.svc":   "grpcs://istiod.istio-system.svc:15012",
		"grpcs://[fd00::1]:15012":           "grpcs://[fd00::1]:15012",
		"http://10.0.0.1:8080/prefix/path/": "http://10.0.0.1:8080/prefix/path",
	} {
		c, err := New(in, WithCAFile(""), WithInsecureSkipVerify())
		if strings.HasPrefix(in, "https") || strings.HasPrefix(in, "grpcs") {
			c, err = New(in, WithInsecureSkipVerify())
		}
		if err != nil || c.Address() != want {
			t.Errorf("New(%q): %v %v, want %q", in, c, err, want)
		}
	}
	for _, in := range []string{
		"", "istiod:15014", "istiod", "tcp://istiod:15010", "http://", "http://user:pw@istiod:15014",
		"http://istiod:15014/?x=1", "http://istiod:15014/#f", "grpc://istiod:15010/path", "http://istiod:0",
		"http://istiod:99999", "http://istiod:port", "://x",
	} {
		_, err := New(in)
		// Named without userinfo or query (they may hold a secret).
		if err == nil || !strings.Contains(err.Error(), fmt.Sprintf("%q", redact.URL(in))) || !strings.Contains(err.Error(), "grpcs://HOST:15012") || strings.Contains(err.Error(), "user:pw") {
			t.Errorf("New(%q): %v, want an error naming the value and the accepted forms", in, err)
		}
	}
	for _, opts := range [][]Option{
		{WithTimeout(0)}, {WithMaxBody(0)}, {WithBackoff(0, time.Second)}, {WithBackoff(time.Second, time.Millisecond)}, {WithRetries(-1)},
	} {
		if _, err := New("http://istiod:15014", opts...); err == nil {
			t.Error("bad option accepted")
		}
	}
	if _, err := New("https://istiod", WithCAFile("/nonexistent/root-cert.pem")); err == nil || !strings.Contains(err.Error(), "/nonexistent/root-cert.pem") {
		t.Errorf("missing CA file: %v, want an error naming it", err)
	}
	if _, err := New("https://istiod", WithCAFile(writeFile(t, "ca.pem", "not pem"))); err == nil || !strings.Contains(err.Error(), "no PEM") {
		t.Errorf("garbage CA file: %v", err)
	}
}

func TestSourceNeedsScheme(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	h := newClient(t, "http://127.0.0.1:1")
	g := newClient(t, "grpc://127.0.0.1:1")
	if _, err := h.XDSSyncz(ctx, "", acked131); !errors.Is(err, ErrUnsupported) || !strings.Contains(err.Error(), "grpc://") {
		t.Errorf("xds over http: %v", err)
	}
	if _, err := g.Syncz(ctx, acked131); !errors.Is(err, ErrUnsupported) || !strings.Contains(err.Error(), "http(s)://") {
		t.Errorf("syncz over grpc: %v", err)
	}
	if _, err := g.ConfigDump(ctx, acked131); !errors.Is(err, ErrUnsupported) {
		t.Errorf("configdump over grpc: %v", err)
	}
}

func TestSyncz_OK(t *testing.T) {
	t.Parallel()
	p := newPilot(t, serveBytes(fixture.Read(t, fixture131)))
	tok := writeFile(t, "token", "secret-token\n")
	var codes []string
	var mu sync.Mutex
	c := newClient(t, p.URL, WithToken(tok), WithUserAgent("meshready/test"), WithOnRequest(func(src, code string) {
		mu.Lock()
		codes = append(codes, src+" "+code)
		mu.Unlock()
	}))
	// A full node id works as well as pod.namespace.
	st, err := c.Syncz(context.Background(), "sidecar~10.0.0.1~app-1.default~default.svc.cluster.local")
	if err != nil {
		t.Fatal(err)
	}
	if !st.Synced() || st.ProxyID != acked131 || st.Cached || st.FetchedAt.IsZero() || st.Source != SourceSyncz {
		t.Errorf("%+v", st)
	}
	r := p.last()
	if r.URL.Path != "/debug/syncz" || r.URL.Query().Get("namespace") != "default" {
		t.Errorf("asked %s", r.URL)
	}
	if r.Header.Get("Authorization") != "" {
		t.Error("token sent over plain http")
	}
	if r.Header.Get("User-Agent") != "meshready/test" || r.Header.Get("Accept") != "application/json" {
		t.Errorf("headers %v", r.Header)
	}
	// Synced: no spacing, the next call asks again.
	if _, err := c.Syncz(context.Background(), acked131); err != nil || p.hits.Load() != 2 {
		t.Errorf("second call: %v, hits %d", err, p.hits.Load())
	}
	mu.Lock()
	defer mu.Unlock()
	if strings.Join(codes, ",") != "syncz 200,syncz 200" {
		t.Errorf("OnRequest saw %v", codes)
	}
}

// TestSyncz_BadInput: each failure ends in one clear line, a backoff (the
// next call does not reach Pilot) and no crash.
func TestSyncz_BadInput(t *testing.T) {
	t.Parallel()
	slow := func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-time.After(3 * time.Second):
		case <-r.Context().Done():
		}
	}
	for _, tc := range []struct {
		name    string
		addr    string // when no handler
		h       http.HandlerFunc
		proxy   string
		opts    []Option
		is      error
		says    []string
		noCount bool // nothing is sent
	}{
		{name: "unreachable", addr: "http://" + closedPort(t), is: ErrUnreachable,
			says: []string{"connection refused", "is Pilot running"}},
		{name: "DNS failure", addr: "http://pilot.invalid:15014", is: ErrUnreachable,
			says: []string{`cannot resolve "pilot.invalid"`}},
		{name: "slower than the deadline", h: slow, opts: []Option{WithTimeout(150 * time.Millisecond)}, is: ErrTimeout,
			says: []string{"no answer within 150ms"}},
		{name: "5xx", h: serveStatus(503, "no healthy upstream"), is: ErrStatus,
			says: []string{"HTTP 503 Service Unavailable", `"no healthy upstream"`, "will back off"}},
		{name: "500 with a page of text", h: serveStatus(500, strings.Repeat("boom\n", 1000)), is: ErrStatus,
			says: []string{"HTTP 500", "boom boom"}},
		{name: "404: debug endpoints off (ENABLE_DEBUG_ON_HTTP=false)", h: serveStatus(404, "404 page not found"), is: ErrUnsupported,
			says: []string{"HTTP 404", "does not serve /debug/syncz", "ENABLE_DEBUG_ON_HTTP=false", "next source"}},
		{name: "garbage JSON", h: serveBytes([]byte(`{{{{ not json`)), is: ErrMalformed,
			says: []string{"malformed syncz", "Pilot's debug address"}},
		{name: "an object, not a list", h: serveBytes([]byte(`{"proxy":"app-1.default"}`)), is: ErrMalformed,
			says: []string{"want a JSON array"}},
		{name: "HTML page", h: func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "text/html; charset=utf-8")
			_, _ = w.Write([]byte("<html><body>login</body></html>"))
		}, is: ErrMalformed, says: []string{"HTML page"}},
		{name: "list without our proxy", h: serveBytes(fixture.Read(t, fixture114)), is: ErrProxyNotFound,
			says: []string{`no entry for proxy "app-1.default"`, "NOT SENT", "another one"}},
		{name: "empty list", h: serveBytes([]byte("[]")), is: ErrProxyNotFound, says: []string{"NOT SENT"}},
		{name: "wrong proxy id", h: serveBytes(fixture.Read(t, fixture131)), proxy: "app-1.prod", is: ErrProxyNotFound,
			says: []string{`"app-1.prod"`, "check --proxy-id"}},
		{name: "proxy id that is not one", h: serveBytes(fixture.Read(t, fixture131)), proxy: "app-1", noCount: true,
			says: []string{`invalid proxy id "app-1"`, "pod.namespace"}},
		{name: "401", h: serveStatus(401, ""), is: ErrUnauthenticated,
			says: []string{"HTTP 401", "Pilot refuses debug access from pods (ENABLE_DEBUG_ENDPOINT_AUTH)", "xds source"}},
		{name: "403", h: serveStatus(403, ""), is: ErrForbidden,
			says: []string{"HTTP 403", "Pilot refuses debug access from pods (ENABLE_DEBUG_ENDPOINT_AUTH)", "next source"}},
		{name: "over the cap", h: serveBytes(fixture.Read(t, fixture114)), opts: []Option{WithMaxBody(4096)}, is: ErrTooLarge,
			says: []string{"larger than 4096 bytes"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			addr := tc.addr
			var p *pilot
			if tc.h != nil {
				p = newPilot(t, tc.h)
				addr = p.URL
			}
			proxy := tc.proxy
			if proxy == "" {
				proxy = acked131
			}
			var codes atomic.Int64
			opts := append([]Option{WithBackoff(time.Second, 2*time.Second), WithOnRequest(func(string, string) { codes.Add(1) })}, tc.opts...)
			c := newClient(t, addr, opts...)
			_, err := c.Syncz(context.Background(), proxy)
			if err == nil {
				t.Fatal("no error")
			}
			msg := err.Error()
			if tc.is != nil && !errors.Is(err, tc.is) {
				t.Errorf("%v is not %v", err, tc.is)
			}
			for _, s := range tc.says {
				if !strings.Contains(msg, s) {
					t.Errorf("%q does not say %q", msg, s)
				}
			}
			if strings.ContainsAny(msg, "\n\r") || !strings.HasPrefix(msg, "pilot syncz ") {
				t.Errorf("not one line naming the source: %q", msg)
			}
			if tc.noCount {
				if codes.Load() != 0 || (p != nil && p.hits.Load() != 0) {
					t.Error("a request was sent")
				}
				return
			}
			if codes.Load() != 1 {
				t.Errorf("OnRequest called %d times, want 1", codes.Load())
			}
			// Backoff: the next call returns at once, without reaching Pilot.
			start := time.Now()
			_, err2 := c.Syncz(context.Background(), proxy)
			if !errors.Is(err2, ErrBackoff) || (tc.is != nil && !errors.Is(err2, tc.is)) {
				t.Errorf("second call: %v, want ErrBackoff wrapping %v", err2, tc.is)
			}
			if !strings.Contains(err2.Error(), "backing off for") || strings.Count(err2.Error(), "pilot syncz") != 1 {
				t.Errorf("second call says %q", err2)
			}
			if time.Since(start) > 50*time.Millisecond || codes.Load() != 1 || (p != nil && p.hits.Load() != 1) {
				t.Errorf("the call during backoff reached Pilot or waited (%s)", time.Since(start))
			}
		})
	}
}

func TestSyncz_HTTPSWithToken(t *testing.T) {
	t.Parallel()
	var gotAuth atomic.Value
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		gotAuth.Store(r.Header.Get("Authorization"))
		if r.Header.Get("Authorization") != "Bearer tok-123" {
			w.WriteHeader(401)
			return
		}
		_, _ = w.Write(fixture.Read(t, fixture131))
	}))
	srv.Config.ErrorLog = log.New(io.Discard, "", 0) // the bad-CA case logs a handshake error
	t.Cleanup(srv.Close)
	ca := writeFile(t, "ca.pem", string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw})))
	tok := writeFile(t, "token", "tok-123\n")

	c := newClient(t, srv.URL, WithCAFile(ca), WithToken(tok))
	st, err := c.Syncz(context.Background(), acked131)
	if err != nil || !st.Synced() {
		t.Fatalf("%+v %v", st, err)
	}
	if gotAuth.Load() != "Bearer tok-123" {
		t.Errorf("Authorization %q", gotAuth.Load())
	}

	// A missing token over https: sent without one, and the 401 says which
	// file was missing.
	c = newClient(t, srv.URL, WithCAFile(ca), WithToken("/nonexistent/istio-token"))
	_, err = c.Syncz(context.Background(), acked131)
	if !errors.Is(err, ErrUnauthenticated) || !strings.Contains(err.Error(), "/nonexistent/istio-token") {
		t.Errorf("%v", err)
	}

	// Unverified certificate: a clear error, not a hang.
	c = newClient(t, srv.URL, WithCAFile(writeFile(t, "other.pem", newCert(t, "other-ca").pem)), WithToken(tok))
	if _, err = c.Syncz(context.Background(), acked131); err == nil || !strings.Contains(err.Error(), "certificate") {
		t.Errorf("bad CA: %v", err)
	}
}

func TestConfigDump(t *testing.T) {
	t.Parallel()
	const v = "2026-11-30T19:11:18Z/3"
	b, err := protojson.Marshal(pilotConfigDump(t, v, 3))
	if err != nil {
		t.Fatal(err)
	}
	p := newPilot(t, serveBytes(b))
	c := newClient(t, p.URL, WithBackoff(300*time.Millisecond, time.Second))
	cv, err := c.ConfigDump(context.Background(), acked131)
	if err != nil || cv.Cached || cv.Versions[KindClusters] != v || cv.Versions[KindListeners] != v || cv.Versions[KindRoutes] != v {
		t.Fatalf("%+v %v", cv, err)
	}
	if r := p.last(); r.URL.Path != "/debug/config_dump" || r.URL.Query().Get("proxyID") != acked131 {
		t.Errorf("asked %s", r.URL)
	}
	// Pilot regenerates config for this: every answer spaces the next.
	cv.Versions[KindClusters] = "mutated by the caller"
	cv2, err := c.ConfigDump(context.Background(), acked131)
	if err != nil || !cv2.Cached || cv2.Versions[KindClusters] != v || p.hits.Load() != 1 {
		t.Errorf("second call: %+v %v hits %d, want the cached answer", cv2, err, p.hits.Load())
	}

	nf := newPilot(t, serveStatus(404, "Proxy not connected to this Pilot instance. It may be connected to another instance.\n"))
	c = newClient(t, nf.URL)
	_, err = c.ConfigDump(context.Background(), acked131)
	if !errors.Is(err, ErrProxyNotFound) || !strings.Contains(err.Error(), "Proxy not connected to this Pilot instance") {
		t.Errorf("404: %v", err)
	}
	// istiod with ENABLE_DEBUG_ON_HTTP=false: Go's mux answers every
	// /debug path 404; that is "not here, next source", not "no entry".
	off := newPilot(t, serveStatus(404, "404 page not found\n"))
	c = newClient(t, off.URL)
	_, err = c.ConfigDump(context.Background(), acked131)
	if !errors.Is(err, ErrUnsupported) || errors.Is(err, ErrProxyNotFound) || !strings.Contains(err.Error(), "ENABLE_DEBUG_ON_HTTP=false") {
		t.Errorf("404 with debug off: %v", err)
	}
}

func TestWithRetries(t *testing.T) {
	t.Parallel()
	var n atomic.Int64
	p := newPilot(t, func(w http.ResponseWriter, r *http.Request) {
		if n.Add(1) == 1 {
			w.WriteHeader(502)
			return
		}
		_, _ = w.Write(fixture.Read(t, fixture131))
	})
	var codes []string
	var mu sync.Mutex
	c := newClient(t, p.URL, WithRetries(2), WithBackoff(10*time.Millisecond, 20*time.Millisecond),
		WithOnRequest(func(s, code string) { mu.Lock(); codes = append(codes, code); mu.Unlock() }))
	if st, err := c.Syncz(context.Background(), acked131); err != nil || !st.Synced() {
		t.Fatalf("%v", err)
	}
	mu.Lock()
	defer mu.Unlock()
	if strings.Join(codes, ",") != "502,200" {
		t.Errorf("attempts %v", codes)
	}
}

// TestBackoff_FailingServerLoad: a client hammered by its caller sends a
// failing Pilot no more than the backoff allows.
func TestBackoff_FailingServerLoad(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		min, max, window time.Duration
		most, least      int64
	}{
		// Minimum waits (half of each step) 10,20,40,40,… ms: ≤ 17 in 600 ms.
		{20 * time.Millisecond, 80 * time.Millisecond, 600 * time.Millisecond, 17, 3},
		// The real defaults: 125+250+500+1000 ms of minimum waits ⇒ ≤ 5 in 2 s.
		{DefaultBackoffMin, DefaultBackoffMax, 2 * time.Second, 5, 2},
	} {
		t.Run(tc.max.String(), func(t *testing.T) {
			t.Parallel()
			p := newPilot(t, serveStatus(500, "down"))
			c := newClient(t, p.URL, WithBackoff(tc.min, tc.max))
			calls, backoffs := 0, 0
			for end := time.Now().Add(tc.window); time.Now().Before(end); {
				_, err := c.Syncz(context.Background(), acked131)
				calls++
				if errors.Is(err, ErrBackoff) {
					backoffs++
				}
				time.Sleep(time.Millisecond)
			}
			if h := p.hits.Load(); h > tc.most || h < tc.least {
				t.Errorf("%d calls made %d requests in %s, want %d–%d", calls, h, tc.window, tc.least, tc.most)
			}
			if int64(backoffs) != int64(calls)-p.hits.Load() {
				t.Errorf("%d calls, %d requests, %d backoff answers", calls, p.hits.Load(), backoffs)
			}
		})
	}
}

func TestBackoff_ConcurrentCallersOneInFlight(t *testing.T) {
	t.Parallel()
	// In flight = while Pilot computes the answer. (The tail of a body the
	// client stopped reading at its entry may still be written out when the
	// next request arrives: that costs Pilot nothing.)
	var working, maxWorking atomic.Int64
	body := fixture.Read(t, fixture114)
	p := newPilot(t, func(w http.ResponseWriter, r *http.Request) {
		n := working.Add(1)
		for m := maxWorking.Load(); n > m && !maxWorking.CompareAndSwap(m, n); m = maxWorking.Load() {
		}
		time.Sleep(30 * time.Millisecond)
		working.Add(-1)
		_, _ = w.Write(body)
	})
	c := newClient(t, p.URL)
	var wg sync.WaitGroup
	// The same question from 20 callers at once: one request, shared.
	errs := make(chan error, 40)
	for range 20 {
		wg.Go(func() {
			st, err := c.Syncz(context.Background(), "reviews-v1-7598cc9867-9x4cs.bookinfo")
			if err == nil && !st.Synced() {
				err = fmt.Errorf("not synced: %+v", st)
			}
			errs <- err
		})
	}
	wg.Wait()
	if h := p.hits.Load(); h != 1 {
		t.Errorf("20 identical concurrent calls made %d requests, want 1", h)
	}
	// Different questions at once: queued, one at a time.
	for _, id := range []string{"a-client-79599865bd-lfn4m.alpha", "x-server-85b9574985-m5kgk.alpha", "sleep-698cfc4445-hmbsh.sleep",
		"details-v1-7f4669bdd9-l7f9m.bookinfo", "istio-ingressgateway-c974cd485-qdc7m.istio-system"} {
		wg.Go(func() {
			_, err := c.Syncz(context.Background(), id)
			errs <- err
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Error(err)
		}
	}
	if m := maxWorking.Load(); m != 1 {
		t.Errorf("%d requests in flight at once, want 1", m)
	}
	if h := p.hits.Load(); h != 6 {
		t.Errorf("%d requests, want 6", h)
	}

	// A caller that gives up while queued leaves without a request.
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Millisecond)
	defer cancel()
	go func() { _, _ = c.Syncz(context.Background(), "sleep-698cfc4445-hmbsh.sleep") }()
	time.Sleep(time.Millisecond)
	if _, err := c.Syncz(ctx, "x-server-85b9574985-m5kgk.alpha"); err == nil {
		// It may also have run after the first finished: only a hang is wrong.
		t.Log("queued call completed in time")
	}
}

func TestBackoff_NotSyncedSpacing(t *testing.T) {
	t.Parallel()
	p := newPilot(t, serveBytes(fixture.Read(t, fixture131)))
	c := newClient(t, p.URL, WithBackoff(200*time.Millisecond, 400*time.Millisecond))
	st, err := c.Syncz(context.Background(), unacked131)
	if err != nil || st.Synced() || st.Cached {
		t.Fatalf("%+v %v", st, err)
	}
	// Within the spacing: the same answer, marked Cached, no request.
	st2, err := c.Syncz(context.Background(), unacked131)
	if err != nil || !st2.Cached || st2.Types[0].State != StateStale || p.hits.Load() != 1 {
		t.Errorf("%+v %v hits %d", st2, err, p.hits.Load())
	}
	// Another question within the spacing: held back too.
	_, err = c.Syncz(context.Background(), acked131)
	if !errors.Is(err, ErrBackoff) || !strings.Contains(err.Error(), "not synced yet") {
		t.Errorf("other proxy during spacing: %v", err)
	}
	var e *Error
	if !errors.As(err, &e) || e.RetryIn() <= 0 || e.RetryIn() > 200*time.Millisecond {
		t.Errorf("RetryIn %v", e.RetryIn())
	}
	// After it: Pilot is asked again.
	time.Sleep(250 * time.Millisecond)
	if _, err := c.Syncz(context.Background(), unacked131); err != nil || p.hits.Load() != 2 {
		t.Errorf("%v hits %d", err, p.hits.Load())
	}
	// A synced answer clears the spacing.
	time.Sleep(450 * time.Millisecond)
	for range 3 {
		if st, err := c.Syncz(context.Background(), acked131); err != nil || st.Cached {
			t.Errorf("%+v %v", st, err)
		}
	}
	if h := p.hits.Load(); h != 5 {
		t.Errorf("hits %d, want 5", h)
	}
}

func TestBackoff_RetryAfterAndRefusals(t *testing.T) {
	t.Parallel()
	p := newPilot(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Retry-After", "2")
		w.WriteHeader(503)
	})
	c := newClient(t, p.URL, WithBackoff(10*time.Millisecond, 20*time.Millisecond))
	_, _ = c.Syncz(context.Background(), acked131)
	_, err := c.Syncz(context.Background(), acked131)
	var e *Error
	if !errors.As(err, &e) || e.RetryIn() < 1500*time.Millisecond {
		t.Errorf("Retry-After: 2 not honoured: %v", err)
	}

	// A refusal will not heal soon: straight to the longest delay.
	f := newPilot(t, serveStatus(403, ""))
	c = newClient(t, f.URL, WithBackoff(10*time.Millisecond, 800*time.Millisecond))
	_, _ = c.Syncz(context.Background(), acked131)
	_, err = c.Syncz(context.Background(), acked131)
	if !errors.As(err, &e) || e.RetryIn() < 350*time.Millisecond || !errors.Is(err, ErrForbidden) {
		t.Errorf("403: %v (retry in %v)", err, e.RetryIn())
	}
}

// bigSyncz streams a /debug/syncz of n proxies in the current format
// (~1 KiB each), with ours at index at (-1: absent). mid is called once,
// when 90% has been written.
func bigSyncz(n, at int, mid func()) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		bw := bufio.NewWriterSize(w, 64<<10)
		bw.WriteString("[")
		for i := range n {
			if i > 0 {
				bw.WriteString(",")
			}
			proxy := fmt.Sprintf("workload-%06d-7f4669bdd9-l7f9m.ns-%d", i, i%50)
			if i == at {
				proxy = acked131
			}
			nonce := fmt.Sprintf("2026-11-30T19:11:18Z/%d%08x-8f7a-4d92-858e-814b175fabee", i%9, i)
			fmt.Fprintf(bw, `{"cluster_id":"Kubernetes","proxy":%q,"proxy_type":"sidecar","istio_version":"1.31.0",`, proxy)
			res := ""
			for j, ty := range []string{"cluster", "listener", "route", "endpoint"} {
				fmt.Fprintf(bw, `"%s_sent":%q,"%s_acked":%q,`, ty, nonce, ty, nonce)
				if j > 0 {
					res += ","
				}
				url := []string{cdsURL, ldsURL, rdsURL, edsURL}[j]
				res += fmt.Sprintf(`%q:{"sent":%q,"acked":%q,"sentTime":"2026-11-30T19:11:23.815493738Z"}`, url, nonce, nonce)
			}
			fmt.Fprintf(bw, `"resources":{%s}}`, res)
			if i == n*9/10 && mid != nil {
				bw.Flush()
				mid()
			}
		}
		bw.WriteString("]")
		bw.Flush()
	}
}

// TestSyncz_30MB: a /debug/syncz from a large mesh (~30 MB, 18k proxies) is
// stream-parsed: memory stays bounded (one element at a time, reading stops
// at our entry), it is not refused by the default cap, and a smaller cap
// cuts it short with ErrTooLarge. Not parallel: it measures the heap.
func TestSyncz_30MB(t *testing.T) {
	const n = 18000
	heap := func() uint64 {
		runtime.GC()
		var m runtime.MemStats
		runtime.ReadMemStats(&m)
		return m.HeapAlloc
	}

	t.Run("ours near the end, bounded memory", func(t *testing.T) {
		var mid atomic.Uint64
		var bytesOut atomic.Int64
		p := newPilot(t, func(w http.ResponseWriter, r *http.Request) {
			cw := &countWriter{ResponseWriter: w, n: &bytesOut}
			bigSyncz(n, n-10, func() { mid.Store(heap()) })(cw, r)
		})
		c := newClient(t, p.URL, WithTimeout(2*time.Minute))
		base := heap()
		st, err := c.Syncz(context.Background(), acked131)
		if err != nil || !st.Synced() || len(st.Types) != 4 {
			t.Fatalf("%+v %v", st, err)
		}
		if b := bytesOut.Load(); b < 28<<20 {
			t.Fatalf("served only %d bytes", b)
		}
		if grew := int64(mid.Load()) - int64(base); grew > 8<<20 {
			t.Errorf("live heap grew by %d MiB while parsing a %d MiB answer", grew>>20, bytesOut.Load()>>20)
		} else {
			t.Logf("served %d MiB; live heap grew by %d KiB mid-parse", bytesOut.Load()>>20, grew>>10)
		}
	})

	t.Run("ours absent", func(t *testing.T) {
		p := newPilot(t, bigSyncz(n, -1, nil))
		c := newClient(t, p.URL, WithTimeout(2*time.Minute))
		if _, err := c.Syncz(context.Background(), acked131); !errors.Is(err, ErrProxyNotFound) {
			t.Fatalf("%v", err)
		}
	})

	t.Run("a smaller cap", func(t *testing.T) {
		p := newPilot(t, bigSyncz(n, -1, nil))
		c := newClient(t, p.URL, WithMaxBody(1<<20))
		start := time.Now()
		if _, err := c.Syncz(context.Background(), acked131); !errors.Is(err, ErrTooLarge) {
			t.Fatalf("%v", err)
		}
		t.Logf("cut short after %s", time.Since(start))
	})
}

type countWriter struct {
	http.ResponseWriter
	n *atomic.Int64
}

func (w *countWriter) Write(b []byte) (int, error) {
	n, err := w.ResponseWriter.Write(b)
	w.n.Add(int64(n))
	return n, err
}

func TestBackoff_SharerOutlivesCanceledOwner(t *testing.T) {
	t.Parallel()
	p := newPilot(t, func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-time.After(60 * time.Millisecond):
		case <-r.Context().Done():
			return
		}
		_, _ = w.Write(fixture.Read(t, fixture131))
	})
	c := newClient(t, p.URL)
	ctx, cancel := context.WithCancel(context.Background())
	owner := make(chan error, 1)
	go func() { _, err := c.Syncz(ctx, acked131); owner <- err }()
	for p.hits.Load() == 0 {
		time.Sleep(time.Millisecond)
	}
	sharer := make(chan error, 1)
	go func() { _, err := c.Syncz(context.Background(), acked131); sharer <- err }()
	time.Sleep(10 * time.Millisecond)
	cancel()
	if err := <-owner; !strings.Contains(fmt.Sprint(err), "canceled") {
		t.Errorf("owner: %v", err)
	}
	if err := <-sharer; err != nil {
		t.Errorf("sharer inherited the owner's cancellation: %v", err)
	}
	// A cancellation says nothing about Pilot: no backoff.
	if _, err := c.Syncz(context.Background(), acked131); err != nil {
		t.Errorf("after a cancellation: %v", err)
	}
}

// A change seen on the proxy's side skips the not-synced spacing (an ACK
// shows at once), but never the backoff after an error.
func TestBackoff_ChangeSkipsNotSyncedSpacingOnly(t *testing.T) {
	t.Parallel()
	p := newPilot(t, serveBytes(fixture.Read(t, fixture131)))
	c := newClient(t, p.URL, WithBackoff(time.Minute, time.Minute))
	if _, err := c.Syncz(context.Background(), unacked131); err != nil || p.hits.Load() != 1 {
		t.Fatalf("%v hits %d", err, p.hits.Load())
	}
	if st, err := c.Syncz(context.Background(), unacked131); err != nil || !st.Cached || p.hits.Load() != 1 {
		t.Fatalf("spacing not applied: %+v %v hits %d", st, err, p.hits.Load())
	}
	if st, err := c.Syncz(WithChange(context.Background()), unacked131); err != nil || st.Cached || p.hits.Load() != 2 {
		t.Fatalf("a change did not reach Pilot: %+v %v hits %d", st, err, p.hits.Load())
	}

	down := newClient(t, "http://"+closedPort(t), WithBackoff(time.Minute, time.Minute))
	if _, err := down.Syncz(context.Background(), unacked131); !errors.Is(err, ErrUnreachable) {
		t.Fatalf("%v", err)
	}
	if _, err := down.Syncz(WithChange(context.Background()), unacked131); !errors.Is(err, ErrBackoff) {
		t.Fatalf("a change skipped the error backoff: %v", err)
	}
}

// A 403 on /debug/syncz (ENABLE_DEBUG_ENDPOINT_AUTH) must not hold back
// /debug/config_dump, the debug path istiod still allows a pod: each source
// is spaced on its own.
func TestBackoff_PerSource(t *testing.T) {
	t.Parallel()
	b, err := protojson.Marshal(pilotConfigDump(t, "v1", 1))
	if err != nil {
		t.Fatal(err)
	}
	p := newPilot(t, func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/debug/syncz" {
			http.Error(w, "forbidden", http.StatusForbidden)
			return
		}
		w.Write(b)
	})
	c := newClient(t, p.URL, WithBackoff(time.Minute, time.Minute))
	if _, err := c.Syncz(context.Background(), acked131); !errors.Is(err, ErrForbidden) {
		t.Fatalf("syncz: %v", err)
	}
	cv, err := c.ConfigDump(context.Background(), acked131)
	if err != nil || cv.Versions[KindClusters] != "v1" || p.hits.Load() != 2 {
		t.Fatalf("config_dump after syncz's 403: %+v %v hits %d", cv, err, p.hits.Load())
	}
	if _, err := c.Syncz(context.Background(), acked131); !errors.Is(err, ErrBackoff) || p.hits.Load() != 2 {
		t.Fatalf("syncz still spaced: %v hits %d", err, p.hits.Load())
	}
}

// Issue 10 papercut: the value echoed once, safely (as typed for printable
// UTF-8, escaped otherwise), and "want" said once. Before: 'Ã' for 'ö'
// and "want pod.namespace; want a node id…".
func TestProxyIDErrorText(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct{ id, says string }{
		{"pödé.default", "character 'ö'"},
		{"bad\xff.default", `byte "\xff"`},
		{"app-1", `invalid proxy id "app-1"`},
	} {
		_, err := ProxyIDFromNodeID(tc.id)
		if err == nil || !strings.Contains(err.Error(), tc.says) || strings.Count(err.Error(), "want") != 1 {
			t.Errorf("%q: %v (want %q and one 'want')", tc.id, err, tc.says)
		}
	}
}
