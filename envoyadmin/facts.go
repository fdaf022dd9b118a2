package envoyadmin

import (
	"context"
	"time"
)

// Subscription is one xDS subscription's counters (cluster_manager.cds.* or
// listener_manager.lds.*). Envoy's counters never go down, so a caller can
// tell "rejected before any success" from "rejected after one" by comparing
// two readings.
type Subscription struct {
	// Present is false when Envoy has no such subscription (a static
	// bootstrap, or a stats matcher that drops these names).
	Present        bool
	UpdateAttempt  uint64
	UpdateSuccess  uint64
	UpdateFailure  uint64
	UpdateRejected uint64
	// VersionText is the last accepted version_info (a text readout in
	// newer Envoys); "" when absent.
	VersionText string
	// VersionHash is the `version` gauge, xxHash64 of the same string; the
	// only version older Envoys report.
	VersionHash uint64
	// UpdateTime is when the last update was accepted (update_time, ms since
	// the epoch); zero when absent.
	UpdateTime time.Time
}

// ReadinessFacts are the stats a sidecar readiness verdict rests on. Each
// Has* flag tells "absent" (old Envoy, stats matcher) from "zero".
type ReadinessFacts struct {
	State    State // server.state
	HasState bool

	WorkersStarted    bool // listener_manager.workers_started == 1
	HasWorkersStarted bool

	CDS Subscription // cluster_manager.cds.*
	LDS Subscription // listener_manager.lds.*

	WarmingClusters  uint64 // cluster_manager.warming_clusters
	WarmingListeners uint64 // listener_manager.total_listeners_warming
}

// readinessFilter selects exactly the stats FactsFromStats reads, anchored so
// that per-route or per-cluster stats with similar suffixes stay out.
// Deliberately not usedonly: a zero update_rejected must still be reported.
const readinessFilter = `^(server\.state|listener_manager\.(workers_started|total_listeners_warming|lds\.(update_(attempt|success|failure|rejected|time)|version(_text)?))|cluster_manager\.(warming_clusters|cds\.(update_(attempt|success|failure|rejected|time)|version(_text)?)))$`

// FactsFromStats extracts ReadinessFacts from parsed stats, text or
// Prometheus (ParsePrometheusStats adds the dotted aliases).
func FactsFromStats(s Stats) ReadinessFacts {
	var f ReadinessFacts
	f.State = StateUnknown
	if v, ok := s.Values["server.state"]; ok {
		f.State, f.HasState = stateFromGauge(v), true
	}
	if v, ok := s.Values["listener_manager.workers_started"]; ok {
		f.WorkersStarted, f.HasWorkersStarted = v == 1, true
	}
	f.CDS = subscription(s, cdsNames)
	f.LDS = subscription(s, ldsNames)
	f.WarmingClusters = s.Values["cluster_manager.warming_clusters"]
	f.WarmingListeners = s.Values["listener_manager.total_listeners_warming"]
	return f
}

// subNames are one subscription's stat names, built once so that reading
// facts every second allocates nothing.
type subNames struct {
	attempt, success, failure, rejected, version, updateTime, versionText string
}

func newSubNames(prefix string) subNames {
	return subNames{prefix + "update_attempt", prefix + "update_success", prefix + "update_failure",
		prefix + "update_rejected", prefix + "version", prefix + "update_time", prefix + "version_text"}
}

var (
	cdsNames = newSubNames("cluster_manager.cds.")
	ldsNames = newSubNames("listener_manager.lds.")
)

func subscription(s Stats, n subNames) Subscription {
	var sub Subscription
	get := func(name string) uint64 {
		v, ok := s.Values[name]
		sub.Present = sub.Present || ok
		return v
	}
	sub.UpdateAttempt = get(n.attempt)
	sub.UpdateSuccess = get(n.success)
	sub.UpdateFailure = get(n.failure)
	sub.UpdateRejected = get(n.rejected)
	sub.VersionHash = get(n.version)
	if ms := get(n.updateTime); ms > 0 && ms < 1<<53 {
		sub.UpdateTime = time.UnixMilli(int64(ms)).UTC()
	}
	if t, ok := s.Text[n.versionText]; ok {
		sub.VersionText, sub.Present = t, true
	}
	return sub
}

// ReadinessFacts reads the facts with one /stats request. Only when
// server.state is missing (Envoy before 1.11 has no such gauge) does it ask
// /server_info for the state as well; if that second call fails, the facts
// read from /stats are returned with its error.
func (c *Client) ReadinessFacts(ctx context.Context) (ReadinessFacts, error) {
	s, err := c.Stats(ctx, StatsQuery{Filter: readinessFilter})
	if err != nil {
		return ReadinessFacts{State: StateUnknown}, err
	}
	f := FactsFromStats(s)
	if !f.HasState {
		si, err := c.ServerInfo(ctx)
		if err != nil {
			return f, err
		}
		if si.State != StateUnknown {
			f.State, f.HasState = si.State, true
		}
	}
	return f, nil
}
