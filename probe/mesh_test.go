package probe

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/meshready/meshready/envoyadmin"
	"github.com/meshready/meshready/internal/standin"
	"github.com/meshready/meshready/pilotclient"
)

// fakePilot answers from a script: the real formats are pilotclient's and
// the integration module's business; here only the decisions are tested.
type fakePilot struct {
	mu      sync.Mutex
	syncz   func(id string) (pilotclient.ProxyStatus, error)
	xds     func(id string) (pilotclient.ProxyStatus, error)
	dump    func(id string) (pilotclient.ConfigVersions, error)
	calls   map[string]int
	lastIDs []string
}

func (f *fakePilot) count(src, id string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.calls == nil {
		f.calls = map[string]int{}
	}
	f.calls[src]++
	f.lastIDs = append(f.lastIDs, id)
}

func (f *fakePilot) Calls(src string) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.calls[src]
}

func (f *fakePilot) Syncz(_ context.Context, id string) (pilotclient.ProxyStatus, error) {
	f.count("syncz", id)
	if f.syncz == nil {
		return pilotclient.ProxyStatus{}, &pilotclient.Error{Source: "syncz", Err: pilotclient.ErrUnsupported}
	}
	return f.syncz(id)
}

func (f *fakePilot) XDSSyncz(_ context.Context, _, id string) (pilotclient.ProxyStatus, error) {
	f.count("xds", id)
	if f.xds == nil {
		return pilotclient.ProxyStatus{}, &pilotclient.Error{Source: "xds", Err: pilotclient.ErrUnsupported}
	}
	return f.xds(id)
}

func (f *fakePilot) ConfigDump(_ context.Context, id string) (pilotclient.ConfigVersions, error) {
	f.count("configdump", id)
	if f.dump == nil {
		return pilotclient.ConfigVersions{}, &pilotclient.Error{Source: "configdump", Err: pilotclient.ErrUnsupported}
	}
	return f.dump(id)
}

func proxyStatus(src string, types ...pilotclient.TypeStatus) pilotclient.ProxyStatus {
	return pilotclient.ProxyStatus{ProxyID: "app-1.default", Source: src, Types: types}
}

func ts(short string, state pilotclient.State, sent, acked string) pilotclient.TypeStatus {
	return pilotclient.TypeStatus{Type: short, State: state, SentVersion: sent, AckedVersion: acked}
}

type meshFixture struct {
	envoy *standin.Envoy
	agg   *Aggregator
	mesh  *Mesh
	now   time.Time
	mu    sync.Mutex
}

func newMeshFixture(t *testing.T, o MeshOptions) *meshFixture {
	t.Helper()
	fx := &meshFixture{envoy: standin.NewEnvoy(standin.LiveSynced()), now: time.Unix(1_800_000_000, 0)}
	t.Cleanup(fx.envoy.Close)
	admin, err := envoyadmin.New(fx.envoy.URL)
	if err != nil {
		t.Fatal(err)
	}
	o.now = func() time.Time { fx.mu.Lock(); defer fx.mu.Unlock(); return fx.now }
	checks, mesh := SidecarChecks(admin, NewSidecar(SidecarRequired, "", time.Minute, nil), &o)
	fx.agg = NewAggregator(checks, AggregatorOptions{Interval: time.Nanosecond, Timeout: 2 * time.Second})
	fx.mesh = mesh
	return fx
}

func (fx *meshFixture) advance(d time.Duration) { fx.mu.Lock(); fx.now = fx.now.Add(d); fx.mu.Unlock() }

func (fx *meshFixture) synced(t *testing.T) Result {
	t.Helper()
	return outcome(t, fx.agg.Refresh(context.Background()), "mesh.synced")
}

func want(t *testing.T, step string, r Result, status Status, source, msg string) {
	t.Helper()
	if r.Status != status || r.Source != source || !strings.Contains(r.Message, msg) {
		t.Fatalf("%s: mesh.synced = %s [%s] %q; want %s [%s] containing %q", step, r.Status, r.Source, r.Message, status, source, msg)
	}
}

func TestMeshSyncedLocalWithoutPilot(t *testing.T) {
	t.Parallel()
	fx := newMeshFixture(t, MeshOptions{Source: SourceAuto, Gate: GateStartup})
	want(t, "synced Envoy", fx.synced(t), Pass, "local", "SYNCED CDS, LDS")
	fx2 := newMeshFixture(t, MeshOptions{Source: SourceAuto, Gate: GateAlways})
	fx2.envoy.Set(func(s *standin.EnvoyState) { s.LDSSuccess = 0 })
	want(t, "no LDS yet", fx2.synced(t), Fail, "local", "LDS NOT SENT")
}

