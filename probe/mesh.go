package probe

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/meshready/meshready/envoyadmin"
	"github.com/meshready/meshready/pilotclient"
)

// Pilot is what mesh.synced asks Pilot (pilotclient.Client in production).
type Pilot interface {
	Syncz(ctx context.Context, proxyID string) (pilotclient.ProxyStatus, error)
	XDSSyncz(ctx context.Context, nodeID, proxyID string) (pilotclient.ProxyStatus, error)
	ConfigDump(ctx context.Context, proxyID string) (pilotclient.ConfigVersions, error)
}

// Sync sources and gates (--pilot-source, --sync-gate).
const (
	SourceAuto       = "auto"
	SourceXDS        = pilotclient.SourceXDS
	SourceSyncz      = pilotclient.SourceSyncz
	SourceConfigDump = pilotclient.SourceConfigDump
	SourceLocal      = "local"

	GateStartup = "startup"
	GateAlways  = "always"
	GateOff     = "off"
)

// MeshOptions configure mesh.synced.
type MeshOptions struct {
	// Pilot is --pilot; nil when none is set (only local, and AgentPilot).
	Pilot Pilot
	// PilotScheme is --pilot's scheme (http, https, grpc, grpcs): it decides
	// which sources auto tries.
	PilotScheme string
	// AgentPilot, when set, is Istio's agent debug proxy on localhost:15004
	// (Istio 1.10–1.24): /debug/syncz over the proxy's own authenticated
	// connection, tried first under auto when it answers.
	AgentPilot Pilot
	Source     string        // --pilot-source
	Gate       string        // --sync-gate
	StaleAfter time.Duration // --stale-after
	// ProxyID is --proxy-id (a node id or pod.namespace); "" to learn it
	// from Envoy, else from POD_NAME and POD_NAMESPACE.
	ProxyID string
	// OnStatus, when set, sees every answer (metrics).
	OnStatus func(pilotclient.ProxyStatus)
	Log      *slog.Logger
	now      func() time.Time
}

// meshState is mesh.synced's memory. Rounds run one at a time, but the
// `sync` command and the check may share it, hence the lock.
type meshState struct {
	o     MeshOptions
	envoy *envoyState

	mu       sync.Mutex
	sources  []string // what auto still tries, in order
	proxyID  string
	synced   bool // the first sync happened
	syncedBy string
	syncedAt time.Time
	stale    time.Time // when Pilot first showed the proxy not synced after the first sync
	refused  map[string]string
	// skipped lists, in order, the sources auto dropped for good (they
	// cannot answer for this pod); the verdict names them and why.
	skipped []string
	// tokenMissing is set when a source was dropped because the Pilot token
	// is missing or unreadable: Pilot was never asked, and `sync` must not
	// pass on Envoy's word alone.
	tokenMissing string
	last         *pilotclient.ProxyStatus
	// envoySeen is Envoy's side when Pilot was last asked: when it moves,
	// Envoy accepted something and Pilot's answer is worth asking for at
	// once rather than after the not-synced spacing.
	envoySeen  string
	lastAsked  time.Time
	lastSource string
}

// pilotRecheck is how often --sync-gate=always asks Pilot again once synced,
// unless Envoy shows a change sooner.
const pilotRecheck = 5 * time.Second

// envoyReceivedAny reports whether Envoy has accepted or rejected any cds or
// lds update.
func envoyReceivedAny(f envoyadmin.ReadinessFacts) bool {
	return f.CDS.UpdateSuccess+f.CDS.UpdateRejected+f.LDS.UpdateSuccess+f.LDS.UpdateRejected > 0
}

func envoySignature(f envoyadmin.ReadinessFacts) string {
	return fmt.Sprint(f.CDS.UpdateSuccess, f.CDS.UpdateRejected, f.LDS.UpdateSuccess, f.LDS.UpdateRejected, f.CDS.VersionText, f.LDS.VersionText)
}

func newMeshState(o MeshOptions, e *envoyState) *meshState {
	if o.Log == nil {
		o.Log = slog.New(slog.DiscardHandler)
	}
	if o.now == nil {
		o.now = time.Now
	}
	if o.Gate == "" {
		o.Gate = GateStartup
	}
	if o.StaleAfter <= 0 {
		o.StaleAfter = 30 * time.Second
	}
	m := &meshState{o: o, envoy: e, refused: map[string]string{}}
	m.sources = sourceOrder(o)
	return m
}

