package probe

import (
	"github.com/meshready/meshready/internal/redact"

	"context"
	"net"
	"strings"
	"testing"
	"time"
)

func TestParseAppTarget(t *testing.T) {
	t.Parallel()
	valid := []struct {
		raw, kind, host, service string
	}{
		{"http://127.0.0.1:8080/ready", "http", "127.0.0.1:8080", ""},
		{"http://localhost/healthz?full=1", "http", "localhost", ""},
		{"https://app.default.svc:8443/", "https", "app.default.svc:8443", ""},
		{"HTTP://Example:80/x", "http", "Example:80", ""},
		{"http://[::1]:8080/ready", "http", "[::1]:8080", ""},
		{"tcp://127.0.0.1:5432", "tcp", "127.0.0.1:5432", ""},
		{"tcp://db:5432/", "tcp", "db:5432", ""},
		{"tcp://[::1]:5432", "tcp", "[::1]:5432", ""},
		{"grpc://127.0.0.1:9000", "grpc", "127.0.0.1:9000", ""},
		{"grpc://127.0.0.1:9000/", "grpc", "127.0.0.1:9000", ""},
		{"grpc://127.0.0.1:9000/my.pkg.Greeter", "grpc", "127.0.0.1:9000", "my.pkg.Greeter"},
		{"grpc://[::1]:9000/svc", "grpc", "[::1]:9000", "svc"},
	}
	for _, tc := range valid {
		got, err := ParseAppTarget(tc.raw)
		if err != nil {
			t.Errorf("ParseAppTarget(%q): %v", tc.raw, err)
			continue
		}
		if got.Kind != tc.kind || got.URL.Host != tc.host || got.GRPCService != tc.service {
			t.Errorf("ParseAppTarget(%q) = {%s %s %q}, want {%s %s %q}", tc.raw, got.Kind, got.URL.Host, got.GRPCService, tc.kind, tc.host, tc.service)
		}
	}

	invalid := []struct{ raw, why string }{
		{"", "empty"},
		{"ftp://files:21/x", `scheme "ftp" not supported`},
		{"grpcs://h:1", `scheme "grpcs" not supported`},
		{"localhost:8080", "no scheme (did you mean http://localhost:8080?)"},
		{"127.0.0.1:8080/ready", "no scheme (did you mean http://127.0.0.1:8080/ready?)"},
		{"garbage", "no scheme"},
		{"127.0.0.1:8080", "no scheme (did you mean http://127.0.0.1:8080?)"},
		{"://x", "missing protocol scheme"},
		{"http://:8080/ready", "no host"},
		{"http:/ready", "no host"},
		{"tcp://:5432", "no host"},
		{"tcp://db", "tcp needs a port"},
		{"tcp://db:", "tcp needs a port"},
		{"grpc://h/svc", "grpc needs a port"},
		{"http://h:port/", `invalid port ":port"`},
		{"http://h:0/", `port "0" out of range`},
		{"tcp://h:65536", `port "65536" out of range`},
		{"tcp://h:1/x", "tcp takes no path"},
		{"tcp://h:1?x=1", "no user, query or fragment"},
		{"grpc://u@h:1", "no user, query or fragment"},
		{"grpc://h:1#x", "no user, query or fragment"},
		{"grpc://h:1/a/b", "a grpc service name has no '/'"},
	}
	for _, tc := range invalid {
		_, err := ParseAppTarget(tc.raw)
		if err == nil {
			t.Errorf("ParseAppTarget(%q): no error", tc.raw)
			continue
		}
		msg := err.Error()
		for _, want := range []string{`invalid app target "` + redact.URL(tc.raw) + `"`, tc.why, appForms} {
			if !strings.Contains(msg, want) {
				t.Errorf("ParseAppTarget(%q) error %q does not contain %q", tc.raw, msg, want)
			}
		}
	}
}

func FuzzParseAppTarget(f *testing.F) {
	for _, s := range []string{
		"http://127.0.0.1:8080/ready", "https://h/", "tcp://h:1", "grpc://h:1/svc", "grpc://[::1]:9/",
		"ftp://x", "", "tcp://h", "http://:1", "grpc://h:1/a/b", "http://u:p@h:1/?q#f", "tcp://h:99999",
		"grpc://h:1/%2F", "http://[::1%25eth0]:80/",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, raw string) {
		got, err := ParseAppTarget(raw)
		if err != nil {
			if !strings.Contains(err.Error(), appForms) {
				t.Fatalf("error without the accepted forms: %v", err)
			}
			return
		}
		if _, ok := appProbers[got.Kind]; !ok || got.URL == nil || got.URL.Hostname() == "" {
			t.Fatalf("ParseAppTarget(%q) = %+v", raw, got)
		}
		if (got.Kind == "tcp" || got.Kind == "grpc") && got.URL.Port() == "" {
			t.Fatalf("ParseAppTarget(%q): %s without a port", raw, got.Kind)
		}
		if got.Kind != "grpc" && got.GRPCService != "" {
			t.Fatalf("ParseAppTarget(%q): service on %s", raw, got.Kind)
		}
	})
}

func TestAppCheckBadTarget(t *testing.T) {
	t.Parallel()
	_, err := AppCheck(AppTarget{Kind: "ftp"}, AppOptions{})(context.Background())
	if err == nil {
		t.Fatal("no error for a target not from ParseAppTarget")
	}
}

// A ctx without a deadline must not let a silent app hang the caller.
func TestAppCheckFallbackDeadline(t *testing.T) {
	t.Parallel()
	addr := holdingListener(t)
	// A TCP accept that never speaks HTTP/2 would hang a grpc probe.
	target := mustTarget(t, "grpc://"+addr)
	start := time.Now()
	r, err := AppCheck(target, AppOptions{})(context.Background())
	if err != nil || r.Status != Fail {
		t.Fatalf("got %+v, %v; want Fail", r, err)
	}
	if el := time.Since(start); el > appFallbackTimeout+500*time.Millisecond {
		t.Fatalf("returned after %v; fallback is %v", el, appFallbackTimeout)
	}
}

func TestAppCheckCancelledIsError(t *testing.T) {
	t.Parallel()
	addr := holdingListener(t)
	for _, raw := range []string{"http://" + addr + "/", "grpc://" + addr} {
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		r, err := AppCheck(mustTarget(t, raw), AppOptions{})(ctx)
		if err == nil {
			t.Errorf("%s: cancelled ctx gave %+v, want an error", raw, r)
		}
	}
}

func mustTarget(t testing.TB, raw string) AppTarget {
	t.Helper()
	target, err := ParseAppTarget(raw)
	if err != nil {
		t.Fatal(err)
	}
	return target
}

// holdingListener accepts connections and never writes: a hung app.
func holdingListener(t testing.TB) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() {
		var conns []net.Conn
		defer func() {
			for _, c := range conns {
				c.Close()
			}
			close(done)
		}()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			conns = append(conns, c)
		}
	}()
	t.Cleanup(func() { ln.Close(); <-done })
	return ln.Addr().String()
}

// closedAddr is an address nothing listens on.
func closedAddr(t testing.TB) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return addr
}
