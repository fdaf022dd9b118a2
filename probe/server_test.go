package probe

import (
	"context"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

func readyAgg(r Result) *Aggregator {
	return NewAggregator([]Check{constCheck("app", r)}, AggregatorOptions{Interval: time.Hour})
}

func TestHandler(t *testing.T) {
	t.Parallel()
	ready := readyAgg(passf("fine"))
	unready := readyAgg(failf("HTTP probe failed with statuscode: 503"))
	liveFail := readyAgg(failf("dead"))
	m := NewMetrics("v1.2.3", "abc")
	cases := []struct {
		name, method, target, remote string
		opts                         ServerOptions
		code                         int
		body                         string // exact, or prefix when it ends with "*"
		ctype                        string
	}{
		{"ready", "GET", "/health", "", ServerOptions{Ready: ready}, 200, "ok\n", "text/plain; charset=utf-8"},
		{"not ready", "GET", "/health", "", ServerOptions{Ready: unready}, 503, "not ready: app: HTTP probe failed with statuscode: 503\n", "text/plain; charset=utf-8"},
		{"head has no body", "HEAD", "/health", "", ServerOptions{Ready: unready}, 503, "", "text/plain; charset=utf-8"},
		{"post refused", "POST", "/health", "", ServerOptions{Ready: ready}, 405, "method not allowed*", ""},
		{"delete refused", "DELETE", "/metrics", "", ServerOptions{Ready: ready}, 405, "method not allowed*", ""},
		{"unknown path", "GET", "/healthz", "", ServerOptions{Ready: ready}, 404, "404 page not found\n", ""},
		{"live without app-live", "GET", "/health/live", "", ServerOptions{Ready: unready}, 200, "ok\n", ""},
		{"live follows app-live only", "GET", "/health/live", "", ServerOptions{Ready: ready, Live: liveFail}, 503, "not ready: app: dead\n", ""},
		{"verbose from loopback", "GET", "/health?verbose=1", "127.0.0.1:4000", ServerOptions{Ready: unready}, 503, "{\"status\":\"not ready\"*", "application/json"},
		{"verbose from ::ffff:127.0.0.1", "GET", "/health?verbose=1", "[::ffff:127.0.0.1]:4000", ServerOptions{Ready: unready}, 503, "{\"status\":\"not ready\"*", "application/json"},
		{"verbose refused to Envoy's inbound passthrough 127.0.0.6", "GET", "/health?verbose=1", "127.0.0.6:4000", ServerOptions{Ready: unready}, 503, "not ready: app: HTTP probe failed with statuscode: 503\n", "text/plain; charset=utf-8"},
		{"verbose refused to 127.0.0.2", "GET", "/health?verbose=1", "127.0.0.2:4000", ServerOptions{Ready: unready}, 503, "not ready: app: HTTP probe failed with statuscode: 503\n", ""},
		{"verbose to 127.0.0.6 with --verbose-remote", "GET", "/health?verbose=1", "127.0.0.6:4000", ServerOptions{Ready: unready, VerboseRemote: true}, 503, "{\"status\":\"not ready\"*", "application/json"},
		{"verbose=0 is the short body", "GET", "/health?verbose=0", "127.0.0.1:4000", ServerOptions{Ready: ready}, 200, "ok\n", ""},
		{"verbose refused to remote", "GET", "/health?verbose=1", "10.1.2.3:4000", ServerOptions{Ready: unready}, 503, "not ready: app: HTTP probe failed with statuscode: 503\n", "text/plain; charset=utf-8"},
		{"verbose remote when allowed", "GET", "/health?verbose=1", "10.1.2.3:4000", ServerOptions{Ready: ready, VerboseRemote: true}, 200, "{\"status\":\"ready\"*", "application/json"},
		{"verbose on live", "GET", "/health/live?verbose=true", "[::1]:4000", ServerOptions{Ready: ready}, 200, "{\"status\":\"ready\"*", ""},
		{"metrics", "GET", "/metrics", "", ServerOptions{Ready: ready, Metrics: m}, 200, "*", ""},
		{"metrics off", "GET", "/metrics", "", ServerOptions{Ready: ready}, 404, "404 page not found\n", ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			req := httptest.NewRequest(tc.method, tc.target, nil)
			if tc.remote != "" {
				req.RemoteAddr = tc.remote
			} else {
				req.RemoteAddr = "127.0.0.1:5555"
			}
			rec := httptest.NewRecorder()
			Handler(tc.opts).ServeHTTP(rec, req)
			body := rec.Body.String()
			if rec.Code != tc.code {
				t.Fatalf("code %d, want %d (body %q)", rec.Code, tc.code, body)
			}
			if p, ok := strings.CutSuffix(tc.body, "*"); ok {
				if !strings.HasPrefix(body, p) {
					t.Fatalf("body %q, want prefix %q", body, p)
				}
			} else if body != tc.body {
				t.Fatalf("body %q, want %q", body, tc.body)
			}
			if tc.ctype != "" && rec.Header().Get("Content-Type") != tc.ctype {
				t.Fatalf("content type %q", rec.Header().Get("Content-Type"))
			}
			if tc.code == 405 && rec.Header().Get("Allow") != "GET, HEAD" {
				t.Fatalf("Allow %q", rec.Header().Get("Allow"))
			}
		})
	}
}