// sourceOrder is the order auto tries, per DESIGN.md: xds (grpc addresses),
// syncz then configdump (http addresses), local last; an explicit source is
// tried alone.
func sourceOrder(o MeshOptions) []string {
	if o.Gate == GateOff {
		return []string{SourceLocal}
	}
	if o.Source != "" && o.Source != SourceAuto {
		return []string{o.Source}
	}
	var s []string
	if o.AgentPilot != nil {
		s = append(s, "agent")
	}
	if o.Pilot != nil {
		switch o.PilotScheme {
		case "grpc", "grpcs":
			s = append(s, SourceXDS)
		default:
			s = append(s, SourceSyncz, SourceConfigDump)
		}
	}
	return append(s, SourceLocal)
}

// check is mesh.synced.
func (m *meshState) check(ctx context.Context) (Result, error) {
	f, skip, err := m.envoy.read(ctx)
	if skip != nil {
		return Result{Status: Skip, Message: skip.Message}, nil
	}
	if err != nil {
		return Result{}, err
	}
	m.mu.Lock()
	defer m.mu.Unlock()

	if m.synced && m.o.Gate == GateStartup {
		return Result{Status: Pass, Source: m.syncedBy, Message: fmt.Sprintf("synced at %s (source %s); Pilot is not asked again (--sync-gate=startup)",
			m.syncedAt.UTC().Format(time.RFC3339), m.syncedBy)}, nil
	}
	if m.synced && m.last != nil && m.o.now().Sub(m.lastAsked) < pilotRecheck && m.envoySeen == envoySignature(f) {
		// --sync-gate=always re-asks Pilot at most every pilotRecheck while
		// Envoy shows nothing new: a thousand agents probed every second
		// must not become a thousand requests a second.
		return m.decide(*m.last, m.lastSource), nil
	}
	if len(m.sources) > 0 && m.sources[0] != SourceLocal && !m.synced && !envoyReceivedAny(f) {
		// Until Envoy has received anything, Pilot can only say "not sent"
		// or "not acked": asking costs Pilot a whole-mesh syncz per pod
		// during a rollout and tells nothing.
		return Result{Status: Fail, Source: m.sources[0], Message: "not synced: Envoy has received no cds/lds update yet (Pilot is asked once it has)"}, nil
	}
	for len(m.sources) > 0 {
		src := m.sources[0]
		if src == SourceLocal {
			return m.decide(localStatus(f), SourceLocal), nil
		}
		st, err := m.ask(ctx, src, f)
		m.lastAsked = m.o.now()
		if err == nil {
			m.lastSource = src
			return m.decide(st, src), nil
		}
		if m.next(src, err) {
			continue
		}
		return m.unanswered(src, err), nil
	}
	return failf("no sync source left to ask"), nil
}

// next reports whether err means "this source cannot answer for this pod"
// under auto, and if so drops it for good (logged once).
func (m *meshState) next(src string, err error) bool {
	explicit := m.o.Source != "" && m.o.Source != SourceAuto
	cannot := errors.Is(err, pilotclient.ErrForbidden) || errors.Is(err, pilotclient.ErrUnauthenticated) || errors.Is(err, pilotclient.ErrUnsupported)
	// Istio's agent debug proxy is gone since Istio 1.25, and its answer's
	// shape varied by release: any failure there means "not this Istio",
	// not "Pilot down" — the next source decides.
	if src == "agent" {
		cannot = true
	}
	if explicit || !cannot {
		return false
	}
	m.refused[src] = err.Error()
	m.skipped = append(m.skipped, src)
	m.sources = m.sources[1:]
	switch {
	case errors.Is(err, pilotclient.ErrToken):
		// Loud, once: the operator asked for Pilot and it is not asked.
		m.tokenMissing = err.Error()
		m.o.Log.Warn("Pilot not asked: no usable token; mesh.synced falls back to the next source", "source", src, "next", m.sources[0], "why", err.Error())
	case src == "agent":
		// Absent on most installs (gone since Istio 1.25): not news.
		m.o.Log.Debug("Istio's agent debug proxy (:15004) does not answer; trying the next source", "next", m.sources[0], "why", agentWhy(err))
	default:
		m.o.Log.Info("sync source cannot answer for this pod; trying the next", "source", src, "next", m.sources[0], "why", err.Error())
	}
	return true
}

