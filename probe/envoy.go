package probe

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/meshready/meshready/envoyadmin"
)

// EnvoyAdmin is what the sidecar checks read: envoyadmin.Client in production.
type EnvoyAdmin interface {
	ReadinessFacts(ctx context.Context) (envoyadmin.ReadinessFacts, error)
	ServerInfo(ctx context.Context) (envoyadmin.ServerInfo, error)
}

// EnvoyChecks returns envoy.live and envoy.config. They share one read of
// Envoy's stats per round: one /stats request answers both.
func EnvoyChecks(admin EnvoyAdmin, sidecar *Sidecar) []Check {
	checks, _ := SidecarChecks(admin, sidecar, nil)
	return checks
}

// SidecarChecks returns envoy.live, envoy.config and, with mesh options,
// mesh.synced: the checks that say the sidecar can route. All of them share
// one read of Envoy's stats per round. The Mesh it returns (nil without
// options) answers `meshready sync`.
func SidecarChecks(admin EnvoyAdmin, sidecar *Sidecar, mesh *MeshOptions) ([]Check, *Mesh) {
	e := &envoyState{admin: admin, sidecar: sidecar}
	checks := []Check{
		{Name: "envoy.live", Run: e.live},
		{Name: "envoy.config", Run: e.config},
	}
	if mesh == nil {
		return checks, nil
	}
	m := newMeshState(*mesh, e)
	return append(checks, Check{Name: "mesh.synced", Run: m.check}), &Mesh{m: m}
}

type envoyState struct {
	admin   EnvoyAdmin
	sidecar *Sidecar

	mu    sync.Mutex
	round uint64
	facts envoyadmin.ReadinessFacts
	err   error
	info  *envoyadmin.ServerInfo

	configMu sync.Mutex
	// firstGood is the counters when envoy.config first passed. Envoy's
	// counters never go down, so a rejection after it shows as
	// update_rejected above this baseline.
	firstGood *envoyadmin.ReadinessFacts
	cdsHealth subscriptionHealth
	ldsHealth subscriptionHealth

	// culprits' cache (under configMu): what /config_dump named last, for
	// which counters, when.
	culpritSig string
	culpritAt  time.Time
	culpritMsg string
}

// subscriptionHealth follows one xDS subscription after the first good
// config. Envoy's counters never go down, so "a push is rejected now" means
// update_rejected rose and no update_success has come since we noticed.
type subscriptionHealth struct {
	accounted uint64 // update_rejected already healed by a later success
	pending   bool   // rejections noticed and not healed yet
	mark      uint64 // update_success when they were noticed
}

// observe returns how many rejections are outstanding (0 when healthy).
func (h *subscriptionHealth) observe(s envoyadmin.Subscription) uint64 {
	if s.UpdateRejected <= h.accounted {
		return 0
	}
	if !h.pending {
		h.pending, h.mark = true, s.UpdateSuccess
	} else if s.UpdateSuccess > h.mark {
		h.accounted, h.pending = s.UpdateRejected, false
		return 0
	}
	return s.UpdateRejected - h.accounted
}

