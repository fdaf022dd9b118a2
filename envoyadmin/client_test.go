package envoyadmin

import (
	"github.com/meshready/meshready/internal/redact"

	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"regexp"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/meshready/meshready/internal/fixture"
)

func mustRegexp(t *testing.T, s string) *regexp.Regexp {
	t.Helper()
	re, err := regexp.Compile(s)
	if err != nil {
		t.Fatalf("regexp %q: %v", s, err)
	}
	return re
}

func TestNew(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct{ in, base string }{
		{"http://127.0.0.1:15000", "http://127.0.0.1:15000"},
		{"http://127.0.0.1:15000/", "http://127.0.0.1:15000"},
		{"https://envoy.local:15000/admin/", "https://envoy.local:15000/admin"},
		{"http://[::1]:15000", "http://[::1]:15000"},
	} {
		c, err := New(tc.in)
		if err != nil {
			t.Errorf("New(%q): %v", tc.in, err)
			continue
		}
		if c.BaseURL() != tc.base {
			t.Errorf("New(%q).BaseURL() = %q, want %q", tc.in, c.BaseURL(), tc.base)
		}
	}
	for _, in := range []string{"", "127.0.0.1:15000", "localhost", "ftp://127.0.0.1:15000", "http://", "http://:15000",
		"http://127.0.0.1:15000?x=1", "http://u:p@127.0.0.1:15000", "unix:///run/envoy.sock", "http://a b"} {
		_, err := New(in)
		if err == nil {
			t.Errorf("New(%q): no error", in)
			continue
		}
		// Named without userinfo or query (they may hold a secret).
		if want := fmt.Sprintf("invalid Envoy admin URL %q", redact.URL(in)); !strings.HasPrefix(err.Error(), want) || !strings.Contains(err.Error(), "want http://HOST:PORT or https://HOST:PORT") {
			t.Errorf("New(%q) error %q, want prefix %q and the accepted forms", in, err, want)
		}
		if strings.Contains(in, "u:p@") && strings.Contains(err.Error(), "u:p") {
			t.Errorf("New(%q) error %q echoes the credentials", in, err)
		}
	}
	for name, opt := range map[string]Option{
		"zero timeout": WithTimeout(0), "negative cap": WithMaxBody(-1),
		"port 0": WithExcludePorts(0), "port 70000": WithExcludePorts(8080, 70000),
	} {
		if _, err := New("http://127.0.0.1:15000", opt); err == nil {
			t.Errorf("%s: no error", name)
		}
	}
}

// fakeEnvoy serves canned answers and records every request.
type fakeEnvoy struct {
	mu     sync.Mutex
	reqs   []string // "METHOD path?rawquery"
	decode []string // the filter as a server decodes it
	answer map[string]string
}

func (f *fakeEnvoy) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	f.reqs = append(f.reqs, r.Method+" "+r.URL.RequestURI())
	f.decode = append(f.decode, r.URL.Query().Get("filter"))
	f.mu.Unlock()
	path := strings.TrimPrefix(r.URL.Path, "/envoy")
	if body, ok := f.answer[path]; ok {
		w.Header().Set("Content-Type", "text/plain; charset=UTF-8")
		io.WriteString(w, body)
		return
	}
	io.WriteString(w, "OK\n")
}

func (f *fakeEnvoy) requests() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]string(nil), f.reqs...)
}

