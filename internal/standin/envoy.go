// Package standin serves, for tests, the admin endpoints the agent reads, in
// Envoy's formats, from state a test drives. It is a stand-in, not Envoy:
// the formats it writes are checked against real captured Envoy output in
// envoyadmin's tests.
package standin

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
)

// EnvoyState is what the stand-in reports.
type EnvoyState struct {
	State            int // server.state: 0 LIVE, 1 DRAINING, 2 PRE_INITIALIZING, 3 INITIALIZING
	WorkersStarted   bool
	CDSSuccess       uint64
	CDSRejected      uint64
	LDSSuccess       uint64
	LDSRejected      uint64
	WarmingClusters  uint64
	WarmingListeners uint64
	CDSVersion       string
	LDSVersion       string
	// Inbound traffic, as Istio's virtualInbound listener and inbound HTTP
	// connection manager report it.
	InboundCxActive uint64
	InboundRqActive uint64
	InboundRqTotal  uint64
	NodeID          string
	// ConfigDump, when set, is served as /config_dump (a real captured dump,
	// or a crafted one); unset, /config_dump is 404.
	ConfigDump string
}

// Envoy is an httptest server answering /stats, /server_info and the POST
// mutations in Envoy's text formats.
type Envoy struct {
	*httptest.Server
	mu       sync.Mutex
	state    EnvoyState
	requests atomic.Int64
	posts    []string
}

// LiveSynced is a sidecar that is LIVE with its first config accepted.
func LiveSynced() EnvoyState {
	return EnvoyState{State: 0, WorkersStarted: true, CDSSuccess: 1, LDSSuccess: 1,
		CDSVersion: "2026-11-30T19:05:14Z/1", LDSVersion: "2026-11-30T19:05:14Z/1",
		NodeID: "sidecar~10.0.0.1~app-1.default~default.svc.cluster.local"}
}

// NewEnvoy starts a stand-in with the given state.
func NewEnvoy(s EnvoyState) *Envoy {
	e := &Envoy{state: s}
	e.Server = httptest.NewServer(http.HandlerFunc(e.serve))
	return e
}

// Set replaces the state.
func (e *Envoy) Set(f func(*EnvoyState)) {
	e.mu.Lock()
	defer e.mu.Unlock()
	f(&e.state)
}

// Requests counts requests served.
func (e *Envoy) Requests() int64 { return e.requests.Load() }

// Posts lists the POSTed paths with their queries, in order.
func (e *Envoy) Posts() []string {
	e.mu.Lock()
	defer e.mu.Unlock()
	return append([]string(nil), e.posts...)
}

func (e *Envoy) serve(w http.ResponseWriter, r *http.Request) {
	e.requests.Add(1)
	e.mu.Lock()
	s := e.state
	if r.Method == http.MethodPost {
		e.posts = append(e.posts, r.URL.RequestURI())
	}
	e.mu.Unlock()
	switch r.URL.Path {
	case "/stats":
		w.Header().Set("Content-Type", "text/plain; charset=UTF-8")
		fmt.Fprint(w, statsText(s))
	case "/server_info":
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprintf(w, "{\n \"version\": \"standin/1.0.0/Clean/RELEASE/BoringSSL\",\n \"state\": %q,\n \"command_line_options\": {\n  \"service_node\": %q\n },\n \"node\": {\n  \"id\": %q\n }\n}\n",
			stateName(s.State), "", s.NodeID)
	case "/config_dump":
		if s.ConfigDump == "" {
			http.NotFound(w, r)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprint(w, s.ConfigDump)
	case "/drain_listeners", "/healthcheck/fail", "/healthcheck/ok", "/quitquitquit":
		if r.Method != http.MethodPost {
			http.Error(w, "This endpoint requires POST", http.StatusBadRequest)
			return
		}
		fmt.Fprint(w, "OK\n")
	default:
		http.NotFound(w, r)
	}
}

func stateName(s int) string {
	switch s {
	case 0:
		return "LIVE"
	case 1:
		return "DRAINING"
	case 2:
		return "PRE_INITIALIZING"
	case 3:
		return "INITIALIZING"
	}
	return "UNKNOWN"
}

func b2u(b bool) uint64 {
	if b {
		return 1
	}
	return 0
}

// statsText renders Envoy's text /stats: one `name: value` a line, sorted,
// text readouts quoted.
func statsText(s EnvoyState) string {
	v := map[string]string{
		"server.state":                                                               fmt.Sprint(s.State),
		"server.live":                                                                fmt.Sprint(b2u(s.State == 0)),
		"listener_manager.workers_started":                                           fmt.Sprint(b2u(s.WorkersStarted)),
		"cluster_manager.cds.update_success":                                         fmt.Sprint(s.CDSSuccess),
		"cluster_manager.cds.update_rejected":                                        fmt.Sprint(s.CDSRejected),
		"cluster_manager.cds.update_attempt":                                         fmt.Sprint(s.CDSSuccess + s.CDSRejected),
		"listener_manager.lds.update_success":                                        fmt.Sprint(s.LDSSuccess),
		"listener_manager.lds.update_rejected":                                       fmt.Sprint(s.LDSRejected),
		"listener_manager.lds.update_attempt":                                        fmt.Sprint(s.LDSSuccess + s.LDSRejected),
		"cluster_manager.warming_clusters":                                           fmt.Sprint(s.WarmingClusters),
		"listener_manager.total_listeners_warming":                                   fmt.Sprint(s.WarmingListeners),
		"cluster_manager.cds.version_text":                                           fmt.Sprintf("%q", s.CDSVersion),
		"listener_manager.lds.version_text":                                          fmt.Sprintf("%q", s.LDSVersion),
		"listener.0.0.0.0_15006.downstream_cx_active":                                fmt.Sprint(s.InboundCxActive),
		"listener.0.0.0.0_15006.worker_0.downstream_cx_active":                       fmt.Sprint(s.InboundCxActive),
		"http.inbound_0.0.0.0_8080.downstream_rq_active":                             fmt.Sprint(s.InboundRqActive),
		"http.inbound_0.0.0.0_8080.downstream_rq_total":                              fmt.Sprint(s.InboundRqTotal),
		"listener.admin.downstream_cx_active":                                        "1",
		"listener.0.0.0.0_15090.downstream_cx_active":                                "3",
		"http.outbound_0.0.0.0_9080.downstream_rq_active":                            "7",
		"cluster.outbound|9080||reviews.default.svc.cluster.local.upstream_rq_total": "42",
	}
	names := make([]string, 0, len(v))
	for n := range v {
		names = append(names, n)
	}
	sort.Strings(names)
	var b strings.Builder
	for _, n := range names {
		b.WriteString(n + ": " + v[n] + "\n")
	}
	b.WriteString("cluster_manager.cds.update_duration: P0(nan,1) P25(nan,1.025) P50(nan,1.05) P100(nan,1.1)\n")
	return b.String()
}