func TestVerboseBody(t *testing.T) {
	t.Parallel()
	a := NewAggregator([]Check{
		constCheck("envoy.live", passf("LIVE")),
		constCheck("mesh.synced", Result{Status: Degraded, Message: "Pilot unreachable after first sync", Source: "syncz"}),
		constCheck("app", Result{Status: Pass, Message: "HTTP 302", Warning: "redirect to another host not followed"}),
	}, AggregatorOptions{})
	var got VerboseBody
	if err := json.Unmarshal(a.Verdict(context.Background()).VerboseJSON(), &got); err != nil {
		t.Fatal(err)
	}
	if got.Status != "ready" || got.SyncSource != "syncz" || len(got.Checks) != 3 {
		t.Fatalf("%+v", got)
	}
	if c := got.Checks[2]; c.Name != "app" || c.Warning == "" || c.CheckedAt == "" {
		t.Fatalf("%+v", c)
	}
	if c := got.Checks[1]; c.Status != Degraded {
		t.Fatalf("%+v", c)
	}
}

func TestMetricsFollowVerdicts(t *testing.T) {
	t.Parallel()
	m := NewMetrics("v", "c")
	a := NewAggregator([]Check{constCheck("envoy.live", failf("DRAINING"))}, AggregatorOptions{Observe: m.ObserveVerdict})
	a.Verdict(context.Background())
	rec := httptest.NewRecorder()
	Handler(ServerOptions{Ready: a, Metrics: m}).ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	body := rec.Body.String()
	for _, want := range []string{
		"meshready_ready 0",
		`meshready_check_status{check="envoy.live",status="fail"} 1`,
		`meshready_check_status{check="envoy.live",status="pass"} 0`,
		`meshready_check_duration_seconds_count{check="envoy.live"} 1`,
		`meshready_build_info{commit="c",goversion="go`,
		"go_goroutines ",
		"process_resident_memory_bytes ",
		"meshready_draining 0",
	} {
		if !strings.Contains(body, want) {
			t.Errorf("metrics lack %q", want)
		}
	}
	a.Drain()
	rec = httptest.NewRecorder()
	Handler(ServerOptions{Ready: a, Metrics: m}).ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	if !strings.Contains(rec.Body.String(), "meshready_draining 1") {
		t.Error("draining not shown in metrics")
	}
}