// The startup gate: not ready until Pilot says synced, then no Pilot call
// ever again.
func TestMeshSyncedStartupGateStopsCallingPilot(t *testing.T) {
	t.Parallel()
	var mu sync.Mutex
	acked := false
	p := &fakePilot{syncz: func(string) (pilotclient.ProxyStatus, error) {
		mu.Lock()
		defer mu.Unlock()
		if !acked {
			return proxyStatus("syncz", ts("CDS", pilotclient.StateSynced, "v1", "v1"), ts("LDS", pilotclient.StateStale, "v1", "")), nil
		}
		return proxyStatus("syncz", ts("CDS", pilotclient.StateSynced, "v1", "v1"), ts("LDS", pilotclient.StateSynced, "v1", "v1")), nil
	}}
	fx := newMeshFixture(t, MeshOptions{Pilot: p, PilotScheme: "http", Source: SourceAuto, Gate: GateStartup, ProxyID: "app-1.default"})
	want(t, "before the ack", fx.synced(t), Fail, "syncz", "not synced: LDS STALE (sent v1, acked -)")
	mu.Lock()
	acked = true
	mu.Unlock()
	want(t, "after the ack", fx.synced(t), Pass, "syncz", "SYNCED CDS, LDS")
	calls := p.Calls("syncz")
	for range 5 {
		want(t, "later", fx.synced(t), Pass, "syncz", "not asked again")
	}
	if got := p.Calls("syncz"); got != calls {
		t.Fatalf("Pilot asked %d more times after the first sync under --sync-gate=startup", got-calls)
	}
	if v := fx.agg.Refresh(context.Background()); !v.Ready || v.Verbose().SyncSource != "syncz" {
		t.Fatalf("ready=%v source=%q", v.Ready, v.Verbose().SyncSource)
	}
}

// auto over an http address: a 403 on syncz hands over to configdump, which
// compares Pilot's versions with Envoy's; the verdict names the source.
func TestMeshSyncedAutoFallsThroughForbidden(t *testing.T) {
	t.Parallel()
	forbidden := &pilotclient.Error{Source: "syncz", StatusCode: 403, Err: pilotclient.ErrForbidden}
	p := &fakePilot{
		syncz: func(string) (pilotclient.ProxyStatus, error) { return pilotclient.ProxyStatus{}, forbidden },
		dump: func(id string) (pilotclient.ConfigVersions, error) {
			return pilotclient.ConfigVersions{ProxyID: id, Versions: map[string]string{"clusters": "2026-11-30T19:05:14Z/1", "listeners": "2026-11-30T19:05:14Z/2"}}, nil
		},
	}
	fx := newMeshFixture(t, MeshOptions{Pilot: p, PilotScheme: "http", Source: SourceAuto, Gate: GateAlways, ProxyID: "app-1.default"})
	want(t, "Envoy behind on LDS", fx.synced(t), Fail, "configdump", "LDS STALE (sent 2026-11-30T19:05:14Z/2, acked 2026-11-30T19:05:14Z/1)")
	fx.envoy.Set(func(s *standin.EnvoyState) { s.LDSVersion = "2026-11-30T19:05:14Z/2" })
	want(t, "caught up", fx.synced(t), Pass, "configdump", "SYNCED CDS, LDS")
	if n := p.Calls("syncz"); n != 1 {
		t.Fatalf("syncz asked %d times after it refused, want 1", n)
	}
	// An explicit source that is refused is a failure, not a fall-through.
	fx2 := newMeshFixture(t, MeshOptions{Pilot: p, PilotScheme: "http", Source: SourceSyncz, Gate: GateStartup, ProxyID: "app-1.default"})
	want(t, "explicit syncz", fx2.synced(t), Fail, "syncz", "ENABLE_DEBUG_ENDPOINT_AUTH")
}