func TestClientRequests(t *testing.T) {
	t.Parallel()
	sidecar := string(fixture.Read(t, "envoy/config_dump/istio-1.20.8-ossm-2.6-sidecar-envoy-1.28.8-config_dump.json"))
	cases := []struct {
		name   string
		call   func(ctx context.Context, c *Client) error
		want   []string
		filter string // decoded filter of the first request
	}{
		{
			name: "server_info",
			call: func(ctx context.Context, c *Client) error {
				si, err := c.ServerInfo(ctx)
				if err == nil && si.State != Live {
					err = fmt.Errorf("state %v", si.State)
				}
				return err
			},
			want: []string{"GET /server_info"},
		},
		{
			name: "stats query",
			call: func(ctx context.Context, c *Client) error {
				_, err := c.Stats(ctx, StatsQuery{Filter: `^server\.(state|live)$ & more`, UsedOnly: true, Type: "Gauges"})
				return err
			},
			want:   []string{`GET /stats?usedonly&filter=^server\.(state|live)$%20%26%20more&type=Gauges`},
			filter: `^server\.(state|live)$ & more`,
		},
		{
			name: "readiness facts: one request",
			call: func(ctx context.Context, c *Client) error {
				f, err := c.ReadinessFacts(ctx)
				if err == nil && (f.State != Live || f.CDS.UpdateSuccess != 11 || f.LDS.VersionText != "2026-11-30T19:05:14Z/41") {
					err = fmt.Errorf("facts %+v", f)
				}
				return err
			},
			want:   []string{"GET /stats?filter=" + readinessFilter},
			filter: readinessFilter,
		},
		{
			name: "inbound activity",
			call: func(ctx context.Context, c *Client) error {
				_, err := c.InboundActivity(ctx)
				return err
			},
			want:   []string{"GET /stats?filter=" + activityFilter},
			filter: activityFilter,
		},
		{
			name: "config dump query",
			call: func(ctx context.Context, c *Client) error {
				d, err := c.ConfigDump(ctx, ConfigDumpQuery{Resource: "dynamic_active_clusters", Mask: "version_info,cluster.name",
					NameRegex: `^outbound\|80\|`, IncludeEDS: true})
				if err == nil && len(d.Types) != 5 {
					err = fmt.Errorf("dump %v", kinds(d))
				}
				return err
			},
			want: []string{`GET /config_dump?resource=dynamic_active_clusters&mask=version_info,cluster.name&name_regex=^outbound\|80\|&include_eds`},
		},
		{
			name: "plain config dump",
			call: func(ctx context.Context, c *Client) error { _, err := c.ConfigDump(ctx, ConfigDumpQuery{}); return err },
			want: []string{"GET /config_dump"},
		},
		{
			name: "drain inbound graceful",
			call: func(ctx context.Context, c *Client) error { return c.DrainListeners(ctx, true, true) },
			want: []string{"POST /drain_listeners?inboundonly&graceful"},
		},
		{
			name: "drain graceful",
			call: func(ctx context.Context, c *Client) error { return c.DrainListeners(ctx, false, true) },
			want: []string{"POST /drain_listeners?graceful"},
		},
		{
			name: "drain now",
			call: func(ctx context.Context, c *Client) error { return c.DrainListeners(ctx, false, false) },
			want: []string{"POST /drain_listeners"},
		},
		{
			name: "healthcheck fail",
			call: func(ctx context.Context, c *Client) error { return c.HealthcheckFail(ctx) },
			want: []string{"POST /healthcheck/fail"},
		},
		{
			name: "healthcheck ok",
			call: func(ctx context.Context, c *Client) error { return c.HealthcheckOK(ctx) },
			want: []string{"POST /healthcheck/ok"},
		},
		{
			name: "quitquitquit",
			call: func(ctx context.Context, c *Client) error { return c.QuitQuitQuit(ctx) },
			want: []string{"POST /quitquitquit"},
		},
	}
	for _, prefix := range []string{"", "/envoy"} {
		for _, tc := range cases {
			t.Run(tc.name+prefix, func(t *testing.T) {
				t.Parallel()
				fe := &fakeEnvoy{answer: map[string]string{
					"/server_info": string(fixture.Read(t, "envoy/server_info/envoy-1.18.3-server_info-LIVE-trimmed.json")),
					"/stats":       readinessBody,
					"/config_dump": sidecar,
				}}
				srv := httptest.NewServer(fe)
				defer srv.Close()
				c, err := New(srv.URL + prefix)
				if err != nil {
					t.Fatal(err)
				}
				if err := tc.call(t.Context(), c); err != nil {
					t.Fatal(err)
				}
				got := fe.requests()
				var want []string
				for _, w := range tc.want {
					m, p, _ := strings.Cut(w, " ")
					want = append(want, m+" "+prefix+p)
				}
				if strings.Join(got, "\n") != strings.Join(want, "\n") {
					t.Fatalf("requests\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
				}
				if tc.filter != "" && fe.decode[0] != tc.filter {
					t.Fatalf("server decoded filter %q, want %q", fe.decode[0], tc.filter)
				}
			})
		}
	}
}

func TestReadinessFactsFallsBackToServerInfo(t *testing.T) {
	t.Parallel()
	fe := &fakeEnvoy{answer: map[string]string{
		"/stats":       string(fixture.Read(t, "envoy/stats/elastic-beats-envoyproxy-serverstats.txt")),
		"/server_info": string(fixture.Read(t, "envoy/server_info/envoy-1.8.0-server_info-legacy-text.txt")),
	}}
	srv := httptest.NewServer(fe)
	defer srv.Close()
	c, _ := New(srv.URL)
	f, err := c.ReadinessFacts(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if !f.HasState || f.State != Live || f.CDS.Present || f.HasWorkersStarted {
		t.Fatalf("facts %+v", f)
	}
	if got := fe.requests(); len(got) != 2 || !strings.HasPrefix(got[0], "GET /stats?filter=") || got[1] != "GET /server_info" {
		t.Fatalf("requests %q", got)
	}
}

// checkErr asserts the product's error rule: one line, naming the request,
// containing every want.
func checkErr(t *testing.T, err error, prefix string, want ...string) *Error {
	t.Helper()
	if err == nil {
		t.Fatal("no error")
	}
	e, ok := errors.AsType[*Error](err)
	if !ok {
		t.Fatalf("error %T %q is not *Error", err, err)
	}
	msg := err.Error()
	t.Logf("error line: %s", msg)
	if strings.ContainsAny(msg, "\n\r") {
		t.Errorf("error is not one line: %q", msg)
	}
	if !strings.HasPrefix(msg, prefix) {
		t.Errorf("error %q does not start with %q", msg, prefix)
	}
	for _, w := range want {
		if !strings.Contains(msg, w) {
			t.Errorf("error %q does not mention %q", msg, w)
		}
	}
	return e
}

func TestConnectionRefused(t *testing.T) {
	t.Parallel()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	c, _ := New("http://" + addr)
	start := time.Now()
	_, err = c.ReadinessFacts(t.Context())
	checkErr(t, err, "envoy admin GET http://"+addr+"/stats: connection refused (is the sidecar running?", "--envoy-admin", "--sidecar=none")
	if !IsUnreachable(err) || !errors.Is(err, syscall.ECONNREFUSED) {
		t.Errorf("IsUnreachable = %v, Is(ECONNREFUSED) = %v", IsUnreachable(err), errors.Is(err, syscall.ECONNREFUSED))
	}
	if d := time.Since(start); d > time.Second {
		t.Errorf("refused took %s", d)
	}
	err = c.QuitQuitQuit(t.Context())
	if !IsUnreachable(err) {
		t.Errorf("QuitQuitQuit to nothing: %v, want unreachable", err)
	}
}

func TestDNSFailureIsUnreachable(t *testing.T) {
	t.Parallel()
	c, _ := New("http://envoy-admin.invalid:15000")
	_, err := c.ServerInfo(t.Context())
	if err == nil {
		t.Fatal("no error")
	}
	if !IsUnreachable(err) {
		t.Skipf("resolver gave %v; not a DNS answer in this sandbox", err)
	}
	checkErr(t, err, "envoy admin GET http://envoy-admin.invalid:15000/server_info: cannot resolve", "is the sidecar running?")
}

func TestTimeout(t *testing.T) {
	t.Parallel()
	release := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/slowbody" {
			w.Header().Set("Content-Type", "text/plain")
			io.WriteString(w, "server.state: 0\n")
			w.(http.Flusher).Flush()
		}
		select {
		case <-r.Context().Done():
		case <-release:
		}
	}))
	t.Cleanup(srv.Close)
	t.Cleanup(func() { close(release) })

	cases := []struct {
		name     string
		timeout  time.Duration
		ctxLimit time.Duration // 0: none
		want     string
		call     func(context.Context, *Client) error
	}{
		{name: "client timeout", timeout: 300 * time.Millisecond, want: "no complete answer within 300ms",
			call: func(ctx context.Context, c *Client) error { _, err := c.ServerInfo(ctx); return err }},
		{name: "caller's sooner deadline", timeout: 2 * time.Second, ctxLimit: 205 * time.Millisecond, want: "no complete answer within 200ms",
			call: func(ctx context.Context, c *Client) error { _, err := c.ReadinessFacts(ctx); return err }},
		{name: "body stalls", timeout: 300 * time.Millisecond, want: "no complete answer within 300ms",
			call: func(ctx context.Context, c *Client) error {
				return c.call(ctx, "GET", "/slowbody", "", func(r io.Reader) error { _, err := ParseStats(r); return err })
			}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			c, _ := New(srv.URL, WithTimeout(tc.timeout))
			ctx := t.Context()
			limit := tc.timeout
			if tc.ctxLimit > 0 {
				var cancel context.CancelFunc
				ctx, cancel = context.WithTimeout(ctx, tc.ctxLimit)
				defer cancel()
				limit = tc.ctxLimit
			}
			start := time.Now()
			err := tc.call(ctx, c)
			took := time.Since(start)
			e := checkErr(t, err, "envoy admin GET "+srv.URL+"/", tc.want, "hung or overloaded")
			if !errors.Is(err, context.DeadlineExceeded) || IsUnreachable(err) || e.kind != kindTimeout {
				t.Errorf("Is(DeadlineExceeded) = %v, IsUnreachable = %v", errors.Is(err, context.DeadlineExceeded), IsUnreachable(err))
			}
			if took < limit-20*time.Millisecond || took > limit+400*time.Millisecond {
				t.Errorf("returned after %s, want about %s", took, limit)
			}
		})
	}
}