// read returns this round's facts, fetching them once per round. It also
// feeds sidecar auto-detection. skip is non-nil when the pod has no sidecar.
func (e *envoyState) read(ctx context.Context) (f envoyadmin.ReadinessFacts, skip *Result, err error) {
	if present, decided, why := e.sidecar.State(); decided && !present {
		return f, &Result{Status: Skip, Message: why}, nil
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	if r := RoundOf(ctx); r == 0 || r != e.round {
		e.facts, e.err = e.admin.ReadinessFacts(ctx)
		e.round = r
	}
	if e.err != nil {
		if envoyadmin.IsUnreachable(e.err) {
			if gaveUp, why := e.sidecar.unanswered(); gaveUp {
				return f, &Result{Status: Skip, Message: why}, nil
			} else if _, decided, _ := e.sidecar.State(); !decided {
				return f, nil, fmt.Errorf("%s: %v", why, e.err)
			}
		} else {
			// Something answered on the admin port: a sidecar is there,
			// even if it is unwell.
			e.sidecar.answered()
		}
		return f, nil, e.err
	}
	e.sidecar.answered()
	return e.facts, nil, nil
}

// serverInfo is read once: the node id does not change for Envoy's life.
func (e *envoyState) serverInfo(ctx context.Context) (envoyadmin.ServerInfo, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.info != nil {
		return *e.info, nil
	}
	info, err := e.admin.ServerInfo(ctx)
	if err != nil {
		return info, err
	}
	e.info = &info
	return info, nil
}

// live is envoy.live: Envoy is LIVE and its workers started. Re-read every
// round for the life of the process — Istio's agent latches its first
// success and stays 200 after Envoy dies or drains; we don't.
func (e *envoyState) live(ctx context.Context) (Result, error) {
	f, skip, err := e.read(ctx)
	if skip != nil || err != nil {
		return deref(skip), err
	}
	if !f.HasState {
		return failf("Envoy reports no server.state (is this Envoy's admin API?)"), nil
	}
	if f.State != envoyadmin.Live {
		return failf(fmt.Sprintf("Envoy is %s, not LIVE", f.State)), nil
	}
	if f.HasWorkersStarted && !f.WorkersStarted {
		return failf("Envoy is LIVE but its workers have not started"), nil
	}
	return passf("LIVE"), nil
}

// config is envoy.config: the first complete config from Pilot has been
// accepted and nothing is warming. After that first success, a rejected push
// or a warming resource is degraded, never unready: a bad push that every
// proxy rejects must not take the whole fleet out of service.
func (e *envoyState) config(ctx context.Context) (Result, error) {
	f, skip, err := e.read(ctx)
	if skip != nil || err != nil {
		return deref(skip), err
	}
	e.configMu.Lock()
	defer e.configMu.Unlock()

	// Counters going down means a new Envoy (a restarted sidecar): its first
	// config must be awaited again.
	if g := e.firstGood; g != nil && (f.CDS.UpdateSuccess < g.CDS.UpdateSuccess || f.LDS.UpdateSuccess < g.LDS.UpdateSuccess) {
		e.firstGood = nil
	}
	counts := fmt.Sprintf("cds updates: %d successful, %d rejected; lds updates: %d successful, %d rejected",
		f.CDS.UpdateSuccess, f.CDS.UpdateRejected, f.LDS.UpdateSuccess, f.LDS.UpdateRejected)
	received := f.CDS.UpdateSuccess > 0 && f.LDS.UpdateSuccess > 0
	warming := f.WarmingClusters > 0 || f.WarmingListeners > 0

	if e.firstGood == nil {
		switch {
		case received && !warming:
			g := f
			e.firstGood = &g
			e.cdsHealth = subscriptionHealth{accounted: f.CDS.UpdateRejected}
			e.ldsHealth = subscriptionHealth{accounted: f.LDS.UpdateRejected}
			return passf("config received: " + counts), nil
		case received:
			msg := fmt.Sprintf("%d clusters, %d listeners warming", f.WarmingClusters, f.WarmingListeners)
			if c := e.culprits(ctx, f); c != "" {
				msg = c + " (" + msg + ")"
			}
			return failf("config not fully received: " + msg), nil
		case f.CDS.UpdateRejected > 0 || f.LDS.UpdateRejected > 0:
			msg := "config received but rejected: " + counts
			if c := e.culprits(ctx, f); c != "" {
				msg += "; " + c
			}
			return failf(msg), nil
		case !f.CDS.Present && !f.LDS.Present:
			return failf("config not received from Pilot (is Pilot running?): Envoy has no cds/lds subscription stats"), nil
		default:
			return failf("config not received from Pilot (is Pilot running?): " + counts), nil
		}
	}

	cdsRejected := e.cdsHealth.observe(f.CDS)
	ldsRejected := e.ldsHealth.observe(f.LDS)
	switch {
	case cdsRejected > 0 || ldsRejected > 0:
		msg := fmt.Sprintf("a push was rejected after the first good config (cds %d, lds %d rejected, no good update since); Envoy keeps serving its last good config",
			cdsRejected, ldsRejected)
		if c := e.culprits(ctx, f); c != "" {
			msg += "; " + c
		}
		return Result{Status: Degraded, Message: msg}, nil
	case warming:
		msg := fmt.Sprintf("%d clusters, %d listeners warming after the first good config", f.WarmingClusters, f.WarmingListeners)
		if c := e.culprits(ctx, f); c != "" {
			msg += ": " + c
		}
		return Result{Status: Degraded, Message: msg}, nil
	}
	return passf("config received: " + counts), nil
}

func deref(r *Result) Result {
	if r == nil {
		return Result{}
	}
	return *r
}
