package release

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/meshready/meshready/api/v1alpha1"
	"github.com/meshready/meshready/pilotclient"
)

// scriptedPilot answers syncz from a list the test edits, and every dump
// with the weights at version v.
type scriptedPilot struct {
	mu      sync.Mutex
	proxies []pilotclient.ProxyStatus
	dump    pilotclient.HostRouting
}

func (s *scriptedPilot) set(dump string, acks map[string]string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.dump = pilotclient.HostRouting{Version: dump, Routed: true, Subsets: map[string]bool{"": true},
		Routes: []pilotclient.Route{{Name: "default", Weights: map[string]uint32{"v1": 90, "v2": 10}}}}
	s.proxies = nil
	for id, v := range acks {
		s.proxies = append(s.proxies, pilotclient.ProxyStatus{ProxyID: id, Types: []pilotclient.TypeStatus{{Type: "RDS", Sent: v + "n", SentVersion: v, Acked: v + "n", AckedVersion: v}}})
	}
}

func (s *scriptedPilot) Fleet(context.Context, string, int) ([]pilotclient.ProxyStatus, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]pilotclient.ProxyStatus(nil), s.proxies...), nil
}

func (s *scriptedPilot) HostRouting(context.Context, string, string) (pilotclient.HostRouting, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.dump, nil
}

// A caller that drops out of syncz during a gate (istiod restarted, the
// proxy still reconnecting) is waited for: the gate opens only once it is
// back and holds the write.
func TestGateWaitsForACallerThatDroppedOut(t *testing.T) {
	t.Parallel()
	p := &scriptedPilot{}
	g := &Gatekeeper{PollInterval: time.Millisecond, Replicas: func(context.Context) ([]Replica, error) {
		return []Replica{{Name: "istiod-0", API: p}}, nil
	}}
	r := &Reconciler{}
	want := r.wantWeights(hostOnly(), "default", map[string]int32{"v1": 90, "v2": 10})
	ctx := context.Background()
	since := time.Now()

	// Both callers seen, neither has the write yet (v* unknown to them).
	p.set("2026-12-02T10:00:00Z/5", map[string]string{"a.ns": "2026-12-02T10:00:00Z/4", "b.ns": "2026-12-02T10:00:00Z/4"})
	if res, err := g.Check(ctx, "k", want, since); err != nil || res.Open {
		t.Fatalf("open before any caller ACKed: %+v %v", res, err)
	}
	// istiod restarted: only a is back, holding the write.
	p.set("2026-12-02T10:00:09Z/2", map[string]string{"a.ns": "2026-12-02T10:00:09Z/2"})
	time.Sleep(2 * time.Millisecond)
	res, err := g.Check(ctx, "k", want, since)
	if err != nil || res.Open || res.Total != 2 || len(res.Waiting) != 1 || res.Waiting[0].Proxy != "b.ns" || !strings.Contains(res.Waiting[0].Type, "not connected") {
		t.Fatalf("b dropped out: %+v %v", res, err)
	}
	// b reconnects and ACKs.
	p.set("2026-12-02T10:00:09Z/2", map[string]string{"a.ns": "2026-12-02T10:00:09Z/2", "b.ns": "2026-12-02T10:00:09Z/3"})
	time.Sleep(2 * time.Millisecond)
	if res, err := g.Check(ctx, "k", want, since); err != nil || !res.Open || res.Synced() != "2/2" {
		t.Fatalf("both hold: %+v %v", res, err)
	}
}

func hostOnly() *v1alpha1.Release {
	return &v1alpha1.Release{Status: v1alpha1.ReleaseStatus{Host: "shop.ns.svc.cluster.local"}}
}

// One of two replicas down: the gate stays shut and says which one was
// not asked, even when every caller the other one knows holds the write.
func TestGateOneReplicaDown(t *testing.T) {
	t.Parallel()
	up := &scriptedPilot{}
	up.set("2026-12-02T10:00:00Z/5", map[string]string{"a.ns": "2026-12-02T10:00:00Z/5"})
	g := &Gatekeeper{PollInterval: time.Millisecond, Replicas: func(context.Context) ([]Replica, error) {
		return []Replica{{Name: "istiod-0", API: up}, {Name: "istiod-1", API: downPilot{}}}, nil
	}}
	r := &Reconciler{}
	res, err := g.Check(context.Background(), "k", r.wantWeights(hostOnly(), "default", map[string]int32{"v1": 90, "v2": 10}), time.Now())
	if err != nil || res.Open || len(res.Unasked) != 1 || !strings.Contains(res.Unasked[0], "istiod-1") {
		t.Fatalf("one replica down: %+v %v", res, err)
	}
}

type downPilot struct{}

func (downPilot) Fleet(context.Context, string, int) ([]pilotclient.ProxyStatus, error) {
	return nil, errors.New("connection refused")
}

func (downPilot) HostRouting(context.Context, string, string) (pilotclient.HostRouting, error) {
	return pilotclient.HostRouting{}, errors.New("connection refused")
}
