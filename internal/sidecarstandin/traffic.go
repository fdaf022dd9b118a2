package sidecarstandin

import (
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// The stand-in carries traffic the way a sidecar does, for the local mesh:
// an inbound listener in front of the app (where iptables would send the
// pod's inbound traffic to Envoy's virtualInbound, 15006) and an outbound
// listener the app calls through (Envoy's 15001), routing by the endpoints
// it accepted from Pilot's EDS. Both are HTTP/2 cleartext reverse proxies
// (gRPC), open only once the stand-in is LIVE, as Envoy's listeners come
// from LDS. Inbound requests are counted into the stats the agent's drain
// watches (http.inbound_….downstream_rq_active / _total) and into Istio's
// standard metrics (metrics.go).

// h2c is HTTP/2 with prior knowledge, which is what gRPC speaks in cleartext.
func h2c() *http.Protocols {
	var p http.Protocols
	p.SetUnencryptedHTTP2(true)
	return &p
}

// downstream is what the listeners accept: HTTP/1.1 and h2c.
func downstream() *http.Protocols {
	p := h2c()
	p.SetHTTP1(true)
	return p
}

func h1() *http.Protocols {
	var p http.Protocols
	p.SetHTTP1(true)
	return &p
}

// ServeInbound opens addr once the stand-in is LIVE and forwards every
// request to the app at appAddr, counting it into Envoy's inbound stats
// and Istio's standard metrics (reporter="destination"). When the app
// cannot be reached the stand-in answers as Envoy does: 503 "upstream
// connect error or disconnect/reset before headers…" with response flag UF
// — for a gRPC request a trailers-only response, HTTP 200 with grpc-status
// 14 (UNAVAILABLE).
func (d *DataPlane) ServeInbound(addr, appAddr string) error {
	_, p, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("stand-in inbound listener %q: %w", addr, err)
	}
	port, err := strconv.Atoi(p)
	if err != nil {
		return fmt.Errorf("stand-in inbound listener %q: port %q", addr, p)
	}
	d.mu.Lock()
	if d.inPorts == nil {
		d.inPorts = map[int]*Inbound{}
	}
	hcm := d.inPorts[port]
	if hcm == nil {
		hcm = &Inbound{}
		d.inPorts[port] = hcm
	}
	d.mu.Unlock()
	target := &url.URL{Scheme: "http", Host: appAddr}
	proxy := d.reverseProxy(func(*http.Request) (*url.URL, error) { return target, nil })
	counted := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		began := time.Now()
		d.mu.Lock()
		hcm.ActiveRequests++
		hcm.TotalRequests++
		d.mu.Unlock()
		rw := &recorder{ResponseWriter: w, flags: "-"}
		defer func() {
			aborted := recover()
			d.mu.Lock()
			hcm.ActiveRequests--
			d.mu.Unlock()
			code := rw.code
			if aborted != nil && rw.flags == "-" {
				// The proxy gave up mid-response (http.ErrAbortHandler):
				// the caller went away, or the app's connection did.
				rw.flags = "UC"
				if r.Context().Err() != nil {
					rw.flags = "DC"
				}
			}
			if !rw.wrote && aborted == nil && rw.flags == "-" {
				code = http.StatusOK // net/http's implicit 200
			}
			d.record(request{port: port, authority: r.Host, grpc: isGRPC(r), code: code,
				grpcCode: rw.grpcStatus(), flags: rw.flags, took: time.Since(began)})
			if aborted != nil {
				panic(aborted)
			}
		}()
		proxy.ServeHTTP(rw, r)
	})
	srv := &http.Server{Handler: counted, Protocols: downstream(), ReadHeaderTimeout: 5 * time.Second,
		ConnState: func(_ net.Conn, st http.ConnState) {
			d.mu.Lock()
			defer d.mu.Unlock()
			switch st {
			case http.StateNew:
				d.inbound.ActiveConnections++
			case http.StateClosed, http.StateHijacked:
				d.inbound.ActiveConnections--
			}
		}}
	return d.serveWhenLive(addr, srv)
}

