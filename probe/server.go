package probe

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// ServerOptions configure the probe server on --listen.
type ServerOptions struct {
	// Ready answers /health.
	Ready *Aggregator
	// Live answers /health/live; nil means "the agent serves" is enough.
	// It must never hold Envoy or Pilot checks: a Pilot outage must not
	// make the kubelet restart every pod.
	Live *Aggregator
	// Metrics, when set, is served on /metrics.
	Metrics *Metrics
	// VerboseRemote lets non-loopback clients read the verbose body (proxy
	// id, versions, app URLs); by default they get the one-line body.
	VerboseRemote bool
	// MaxConns bounds open connections (default 128) and MaxConnsPerAddr
	// those of one client address (default 32). Neither makes a newcomer
	// wait: at a bound, the connection that has been without a request in
	// progress longest is shed (see connguard.go), so a slow or hostile
	// client on the pod network cannot crowd out the kubelet's probe.
	MaxConns        int
	MaxConnsPerAddr int
	Logger          *slog.Logger
}

var (
	hdrText    = []string{"text/plain; charset=utf-8"}
	hdrJSON    = []string{"application/json"}
	hdrNoStore = []string{"no-store"}
	hdrAllow   = []string{"GET, HEAD"}
)

// Handler serves /health, /health/live and /metrics. Nothing on this port
// changes anything: GET and HEAD only.
func Handler(o ServerOptions) http.Handler {
	var metrics http.Handler = http.NotFoundHandler()
	if o.Metrics != nil {
		metrics = promhttp.HandlerFor(o.Metrics.Registry, promhttp.HandlerOpts{MaxRequestsInFlight: 4, Timeout: 5 * time.Second})
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			w.Header()["Allow"] = hdrAllow
			http.Error(w, "method not allowed: this port only answers GET and HEAD", http.StatusMethodNotAllowed)
			return
		}
		switch r.URL.Path {
		case "/health":
			serveVerdict(w, r, o.Ready.Verdict(r.Context()), o.VerboseRemote)
		case "/health/live":
			if o.Live == nil {
				v := agentLive
				if r.URL.RawQuery != "" {
					// The verbose body's checked_at is now: answering is
					// the check. The plain body stays allocation-free.
					v = agentLiveAt(time.Now())
				}
				serveVerdict(w, r, v, o.VerboseRemote)
				return
			}
			serveVerdict(w, r, o.Live.Verdict(r.Context()), o.VerboseRemote)
		case "/metrics":
			// The gauges follow the aggregator's rounds; make sure there is a
			// recent one (cached ≤ --interval, like /health), so a pod nobody
			// has probed yet does not show meshready_ready 0 while /health
			// would say 200.
			o.Ready.Verdict(r.Context())
			metrics.ServeHTTP(w, r)
		default:
			http.NotFound(w, r)
		}
	})
}

// agentLive is /health/live's verdict when no --app-live is set: answering
// at all is the proof.
var agentLive = agentLiveAt(time.Time{})

func agentLiveAt(now time.Time) *Verdict {
	return newVerdict(now, []Outcome{{Name: "agent", CheckedAt: now, Result: passf("serving")}})
}

func serveVerdict(w http.ResponseWriter, r *http.Request, v *Verdict, verboseRemote bool) {
	h := w.Header()
	h["Cache-Control"] = hdrNoStore
	if r.URL.RawQuery != "" && wantsVerbose(r) && (verboseRemote || fromLoopback(r)) {
		h["Content-Type"] = hdrJSON
		w.WriteHeader(v.Code())
		if r.Method == http.MethodGet {
			w.Write(v.VerboseJSON())
		}
		return
	}
	h["Content-Type"] = hdrText
	w.WriteHeader(v.Code())
	if r.Method == http.MethodGet {
		w.Write(v.Body())
	}
}

func wantsVerbose(r *http.Request) bool {
	switch r.URL.Query().Get("verbose") {
	case "", "0", "false":
		return false
	}
	return true
}

// fromLoopback reports whether the client is this container itself:
// 127.0.0.1 or ::1 (kubectl exec, port-forward). Not the rest of
// 127.0.0.0/8: peers that reach :54321 through Envoy's inbound path arrive
// from 127.0.0.6 (Istio's inbound passthrough source), and they are remote.
func fromLoopback(r *http.Request) bool {
	ap, err := netip.ParseAddrPort(r.RemoteAddr)
	if err != nil {
		return false
	}
	a := ap.Addr().Unmap()
	return a == localhost4 || a == netip.IPv6Loopback()
}

var localhost4 = netip.AddrFrom4([4]byte{127, 0, 0, 1})

// Serve listens on addr and serves until ctx ends, then shuts down within
// a few seconds. It returns the listen error, if any, at once.
func Serve(ctx context.Context, addr string, o ServerOptions) error {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return err
	}
	return ServeListener(ctx, ln, o)
}

// ServeListener is Serve on a listener the caller made (tests use port 0).
func ServeListener(ctx context.Context, ln net.Listener, o ServerOptions) error {
	if o.MaxConns <= 0 {
		o.MaxConns = defaultMaxConns
	}
	if o.MaxConnsPerAddr <= 0 {
		o.MaxConnsPerAddr = defaultMaxConnsPerAddr
	}
	log := o.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	guard := newConnGuard(o.MaxConns, o.MaxConnsPerAddr)
	if o.Metrics != nil {
		o.Metrics.observeGuard(guard)
	}
	srv := &http.Server{
		Handler: Handler(o),
		// Far below the kubelet's 1s: a client that has not sent its
		// headers by then is not a prober.
		ReadHeaderTimeout: readHeaderTimeout,
		ReadTimeout:       time.Second,
		WriteTimeout:      10 * time.Second, // /metrics to a slow scraper
		IdleTimeout:       10 * time.Second,
		MaxHeaderBytes:    8 << 10,
		ConnState:         guard.connState,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelDebug),
	}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(guard.listener(ln)) }()
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
		sctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
		defer cancel()
		err := srv.Shutdown(sctx)
		if err2 := <-errc; err2 != nil && !errors.Is(err2, http.ErrServerClosed) && err == nil {
			err = err2
		}
		return err
	}
}

// ListenHint turns a listen error into advice.
func ListenHint(addr string, err error) string {
	if strings.Contains(err.Error(), "address already in use") {
		return "cannot listen on " + addr + ": the port is taken (another meshready, or the app?); choose another with --listen"
	}
	return "cannot listen on " + addr + ": " + err.Error()
}
