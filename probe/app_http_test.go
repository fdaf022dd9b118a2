package probe

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"runtime"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

const testUA = "meshready/test"

func TestAppHTTP(t *testing.T) {
	t.Parallel()
	var otherHits atomic.Int32
	other := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		otherHits.Add(1)
	}))
	t.Cleanup(other.Close)
	// Same port, another hostname: the kubelet compares hostnames only.
	otherHost := strings.Replace(other.URL, "127.0.0.1", "localhost", 1)

	status := func(code int) http.HandlerFunc {
		return func(w http.ResponseWriter, r *http.Request) {
			w.WriteHeader(code)
			fmt.Fprint(w, "body that the message must not carry")
		}
	}
	hops := func(w http.ResponseWriter, r *http.Request) {
		n, _ := strconv.Atoi(r.URL.Query().Get("n"))
		if n == 0 {
			return
		}
		http.Redirect(w, r, "/?n="+strconv.Itoa(n-1), http.StatusFound)
	}

	cases := []struct {
		name    string
		handler http.HandlerFunc
		query   string
		tls     bool
		want    Status
		msg     string // exact Message
		warning string // substring of Warning; "" means none
	}{
		{name: "200", handler: status(200), want: Pass, msg: "HTTP 200"},
		{name: "204", handler: status(204), want: Pass, msg: "HTTP 204"},
		{name: "https self-signed", handler: status(200), tls: true, want: Pass, msg: "HTTP 200"},
		{name: "399", handler: status(399), want: Pass, msg: "HTTP 399", warning: "HTTP 399 redirect not followed"},
		{name: "400", handler: status(400), want: Fail, msg: "HTTP probe failed with statuscode: 400"},
		{name: "404", handler: status(404), want: Fail, msg: "HTTP probe failed with statuscode: 404"},
		{name: "500", handler: status(500), want: Fail, msg: "HTTP probe failed with statuscode: 500"},
		{name: "503", handler: status(503), want: Fail, msg: "HTTP probe failed with statuscode: 503"},
		{name: "301 same host then 200", handler: func(w http.ResponseWriter, r *http.Request) {
			if r.URL.Path == "/ready" {
				http.Redirect(w, r, "/moved", http.StatusMovedPermanently)
				return
			}
			if r.URL.Path != "/moved" || r.UserAgent() != testUA || r.Header.Get("Accept") != "*/*" {
				w.WriteHeader(500)
			}
		}, want: Pass, msg: "HTTP 200"},
		{name: "302 to another host", handler: func(w http.ResponseWriter, r *http.Request) {
			http.Redirect(w, r, otherHost+"/elsewhere", http.StatusFound)
		}, want: Pass, msg: "HTTP 302", warning: "redirect to another host not followed: " + otherHost + "/elsewhere"},
		{name: "9 hops followed", handler: hops, query: "?n=9", want: Pass, msg: "HTTP 200"},
		{name: "10 hops", handler: hops, query: "?n=10", want: Fail, msg: "stopped after 10 redirects"},
		{name: "redirect loop", handler: func(w http.ResponseWriter, r *http.Request) {
			http.Redirect(w, r, r.URL.Path, http.StatusFound)
		}, want: Fail, msg: "stopped after 10 redirects"},
		{name: "1 MB body", handler: func(w http.ResponseWriter, r *http.Request) {
			w.Write(make([]byte, 1<<20))
		}, want: Pass, msg: "HTTP 200"},
		{name: "kubelet headers", handler: func(w http.ResponseWriter, r *http.Request) {
			if r.UserAgent() != testUA || r.Header.Get("Accept") != "*/*" ||
				r.Header.Get("Accept-Encoding") != "" || !r.Close || r.Method != http.MethodGet {
				http.Error(w, "", 418)
			}
		}, want: Pass, msg: "HTTP 200"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			srv := httptest.NewUnstartedServer(tc.handler)
			if tc.tls {
				srv.StartTLS()
			} else {
				srv.Start()
			}
			t.Cleanup(srv.Close)
			raw := srv.URL + "/ready" + tc.query
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			r, err := AppCheck(mustTarget(t, raw), AppOptions{UserAgent: testUA})(ctx)
			if err != nil {
				t.Fatalf("error: %v", err)
			}
			msg := tc.msg
			if tc.want == Fail && !strings.HasPrefix(msg, "HTTP probe failed") {
				msg = srv.URL + "/ready: " + msg // the query is never echoed: it may hold a token
			}
			if r.Status != tc.want || r.Message != msg {
				t.Errorf("got %s %q, want %s %q", r.Status, r.Message, tc.want, msg)
			}
			if tc.warning == "" && r.Warning != "" || !strings.Contains(r.Warning, tc.warning) {
				t.Errorf("warning %q, want %q", r.Warning, tc.warning)
			}
		})
	}
	t.Cleanup(func() {
		if n := otherHits.Load(); n != 0 {
			t.Errorf("a redirect to another host was followed (%d hits)", n)
		}
	})
}