// recorder keeps what the inbound listener sent downstream.
type recorder struct {
	http.ResponseWriter
	code  int
	wrote bool
	flags string // Envoy's response flags; "-" for none
}

func (r *recorder) WriteHeader(code int) {
	if !r.wrote {
		r.code, r.wrote = code, true
	}
	r.ResponseWriter.WriteHeader(code)
}

func (r *recorder) Write(b []byte) (int, error) {
	if !r.wrote {
		r.code, r.wrote = http.StatusOK, true
	}
	return r.ResponseWriter.Write(b)
}

func (r *recorder) Flush() {
	if f, ok := r.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}

func (r *recorder) Unwrap() http.ResponseWriter { return r.ResponseWriter }

// grpcStatus is the grpc-status sent: in the trailers (which the reverse
// proxy leaves in the header map, unannounced ones under
// http.TrailerPrefix) or, for a trailers-only response, in the headers.
func (r *recorder) grpcStatus() string {
	h := r.ResponseWriter.Header()
	if v := h.Get(http.TrailerPrefix + "Grpc-Status"); v != "" {
		return v
	}
	return h.Get("Grpc-Status")
}

// ServeOutbound opens addr once the stand-in is LIVE and sends each request
// to the next endpoint of cluster (round robin) among those its last
// accepted EDS for that cluster lists; with none, 503 "no healthy upstream"
// (flag UH), Envoy's words — gRPC-shaped for a gRPC request.
func (d *DataPlane) ServeOutbound(addr, cluster string) error {
	d.mu.Lock()
	d.outCluster = cluster
	d.mu.Unlock()
	proxy := d.reverseProxy(func(*http.Request) (*url.URL, error) {
		d.mu.Lock()
		defer d.mu.Unlock()
		addrs := d.subs[TypeEDS].resources[cluster].addrs
		if len(addrs) == 0 {
			return nil, errNoHealthyUpstream
		}
		d.rr++
		return &url.URL{Scheme: "http", Host: addrs[d.rr%uint64(len(addrs))]}, nil
	})
	srv := &http.Server{Handler: proxy, Protocols: downstream(), ReadHeaderTimeout: 5 * time.Second}
	return d.serveWhenLive(addr, srv)
}

var errNoHealthyUpstream = errors.New("no healthy upstream")

type targetFunc func(*http.Request) (*url.URL, error)

func (d *DataPlane) reverseProxy(pick targetFunc) *httputil.ReverseProxy {
	return &httputil.ReverseProxy{
		// The upstream is chosen in pickTransport, per request.
		Rewrite: func(pr *httputil.ProxyRequest) { pr.Out.URL.Scheme = "http" },
		Transport: &pickTransport{pick: pick,
			h2: &http.Transport{
				Protocols:       h2c(),
				DialContext:     (&net.Dialer{Timeout: time.Second}).DialContext,
				IdleConnTimeout: 30 * time.Second,
			},
			h1: &http.Transport{
				Protocols:       h1(),
				DialContext:     (&net.Dialer{Timeout: time.Second}).DialContext,
				IdleConnTimeout: 30 * time.Second,
			}},
		FlushInterval:  -1,
		ModifyResponse: trailersOnly,
		ErrorHandler:   localReply,
	}
}

// trailersOnly turns an upstream's trailers-only gRPC response (the status
// in the one HEADERS frame, as a server that fails a call at once sends
// it) into headers and trailers: the reverse proxy flushes the headers
// before it knows the stream has ended, so a grpc-status left in them
// would reach the caller as headers without trailers (INTERNAL).
func trailersOnly(res *http.Response) error {
	if res.Header.Get("Grpc-Status") == "" {
		return nil
	}
	if res.Trailer == nil {
		res.Trailer = http.Header{}
	}
	for _, k := range []string{"Grpc-Status", "Grpc-Message", "Grpc-Status-Details-Bin"} {
		if v, ok := res.Header[k]; ok {
			res.Trailer[k] = v
			delete(res.Header, k)
		}
	}
	return nil
}