func TestCanceled(t *testing.T) {
	t.Parallel()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { <-r.Context().Done() }))
	defer srv.Close()
	c, _ := New(srv.URL)
	ctx, cancel := context.WithCancel(t.Context())
	time.AfterFunc(50*time.Millisecond, cancel)
	_, err := c.ServerInfo(ctx)
	checkErr(t, err, "envoy admin GET "+srv.URL+"/server_info: request canceled")
	if !errors.Is(err, context.Canceled) {
		t.Errorf("not context.Canceled: %v", err)
	}
}

func TestBadAnswers(t *testing.T) {
	t.Parallel()
	sidecar := fixture.Read(t, "envoy/config_dump/istio-1.20.8-ossm-2.6-sidecar-envoy-1.28.8-config_dump.json")
	cases := []struct {
		name    string
		handler http.HandlerFunc
		call    func(context.Context, *Client) error
		path    string
		is      error
		status  int
		want    []string
		notWant []string
	}{
		{
			name: "500",
			handler: func(w http.ResponseWriter, r *http.Request) {
				w.WriteHeader(500)
				io.WriteString(w, "upstream connect error or disconnect/reset before headers.\r\nreset reason: overflow\n"+strings.Repeat("x", 500))
			},
			path: "/stats", is: ErrStatus, status: 500,
			want:    []string{`HTTP 500 Internal Server Error: "upstream connect error or disconnect/reset before headers. reset reason: overflow xxxx`},
			notWant: []string{strings.Repeat("x", 100)},
		},
		{
			name: "404 from an old Envoy",
			handler: func(w http.ResponseWriter, r *http.Request) {
				w.WriteHeader(404)
				io.WriteString(w, "invalid path. admin commands are:\n  /certs\n")
			},
			call: func(ctx context.Context, c *Client) error { return c.DrainListeners(ctx, true, true) },
			path: "/drain_listeners", is: ErrStatus, status: 404,
			want: []string{`HTTP 404 Not Found: "invalid path. admin commands are: /certs"`, "too old for this endpoint"},
		},
		{
			name: "html by content type",
			handler: func(w http.ResponseWriter, r *http.Request) {
				w.Header().Set("Content-Type", "text/html; charset=UTF-8")
				io.WriteString(w, "\n\n  <head><title>Envoy Admin</title></head>")
			},
			path: "/stats", is: ErrNotAdmin,
			want: []string{"not Envoy's admin API: got an HTML page (check --envoy-admin"},
		},
		{
			name: "html body without content type",
			handler: func(w http.ResponseWriter, r *http.Request) {
				w.Header().Set("Content-Type", "text/plain")
				io.WriteString(w, "  <!DOCTYPE html><html><body>My app</body></html>")
			},
			path: "/config_dump", is: ErrNotAdmin,
			call: func(ctx context.Context, c *Client) error { _, err := c.ConfigDump(ctx, ConfigDumpQuery{}); return err },
			want: []string{"not Envoy's admin API: got an HTML page"},
		},
		{
			name: "html 404",
			handler: func(w http.ResponseWriter, r *http.Request) {
				w.Header().Set("Content-Type", "text/html")
				w.WriteHeader(404)
				io.WriteString(w, "<h1>Not Found</h1>")
			},
			path: "/stats", is: ErrNotAdmin, status: 404,
			want: []string{"not Envoy's admin API: got an HTML page with HTTP 404"},
		},
		{
			name:    "some other text server",
			handler: func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "Hello from the app!\nVersion 3\n") },
			path:    "/stats", is: ErrNotAdmin,
			want: []string{`not Envoy's admin API: no Envoy stats in the answer (2 lines did not parse, first "Hello from the app!")`},
		},
		{
			name: "truncated JSON, clean end",
			handler: func(w http.ResponseWriter, r *http.Request) {
				w.Header().Set("Content-Type", "application/json")
				w.Write(sidecar[:len(sidecar)/3])
			},
			call: func(ctx context.Context, c *Client) error { _, err := c.ConfigDump(ctx, ConfigDumpQuery{}); return err },
			path: "/config_dump", is: ErrMalformed,
			want: []string{"malformed JSON from Envoy: unexpected EOF"},
		},
		{
			name: "truncated JSON, connection cut",
			handler: func(w http.ResponseWriter, r *http.Request) {
				w.Header().Set("Content-Type", "application/json")
				w.Header().Set("Content-Length", fmt.Sprint(len(sidecar)))
				w.Write(sidecar[:len(sidecar)/3])
				panic(http.ErrAbortHandler)
			},
			call: func(ctx context.Context, c *Client) error { _, err := c.ConfigDump(ctx, ConfigDumpQuery{}); return err },
			path: "/config_dump", is: ErrMalformed,
			want: []string{"malformed JSON from Envoy: unexpected EOF"},
		},
		{
			name: "truncated server_info",
			handler: func(w http.ResponseWriter, r *http.Request) {
				io.WriteString(w, `{"version": "98c1c9e9a40804b93b074badad1cdf284b47d58b/1.18.3/Clean/RELEASE/BoringSSL", "sta`)
			},
			call: func(ctx context.Context, c *Client) error { _, err := c.ServerInfo(ctx); return err },
			path: "/server_info", is: ErrMalformed,
			want: []string{"malformed JSON from Envoy: unexpected end of JSON input"},
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			srv := httptest.NewServer(tc.handler)
			defer srv.Close()
			c, _ := New(srv.URL)
			call := tc.call
			if call == nil {
				call = func(ctx context.Context, c *Client) error { _, err := c.ReadinessFacts(ctx); return err }
			}
			err := call(t.Context(), c)
			method := "GET"
			if tc.path == "/drain_listeners" {
				method = "POST"
			}
			e := checkErr(t, err, "envoy admin "+method+" "+srv.URL+tc.path+": ", tc.want...)
			for _, nw := range tc.notWant {
				if strings.Contains(err.Error(), nw) {
					t.Errorf("error %q contains %q", err, nw)
				}
			}
			if !errors.Is(err, tc.is) || IsUnreachable(err) || e.StatusCode != tc.status {
				t.Errorf("errors.Is(%v) = false or unreachable or status %d != %d", tc.is, e.StatusCode, tc.status)
			}
		})
	}
}