// The gate always: after the first sync, Pilot away is degraded; a push
// left unacked is degraded until --stale-after, then unready; a NACK is
// degraded, never unready.
func TestMeshSyncedAlwaysGate(t *testing.T) {
	t.Parallel()
	var mu sync.Mutex
	answer := func(string) (pilotclient.ProxyStatus, error) {
		return proxyStatus("syncz", ts("CDS", pilotclient.StateSynced, "v1", "v1")), nil
	}
	p := &fakePilot{syncz: func(id string) (pilotclient.ProxyStatus, error) { mu.Lock(); defer mu.Unlock(); return answer(id) }}
	set := func(f func(string) (pilotclient.ProxyStatus, error)) { mu.Lock(); answer = f; mu.Unlock() }
	fx := newMeshFixture(t, MeshOptions{Pilot: p, PilotScheme: "http", Source: SourceAuto, Gate: GateAlways, StaleAfter: 30 * time.Second, ProxyID: "app-1.default"})
	want(t, "first sync", fx.synced(t), Pass, "syncz", "SYNCED CDS")
	// Once synced, Pilot is re-asked at most every pilotRecheck while Envoy
	// shows nothing new.
	fx.synced(t)
	if n := p.Calls("syncz"); n != 1 {
		t.Fatalf("asked Pilot %d times within pilotRecheck", n)
	}
	fx.advance(pilotRecheck)

	set(func(string) (pilotclient.ProxyStatus, error) {
		return pilotclient.ProxyStatus{}, &pilotclient.Error{Source: "syncz", Err: pilotclient.ErrUnreachable}
	})
	want(t, "Pilot gone", fx.synced(t), Degraded, "syncz", "Pilot not reachable since the first sync")
	fx.advance(pilotRecheck)

	set(func(string) (pilotclient.ProxyStatus, error) {
		return proxyStatus("syncz", ts("CDS", pilotclient.StateStale, "v2", "v1")), nil
	})
	want(t, "stale at once", fx.synced(t), Degraded, "syncz", "CDS STALE (sent v2, acked v1)")
	fx.advance(29 * time.Second)
	want(t, "stale 29s", fx.synced(t), Degraded, "syncz", "unready after --stale-after=30s")
	fx.advance(2 * time.Second)
	want(t, "stale 31s", fx.synced(t), Fail, "syncz", "not synced for 31s (over --stale-after=30s)")
	fx.advance(pilotRecheck)

	set(func(string) (pilotclient.ProxyStatus, error) {
		return proxyStatus("syncz", ts("CDS", pilotclient.StateSynced, "v2", "v2")), nil
	})
	want(t, "acked", fx.synced(t), Pass, "syncz", "SYNCED")
	fx.advance(pilotRecheck)

	set(func(string) (pilotclient.ProxyStatus, error) {
		e := ts("LDS", pilotclient.StateError, "v3", "v2")
		e.Error = "listener 0.0.0.0_80: duplicate filter chain"
		return proxyStatus("syncz", ts("CDS", pilotclient.StateSynced, "v3", "v3"), e), nil
	})
	fx.advance(time.Hour)
	want(t, "NACK after first sync", fx.synced(t), Degraded, "syncz", "Envoy rejected LDS: listener 0.0.0.0_80: duplicate filter chain")
}

func TestMeshSyncedBeforeFirstSync(t *testing.T) {
	t.Parallel()
	nack := ts("CDS", pilotclient.StateError, "v1", "")
	nack.Error = "cluster outbound|80||x: bad TLS context"
	cases := []struct {
		name   string
		answer func(string) (pilotclient.ProxyStatus, error)
		msg    string
	}{
		{"NACK names the type", func(string) (pilotclient.ProxyStatus, error) { return proxyStatus("syncz", nack), nil }, "not synced: Envoy rejected CDS: cluster outbound|80||x: bad TLS context"},
		{"unknown proxy", func(id string) (pilotclient.ProxyStatus, error) {
			return pilotclient.ProxyStatus{}, &pilotclient.Error{Source: "syncz", Err: pilotclient.ErrProxyNotFound}
		}, "no entry for this proxy"},
		{"unreachable", func(string) (pilotclient.ProxyStatus, error) {
			return pilotclient.ProxyStatus{}, &pilotclient.Error{Source: "syncz", Target: "http://istiod:15014/debug/syncz", Err: pilotclient.ErrUnreachable}
		}, "unreachable"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			fx := newMeshFixture(t, MeshOptions{Pilot: &fakePilot{syncz: tc.answer}, PilotScheme: "http", Source: SourceSyncz, Gate: GateStartup, ProxyID: "app-1.default"})
			r := fx.synced(t)
			if r.Status != Fail || !strings.Contains(r.Message, tc.msg) {
				t.Fatalf("%s %q, want %q", r.Status, r.Message, tc.msg)
			}
		})
	}
}

