// Command greeter is the small gRPC service of the local mesh (make demo and
// integration's rollout tests): one unary method, demo.Greeter/Hello, that
// answers with the pod's name after a little simulated work, and the
// standard grpc.health.v1 service for readiness.
//
// It shuts down the way a well-behaved gRPC server does: on SIGTERM it stops
// accepting and finishes what is in flight (GracefulStop). That is not
// enough in a mesh: callers keep routing to the pod until the endpoint
// change reaches them, which is what meshready's drain waits for.
package main

import (
	"context"
	"flag"
	"fmt"
	"net"
	"os"
	"os/signal"
	"sync/atomic"
	"syscall"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/meshready/meshready/integration/greeter"
)

func main() {
	listen := flag.String("listen", "127.0.0.1:8080", "address to serve gRPC on")
	name := flag.String("name", "greeter", "pod name, returned by Hello")
	work := flag.Duration("work", 20*time.Millisecond, "simulated work per request")
	call := flag.String("call", "", "host:port to call demo.Greeter/Hello on before anything else (the start-up race)")
	neverReady := flag.Bool("never-ready", false, "report NOT_SERVING forever (a release that never becomes ready)")
	ignoreTerm := flag.Bool("ignore-sigterm", false, "ignore SIGTERM (an app that will not stop; only SIGKILL ends it)")
	failEvery := flag.Int("fail-every", 0, "answer every Nth call with UNAVAILABLE (a bad release: 20 is 5 %)")
	extra := flag.Duration("extra-latency", 0, "added to every call's work (a slow release)")
	flag.Parse()
	// A demo app must not outlive the demo or test that started it, even
	// when that was SIGKILLed.
	_, _, _ = syscall.RawSyscall(syscall.SYS_PRCTL, syscall.PR_SET_PDEATHSIG, uintptr(syscall.SIGKILL), 0)
	log := func(format string, args ...any) {
		fmt.Fprintf(os.Stderr, "%s greeter %s: %s\n", time.Now().Format("15:04:05.000"), *name, fmt.Sprintf(format, args...))
	}

	// The first thing the app does: one call through its sidecar. Started
	// before the sidecar can route, this is the call that fails at boot.
	if *call != "" {
		if err := callOnce(*call); err != nil {
			log("first outbound call to %s failed: %v", *call, err)
			os.Exit(1)
		}
		log("first outbound call to %s succeeded", *call)
	}

	if *ignoreTerm {
		signal.Ignore(syscall.SIGTERM)
	}
	term := make(chan os.Signal, 1)
	if !*ignoreTerm {
		signal.Notify(term, syscall.SIGTERM, syscall.SIGINT)
	}

	l, err := net.Listen("tcp", *listen)
	if err != nil {
		log("listen: %v", err)
		os.Exit(1)
	}
	srv := grpc.NewServer()
	hs := health.NewServer()
	if *neverReady {
		hs.SetServingStatus("", healthpb.HealthCheckResponse_NOT_SERVING)
	}
	healthpb.RegisterHealthServer(srv, hs)
	var calls atomic.Int64
	greeter.Register(srv, func(ctx context.Context, in *wrapperspb.StringValue) (*wrapperspb.StringValue, error) {
		if n := calls.Add(1); *failEvery > 0 && n%int64(*failEvery) == 0 {
			return nil, status.Error(codes.Unavailable, "greeter -fail-every: a failing release")
		}
		select {
		case <-time.After(*work + *extra):
		case <-ctx.Done():
			return nil, ctx.Err()
		}
		return wrapperspb.String(*name), nil
	})
	log("serving on %s", l.Addr())
	done := make(chan error, 1)
	go func() { done <- srv.Serve(l) }()
	select {
	case s := <-term:
		log("%v: graceful stop (finishing in-flight requests)", s)
		srv.GracefulStop()
		log("stopped")
	case err := <-done:
		log("serve: %v", err)
		os.Exit(1)
	}
}

func callOnce(addr string) error {
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return err
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	_, err = greeter.Hello(ctx, conn, "boot")
	return err
}
