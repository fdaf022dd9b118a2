package release

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"sync"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/meshready/meshready/api/v1alpha1"
	"github.com/meshready/meshready/pilotclient"
)

// The propagation gate (DESIGN.md, "The propagation gate"): after the
// controller writes a VirtualService or DestinationRule, it opens when
// every proxy Pilot pushes this host's config to has ACKed a push that
// includes the write.
//
// How "includes the write" is known exactly, per istiod replica:
//  1. Pilot's /debug/config_dump?proxyID=P is built from the push context
//     of the last push P got (istiod: conn.proxy.LastPushContext) and is
//     stamped with that push's version. So when the dump of one caller
//     shows the write's effect (the new weights, the new subset's
//     cluster), its version V* names a push context built after istiod
//     had the write.
//  2. Push versions are "<RFC3339>/<counter>", one counter per istiod
//     process, and istiod's config store only moves forward: every push
//     context with a version ≥ V* holds the write too.
//  3. So a proxy holds the write once syncz shows it ACKed (for the type
//     the write changes: RDS for weights, CDS for subsets) a version ≥ V*.
//
// Proxies that are not callers (their Sidecar scope leaves the host out)
// never get that push: a proxy still behind V* a moment after V* appeared
// has its own dump read, and one that does not route the host at all is
// left out of the count. Costs: one /debug/syncz per replica per poll
// (shared by every open gate, at most one per PollInterval), one
// config_dump per replica per write, and a few for stragglers; nothing
// when no gate is open.

// PilotAPI is what the gate asks one istiod replica (pilotclient.Client).
type PilotAPI interface {
	Fleet(ctx context.Context, namespace string, max int) ([]pilotclient.ProxyStatus, error)
	HostRouting(ctx context.Context, proxyID, host string) (pilotclient.HostRouting, error)
}

// Replica is one istiod replica: syncz is per replica, each lists only
// the proxies connected to it.
type Replica struct {
	Name string // pod name or address, for messages
	API  PilotAPI
}

// Want is the effect of one write that a proxy must hold.
type Want struct {
	Host string // the Service's FQDN
	// Type is the xDS type the write changes: "RDS" (weights) or "CDS"
	// (subsets).
	Type string
	// Holds reports whether what Pilot pushed a proxy carries the write.
	Holds func(pilotclient.HostRouting) bool
	// Shows reports whether a proxy's dump can show the write at all (nil:
	// whenever it routes the host). A proxyless gRPC caller watches only
	// the clusters its routes name, so its dump never shows a subset that
	// no route names yet; it fetches such a cluster when a route first
	// names it, before sending to it, so a subset gate need not wait for
	// it: it counts as holding.
	Shows func(pilotclient.HostRouting) bool
	// What says it in words, for messages ("weights v1=90 v2=10").
	What string
}

// GateResult is one look at a gate.
type GateResult struct {
	Open bool
	// Holding of Total proxies (callers of the host, over all replicas)
	// hold the write.
	Holding, Total int
	// Waiting are the callers not yet holding it, oldest first.
	Waiting []v1alpha1.ProxyWait
	// Checked is when the syncz answers this look used were fetched.
	Checked time.Time
	// Unasked names the replicas that could not be asked this look (the
	// gate stays shut while any is): one line each.
	Unasked []string
}

// Synced is "n/m".
func (r GateResult) Synced() string { return fmt.Sprintf("%d/%d", r.Holding, r.Total) }

// Gatekeeper runs every gate of every release on one shared poll.
type Gatekeeper struct {
	// Replicas lists the istiod replicas now (the istiod Service's
	// endpoints); asked once per poll.
	Replicas func(ctx context.Context) ([]Replica, error)
	// PollInterval spaces syncz polls (≥ 1s in production: DESIGN.md).
	PollInterval time.Duration
	// StragglerAfter is how long a proxy may stay behind V* before its
	// own dump is read.
	StragglerAfter time.Duration
	// MaxProxies caps one replica's syncz answer.
	MaxProxies int
	// OnPilotRequest counts Pilot requests (for the release's figures).
	OnPilotRequest func(kind string)

	mu       sync.Mutex
	polling  sync.Mutex // one poll at a time; others wait for its answer
	snap     *fleetSnapshot
	lastGood *fleetSnapshot // the last poll every replica answered
	gates    map[string]*gateState
}