// auto over a grpc address asks xds; Istio's agent proxy on :15004, when
// configured, is asked first and dropped at its first failure.
func TestMeshSyncedSourceOrder(t *testing.T) {
	t.Parallel()
	p := &fakePilot{xds: func(string) (pilotclient.ProxyStatus, error) {
		return proxyStatus("xds", ts("CDS", pilotclient.StateSynced, "", "")), nil
	}}
	agent := &fakePilot{syncz: func(string) (pilotclient.ProxyStatus, error) {
		return pilotclient.ProxyStatus{}, &pilotclient.Error{Source: "syncz", Err: pilotclient.ErrUnreachable}
	}}
	fx := newMeshFixture(t, MeshOptions{Pilot: p, PilotScheme: "grpcs", AgentPilot: agent, Source: SourceAuto, Gate: GateAlways, ProxyID: "app-1.default"})
	want(t, "xds decides", fx.synced(t), Pass, "xds", "SYNCED CDS")
	fx.advance(pilotRecheck)
	fx.synced(t)
	if agent.Calls("syncz") != 1 || p.Calls("xds") != 2 || p.Calls("syncz") != 0 {
		t.Fatalf("calls: agent %v, pilot %v", agent.calls, p.calls)
	}
}

// Identity: --proxy-id (node id or pod.namespace) wins; else Envoy's node id.
func TestMeshSyncedIdentity(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct{ flag, want string }{
		{"sidecar~10.1.2.3~reviews-v1-abc.bookinfo~bookinfo.svc.cluster.local", "reviews-v1-abc.bookinfo"},
		{"reviews-v1-abc.bookinfo", "reviews-v1-abc.bookinfo"},
		{"", "app-1.default"}, // the stand-in's /server_info node id
	} {
		p := &fakePilot{syncz: func(id string) (pilotclient.ProxyStatus, error) {
			return proxyStatus("syncz", ts("CDS", pilotclient.StateSynced, "v", "v")), nil
		}}
		fx := newMeshFixture(t, MeshOptions{Pilot: p, PilotScheme: "http", Source: SourceSyncz, Gate: GateStartup, ProxyID: tc.flag})
		fx.synced(t)
		if len(p.lastIDs) != 1 || p.lastIDs[0] != tc.want {
			t.Fatalf("--proxy-id=%q: Pilot asked for %v, want %s", tc.flag, p.lastIDs, tc.want)
		}
	}
}

func TestSyncReport(t *testing.T) {
	t.Parallel()
	p := &fakePilot{syncz: func(string) (pilotclient.ProxyStatus, error) {
		st := proxyStatus("syncz", ts("CDS", pilotclient.StateSynced, "2026-11-30T19:05:14Z/1", "2026-11-30T19:05:14Z/1"), ts("LDS", pilotclient.StateStale, "2026-11-30T19:05:14Z/2", "2026-11-30T19:05:14Z/1"))
		st.Types[0].SentAt = time.Unix(1_800_000_000-5, 0)
		return st, nil
	}}
	fx := newMeshFixture(t, MeshOptions{Pilot: p, PilotScheme: "http", Source: SourceAuto, Gate: GateStartup, ProxyID: "app-1.default"})
	rep := fx.mesh.Report(context.Background())
	if rep.Synced || rep.ProxyID != "app-1.default" || rep.Source != "syncz" || len(rep.Rows) != 2 {
		t.Fatalf("%+v", rep)
	}
	got := fmt.Sprintf("%+v", rep.Rows)
	wantRows := "[{Type:CDS EnvoyVersion:2026-11-30T19:05:14Z/1 PilotSent:2026-11-30T19:05:14Z/1 PilotAcked:2026-11-30T19:05:14Z/1 State:SYNCED Age:5s Source:syncz} {Type:LDS EnvoyVersion:2026-11-30T19:05:14Z/1 PilotSent:2026-11-30T19:05:14Z/2 PilotAcked:2026-11-30T19:05:14Z/1 State:STALE Age:- Source:syncz}]"
	if got != wantRows {
		t.Fatalf("rows\n got %s\nwant %s", got, wantRows)
	}
}