func TestStatsQueryValidation(t *testing.T) {
	t.Parallel()
	c, _ := New("http://127.0.0.1:1")
	_, err := c.Stats(t.Context(), StatsQuery{Type: "Everything"})
	if err == nil || err.Error() != `invalid stats type "Everything": want Counters, Gauges, TextReadouts, Histograms or All` {
		t.Fatalf("err = %v", err)
	}
}

func TestQuitQuitQuitConnectionCut(t *testing.T) {
	t.Parallel()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		conn, _, err := w.(http.Hijacker).Hijack()
		if err == nil {
			conn.Close() // Envoy exited before answering
		}
	}))
	defer srv.Close()
	c, _ := New(srv.URL)
	if err := c.QuitQuitQuit(t.Context()); err != nil {
		t.Fatalf("QuitQuitQuit: %v", err)
	}
	// The same cut on a read is an error.
	if _, err := c.ServerInfo(t.Context()); err == nil {
		t.Fatal("ServerInfo on a cut connection: no error")
	}
}

// TestHugeBody is not parallel: it measures allocation while a handler streams
// 50 MB, and the cap must stop the read at 4 MiB.
func TestHugeBody(t *testing.T) {
	const total = 50 << 20
	for _, tc := range []struct {
		name string
		line string
		call func(context.Context, *Client) error
		path string
	}{
		{name: "stats", line: "cluster.outbound|9080||reviews.default.svc.cluster.local.upstream_cx_total: 1\n", path: "/stats",
			call: func(ctx context.Context, c *Client) error { _, err := c.Stats(ctx, StatsQuery{}); return err }},
		{name: "config dump", line: `{"version_info":"2026-11-30T19:05:14Z/41","cluster":{"name":"c"}},`, path: "/config_dump",
			call: func(ctx context.Context, c *Client) error { _, err := c.ConfigDump(ctx, ConfigDumpQuery{}); return err }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			written := make(chan int64, 1)
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				chunk := []byte(strings.Repeat(tc.line, 64<<10/len(tc.line)))
				var n int64
				defer func() { written <- n }()
				if tc.path == "/config_dump" {
					m, _ := io.WriteString(w, `{"configs":[{"@type":"type.googleapis.com/envoy.admin.v3.ClustersConfigDump","dynamic_active_clusters":[`)
					n += int64(m)
				}
				for n < total {
					m, err := w.Write(chunk)
					n += int64(m)
					if err != nil {
						return
					}
				}
			}))
			defer srv.Close()
			// Generous timeout: this tests the cap, and tiny entries under
			// the race detector parse slowly.
			c, _ := New(srv.URL, WithTimeout(30*time.Second))

			// Sample the live heap while the call runs: the peak, not the
			// total allocated, is what an agent's RSS budget feels.
			runtime.GC()
			var ms runtime.MemStats
			runtime.ReadMemStats(&ms)
			base := ms.HeapInuse
			var peak uint64
			stop, sampled := make(chan struct{}), make(chan struct{})
			go func() {
				defer close(sampled)
				var ms runtime.MemStats
				for {
					runtime.ReadMemStats(&ms)
					peak = max(peak, ms.HeapInuse)
					select {
					case <-stop:
						return
					case <-time.After(5 * time.Millisecond):
					}
				}
			}()
			err := tc.call(t.Context(), c)
			close(stop)
			<-sampled

			checkErr(t, err, "envoy admin GET "+srv.URL+tc.path+": response larger than 4194304 bytes")
			if !errors.Is(err, ErrTooLarge) {
				t.Errorf("not ErrTooLarge: %v", err)
			}
			grew := int64(peak) - int64(base)
			t.Logf("heap in use grew by at most %.1f MiB", float64(grew)/(1<<20))
			if grew > 24<<20 {
				t.Errorf("heap grew by %d MiB reading a body capped at 4 MiB", grew>>20)
			}
			srv.CloseClientConnections()
			if n := <-written; n >= total {
				t.Errorf("server wrote all %d bytes: the client kept reading", n)
			}
		})
	}
}