type fleetSnapshot struct {
	at       time.Time
	replicas []replicaSnapshot
	err      error
}

type replicaSnapshot struct {
	Replica
	proxies []pilotclient.ProxyStatus
	err     error
}

type gateState struct {
	want      Want
	since     time.Time // the write
	lastCheck time.Time
	replicas  map[string]*replicaGate
	// known are the callers this gate has seen: one that drops out of
	// every replica's syncz (istiod restarted, the proxy reconnecting,
	// which grpc-go's backoff can stretch to many seconds) still has to
	// hold the write when it is back. missing is since when a known
	// caller has been absent from polls that did answer.
	known   map[string]bool
	missing map[string]time.Time
	looked  bool
}

func (s *fleetSnapshot) failed() bool {
	if s.err != nil {
		return true
	}
	for _, r := range s.replicas {
		if r.err != nil {
			return true
		}
	}
	return false
}

// forget is how long a known caller may be missing from every replica's
// answers before the gate takes it as gone (its pod deleted) rather than
// reconnecting.
const forget = 30 * time.Second

type replicaGate struct {
	target      string          // V*: a push version that holds the write
	targetAt    time.Time       // when V* was found
	notCallers  map[string]bool // proxies whose dump does not route the host
	blind       map[string]bool // callers whose dump cannot show the write (Want.Shows)
	verified    map[string]string
	firstBehind map[string]time.Time
}

const maxDumpsPerLook = 3

// Check looks at the gate named key (one per write: release, object,
// resourceVersion) once, polling Pilot if the shared snapshot is older
// than PollInterval. It returns an error only when Pilot could not be
// asked at all; the gate then stays shut (a failed poll is never "synced").
func (g *Gatekeeper) Check(ctx context.Context, key string, want Want, since time.Time) (GateResult, error) {
	g.mu.Lock()
	if g.gates == nil {
		g.gates = map[string]*gateState{}
	}
	st := g.gates[key]
	if st == nil {
		st = &gateState{want: want, since: since, replicas: map[string]*replicaGate{}, known: map[string]bool{}, missing: map[string]time.Time{}}
		g.gates[key] = st
	}
	st.lastCheck = time.Now()
	g.expireLocked()
	g.mu.Unlock()

	snap, err := g.snapshot(ctx, since)
	g.mu.Lock()
	if !st.looked {
		// A gate whose first look fails (istiod down: restarting) starts
		// knowing the callers of the last answer Pilot gave, so that the
		// ones still reconnecting when it is back are waited for.
		if snap == nil || snap.failed() {
			if s := g.lastGood; s != nil && time.Since(s.at) < 5*time.Minute {
				for _, rs := range s.replicas {
					for _, p := range rs.proxies {
						if t, ok := p.Type(want.Type); ok && t.Sent != "" {
							st.known[p.ProxyID] = true
						}
					}
				}
			}
		}
		st.looked = true
	}
	g.mu.Unlock()
	if err != nil {
		return GateResult{}, err
	}
	res := GateResult{Open: true, Checked: snap.at}
	var errs []error
	for _, rs := range snap.replicas {
		if rs.err != nil {
			errs = append(errs, fmt.Errorf("istiod %s: %w", rs.Name, rs.err))
			res.Open = false
			continue
		}
		g.mu.Lock()
		rg := st.replicas[rs.Name]
		if rg == nil {
			rg = &replicaGate{notCallers: map[string]bool{}, blind: map[string]bool{}, verified: map[string]string{}, firstBehind: map[string]time.Time{}}
			st.replicas[rs.Name] = rg
		}
		g.mu.Unlock()
		if err := g.checkReplica(ctx, st, rg, rs, &res); err != nil {
			errs = append(errs, fmt.Errorf("istiod %s: %w", rs.Name, err))
			res.Open = false
		}
	}
	// Callers seen before and missing now: still waited for, a while.
	if len(errs) == 0 {
		present := map[string]bool{}
		for _, rs := range snap.replicas {
			for _, p := range rs.proxies {
				if t, ok := p.Type(want.Type); ok && t.Sent != "" {
					present[p.ProxyID] = true
				}
			}
		}
		g.mu.Lock()
		for _, rs := range snap.replicas {
			rg := st.replicas[rs.Name]
			for _, p := range rs.proxies {
				if present[p.ProxyID] && !rg.notCallers[p.ProxyID] {
					st.known[p.ProxyID] = true
				}
			}
		}
		for id := range st.known {
			if present[id] {
				delete(st.missing, id)
				continue
			}
			first, ok := st.missing[id]
			if !ok {
				first = snap.at
				st.missing[id] = first
			}
			if snap.at.Sub(first) > forget {
				delete(st.known, id)
				delete(st.missing, id)
				continue
			}
			res.Total++
			res.Open = false
			since := metav1.NewTime(first)
			res.Waiting = append(res.Waiting, v1alpha1.ProxyWait{Proxy: id, Type: want.Type + " (not connected to any istiod replica)", Since: &since})
		}
		g.mu.Unlock()
	}
	sort.Slice(res.Waiting, func(i, j int) bool {
		a, b := res.Waiting[i].Since, res.Waiting[j].Since
		if a == nil || b == nil {
			return a != nil
		}
		return a.Before(b)
	})
	if len(res.Waiting) > 10 {
		res.Waiting = res.Waiting[:10]
	}
	if len(errs) > 0 && len(snap.replicas) == len(errs) {
		return res, errors.Join(errs...)
	}
	for _, e := range errs {
		res.Unasked = append(res.Unasked, e.Error())
	}
	return res, nil
}