// agentWhy is the agent proxy's failure without pilotclient's advice about
// --pilot, which is not what was asked there.
func agentWhy(err error) string {
	var e *pilotclient.Error
	if errors.As(err, &e) && errors.Is(err, pilotclient.ErrUnreachable) {
		return "nothing listens on " + e.Target
	}
	return err.Error()
}

// skippedNote names the sources dropped before the one that decided, and
// why ("" when none, or only the agent proxy, which most installs lack).
func (m *meshState) skippedNote() string {
	var parts []string
	for _, src := range m.skipped {
		if src == "agent" {
			continue
		}
		parts = append(parts, src+" skipped: "+m.refused[src])
	}
	if len(parts) == 0 {
		return ""
	}
	return "; " + strings.Join(parts, "; ")
}

func (m *meshState) ask(ctx context.Context, src string, f envoyadmin.ReadinessFacts) (pilotclient.ProxyStatus, error) {
	id, err := m.identity(ctx)
	if err != nil {
		return pilotclient.ProxyStatus{}, err
	}
	seen := envoySignature(f)
	if m.envoySeen != "" && seen != m.envoySeen {
		ctx = pilotclient.WithChange(ctx)
	}
	m.envoySeen = seen
	switch src {
	case "agent":
		st, err := m.o.AgentPilot.Syncz(ctx, id)
		st.Source = "syncz via the sidecar's agent (:15004)"
		return st, err
	case SourceSyncz:
		return m.o.Pilot.Syncz(ctx, id)
	case SourceXDS:
		return m.o.Pilot.XDSSyncz(ctx, "", id)
	case SourceConfigDump:
		cv, err := m.o.Pilot.ConfigDump(ctx, id)
		if err != nil {
			return pilotclient.ProxyStatus{}, err
		}
		return compareVersions(cv, f), nil
	}
	return pilotclient.ProxyStatus{}, fmt.Errorf("unknown sync source %q", src)
}

// compareVersions turns Pilot's versions per kind and Envoy's accepted
// versions into one status: the push version is the same string on both
// sides once Envoy accepts it.
func compareVersions(cv pilotclient.ConfigVersions, f envoyadmin.ReadinessFacts) pilotclient.ProxyStatus {
	st := pilotclient.ProxyStatus{ProxyID: cv.ProxyID, Source: SourceConfigDump, FetchedAt: cv.FetchedAt, Cached: cv.Cached}
	for _, k := range []struct{ kind, short, url, envoy string }{
		{pilotclient.KindClusters, "CDS", "type.googleapis.com/envoy.config.cluster.v3.Cluster", f.CDS.VersionText},
		{pilotclient.KindListeners, "LDS", "type.googleapis.com/envoy.config.listener.v3.Listener", f.LDS.VersionText},
	} {
		pv, ok := cv.Versions[k.kind]
		if !ok {
			continue
		}
		t := pilotclient.TypeStatus{TypeURL: k.url, Type: k.short, SentVersion: pv, AckedVersion: k.envoy, State: pilotclient.StateStale}
		if pv == k.envoy {
			t.State = pilotclient.StateSynced
		}
		st.Types = append(st.Types, t)
	}
	return st
}

// localStatus is the local source: no Pilot to ask, so Envoy's own word —
// its first config accepted, nothing rejected since, nothing warming.
func localStatus(f envoyadmin.ReadinessFacts) pilotclient.ProxyStatus {
	st := pilotclient.ProxyStatus{Source: SourceLocal}
	for _, s := range []struct {
		short string
		sub   envoyadmin.Subscription
		warm  uint64
	}{{"CDS", f.CDS, f.WarmingClusters}, {"LDS", f.LDS, f.WarmingListeners}} {
		t := pilotclient.TypeStatus{Type: s.short, AckedVersion: s.sub.VersionText}
		switch {
		case !s.sub.Present || s.sub.UpdateSuccess == 0:
			t.State = pilotclient.StateNotSent
		case s.warm > 0:
			t.State = pilotclient.StateStale
		default:
			t.State = pilotclient.StateSynced
		}
		st.Types = append(st.Types, t)
	}
	return st
}

