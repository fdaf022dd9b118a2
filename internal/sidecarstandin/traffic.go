package integration

import (
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"time"
)

// The stand-in carries traffic the way a sidecar does, for the local mesh:
// an inbound listener in front of the app (where iptables would send the
// pod's inbound traffic to Envoy's virtualInbound, 15006) and an outbound
// listener the app calls through (Envoy's 15001), routing by the endpoints
// it accepted from Pilot's EDS. Both are HTTP/2 cleartext reverse proxies
// (gRPC), open only once the stand-in is LIVE, as Envoy's listeners come
// from LDS. Inbound requests are counted into the stats the agent's drain
// watches (http.inbound_….downstream_rq_active / _total).

// h2c is HTTP/2 with prior knowledge, which is what gRPC speaks in cleartext.
func h2c() *http.Protocols {
	var p http.Protocols
	p.SetUnencryptedHTTP2(true)
	return &p
}

// ServeInbound opens addr once the stand-in is LIVE and forwards every
// request to the app at appAddr. When the app is gone, requests get 502, as
// Envoy answers with no upstream to connect to.
func (d *DataPlane) ServeInbound(addr, appAddr string) error {
	target := &url.URL{Scheme: "http", Host: appAddr}
	proxy := d.reverseProxy(func(*http.Request) (*url.URL, error) { return target, nil })
	counted := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		d.mu.Lock()
		d.inbound.ActiveRequests++
		d.inbound.TotalRequests++
		d.mu.Unlock()
		defer func() {
			d.mu.Lock()
			d.inbound.ActiveRequests--
			d.mu.Unlock()
		}()
		proxy.ServeHTTP(w, r)
	})
	srv := &http.Server{Handler: counted, Protocols: h2c(), ReadHeaderTimeout: 5 * time.Second,
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

// ServeOutbound opens addr once the stand-in is LIVE and sends each request
// to the next endpoint of cluster (round robin) among those its last
// accepted EDS for that cluster lists; with none, 503 "no healthy upstream",
// Envoy's words.
func (d *DataPlane) ServeOutbound(addr, cluster string) error {
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
	srv := &http.Server{Handler: proxy, Protocols: h2c(), ReadHeaderTimeout: 5 * time.Second}
	return d.serveWhenLive(addr, srv)
}

var errNoHealthyUpstream = errors.New("no healthy upstream")

type targetFunc func(*http.Request) (*url.URL, error)

func (d *DataPlane) reverseProxy(pick targetFunc) *httputil.ReverseProxy {
	return &httputil.ReverseProxy{
		// The upstream is chosen in pickTransport, per request.
		Rewrite: func(pr *httputil.ProxyRequest) { pr.Out.URL.Scheme = "http" },
		Transport: &pickTransport{pick: pick, rt: &http.Transport{
			Protocols:       h2c(),
			DialContext:     (&net.Dialer{Timeout: time.Second}).DialContext,
			IdleConnTimeout: 30 * time.Second,
		}},
		FlushInterval: -1,
		ErrorHandler: func(w http.ResponseWriter, r *http.Request, err error) {
			code := http.StatusBadGateway
			if errors.Is(err, errNoHealthyUpstream) {
				code = http.StatusServiceUnavailable
			}
			http.Error(w, "stand-in: "+err.Error(), code)
		},
	}
}

// pickTransport chooses the upstream per request (after Rewrite, which
// cannot fail), so "no endpoint" becomes the ErrorHandler's 503.
type pickTransport struct {
	pick targetFunc
	rt   *http.Transport
}

func (p *pickTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	u, err := p.pick(r)
	if err != nil {
		return nil, err
	}
	r2 := r.Clone(r.Context())
	r2.URL.Scheme, r2.URL.Host, r2.Host = u.Scheme, u.Host, u.Host
	return p.rt.RoundTrip(r2)
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
