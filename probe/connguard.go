package probe

import (
	"net"
	"net/http"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"
)

// The probe server's shape against hostile clients (issue 10, item 1).
//
// The kubelet's probe opens a new connection, sends its request at once and
// waits at most 1s. Anything that makes a new connection wait — a blocking
// accept behind a full connection cap, or header timeouts of seconds — is
// starvation. So:
//
//   - Accept never blocks on a cap. Every connection is accepted at once
//     and registered with the connGuard.
//   - A connection is sheddable while it holds no request in progress:
//     from accept until its first request's headers are complete
//     (http.StateNew: silent and slowloris clients), and between requests
//     (http.StateIdle: keep-alives, and slowloris on a later request).
//     http.StateActive fires only once the headers are read, so an Active
//     connection is being served and is never shed.
//   - Bounds are enforced at accept time by closing the connection that has
//     been sheddable longest: first per client address (MaxConnsPerAddr,
//     so one noisy peer sheds its own connections, not the kubelet's), then
//     in total (MaxConns), taken from the address that holds the most.
//   - A connection younger than shedMinAge is never shed, so clients that
//     reconnect as fast as they are shed cannot shed the probe's connection
//     before it has sent its request (the probe may share its address with
//     them: with Istio's probe rewrite it comes from 127.0.0.6, like every
//     peer through Envoy's inbound path). While every candidate is that
//     young, the bounds are soft; only past hardMax (4 × MaxConns, all
//     young or being served, a connect flood) is a new connection refused.
//   - Header deadlines are far below 1s (readHeaderTimeout): a slowloris
//     client holds a slot for at most that long even with no pressure.
//
// The per-request cost is nil: bookkeeping happens on connection state
// changes (accept, idle, active, close) under one mutex, on structures
// allocated once per connection; /health itself does not touch it.
const (
	defaultMaxConns        = 128
	defaultMaxConnsPerAddr = 32
	shedMinAge             = 100 * time.Millisecond
	readHeaderTimeout      = 250 * time.Millisecond
)

type connGuard struct {
	max, perAddr, hardMax int
	minAge                time.Duration
	now                   func() time.Time

	mu     sync.Mutex
	total  int
	byAddr map[netip.Addr]int
	// head/tail: sheddable connections, oldest first.
	head, tail *guardedConn

	shed    atomic.Uint64 // connections closed to make room
	refused atomic.Uint64 // new connections closed at once: past hardMax
}

func newConnGuard(max, perAddr int) *connGuard {
	return &connGuard{max: max, perAddr: perAddr, hardMax: 4 * max, minAge: shedMinAge, now: time.Now, byAddr: map[netip.Addr]int{}}
}

type guardedConn struct {
	net.Conn
	g     *connGuard
	addr  netip.Addr
	since time.Time // when it last became sheddable

	// under g.mu
	prev, next *guardedConn
	listed     bool
	counted    bool
}

// Close closes the connection and gives its slot back.
func (c *guardedConn) Close() error {
	c.g.release(c)
	return c.Conn.Close()
}

func (g *connGuard) listener(ln net.Listener) net.Listener {
	return &guardedListener{Listener: ln, g: g}
}

type guardedListener struct {
	net.Listener
	g *connGuard
}

// Accept returns every connection at once; the guard makes room by shedding,
// never by making the newcomer wait.
func (l *guardedListener) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		if gc := l.g.admit(c); gc != nil {
			return gc, nil
		}
		c.Close()
	}
}

func addrOf(c net.Conn) netip.Addr {
	if ta, ok := c.RemoteAddr().(*net.TCPAddr); ok {
		if a, ok := netip.AddrFromSlice(ta.IP); ok {
			return a.Unmap()
		}
	}
	return netip.Addr{}
}

// admit registers c, shedding another connection when a bound is reached.
// It returns nil when c itself must be refused: only past hardMax, when
// everything open is being served or too young to shed.
func (g *connGuard) admit(c net.Conn) *guardedConn {
	now := g.now()
	gc := &guardedConn{Conn: c, g: g, addr: addrOf(c), since: now}
	var victims [2]*guardedConn
	g.mu.Lock()
	if g.byAddr[gc.addr] >= g.perAddr {
		if v := g.oldestLocked(gc.addr, true, now); v != nil {
			g.dropLocked(v)
			victims[0] = v
		}
	}
	if g.total >= g.max {
		v := g.oldestLocked(g.busiestLocked(), true, now)
		if v == nil {
			v = g.oldestLocked(netip.Addr{}, false, now)
		}
		if v != nil {
			g.dropLocked(v)
			victims[1] = v
		}
	}
	refuse := g.total >= g.hardMax
	if !refuse {
		g.total++
		g.byAddr[gc.addr]++
		gc.counted = true
		g.pushLocked(gc)
	}
	g.mu.Unlock()
	for _, v := range victims {
		if v != nil {
			g.shed.Add(1)
			v.Conn.Close() // the server's goroutine sees its read fail and ends
		}
	}
	if refuse {
		g.refused.Add(1)
		return nil
	}
	return gc
}

// oldestLocked is the connection sheddable longest (and for at least
// minAge), of addr when byAddr, else of any address.
func (g *connGuard) oldestLocked(addr netip.Addr, byAddr bool, now time.Time) *guardedConn {
	for c := g.head; c != nil; c = c.next {
		if now.Sub(c.since) < g.minAge {
			return nil // the list is in order: all the rest are younger
		}
		if !byAddr || c.addr == addr {
			return c
		}
	}
	return nil
}

func (g *connGuard) busiestLocked() netip.Addr {
	var best netip.Addr
	n := -1
	for a, k := range g.byAddr {
		if k > n {
			best, n = a, k
		}
	}
	return best
}

// dropLocked unlists and uncounts c: its slot is free from now on.
func (g *connGuard) dropLocked(c *guardedConn) {
	g.unlistLocked(c)
	if c.counted {
		c.counted = false
		g.total--
		if g.byAddr[c.addr]--; g.byAddr[c.addr] <= 0 {
			delete(g.byAddr, c.addr)
		}
	}
}

func (g *connGuard) release(c *guardedConn) {
	g.mu.Lock()
	g.dropLocked(c)
	g.mu.Unlock()
}

func (g *connGuard) pushLocked(c *guardedConn) {
	c.prev, c.next, c.listed = g.tail, nil, true
	if g.tail != nil {
		g.tail.next = c
	} else {
		g.head = c
	}
	g.tail = c
}

func (g *connGuard) unlistLocked(c *guardedConn) {
	if !c.listed {
		return
	}
	if c.prev != nil {
		c.prev.next = c.next
	} else {
		g.head = c.next
	}
	if c.next != nil {
		c.next.prev = c.prev
	} else {
		g.tail = c.prev
	}
	c.prev, c.next, c.listed = nil, nil, false
}

// connState is the http.Server's ConnState hook: a connection is sheddable
// while New or Idle, protected while Active (headers read, being served).
func (g *connGuard) connState(nc net.Conn, st http.ConnState) {
	c, ok := nc.(*guardedConn)
	if !ok {
		return
	}
	switch st {
	case http.StateActive:
		g.mu.Lock()
		g.unlistLocked(c)
		g.mu.Unlock()
	case http.StateIdle:
		now := g.now()
		g.mu.Lock()
		if c.counted {
			g.unlistLocked(c)
			c.since = now
			g.pushLocked(c)
		}
		g.mu.Unlock()
	case http.StateClosed, http.StateHijacked:
		g.release(c)
	}
}