// decide turns one answer into the check's result, per the gate.
func (m *meshState) decide(st pilotclient.ProxyStatus, src string) Result {
	m.last = &st
	if m.o.OnStatus != nil {
		m.o.OnStatus(st)
	}
	source := st.Source
	if source == "" {
		source = src
	}
	now := m.o.now()
	if synced(st, src) {
		if !m.synced {
			m.o.Log.Info("mesh synced", "source", source, "proxy", st.ProxyID)
		}
		m.synced, m.syncedBy, m.syncedAt, m.stale = true, source, now, time.Time{}
		r := Result{Status: Pass, Source: source, Message: "SYNCED " + typeList(st, pilotclient.StateSynced) + " (source " + source + m.skippedNote() + ")"}
		if m.tokenMissing != "" {
			r.Warning = "Pilot was not asked: " + m.tokenMissing
		}
		return r
	}
	why := notSyncedReason(st)
	if !m.synced {
		return Result{Status: Fail, Source: source, Message: "not synced: " + why + " (source " + source + m.skippedNote() + ")"}
	}
	// After the first sync (gate always): a rejected push is degraded, never
	// unready; a push not acked is tolerated for --stale-after.
	if hasState(st, pilotclient.StateError) && !hasState(st, pilotclient.StateStale) {
		return Result{Status: Degraded, Source: source, Message: why + "; Envoy keeps serving its last good config"}
	}
	if m.stale.IsZero() {
		m.stale = now
	}
	if d := now.Sub(m.stale); d > m.o.StaleAfter {
		return Result{Status: Fail, Source: source, Message: fmt.Sprintf("not synced for %s (over --stale-after=%s): %s", d.Round(time.Second), m.o.StaleAfter, why)}
	}
	return Result{Status: Degraded, Source: source, Message: fmt.Sprintf("not synced for %s (unready after --stale-after=%s): %s", now.Sub(m.stale).Round(time.Millisecond), m.o.StaleAfter, why)}
}

// synced is the verdict on one answer. Pilot's syncz is exact (the nonce
// sent was acked); the local source has no Pilot, so it needs both CDS and
// LDS accepted.
func synced(st pilotclient.ProxyStatus, src string) bool {
	if src == SourceLocal {
		return !hasState(st, pilotclient.StateNotSent) && !hasState(st, pilotclient.StateStale)
	}
	return st.Synced()
}

// unanswered is the result when the source could not answer (unreachable,
// slow, backing off, no entry for us).
func (m *meshState) unanswered(src string, err error) Result {
	if m.synced {
		// Envoy keeps serving its cached config; Pilot being away is worth
		// knowing, not a reason to take the pod out of service.
		return Result{Status: Degraded, Source: src, Message: "Pilot not reachable since the first sync (last synced " + m.syncedAt.UTC().Format(time.RFC3339) + "): " + err.Error()}
	}
	if errors.Is(err, pilotclient.ErrBackoff) && m.last != nil {
		// The client is spacing its calls; the reason is still the last
		// answer's.
		return Result{Status: Fail, Source: src, Message: "not synced: " + notSyncedReason(*m.last) + " (source " + src + "; " + err.Error() + ")"}
	}
	return Result{Status: Fail, Source: src, Message: err.Error()}
}

// identity is the proxy id Pilot knows this pod's sidecar by: --proxy-id,
// else Envoy's node id, else $POD_NAME.$POD_NAMESPACE.
func (m *meshState) identity(ctx context.Context) (string, error) {
	if m.proxyID != "" {
		return m.proxyID, nil
	}
	if m.o.ProxyID != "" {
		id, err := pilotclient.ProxyIDFromNodeID(m.o.ProxyID)
		if err != nil {
			return "", fmt.Errorf("--proxy-id: %v", err)
		}
		m.proxyID = id
		return id, nil
	}
	var why []string
	if info, err := m.envoy.serverInfo(ctx); err != nil {
		why = append(why, "Envoy's /server_info: "+err.Error())
	} else if info.NodeID == "" {
		why = append(why, "Envoy's /server_info has no node id")
	} else if id, err := pilotclient.ProxyIDFromNodeID(info.NodeID); err != nil {
		why = append(why, err.Error())
	} else {
		m.proxyID = id
		return id, nil
	}
	pod, ns := os.Getenv("POD_NAME"), os.Getenv("POD_NAMESPACE")
	if pod != "" && ns != "" {
		m.proxyID = pod + "." + ns
		return m.proxyID, nil
	}
	why = append(why, "POD_NAME/POD_NAMESPACE are not set")
	return "", fmt.Errorf("no proxy identity for Pilot (%s): set --proxy-id=pod.namespace or the Downward API env POD_NAME and POD_NAMESPACE", strings.Join(why, "; "))
}