// Pilot is not asked before Envoy has received anything: it could only say
// "not sent", at the cost of a whole-mesh syncz per starting pod.
func TestMeshSyncedWaitsForEnvoyBeforeAskingPilot(t *testing.T) {
	t.Parallel()
	p := &fakePilot{syncz: func(string) (pilotclient.ProxyStatus, error) {
		return proxyStatus("syncz", ts("CDS", pilotclient.StateSynced, "v1", "v1")), nil
	}}
	fx := newMeshFixture(t, MeshOptions{Pilot: p, PilotScheme: "http", Source: SourceAuto, Gate: GateStartup, ProxyID: "app-1.default"})
	fx.envoy.Set(func(s *standin.EnvoyState) { s.CDSSuccess, s.LDSSuccess = 0, 0 })
	want(t, "nothing received", fx.synced(t), Fail, "syncz", "Envoy has received no cds/lds update yet")
	if n := p.Calls("syncz"); n != 0 {
		t.Fatalf("Pilot asked %d times before Envoy received anything", n)
	}
	fx.envoy.Set(func(s *standin.EnvoyState) { s.CDSRejected = 1 })
	fx.synced(t)
	if n := p.Calls("syncz"); n != 1 {
		t.Fatalf("a rejection is worth asking Pilot about (it names the error); asked %d times", n)
	}
}

// istiod with ENABLE_DEBUG_ON_HTTP=false answers 404 on every /debug path:
// auto moves on exactly as for 401/403, and the verdict names the source
// that decided and why the others were skipped. Before, the 404 was a plain
// error and mesh.synced stayed "not ready" for good.
func TestMeshSyncedAutoFallsThrough404(t *testing.T) {
	t.Parallel()
	off := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.NotFound(w, r) // Go's mux: "404 page not found"
	}))
	defer off.Close()
	c, err := pilotclient.New(off.URL, pilotclient.WithToken(""))
	if err != nil {
		t.Fatal(err)
	}
	fx := newMeshFixture(t, MeshOptions{Pilot: c, PilotScheme: "http", Source: SourceAuto, Gate: GateStartup, ProxyID: "app-1.default"})
	r := fx.synced(t)
	want(t, "both debug endpoints off", r, Pass, "local", "SYNCED CDS, LDS (source local; syncz skipped: ")
	for _, s := range []string{"configdump skipped: ", "HTTP 404", "ENABLE_DEBUG_ON_HTTP=false"} {
		if !strings.Contains(r.Message, s) {
			t.Errorf("%q does not say %q", r.Message, s)
		}
	}
}

// A missing token for grpcs:// is loud: a WARN once, and the result says
// Pilot was not asked (before: a quiet "SYNCED (source local)").
func TestMeshSyncedTokenMissingIsLoud(t *testing.T) {
	t.Parallel()
	c, err := pilotclient.New("grpcs://127.0.0.1:1", pilotclient.WithToken(filepath.Join(t.TempDir(), "istio-token")), pilotclient.WithInsecureSkipVerify())
	if err != nil {
		t.Fatal(err)
	}
	var logs strings.Builder
	var mu sync.Mutex
	log := slog.New(slog.NewTextHandler(lockedWriter{&mu, &logs}, nil))
	fx := newMeshFixture(t, MeshOptions{Pilot: c, PilotScheme: "grpcs", Source: SourceAuto, Gate: GateAlways, ProxyID: "app-1.default", Log: log})
	for range 3 {
		r := fx.synced(t)
		if !strings.Contains(r.Message, "xds skipped: ") || !strings.Contains(r.Warning, "Pilot was not asked") || !strings.Contains(r.Warning, "istio-token") {
			t.Fatalf("result %+v does not say Pilot was not asked and why", r)
		}
		fx.advance(pilotRecheck)
	}
	mu.Lock()
	defer mu.Unlock()
	if n := strings.Count(logs.String(), "level=WARN msg=\"Pilot not asked: no usable token"); n != 1 {
		t.Fatalf("warned %d times, want once:\n%s", n, logs.String())
	}
	rep := fx.mesh.Report(context.Background())
	if rep.Synced || !strings.Contains(rep.Reason, "Pilot was not asked") {
		t.Fatalf("sync report %+v: want not synced, saying Pilot was not asked", rep)
	}
}

type lockedWriter struct {
	mu *sync.Mutex
	w  io.Writer
}

func (l lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}