// Close forgets a gate (it opened, or its release moved on).
func (g *Gatekeeper) Close(key string) {
	g.mu.Lock()
	delete(g.gates, key)
	g.mu.Unlock()
}

// Open reports how many gates are open (being waited on).
func (g *Gatekeeper) Open() int {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.expireLocked()
	return len(g.gates)
}

// expireLocked drops gates nobody has looked at for a while (a deleted
// release), so they cost nothing.
func (g *Gatekeeper) expireLocked() {
	for k, st := range g.gates {
		if time.Since(st.lastCheck) > 2*time.Minute {
			delete(g.gates, k)
		}
	}
}

// snapshot returns the fleet's syncz, fetched after since and at most
// PollInterval ago; one fetch serves every caller.
func (g *Gatekeeper) snapshot(ctx context.Context, since time.Time) (*fleetSnapshot, error) {
	g.polling.Lock()
	defer g.polling.Unlock()
	g.mu.Lock()
	s := g.snap
	g.mu.Unlock()
	interval := g.PollInterval
	if interval <= 0 {
		interval = time.Second
	}
	if s != nil && s.at.After(since) && time.Since(s.at) < interval {
		return s, s.err
	}
	if s != nil {
		// At most one poll per interval, even when asked sooner.
		if wait := interval - time.Since(s.at); wait > 0 {
			select {
			case <-ctx.Done():
				return nil, ctx.Err()
			case <-time.After(wait):
			}
		}
	}
	s = &fleetSnapshot{}
	reps, err := g.Replicas(ctx)
	if err == nil && len(reps) == 0 {
		err = errors.New("no istiod replica found (are istiod's endpoints ready?)")
	}
	if err != nil {
		s.at, s.err = time.Now(), fmt.Errorf("listing istiod replicas: %w", err)
	} else {
		max := g.MaxProxies
		if max <= 0 {
			max = 100000
		}
		s.replicas = make([]replicaSnapshot, len(reps))
		var wg sync.WaitGroup
		for i, r := range reps {
			wg.Go(func() {
				g.count("syncz")
				ps, err := r.API.Fleet(ctx, "", max)
				s.replicas[i] = replicaSnapshot{Replica: r, proxies: ps, err: err}
			})
		}
		wg.Wait()
		s.at = time.Now()
	}
	g.mu.Lock()
	g.snap = s
	if !s.failed() {
		g.lastGood = s
	}
	g.mu.Unlock()
	return s, s.err
}

func (g *Gatekeeper) count(kind string) {
	if g.OnPilotRequest != nil {
		g.OnPilotRequest(kind)
	}
}

