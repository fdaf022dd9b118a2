package probe

import (
	"context"
	"errors"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/backoff"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"

	"github.com/meshready/meshready/internal/redact"
)

// grpcConn is the one ClientConn a grpc target keeps; grpc reconnects it by
// itself. It also remembers the last dial error, because grpc reports a
// refused connection only as text inside an Unavailable status.
type grpcConn struct {
	mu      sync.Mutex
	cc      *grpc.ClientConn
	dialErr atomic.Pointer[error]
}

// Backoff between reconnects is capped at 1s (grpc's default grows to 120s)
// so that an app that comes up late is seen within a probe or two. A local
// handshake takes milliseconds; one stuck for 2s is abandoned and retried.
var grpcConnectParams = grpc.ConnectParams{
	Backoff:           backoff.Config{BaseDelay: 100 * time.Millisecond, Multiplier: 1.6, Jitter: 0.2, MaxDelay: time.Second},
	MinConnectTimeout: 2 * time.Second,
}

func (g *grpcConn) get(t AppTarget, ua string) (*grpc.ClientConn, error) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.cc != nil {
		return g.cc, nil
	}
	var d net.Dialer
	cc, err := grpc.NewClient("passthrough:///"+t.URL.Host,
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithUserAgent(ua),
		grpc.WithConnectParams(grpcConnectParams),
		// Our own dialer, as the kubelet's: no proxy from the environment,
		// and the real dial error kept for the message.
		grpc.WithContextDialer(func(ctx context.Context, addr string) (net.Conn, error) {
			c, err := d.DialContext(ctx, "tcp", addr)
			if err != nil {
				g.dialErr.Store(&err)
			} else {
				g.dialErr.Store(nil)
			}
			return c, err
		}),
	)
	if err != nil {
		return nil, err
	}
	g.cc = cc
	return cc, nil
}

func (g *grpcConn) close() {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.cc != nil {
		g.cc.Close()
		g.cc = nil
	}
}

// probeGRPC asks grpc.health.v1 under ctx's one deadline, which covers
// connecting too. The RPC fails fast while the connection is down, so a
// stopped app is a Fail at once rather than at the deadline.
func probeGRPC(ctx context.Context, t AppTarget, opts AppOptions) (Result, error) {
	g := opts.grpc
	if g == nil {
		g = &grpcConn{}
		defer g.close()
	}
	cc, err := g.get(t, userAgent(opts))
	if err != nil {
		return Result{}, err
	}
	resp, err := healthpb.NewHealthClient(cc).Check(ctx, &healthpb.HealthCheckRequest{Service: t.GRPCService})
	switch status.Code(err) {
	case codes.OK:
	case codes.Unimplemented:
		return failf(redact.URL(t.URL.String()) + ": does not implement grpc.health.v1"), nil
	case codes.NotFound: // grpc-go's health server for an unknown service
		return failf(redact.URL(t.URL.String()) + ": " + healthpb.HealthCheckResponse_SERVICE_UNKNOWN.String()), nil
	case codes.DeadlineExceeded:
		return appFailure(ctx, t.URL, context.DeadlineExceeded)
	case codes.Unavailable:
		if p := g.dialErr.Load(); p != nil {
			return appFailure(ctx, t.URL, *p)
		}
		fallthrough
	default:
		s := status.Convert(err)
		return appFailure(ctx, t.URL, errors.New(s.Code().String()+": "+s.Message()))
	}
	if st := resp.GetStatus(); st != healthpb.HealthCheckResponse_SERVING {
		return failf(redact.URL(t.URL.String()) + ": " + st.String()), nil
	}
	return passf("SERVING"), nil
}
