package integration

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"sort"
	"strings"
	"sync"
)

// Counts are requests that reached Pilot's debug surfaces, keyed
// "http /debug/syncz", "xds istio.io/debug/syncz", ….
type Counts map[string]int64

// Total sums every key.
func (c Counts) Total() int64 {
	var n int64
	for _, v := range c {
		n += v
	}
	return n
}

// Sub is c minus an earlier snapshot.
func (c Counts) Sub(earlier Counts) Counts {
	d := Counts{}
	for k, v := range c {
		if v -= earlier[k]; v != 0 {
			d[k] = v
		}
	}
	return d
}

// String is stable: keys sorted.
func (c Counts) String() string {
	keys := make([]string, 0, len(c))
	for k := range c {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var b strings.Builder
	for i, k := range keys {
		if i > 0 {
			b.WriteString(", ")
		}
		fmt.Fprintf(&b, "%s=%d", k, c[k])
	}
	if b.Len() == 0 {
		return "none"
	}
	return b.String()
}

// PilotCounter is a counting reverse proxy in front of the real istiod's
// debug HTTP (localcluster.IstiodDebugURL, loopback: istiod answers
// /debug/* without a token only to loopback callers, and the proxy is one).
// Agents given its URL as --pilot reach istiod through it; every request is
// counted by path and istiod's answer ("http /debug/syncz 200"), with the
// body bytes istiod sent. It sees only HTTP: an agent pointed at istiod's
// xDS port would bypass it.
type PilotCounter struct {
	URL string

	srv *http.Server

	mu     sync.Mutex
	counts Counts
	bytes  int64
}

// StartPilotCounter listens on 127.0.0.1:0 and forwards to target.
func StartPilotCounter(target string) (*PilotCounter, error) {
	u, err := url.Parse(target)
	if err != nil {
		return nil, err
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	c := &PilotCounter{URL: "http://" + l.Addr().String(), counts: Counts{}}
	rp := httputil.NewSingleHostReverseProxy(u)
	rp.Transport = &http.Transport{MaxIdleConnsPerHost: 64}
	rp.ModifyResponse = func(r *http.Response) error {
		c.mu.Lock()
		c.counts[fmt.Sprintf("http %s %d", r.Request.URL.Path, r.StatusCode)]++
		c.mu.Unlock()
		r.Body = &countingBody{ReadCloser: r.Body, c: c}
		return nil
	}
	rp.ErrorHandler = func(w http.ResponseWriter, r *http.Request, err error) {
		c.mu.Lock()
		c.counts[fmt.Sprintf("http %s error", r.URL.Path)]++
		c.mu.Unlock()
		w.WriteHeader(http.StatusBadGateway)
	}
	c.srv = &http.Server{Handler: rp}
	go func() { _ = c.srv.Serve(l) }()
	return c, nil
}

type countingBody struct {
	io.ReadCloser
	c *PilotCounter
}

func (b *countingBody) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	b.c.mu.Lock()
	b.c.bytes += int64(n)
	b.c.mu.Unlock()
	return n, err
}

// Requests snapshots the counts.
func (c *PilotCounter) Requests() Counts {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := make(Counts, len(c.counts))
	for k, v := range c.counts {
		out[k] = v
	}
	return out
}

// Bytes is how many body bytes istiod answered through the proxy.
func (c *PilotCounter) Bytes() int64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.bytes
}

// Close stops the proxy.
func (c *PilotCounter) Close() { _ = c.srv.Close() }