func hasState(st pilotclient.ProxyStatus, s pilotclient.State) bool {
	for _, t := range st.Types {
		if t.State == s {
			return true
		}
	}
	return false
}

func typeList(st pilotclient.ProxyStatus, s pilotclient.State) string {
	var names []string
	for _, t := range st.Types {
		if t.State == s {
			names = append(names, t.Type)
		}
	}
	return strings.Join(names, ", ")
}

// notSyncedReason names each type that is not synced, and how.
func notSyncedReason(st pilotclient.ProxyStatus) string {
	var parts []string
	for _, t := range st.Types {
		switch t.State {
		case pilotclient.StateError:
			msg := "Envoy rejected " + t.Type
			if t.Error != "" {
				msg += ": " + t.Error
			}
			parts = append(parts, msg)
		case pilotclient.StateStale:
			parts = append(parts, fmt.Sprintf("%s STALE (sent %s, acked %s)", t.Type, orDash(firstNonEmpty(t.SentVersion, t.Sent)), orDash(firstNonEmpty(t.AckedVersion, t.Acked))))
		case pilotclient.StateNotSent:
			parts = append(parts, t.Type+" NOT SENT")
		}
	}
	if len(parts) == 0 {
		return "Pilot reports nothing synced for " + orDash(st.ProxyID)
	}
	return strings.Join(parts, "; ")
}

func firstNonEmpty(a, b string) string {
	if a != "" {
		return a
	}
	return b
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// Mesh answers `meshready sync`: Pilot's view and Envoy's, per xDS type.
type Mesh struct{ m *meshState }

// SyncRow is one xDS type in `meshready sync`.
type SyncRow struct {
	Type         string `json:"type"`
	EnvoyVersion string `json:"envoy_version"`
	PilotSent    string `json:"pilot_sent"`
	PilotAcked   string `json:"pilot_acked"`
	State        string `json:"state"`
	Age          string `json:"age"`
	Source       string `json:"source"`
}

// SyncReport is `meshready sync`'s answer.
type SyncReport struct {
	ProxyID string    `json:"proxy_id"`
	Synced  bool      `json:"synced"`
	Status  Status    `json:"status"`
	Reason  string    `json:"reason"`
	Source  string    `json:"source"`
	Rows    []SyncRow `json:"types"` // never nil: JSON shows [] rather than null
}

// Report asks the sources once, as the check does, and lays out the answer.
func (mesh *Mesh) Report(ctx context.Context) SyncReport {
	m := mesh.m
	r, err := m.check(withRound(ctx, roundSeq.Add(1)))
	if err != nil {
		r = failf(err.Error())
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	rep := SyncReport{ProxyID: m.proxyID, Synced: r.Status == Pass, Status: r.Status, Reason: r.Message, Source: r.Source, Rows: []SyncRow{}}
	if r.Status == Skip {
		rep.Reason = "no proxy to compare: " + r.Message
		return rep
	}
	if m.tokenMissing != "" {
		// Envoy's own counters may pass; the operator asked for Pilot's word
		// and did not get it.
		rep.Synced = false
		rep.Reason = "Pilot was not asked: " + m.tokenMissing + "; Envoy's own counters say: " + r.Message
	}
	if m.last == nil {
		return rep
	}
	envoyVersion := map[string]string{"CDS": m.envoy.facts.CDS.VersionText, "LDS": m.envoy.facts.LDS.VersionText}
	now := m.o.now()
	for _, t := range m.last.Types {
		row := SyncRow{
			Type:         t.Type,
			EnvoyVersion: orDash(envoyVersion[t.Type]),
			PilotSent:    orDash(firstNonEmpty(t.SentVersion, t.Sent)),
			PilotAcked:   orDash(firstNonEmpty(t.AckedVersion, t.Acked)),
			State:        string(t.State),
			Age:          "-",
			Source:       rep.Source,
		}
		if !t.SentAt.IsZero() {
			row.Age = now.Sub(t.SentAt).Round(time.Second).String()
		}
		if m.last.Source == SourceLocal || rep.Source == SourceLocal {
			row.PilotSent, row.PilotAcked = "-", "-"
		}
		rep.Rows = append(rep.Rows, row)
	}
	return rep
}