func (g *Gatekeeper) checkReplica(ctx context.Context, st *gateState, rg *replicaGate, rs replicaSnapshot, res *GateResult) error {
	want := st.want
	var callers []pilotclient.ProxyStatus
	for _, p := range rs.proxies {
		if t, ok := p.Type(want.Type); ok && t.Sent != "" && !rg.notCallers[p.ProxyID] {
			callers = append(callers, p)
		}
	}
	dumps := 0
	if rg.target == "" {
		// Find V*: the first caller whose last push carries the write.
		// The newest ACKs first: they are the likeliest to have it.
		sort.SliceStable(callers, func(i, j int) bool {
			a, _ := callers[i].Type(want.Type)
			b, _ := callers[j].Type(want.Type)
			c, _ := pilotclient.ComparePushVersions(a.AckedVersion, b.AckedVersion)
			return c > 0
		})
		for _, p := range callers {
			if rg.blind[p.ProxyID] {
				continue
			}
			if dumps == maxDumpsPerLook {
				break
			}
			dumps++
			g.count("config_dump")
			hr, err := rs.API.HostRouting(ctx, p.ProxyID, want.Host)
			if err != nil {
				if errors.Is(err, pilotclient.ErrProxyNotFound) {
					continue // it left this replica since the poll
				}
				return fmt.Errorf("reading what Pilot pushed %s: %w", p.ProxyID, err)
			}
			if !hr.Routed {
				rg.notCallers[p.ProxyID] = true
				continue
			}
			if want.Shows != nil && !want.Shows(hr) {
				rg.blind[p.ProxyID] = true
				continue
			}
			if want.Holds(hr) && hr.Version != "" {
				rg.target, rg.targetAt = hr.Version, time.Now()
				break
			}
			break // a caller that routes the host but not yet with the write: Pilot has not pushed it yet
		}
	}
	callers = callers[:0]
	for _, p := range rs.proxies {
		if t, ok := p.Type(want.Type); ok && t.Sent != "" && !rg.notCallers[p.ProxyID] {
			callers = append(callers, p)
		}
	}
	for _, p := range callers {
		res.Total++
		t, _ := p.Type(want.Type)
		if rg.blind[p.ProxyID] || rg.target != "" && holdsTarget(t, rg.target, rg.verified[p.ProxyID]) {
			res.Holding++
			delete(rg.firstBehind, p.ProxyID)
			continue
		}
		first, ok := rg.firstBehind[p.ProxyID]
		if !ok {
			first = time.Now()
			rg.firstBehind[p.ProxyID] = first
		}
		// A straggler: does it route the host at all, and does what it
		// ACKed carry the write after all?
		if rg.target != "" && dumps < maxDumpsPerLook && time.Since(first) >= g.stragglerAfter() {
			dumps++
			g.count("config_dump")
			hr, err := rs.API.HostRouting(ctx, p.ProxyID, want.Host)
			switch {
			case err != nil:
			case !hr.Routed:
				rg.notCallers[p.ProxyID] = true
				res.Total--
				continue
			case want.Holds(hr) && hr.Version == t.AckedVersion:
				rg.verified[p.ProxyID] = t.AckedVersion
				res.Holding++
				continue
			}
		}
		res.Open = false
		since := metav1.NewTime(first)
		typ := want.Type
		if t.State == pilotclient.StateError {
			typ += " NACK: " + t.Error
		}
		res.Waiting = append(res.Waiting, v1alpha1.ProxyWait{Proxy: p.ProxyID, Istiod: rs.Name, Type: typ, Since: &since})
	}
	if rg.target == "" && res.Holding < res.Total {
		res.Open = false
	}
	return nil
}

func (g *Gatekeeper) stragglerAfter() time.Duration {
	if g.StragglerAfter > 0 {
		return g.StragglerAfter
	}
	return 2 * time.Second
}

// holdsTarget: the proxy ACKed target or a later push (or exactly the
// version whose dump was verified to carry the write).
func holdsTarget(t pilotclient.TypeStatus, target, verified string) bool {
	if t.AckedVersion == "" {
		return false
	}
	if verified != "" && t.AckedVersion == verified {
		return true
	}
	if t.AckedVersion == target {
		return true
	}
	c, ok := pilotclient.ComparePushVersions(t.AckedVersion, target)
	return ok && c >= 0
}