func TestMaxBodyOption(t *testing.T) {
	t.Parallel()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, readinessBody) }))
	defer srv.Close()
	small, _ := New(srv.URL, WithMaxBody(100))
	_, err := small.ReadinessFacts(t.Context())
	checkErr(t, err, "envoy admin GET "+srv.URL+"/stats: response larger than 100 bytes")
	exact, _ := New(srv.URL, WithMaxBody(int64(len(readinessBody))))
	if _, err := exact.ReadinessFacts(t.Context()); err != nil {
		t.Fatalf("body of exactly the cap: %v", err)
	}
}

func TestWithHTTPClient(t *testing.T) {
	t.Parallel()
	var used bool
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		used = r.Header.Get("X-Test") == "1"
		io.WriteString(w, "server.state: 0\n")
	}))
	defer srv.Close()
	hc := &http.Client{Transport: roundTripFunc(func(r *http.Request) (*http.Response, error) {
		r.Header.Set("X-Test", "1")
		return http.DefaultTransport.RoundTrip(r)
	})}
	c, _ := New(srv.URL, WithHTTPClient(hc))
	if _, err := c.Stats(t.Context(), StatsQuery{}); err != nil || !used {
		t.Fatalf("err %v, custom client used %v", err, used)
	}
}

type roundTripFunc func(*http.Request) (*http.Response, error)

func (f roundTripFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

func TestOtherTransportErrorIsOneLine(t *testing.T) {
	t.Parallel()
	// A plain-HTTP server spoken to over TLS: neither unreachable nor a timeout.
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "OK\n") }))
	defer srv.Close()
	c, _ := New(strings.Replace(srv.URL, "http://", "https://", 1))
	err := c.HealthcheckFail(t.Context())
	e := checkErr(t, err, "envoy admin POST "+strings.Replace(srv.URL, "http://", "https://", 1)+"/healthcheck/fail: ")
	if IsUnreachable(err) || e.kind != kindOther || strings.Contains(err.Error(), `Post "`) {
		t.Errorf("err %q kind %d", err, e.kind)
	}
}