// A pod nobody has probed yet: /metrics must not say meshready_ready 0 while
// /health would say 200 (before, the gauges moved only on /health calls).
func TestMetricsTellTheTruthWithoutAProbe(t *testing.T) {
	t.Parallel()
	m := NewMetrics("v", "c")
	a := NewAggregator([]Check{constCheck("envoy.live", passf("LIVE"))}, AggregatorOptions{Interval: time.Hour, Observe: m.ObserveVerdict})
	rec := httptest.NewRecorder()
	Handler(ServerOptions{Ready: a, Metrics: m}).ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	for _, want := range []string{"meshready_ready 1", `meshready_check_status{check="envoy.live",status="pass"} 1`, "meshready_check_rounds_total 1"} {
		if !strings.Contains(rec.Body.String(), want) {
			t.Errorf("metrics lack %q", want)
		}
	}
	// Scrapes share the round like probes do.
	Handler(ServerOptions{Ready: a, Metrics: m}).ServeHTTP(httptest.NewRecorder(), httptest.NewRequest("GET", "/metrics", nil))
	if n := a.Rounds(); n != 1 {
		t.Errorf("%d rounds for two scrapes within the interval, want 1", n)
	}
}

// Slow clients holding connections open must not delay the kubelet's probe.
func TestSlowClientsDoNotStarveTheProbe(t *testing.T) {
	t.Parallel()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- ServeListener(ctx, ln, ServerOptions{Ready: readyAgg(passf("")), MaxConns: 8}) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("serve: %v", err)
		}
	}()
	// Four slowloris clients: they send half a request line and stop.
	for range 4 {
		c, err := net.Dial("tcp", ln.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		io.WriteString(c, "GET /health HTTP/1.1\r\nHost: x\r\n")
	}
	client := &http.Client{Timeout: 2 * time.Second}
	resp, err := client.Get("http://" + ln.Addr().String() + "/health")
	if err != nil {
		t.Fatalf("probe starved: %v", err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("code %d", resp.StatusCode)
	}
}

func TestServeReportsPortInUse(t *testing.T) {
	t.Parallel()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	err = Serve(context.Background(), ln.Addr().String(), ServerOptions{Ready: readyAgg(passf(""))})
	if err == nil {
		t.Fatal("second listener on the same port succeeded")
	}
	if h := ListenHint(ln.Addr().String(), err); !strings.Contains(h, "port is taken") || !strings.Contains(h, "--listen") {
		t.Fatalf("hint %q", h)
	}
}

func BenchmarkHealthCached(b *testing.B) {
	h := Handler(ServerOptions{Ready: readyAgg(passf(""))})
	req := httptest.NewRequest("GET", "/health", nil)
	b.ReportAllocs()
	for b.Loop() {
		rec := discardWriter{h: http.Header{}}
		h.ServeHTTP(&rec, req)
		if rec.code != 200 {
			b.Fatal(rec.code)
		}
	}
}

// discardWriter is a ResponseWriter that keeps only the code, so the
// benchmark measures the handler, not the recorder.
type discardWriter struct {
	h    http.Header
	code int
}

func (d *discardWriter) Header() http.Header         { return d.h }
func (d *discardWriter) Write(p []byte) (int, error) { return len(p), nil }
func (d *discardWriter) WriteHeader(c int)           { d.code = c }

// BenchmarkHealthOverHTTP measures a cached /health through the real
// net/http server on loopback, keep-alive, from a raw client that allocates
// nothing per request — so allocs/op is (almost all) the server's cost.
func BenchmarkHealthOverHTTP(b *testing.B) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go ServeListener(ctx, ln, ServerOptions{Ready: readyAgg(passf(""))})
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	req := []byte("GET /health HTTP/1.1\r\nHost: pod\r\nUser-Agent: kube-probe/1.31\r\n\r\n")
	// Learn the response's size once, then read exactly that much each time.
	if _, err := c.Write(req); err != nil {
		b.Fatal(err)
	}
	buf := make([]byte, 4096)
	n, err := c.Read(buf)
	if err != nil || !strings.HasSuffix(string(buf[:n]), "\r\n\r\nok\n") {
		b.Fatalf("first response %q %v", buf[:n], err)
	}
	size := n
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		if _, err := c.Write(req); err != nil {
			b.Fatal(err)
		}
		// Date changes length never; the response is the same size.
		if _, err := io.ReadFull(c, buf[:size]); err != nil {
			b.Fatal(err)
		}
	}
}
