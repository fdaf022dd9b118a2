package probe

import (
	"context"
	"net"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/metadata"
)

// grpcServer serves on addr ("127.0.0.1:0" for any port), with the health
// service when hs is not nil, and records the last user agent it saw.
func grpcServer(t testing.TB, addr string, hs *health.Server) (string, func(), *atomic.Value) {
	t.Helper()
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	var ua atomic.Value
	s := grpc.NewServer(grpc.UnaryInterceptor(func(ctx context.Context, req any, info *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
		if md, ok := metadata.FromIncomingContext(ctx); ok && len(md["user-agent"]) > 0 {
			ua.Store(md["user-agent"][0])
		}
		return h(ctx, req)
	}))
	if hs != nil {
		healthpb.RegisterHealthServer(s, hs)
	}
	go s.Serve(ln)
	t.Cleanup(s.Stop)
	return ln.Addr().String(), s.Stop, &ua
}

func TestAppGRPC(t *testing.T) {
	t.Parallel()
	hs := health.NewServer() // "" is SERVING
	hs.SetServingStatus("up", healthpb.HealthCheckResponse_SERVING)
	hs.SetServingStatus("down", healthpb.HealthCheckResponse_NOT_SERVING)
	hs.SetServingStatus("unknown", healthpb.HealthCheckResponse_UNKNOWN)
	withHealth, _, _ := grpcServer(t, "127.0.0.1:0", hs)
	notDown := health.NewServer()
	notDown.SetServingStatus("", healthpb.HealthCheckResponse_NOT_SERVING)
	serverDown, _, _ := grpcServer(t, "127.0.0.1:0", notDown)
	without, _, _ := grpcServer(t, "127.0.0.1:0", nil)
	nothing := closedAddr(t)
	hung := holdingListener(t)

	cases := []struct {
		name, raw string
		want      Status
		msg       string // after "<raw>: " for a Fail
	}{
		{"server SERVING", "grpc://" + withHealth, Pass, "SERVING"},
		{"service SERVING", "grpc://" + withHealth + "/up", Pass, "SERVING"},
		{"server NOT_SERVING", "grpc://" + serverDown, Fail, "NOT_SERVING"},
		{"service NOT_SERVING", "grpc://" + withHealth + "/down", Fail, "NOT_SERVING"},
		{"service UNKNOWN", "grpc://" + withHealth + "/unknown", Fail, "UNKNOWN"},
		{"unknown service", "grpc://" + withHealth + "/nope", Fail, "SERVICE_UNKNOWN"},
		{"no health service", "grpc://" + without, Fail, "does not implement grpc.health.v1"},
		{"nothing listening", "grpc://" + nothing, Fail, "connection refused"},
		{"never speaks HTTP/2", "grpc://" + hung, Fail, "timed out"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			const deadline = 500 * time.Millisecond
			ctx, cancel := context.WithTimeout(context.Background(), deadline)
			defer cancel()
			start := time.Now()
			r, err := AppCheck(mustTarget(t, tc.raw), AppOptions{})(ctx)
			if el := time.Since(start); el > deadline+300*time.Millisecond {
				t.Errorf("returned after %v", el)
			}
			msg := tc.msg
			if tc.want == Fail {
				msg = tc.raw + ": " + msg
			}
			if err != nil || r.Status != tc.want || r.Message != msg {
				t.Errorf("got %+v, %v; want %s %q", r, err, tc.want, msg)
			}
		})
	}
}

// One connection serves every probe of a target; it follows status changes,
// and comes back within a couple of seconds when the app restarts.
func TestAppGRPCReusesAndReconnects(t *testing.T) {
	t.Parallel()
	hs := health.NewServer()
	addr, stop, ua := grpcServer(t, "127.0.0.1:0", hs)
	opts := AppOptions{UserAgent: testUA}
	check := AppCheck(mustTarget(t, "grpc://"+addr), opts)
	probe := func() Result {
		ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
		defer cancel()
		r, err := check(ctx)
		if err != nil {
			t.Fatal(err)
		}
		return r
	}
	if r := probe(); r.Status != Pass {
		t.Fatalf("first probe: %+v", r)
	}
	if got, _ := ua.Load().(string); !strings.HasPrefix(got, testUA+" ") {
		t.Errorf("user agent %q, want %q first", got, testUA)
	}
	hs.SetServingStatus("", healthpb.HealthCheckResponse_NOT_SERVING)
	if r := probe(); r.Status != Fail {
		t.Fatalf("after NOT_SERVING: %+v", r)
	}
	stop()
	if r := probe(); r.Status != Fail {
		t.Fatalf("after stop: %+v", r)
	}
	// Back on the same port after a few failed reconnects.
	time.Sleep(1500 * time.Millisecond)
	grpcServer(t, addr, health.NewServer())
	end := time.Now().Add(3 * time.Second)
	for r := probe(); r.Status != Pass; r = probe() {
		if time.Now().After(end) {
			t.Fatalf("not back 3s after restart: %+v", r)
		}
		time.Sleep(100 * time.Millisecond)
	}
}
