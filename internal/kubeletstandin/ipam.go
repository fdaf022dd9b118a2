package kubeletstandin

import (
	"errors"
	"net/netip"
	"sync"
)

// Pod IPs come from 10.244.1.0 – 10.244.254.255: inside localcluster's
// PodCIDR (routed to lo in its network namespace), clear of 10.244.0.x
// (the node's own address) and 10.244.255.x (the harness's: istiod).
var (
	firstPodIP = netip.MustParseAddr("10.244.1.0")
	lastPodIP  = netip.MustParseAddr("10.244.254.255")
)

// ipam hands out pod IPs next-fit: the cursor moves on through the range
// and wraps, so a freed address is reused only after every other one has
// been handed out (a late packet or a stale EndpointSlice never reaches
// the wrong pod soon after a delete).
type ipam struct {
	mu     sync.Mutex
	used   map[netip.Addr]bool
	cursor netip.Addr
}

// podIPs is shared by every Kubelet of this process: they all live in the
// same network namespace, so two stand-in nodes must never hand out the
// same address.
var podIPs = newIPAM()

func newIPAM() *ipam { return &ipam{used: map[netip.Addr]bool{}, cursor: firstPodIP} }

var errNoIPs = errors.New("kubelet stand-in: no pod IPs left in 10.244.1.0-10.244.254.255")

func inPodRange(a netip.Addr) bool {
	return a.Is4() && a.Compare(firstPodIP) >= 0 && a.Compare(lastPodIP) <= 0
}

func (m *ipam) allocate() (string, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	start := m.cursor
	for {
		a := m.cursor
		m.cursor = a.Next()
		if !inPodRange(m.cursor) {
			m.cursor = firstPodIP
		}
		if !m.used[a] {
			m.used[a] = true
			return a.String(), nil
		}
		if m.cursor == start {
			return "", errNoIPs
		}
	}
}

// reserve takes a given address (a pod that already has one) if it is in
// range and free.
func (m *ipam) reserve(ip string) bool {
	a, err := netip.ParseAddr(ip)
	if err != nil || !inPodRange(a) {
		return false
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.used[a] {
		return false
	}
	m.used[a] = true
	return true
}

func (m *ipam) release(ip string) {
	a, err := netip.ParseAddr(ip)
	if err != nil {
		return
	}
	m.mu.Lock()
	delete(m.used, a)
	m.mu.Unlock()
}
