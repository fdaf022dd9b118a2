// testapp is the kubelet stand-in tests' container: an HTTP server on
// $LISTEN with /ready (503 while $UNREADY_FILE exists, else 200), /live
// (500 after $LIVE_FAIL_AFTER on the first run in this working directory,
// then 200 for later runs) and /env (its argv and environment as JSON), a
// gRPC health server on $GRPC_LISTEN if set, and on SIGTERM: exit
// $TERM_EXIT after $TERM_DELAY, or nothing with ON_TERM=ignore.
package main

import (
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strconv"
	"sync/atomic"
	"syscall"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
)

var probeUA atomic.Value

func main() {
	probeUA.Store("")
	start := time.Now()
	fmt.Printf("testapp: pid %d args %q\n", os.Getpid(), os.Args)
	firstRun := false
	if _, err := os.Stat("ran-before"); err != nil {
		firstRun = true
		_ = os.WriteFile("ran-before", nil, 0o644)
	}
	failAfter, _ := time.ParseDuration(os.Getenv("LIVE_FAIL_AFTER"))

	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGTERM)
	go func() {
		for range sigs {
			fmt.Println("testapp: SIGTERM")
			if os.Getenv("ON_TERM") == "ignore" {
				continue
			}
			d, _ := time.ParseDuration(os.Getenv("TERM_DELAY"))
			code, _ := strconv.Atoi(os.Getenv("TERM_EXIT"))
			time.Sleep(d)
			fmt.Printf("testapp: exit %d\n", code)
			os.Exit(code)
		}
	}()

	if addr := os.Getenv("GRPC_LISTEN"); addr != "" {
		ln, err := net.Listen("tcp", addr)
		if err != nil {
			fmt.Println("testapp:", err)
			os.Exit(1)
		}
		s := grpc.NewServer()
		hs := health.NewServer()
		hs.SetServingStatus("", healthpb.HealthCheckResponse_SERVING)
		healthpb.RegisterHealthServer(s, hs)
		go func() { _ = s.Serve(ln) }()
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/ready", func(w http.ResponseWriter, r *http.Request) {
		probeUA.Store(r.UserAgent())
		if f := os.Getenv("UNREADY_FILE"); f != "" {
			if _, err := os.Stat(f); err == nil {
				http.Error(w, "not ready", http.StatusServiceUnavailable)
				return
			}
		}
		fmt.Fprintln(w, "ok")
	})
	mux.HandleFunc("/live", func(w http.ResponseWriter, r *http.Request) {
		if firstRun && failAfter > 0 && time.Since(start) > failAfter {
			http.Error(w, "dead", http.StatusInternalServerError)
			return
		}
		fmt.Fprintln(w, "ok")
	})
	mux.HandleFunc("/env", func(w http.ResponseWriter, r *http.Request) {
		_ = json.NewEncoder(w).Encode(map[string]any{"args": os.Args, "env": os.Environ(), "probe_ua": probeUA.Load()})
	})
	addr := os.Getenv("LISTEN")
	if addr == "" {
		fmt.Println("testapp: no LISTEN")
		select {}
	}
	fmt.Println("testapp: listening on", addr)
	if err := http.ListenAndServe(addr, mux); err != nil {
		fmt.Println("testapp:", err)
		os.Exit(1)
	}
}
