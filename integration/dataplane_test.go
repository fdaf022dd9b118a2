package integration

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"testing"
	"time"

	"github.com/meshready/meshready/envoyadmin"
)

// syncEntry is the part of Pilot's /debug/syncz these tests read.
type syncEntry struct {
	Proxy     string `json:"proxy"`
	Resources map[string]struct {
		Sent      string `json:"sent"`
		Acked     string `json:"acked"`
		LastError string `json:"lastError"`
	} `json:"resources"`
}

func pilotSyncz(t *testing.T, p *Pilot, proxyID string) syncEntry {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	b, err := p.Syncz(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var all []syncEntry
	if err := json.Unmarshal(b, &all); err != nil {
		t.Fatalf("Pilot's syncz: %v: %s", err, b)
	}
	for _, e := range all {
		if e.Proxy == proxyID {
			return e
		}
	}
	return syncEntry{}
}

func getBody(t *testing.T, url string) []byte {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 {
		t.Fatalf("GET %s: %d %s", url, resp.StatusCode, b)
	}
	return b
}

func waitCtx(t *testing.T, d time.Duration) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

func startDataPlane(t *testing.T, p *Pilot, o DataPlaneOptions) *DataPlane {
	t.Helper()
	o.Pilot = p.XDSAddr()
	d, err := StartDataPlane(o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(d.Close)
	return d
}

func live(s Snapshot) bool { return s.Live() }

// TestStandInAgainstPilot: the stand-in subscribes as a sidecar does against
// the real discovery server, Pilot sees every type acked, and what its
// admin API answers parses with the agent's own envoyadmin parsers into
// the versions it acked.
func TestStandInAgainstPilot(t *testing.T) {
	p := StartPilot(t, PilotOptions{})
	d := startDataPlane(t, p, DataPlaneOptions{Index: 1})
	s, err := d.WaitFor(waitCtx(t, 20*time.Second), live)
	if err != nil {
		t.Fatalf("%v; state %+v", err, s)
	}
	for _, typ := range []string{"CDS", "EDS", "LDS", "RDS"} {
		ts := s.Types[typ]
		if !ts.Subscribed || ts.Successes == 0 || ts.Accepted == "" || len(ts.Resources) == 0 {
			t.Errorf("%s: want subscribed, accepted, with resources; got %+v", typ, ts)
		}
	}
	if got := s.Types["CDS"].Accepted; got != p.PushVersion() {
		t.Errorf("CDS accepted %q, Pilot's push version %q", got, p.PushVersion())
	}
	t.Logf("stand-in %s: CDS %d clusters, EDS %v, LDS %d listeners, RDS %v", d.ProxyID(),
		len(s.Types["CDS"].Resources), s.Types["EDS"].Names, len(s.Types["LDS"].Resources), s.Types["RDS"].Names)

	// Pilot's telemetry metadata on the inbound cluster (inbound|8080||):
	// what the stand-in's Istio metrics name as destination_service.
	if svcs := d.InboundServices(8080); len(svcs) != 1 || svcs[0].Host != "app.default.svc.cluster.local" || svcs[0].Name != "app" || svcs[0].Namespace != "default" {
		t.Errorf("inbound|8080|| services %+v; want app.default.svc.cluster.local (app, default)", svcs)
	}

	// Pilot's own view: every type it sent was acked with the nonce sent.
	waitPilotSynced(t, p, d.ProxyID())

	// /stats as the agent reads it: through envoyadmin's client (filter
	// regex and all) and the bare parser.
	admin, err := envoyadmin.New(d.AdminURL())
	if err != nil {
		t.Fatal(err)
	}
	ctx := waitCtx(t, 5*time.Second)
	f, err := admin.ReadinessFacts(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if f.State != envoyadmin.Live || !f.WorkersStarted || f.CDS.UpdateSuccess == 0 || f.LDS.UpdateSuccess == 0 ||
		f.CDS.VersionText != s.Types["CDS"].Accepted || f.LDS.VersionText != s.Types["LDS"].Accepted ||
		f.CDS.UpdateRejected != 0 || f.WarmingClusters != 0 || f.WarmingListeners != 0 || f.CDS.VersionHash == 0 {
		t.Errorf("ReadinessFacts from the stand-in: %+v; want LIVE, versions %q/%q", f, s.Types["CDS"].Accepted, s.Types["LDS"].Accepted)
	}
	st, err := envoyadmin.ParseStats(bytes.NewReader(getBody(t, d.AdminURL()+"/stats")))
	if err != nil || st.Skipped != 0 {
		t.Fatalf("ParseStats: %v, %d lines skipped", err, st.Skipped)
	}
	if st.Text["cluster_manager.cds.version_text"] != s.Types["CDS"].Accepted {
		t.Errorf("cds version_text %q, want %q", st.Text["cluster_manager.cds.version_text"], s.Types["CDS"].Accepted)
	}
	if _, err := envoyadmin.ParsePrometheusStats(bytes.NewReader(getBody(t, d.AdminURL()+"/stats/prometheus?text_readouts"))); err != nil {
		t.Errorf("ParsePrometheusStats: %v", err)
	}
	pf := envoyadmin.FactsFromStats(func() envoyadmin.Stats {
		ps, _ := envoyadmin.ParsePrometheusStats(bytes.NewReader(getBody(t, d.AdminURL()+"/stats/prometheus?text_readouts")))
		return ps
	}())
	if pf.CDS.VersionText != s.Types["CDS"].Accepted || pf.State != envoyadmin.Live {
		t.Errorf("facts from Prometheus stats: %+v", pf)
	}

	// /server_info: node id and state.
	si, err := admin.ServerInfo(ctx)
	if err != nil || si.NodeID != d.NodeID() || si.State != envoyadmin.Live {
		t.Errorf("ServerInfo: %+v, %v; want node %s LIVE", si, err, d.NodeID())
	}

	// /config_dump, whole and narrowed as the agent asks.
	dump, err := envoyadmin.ParseConfigDump(bytes.NewReader(getBody(t, d.AdminURL()+"/config_dump")))
	if err != nil {
		t.Fatal(err)
	}
	if dump.NodeID != d.NodeID() {
		t.Errorf("config_dump node %q", dump.NodeID)
	}
	for kind, typ := range map[string]string{envoyadmin.KindClusters: "CDS", envoyadmin.KindListeners: "LDS"} {
		td, ok := dump.Type(kind)
		if !ok || td.VersionInfo != s.Types[typ].Accepted || len(td.Resources) != len(s.Types[typ].Resources) {
			t.Errorf("config_dump %s: %+v; want version %q and %d resources", kind, td, s.Types[typ].Accepted, len(s.Types[typ].Resources))
		}
	}
	masked, err := admin.ConfigDump(ctx, envoyadmin.ConfigDumpQuery{Mask: "version_info"})
	if err != nil {
		t.Fatal(err)
	}
	if td, _ := masked.Type(envoyadmin.KindListeners); td.VersionInfo != s.Types["LDS"].Accepted {
		t.Errorf("config_dump?mask=version_info listeners: %+v", td)
	}
	byRes, err := admin.ConfigDump(ctx, envoyadmin.ConfigDumpQuery{Resource: "dynamic_active_clusters", Mask: "version_info,cluster.name"})
	if err != nil {
		t.Fatal(err)
	}
	if td, _ := byRes.Type(envoyadmin.KindClusters); len(td.Resources) == 0 || td.Resources[0].VersionInfo != s.Types["CDS"].Accepted {
		t.Errorf("config_dump?resource=dynamic_active_clusters: %+v", td)
	}
}

// TestStandInModes: NACK, hold and freeze as Pilot sees them.
func TestStandInModes(t *testing.T) {
	p := StartPilot(t, PilotOptions{})
	d := startDataPlane(t, p, DataPlaneOptions{Index: 1})
	if _, err := d.WaitFor(waitCtx(t, 20*time.Second), live); err != nil {
		t.Fatal(err)
	}
	before := d.Snapshot()

	// NACK the next CDS push: Pilot records the error, Envoy's counters
	// show the rejection, the served version stays.
	d.NackNext(TypeCDS, "stand-in says no")
	bumpAt, err := p.Bump()
	if err != nil {
		t.Fatal(err)
	}
	s, err := d.WaitFor(waitCtx(t, 10*time.Second), func(s Snapshot) bool {
		return s.Types["CDS"].Rejections == 1 && s.Types["LDS"].Accepted != before.Types["LDS"].Accepted
	})
	if err != nil {
		t.Fatalf("%v: %+v", err, s.Types)
	}
	t.Logf("config change → push seen by the stand-in after %s (debounce 100ms)", s.Types["LDS"].LastUpdate.Sub(bumpAt).Round(time.Millisecond))
	if s.Types["CDS"].Accepted != before.Types["CDS"].Accepted {
		t.Errorf("CDS accepted moved on a NACK: %q → %q", before.Types["CDS"].Accepted, s.Types["CDS"].Accepted)
	}
	waitPilot(t, p, d.ProxyID(), "CDS NACK recorded", func(e syncEntry) bool {
		r := e.Resources[TypeCDS]
		return r.LastError == "stand-in says no" && r.Sent != r.Acked
	})
	st, _ := envoyadmin.ParseStats(bytes.NewReader(getBody(t, d.AdminURL()+"/stats")))
	if st.Values["cluster_manager.cds.update_rejected"] != 1 {
		t.Errorf("cds update_rejected = %d", st.Values["cluster_manager.cds.update_rejected"])
	}
	dump, _ := envoyadmin.ParseConfigDump(bytes.NewReader(getBody(t, d.AdminURL()+"/config_dump")))
	if td, _ := dump.Type(envoyadmin.KindClusters); td.VersionInfo != before.Types["CDS"].Accepted {
		t.Errorf("config_dump clusters version after NACK: %q", td.VersionInfo)
	}

	// Freeze: the next push stays unprocessed, Pilot sees it unacked.
	d.SetMode(Freeze)
	if _, err := p.Bump(); err != nil {
		t.Fatal(err)
	}
	s, err = d.WaitFor(waitCtx(t, 10*time.Second), func(s Snapshot) bool { return s.Types["LDS"].Unacked })
	if err != nil {
		t.Fatal(err)
	}
	waitPilot(t, p, d.ProxyID(), "LDS unacked", func(e syncEntry) bool {
		r := e.Resources[TypeLDS]
		return r.Sent != r.Acked
	})
	d.SetMode(AckAll)
	if _, err := d.WaitFor(waitCtx(t, 10*time.Second), func(s Snapshot) bool {
		return s.Types["LDS"].Accepted == p.PushVersion() && s.Types["CDS"].Accepted == p.PushVersion()
	}); err != nil {
		t.Fatal(err)
	}
	waitPilotSynced(t, p, d.ProxyID())

	// Hold ACKs: applied locally, unacked at Pilot until released.
	d.SetMode(HoldAcks)
	if _, err := p.Bump(); err != nil {
		t.Fatal(err)
	}
	if _, err := d.WaitFor(waitCtx(t, 10*time.Second), func(s Snapshot) bool { return s.Types["LDS"].HeldAck }); err != nil {
		t.Fatal(err)
	}
	time.Sleep(200 * time.Millisecond) // time for an ACK that should not be sent to arrive
	if r := pilotSyncz(t, p, d.ProxyID()).Resources[TypeLDS]; r.Sent == r.Acked {
		t.Errorf("held: Pilot's syncz LDS acked: %+v", r)
	}
	d.SetMode(AckAll)
	waitPilotSynced(t, p, d.ProxyID())

	// Pilot gone and back: the stand-in reconnects and is sent config again.
	connects := d.Snapshot().Connects
	p.StopXDS()
	if _, err := d.WaitFor(waitCtx(t, 5*time.Second), func(s Snapshot) bool { return !s.Connected }); err != nil {
		t.Fatal(err)
	}
	if err := p.StartXDS(); err != nil {
		t.Fatal(err)
	}
	if _, err := d.WaitFor(waitCtx(t, 10*time.Second), func(s Snapshot) bool { return s.Connected && s.Connects > connects }); err != nil {
		t.Fatal(err)
	}
	waitPilotSynced(t, p, d.ProxyID())
}

// waitPilot polls Pilot's own syncz (not counted as load) until cond holds:
// an ACK or NACK the stand-in sent reaches Pilot a moment later.
func waitPilot(t *testing.T, p *Pilot, proxyID, what string, cond func(syncEntry) bool) syncEntry {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		e := pilotSyncz(t, p, proxyID)
		if cond(e) {
			return e
		}
		if time.Now().After(deadline) {
			t.Fatalf("Pilot's syncz for %s never showed %s: %+v", proxyID, what, e)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// pilotSynced: every type Pilot sent (at least CDS, EDS, LDS, RDS) acked.
func pilotSynced(e syncEntry) bool {
	if len(e.Resources) < 4 {
		return false
	}
	for _, r := range e.Resources {
		if r.Sent == "" || r.Sent != r.Acked {
			return false
		}
	}
	return true
}

func waitPilotSynced(t *testing.T, p *Pilot, proxyID string) {
	t.Helper()
	waitPilot(t, p, proxyID, "every type acked", pilotSynced)
}