// localReply answers a request the proxy could not forward, as Envoy's
// router does, and sets the response flag it would log.
func localReply(w http.ResponseWriter, r *http.Request, err error) {
	flags, msg := "UC", "upstream connect error or disconnect/reset before headers. reset reason: connection termination"
	var op *net.OpError
	switch {
	case r.Context().Err() != nil:
		// The caller went away before an answer: nothing is sent, Envoy
		// logs response code 0 and DC.
		if rec, ok := w.(*recorder); ok {
			rec.flags = "DC"
		}
		return
	case errors.Is(err, errNoHealthyUpstream):
		flags, msg = "UH", "no healthy upstream"
	case errors.As(err, &op) && op.Op == "dial":
		flags, msg = "UF", "upstream connect error or disconnect/reset before headers. reset reason: connection failure, transport failure reason: "+err.Error()
	}
	if rec, ok := w.(*recorder); ok {
		rec.flags = flags
	}
	h := w.Header()
	if isGRPC(r) {
		// Envoy's local reply to a gRPC request: trailers-only, HTTP 200,
		// grpc-status mapped from 503 (UNAVAILABLE).
		h.Set("Content-Type", "application/grpc")
		h.Set("Grpc-Status", "14")
		h.Set("Grpc-Message", grpcMessage(msg))
		w.WriteHeader(http.StatusOK)
		return
	}
	h.Set("Content-Type", "text/plain")
	w.WriteHeader(http.StatusServiceUnavailable)
	_, _ = io.WriteString(w, msg)
}

// grpcMessage percent-encodes a grpc-message value (gRPC over HTTP/2:
// bytes outside printable ASCII, and '%').
func grpcMessage(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c < 0x20 || c > 0x7e || c == '%' {
			fmt.Fprintf(&b, "%%%02X", c)
			continue
		}
		b.WriteByte(c)
	}
	return b.String()
}

// pickTransport chooses the upstream per request (after Rewrite, which
// cannot fail), so "no endpoint" becomes the ErrorHandler's 503; and it
// speaks to the upstream in the caller's protocol (HTTP/2 cleartext for
// h2c and gRPC, else HTTP/1.1), as Istio's inbound clusters do
// (USE_DOWNSTREAM_PROTOCOL).
type pickTransport struct {
	pick   targetFunc
	h2, h1 *http.Transport
}

func (p *pickTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	u, err := p.pick(r)
	if err != nil {
		return nil, err
	}
	r2 := r.Clone(r.Context())
	// The caller's Host / :authority goes through unchanged, as Envoy
	// forwards it.
	r2.URL.Scheme, r2.URL.Host = u.Scheme, u.Host
	if r.ProtoMajor == 2 {
		return p.h2.RoundTrip(r2)
	}
	return p.h1.RoundTrip(r2)
}

// serveWhenLive binds addr when the stand-in turns LIVE (in the background:
// until then connections are refused, as on a pod whose Envoy has no
// listeners yet). An address that cannot be bound is reported at once.
func (d *DataPlane) serveWhenLive(addr string, srv *http.Server) error {
	probe, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("stand-in listener %s: %w", addr, err)
	}
	_ = probe.Close()
	go func() {
		if _, err := d.WaitFor(d.ctx, func(s Snapshot) bool { return s.Live() }); err != nil {
			return
		}
		l, err := net.Listen("tcp", addr)
		if err != nil {
			d.o.Logf("listener %s: %v", addr, err)
			return
		}
		d.mu.Lock()
		if d.closed {
			d.mu.Unlock()
			_ = l.Close()
			return
		}
		d.traffic = append(d.traffic, srv)
		d.mu.Unlock()
		d.o.Logf("listener %s open", addr)
		_ = srv.Serve(l)
	}()
	return nil
}

func (d *DataPlane) closeTraffic() {
	d.mu.Lock()
	srvs := d.traffic
	d.traffic = nil
	d.mu.Unlock()
	for _, s := range srvs {
		_ = s.Close()
	}
}