func TestAppHTTPConnectionRefused(t *testing.T) {
	t.Parallel()
	for _, raw := range []string{
		"http://" + closedAddr(t) + "/ready",
		"https://" + closedAddr(t) + "/ready",
	} {
		r, err := AppCheck(mustTarget(t, raw), AppOptions{})(context.Background())
		if err != nil || r.Status != Fail || r.Message != raw+": connection refused" {
			t.Errorf("got %+v, %v; want Fail %q", r, err, raw+": connection refused")
		}
	}
	// Credentials in the URL stay out of the message.
	addr := closedAddr(t)
	r, _ := AppCheck(mustTarget(t, "http://user:secret@"+addr+"/"), AppOptions{})(context.Background())
	if strings.Contains(r.Message, "secret") {
		t.Errorf("message leaks the password: %q", r.Message)
	}
}

func TestAppHTTPNeverAnswers(t *testing.T) {
	t.Parallel()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		<-r.Context().Done()
	}))
	t.Cleanup(srv.Close)
	slow := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Write(make([]byte, 100)) // headers and a first chunk, then nothing
		w.(http.Flusher).Flush()
		<-r.Context().Done()
	}))
	t.Cleanup(slow.Close)
	for _, raw := range []string{
		srv.URL + "/ready",
		slow.URL + "/ready",
		"http://" + holdingListener(t) + "/ready",
	} {
		const deadline = 200 * time.Millisecond
		ctx, cancel := context.WithTimeout(context.Background(), deadline)
		start := time.Now()
		r, err := AppCheck(mustTarget(t, raw), AppOptions{})(ctx)
		el := time.Since(start)
		cancel()
		if err != nil || r.Status != Fail || r.Message != raw+": timed out" {
			t.Errorf("got %+v, %v; want Fail %q", r, err, raw+": timed out")
		}
		if el > deadline+300*time.Millisecond {
			t.Errorf("%s: returned after %v, deadline %v", raw, el, deadline)
		}
	}
}

// Not parallel: it counts goroutines.
func TestAppHTTPNoGoroutineLeft(t *testing.T) {
	base := runtime.NumGoroutine()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		<-r.Context().Done()
	}))
	check := AppCheck(mustTarget(t, srv.URL+"/ready"), AppOptions{})
	for range 3 {
		ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
		if r, _ := check(ctx); r.Status != Fail {
			t.Fatalf("got %+v", r)
		}
		cancel()
	}
	srv.Close()
	for end := time.Now().Add(2 * time.Second); runtime.NumGoroutine() > base; {
		if time.Now().After(end) {
			buf := make([]byte, 1<<16)
			t.Fatalf("%d goroutines, %d before:\n%s", runtime.NumGoroutine(), base, buf[:runtime.Stack(buf, true)])
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func BenchmarkAppHTTP(b *testing.B) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Write([]byte("ok"))
	}))
	defer srv.Close()
	check := AppCheck(mustTarget(b, srv.URL+"/ready"), AppOptions{UserAgent: testUA})
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	b.ReportAllocs()
	for b.Loop() {
		if r, err := check(ctx); err != nil || r.Status != Pass {
			b.Fatalf("%+v %v", r, err)
		}
	}
}
