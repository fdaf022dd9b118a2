package pilotclient

import (
	"bytes"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/meshready/meshready/internal/fixture"
)

const (
	fixture114 = "pilot/syncz/istio-1.14.1-istiod-debug-syncz.json"
	fixture131 = "pilot/syncz/istiod-1.31-syncz-one-acked-one-unacked.json"
)

func types(st ProxyStatus) []string {
	var out []string
	for _, t := range st.Types {
		out = append(out, t.Type)
	}
	return out
}

func TestParseSyncz_Istio114Kiali(t *testing.T) {
	t.Parallel()
	data := fixture.Read(t, fixture114)

	t.Run("all 34 proxies found and synced", func(t *testing.T) {
		var ids []string
		for _, line := range strings.Split(string(data), "\n") {
			if _, v, ok := strings.Cut(line, `"proxy": "`); ok {
				ids = append(ids, strings.TrimSuffix(strings.TrimSpace(v), `",`))
			}
		}
		if len(ids) != 34 {
			t.Fatalf("fixture has %d proxies, want 34", len(ids))
		}
		for _, id := range ids {
			st, found, err := ParseSyncz(bytes.NewReader(data), id)
			if err != nil || !found {
				t.Fatalf("%s: found=%v err=%v", id, found, err)
			}
			if !st.Synced() || st.IstioVersion != "1.14.1" || st.ClusterID != "Kubernetes" || st.Source != SourceSyncz {
				t.Errorf("%s: synced=%v istio=%q cluster=%q source=%q", id, st.Synced(), st.IstioVersion, st.ClusterID, st.Source)
			}
		}
	})

	t.Run("productpage nonces per type", func(t *testing.T) {
		st, found, err := ParseSyncz(bytes.NewReader(data), "b-client-8b97458bb-tghx9.beta")
		if err != nil || !found {
			t.Fatalf("found=%v err=%v", found, err)
		}
		if got, want := types(st), []string{"CDS", "LDS", "EDS", "RDS"}; !slices.Equal(got, want) {
			t.Fatalf("types %v, want %v", got, want)
		}
		want := map[string]string{
			"CDS": "/AT1qbDZUKE=e2a82dc3-7f4a-48ae-a431-933f940662ff",
			"LDS": "/AT1qbDZUKE=4133b3d9-b5ff-4886-859d-a18d8b6cab37",
			"RDS": "/AT1qbDZUKE=0866616f-90ee-4970-80e4-bb5f6826fa1c",
			"EDS": "/AT1qbDZUKE=f057d99a-3d4a-483b-aadf-f12a497361e3",
		}
		for _, ty := range st.Types {
			if ty.Sent != want[ty.Type] || ty.Acked != want[ty.Type] || ty.State != StateSynced {
				t.Errorf("%s: sent %q acked %q state %s, want %q synced", ty.Type, ty.Sent, ty.Acked, ty.State, want[ty.Type])
			}
			// Istio 1.14 nonces are LedgerVersion + uuid; the "version" part is
			// whatever precedes the uuid.
			if ty.SentVersion != "/AT1qbDZUKE=" || ty.AckedVersion != "/AT1qbDZUKE=" {
				t.Errorf("%s: versions %q/%q", ty.Type, ty.SentVersion, ty.AckedVersion)
			}
			if !ty.SentAt.IsZero() || ty.Error != "" {
				t.Errorf("%s: SentAt %v Error %q, want none (1.14 has no resources{})", ty.Type, ty.SentAt, ty.Error)
			}
		}
	})

	t.Run("egress gateway has no RDS: absent, still synced", func(t *testing.T) {
		st, found, err := ParseSyncz(bytes.NewReader(data), "istio-egressgateway-766955f765-hx5v6.istio-system")
		if err != nil || !found {
			t.Fatalf("found=%v err=%v", found, err)
		}
		if got, want := types(st), []string{"CDS", "LDS", "EDS"}; !slices.Equal(got, want) {
			t.Errorf("types %v, want %v (no route keys ⇒ RDS never sent ⇒ absent)", got, want)
		}
		if _, ok := st.Type("RDS"); ok {
			t.Error("RDS present")
		}
		if !st.Synced() {
			t.Error("not synced")
		}
	})

	t.Run("last entry", func(t *testing.T) {
		st, found, err := ParseSyncz(bytes.NewReader(data), "reviews-v1-7598cc9867-9x4cs.bookinfo")
		if err != nil || !found {
			t.Fatalf("found=%v err=%v", found, err)
		}
		if c, _ := st.Type("CDS"); c.Sent == "" || c.Sent != c.Acked {
			t.Errorf("CDS %+v", c)
		}
	})
}

func TestParseSyncz_Istiod131(t *testing.T) {
	t.Parallel()
	data := fixture.Read(t, fixture131)
	const cds = "type.googleapis.com/envoy.config.cluster.v3.Cluster"

	st, found, err := ParseSyncz(bytes.NewReader(data), "app-1.default")
	if err != nil || !found {
		t.Fatalf("app-1: found=%v err=%v", found, err)
	}
	if st.ProxyType != "sidecar" || st.IstioVersion != "1.31.0" || st.ClusterID != "Kubernetes" || !st.Synced() {
		t.Errorf("app-1: %+v", st)
	}
	if len(st.Types) != 1 {
		t.Fatalf("app-1 types %v, want CDS only (resources and cluster_* describe the same type)", types(st))
	}
	c := st.Types[0]
	const nonce = "2026-11-30T19:11:18Z/353c2dc7c-8f7a-4d92-858e-814b175fabee"
	if c.TypeURL != cds || c.Type != "CDS" || c.Sent != nonce || c.Acked != nonce || c.State != StateSynced {
		t.Errorf("app-1 CDS %+v", c)
	}
	// The version is nonce[:len-36]: "…Z/3" then the uuid "53c2dc7c-…".
	if c.SentVersion != "2026-11-30T19:11:18Z/3" || c.AckedVersion != "2026-11-30T19:11:18Z/3" {
		t.Errorf("app-1 versions %q %q, want 2026-11-30T19:11:18Z/3", c.SentVersion, c.AckedVersion)
	}
	if want := time.Date(2026, 11, 30, 19, 11, 23, 815493738, time.UTC); !c.SentAt.Equal(want) {
		t.Errorf("app-1 SentAt %v, want %v", c.SentAt, want)
	}

	st, found, err = ParseSyncz(bytes.NewReader(data), "app-2.default")
	if err != nil || !found {
		t.Fatalf("app-2: found=%v err=%v", found, err)
	}
	c = st.Types[0]
	if c.State != StateStale || c.Acked != "" || c.AckedVersion != "" || c.SentVersion != "2026-11-30T19:11:18Z/3" || st.Synced() {
		t.Errorf("app-2 (never acked): %+v synced=%v", c, st.Synced())
	}

	_, found, err = ParseSyncz(bytes.NewReader(data), "app-3.default")
	if err != nil || found {
		t.Errorf("app-3: found=%v err=%v, want not found and no error", found, err)
	}
}

func TestParseSyncz_Istio10Format(t *testing.T) {
	t.Parallel()
	// The element of Istio 1.0.6's SyncStatus (pilot/pkg/proxy/envoy/v2/debug.go):
	// nonces are time.Now().String(), no uuid; a NACK leaves *_acked behind.
	const in = `[
 {"proxy": "productpage-v1-7f7b5c4b6d-x2x2x.default", "proxy_version": "1.0.6",
  "cluster_sent": "2018-11-02 10:00:00.1 +0000 UTC m=+1.0", "cluster_acked": "2018-11-02 10:00:00.1 +0000 UTC m=+1.0",
  "listener_sent": "2018-11-02 10:00:01.2 +0000 UTC m=+2.0", "listener_acked": "2018-11-02 10:00:00.9 +0000 UTC m=+0.9",
  "route_sent": "2018-11-02 10:00:02.3 +0000 UTC m=+3.0",
  "endpoint_sent": "2018-11-02 10:00:03.4 +0000 UTC m=+4.0", "endpoint_acked": "2018-11-02 10:00:03.4 +0000 UTC m=+4.0",
  "endpoint_percent": 75}
]`
	st, found, err := ParseSyncz(strings.NewReader(in), "productpage-v1-7f7b5c4b6d-x2x2x.default")
	if err != nil || !found {
		t.Fatalf("found=%v err=%v", found, err)
	}
	if st.ProxyVersion != "1.0.6" || st.EndpointPercent != 75 || st.IstioVersion != "" {
		t.Errorf("%+v", st)
	}
	want := map[string]State{"CDS": StateSynced, "LDS": StateStale, "EDS": StateSynced, "RDS": StateStale}
	if got := types(st); !slices.Equal(got, []string{"CDS", "LDS", "EDS", "RDS"}) {
		t.Fatalf("types %v", got)
	}
	for _, ty := range st.Types {
		if ty.State != want[ty.Type] || ty.SentVersion != "" {
			t.Errorf("%s: %s version %q, want %s and no version (no uuid in 1.0 nonces)", ty.Type, ty.State, ty.SentVersion, want[ty.Type])
		}
	}
	if st.Synced() {
		t.Error("synced with LDS and RDS stale")
	}
}

func TestParseSyncz_CurrentFormatErrorAndExtraTypes(t *testing.T) {
	t.Parallel()
	const v = "2026-11-30T19:11:18Z/4"
	const u1, u2 = "0b1f3c2a-1111-4d92-858e-814b175fabee", "0b1f3c2a-2222-4d92-858e-814b175fabee"
	in := `[{"proxy":"a.ns","cluster_sent":"` + v + u1 + `","cluster_acked":"` + v + u1 + `",
	  "listener_sent":"` + v + u2 + `",
	  "resources":{
	   "type.googleapis.com/envoy.config.cluster.v3.Cluster":{"sent":"` + v + u1 + `","acked":"` + v + u1 + `","sentTime":"2026-11-30T19:11:23Z"},
	   "type.googleapis.com/envoy.config.listener.v3.Listener":{"sent":"` + v + u2 + `","sentTime":"2026-11-30T19:11:23Z","lastError":"bad listener"},
	   "type.googleapis.com/envoy.config.core.v3.TypedExtensionConfig":{"sent":"","sentTime":"0001-01-01T00:00:00Z"},
	   "type.googleapis.com/istio.networking.nds.v1.NameTable":{"sent":"x","acked":"x","sentTime":"2026-11-30T19:11:23Z"},
	   "type.googleapis.com/example.Future":{"sent":"y","acked":"y"}}}]`
	st, found, err := ParseSyncz(strings.NewReader(in), "a.ns")
	if err != nil || !found {
		t.Fatalf("found=%v err=%v", found, err)
	}
	if got, want := types(st), []string{"CDS", "LDS", "ECDS", "NDS", "example.Future"}; !slices.Equal(got, want) {
		t.Fatalf("types %v, want %v", got, want)
	}
	l, _ := st.Type("LDS")
	if l.State != StateError || l.Error != "bad listener" {
		t.Errorf("LDS %+v, want ERROR with the NACK message", l)
	}
	e, _ := st.Type("ECDS")
	if e.State != StateNotSent || !e.SentAt.IsZero() {
		t.Errorf("ECDS %+v, want NOT SENT and no time (Go's zero time is Pilot's 'never')", e)
	}
	if st.Synced() {
		t.Error("synced with an ERROR type")
	}
}

func TestParseSyncz_Shapes(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name, in  string
		found     bool
		malformed bool
	}{
		{"empty array", `[]`, false, false},
		{"null (Istio 1.0 with no proxies)", `null`, false, false},
		{"empty body", ``, false, true},
		{"object", `{"proxy":"a.ns"}`, false, true},
		{"html", `<html>nope</html>`, false, true},
		{"cut short", `[{"proxy":"b.ns"},{"proxy":"a.`, false, true},
		{"trailing garbage", `[] x`, false, true},
		{"other entry of wrong shape skipped", `[{"proxy":"b.ns","endpoint_percent":"x"},"str",7,{"proxy":"a.ns","cluster_sent":"n","cluster_acked":"n"}]`, true, false},
		{"our entry of wrong shape", `[{"proxy":"a.ns","endpoint_percent":"x"}]`, false, true},
		{"our resources of wrong shape", `[{"proxy":"a.ns","resources":[1]}]`, false, true},
		{"stops at our entry (garbage after it is not read)", `[{"proxy":"a.ns","cluster_sent":"n","cluster_acked":"n"}, garbage`, true, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			st, found, err := ParseSyncz(strings.NewReader(tc.in), "a.ns")
			if found != tc.found || (err != nil) != tc.malformed || (err != nil && !errors.Is(err, ErrMalformed)) {
				t.Fatalf("found=%v err=%v; want found=%v malformed=%v", found, err, tc.found, tc.malformed)
			}
			if found && (st.ProxyID != "a.ns" || !st.Synced()) {
				t.Errorf("%+v", st)
			}
			if err != nil && strings.ContainsAny(err.Error(), "\n\r") {
				t.Errorf("multi-line error %q", err)
			}
		})
	}
}

func TestNonceVersion(t *testing.T) {
	t.Parallel()
	for in, want := range map[string]string{
		"2026-11-30T19:05:14Z/1ba581736-0aba-4d00-b565-98dd0a070735": "2026-11-30T19:05:14Z/1",
		"2026-11-30T19:11:18Z/353c2dc7c-8f7a-4d92-858e-814b175fabee": "2026-11-30T19:11:18Z/3",
		"/AT1qbDZUKE=e2a82dc3-7f4a-48ae-a431-933f940662ff":           "/AT1qbDZUKE=",
		"e2a82dc3-7f4a-48ae-a431-933f940662ff":                       "",
		"2018-11-02 10:00:00.1 +0000 UTC m=+1.0":                     "",
		"x2a82dc3-7f4a-48ae-a431-933f940662ff":                       "",
		"v1E2A82DC3-7F4A-48AE-A431-933F940662FF":                     "v1",
		"":                                                           "",
	} {
		if got := NonceVersion(in); got != want {
			t.Errorf("NonceVersion(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestSynced(t *testing.T) {
	t.Parallel()
	mk := func(states ...State) ProxyStatus {
		var st ProxyStatus
		for _, s := range states {
			st.Types = append(st.Types, TypeStatus{State: s})
		}
		return st
	}
	for _, tc := range []struct {
		st   ProxyStatus
		want bool
	}{
		{mk(), false},
		{mk(StateSynced), true},
		{mk(StateSynced, StateNotSent, StateUnknown), true},
		{mk(StateNotSent), false},
		{mk(StateSynced, StateStale), false},
		{mk(StateSynced, StateError), false},
	} {
		if got := tc.st.Synced(); got != tc.want {
			t.Errorf("%v: Synced() = %v, want %v", types(tc.st), got, tc.want)
		}
	}
}

func TestProxyIDFromNodeID(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct{ in, want string }{
		{"sidecar~10.0.0.1~app-1.default~default.svc.cluster.local", "app-1.default"},
		{"router~10.130.0.29~istio-ingressgateway-74ddf8dd9f-6p8p2.istio-system~istio-system.svc.cluster.local", "istio-ingressgateway-74ddf8dd9f-6p8p2.istio-system"},
		{"sidecar~fd00::1~app-1.default~default.svc.cluster.local", "app-1.default"},
		{"app-1.default", "app-1.default"},
		{"my.dotted.pod.ns", "my.dotted.pod.ns"},
		{"", ""},
		{"app-1", ""},
		{"app-1.", ""},
		{".default", ""},
		{"app-1.Default", ""},
		{"app 1.default", ""},
		{"sidecar~10.0.0.1~app-1.default", ""},
		{"sidecar~10.0.0.1~~default.svc.cluster.local", ""},
		{"~10.0.0.1~app-1.default~d", ""},
		{"sidecar~1~app-1.default~d~e", ""},
		{"app-1.default\n", ""},
		{"app-1." + strings.Repeat("n", 64), ""},
	} {
		got, err := ProxyIDFromNodeID(tc.in)
		if got != tc.want || (err != nil) != (tc.want == "") {
			t.Errorf("ProxyIDFromNodeID(%q) = %q, %v; want %q", tc.in, got, err, tc.want)
		}
		if err != nil && (!strings.Contains(err.Error(), "pod.namespace") || strings.ContainsAny(err.Error(), "\n")) {
			t.Errorf("error %q should be one line naming the accepted forms", err)
		}
	}
}

func TestRequesterNodeID(t *testing.T) {
	t.Parallel()
	id, err := RequesterNodeID("app-1.default", "10.0.0.7")
	if err != nil || id != "sidecar~10.0.0.7~meshready_app-1_default~default.svc.cluster.local" {
		t.Fatalf("%q %v", id, err)
	}
	if ns, err := requesterNamespace(id); err != nil || ns != "default" {
		t.Errorf("namespace %q %v", ns, err)
	}
	// Pilot's config_dump?proxyID= matches connection ids by substring: the
	// agent's must never contain a proxy id, including for pods whose names
	// look like the agent's.
	for _, proxy := range []string{"meshready.default", "meshready-meshready.default", "my.dotted.pod.ns", "c.svc"} {
		id, err := RequesterNodeID(proxy, "")
		if err != nil {
			t.Fatal(err)
		}
		third := strings.Split(id, "~")[2]
		if strings.Contains(third, ".") || strings.Contains(third+"-7", proxy) {
			t.Errorf("%q: agent id %q could match it", proxy, third)
		}
	}
	if id, _ := RequesterNodeID("app-1.default", ""); !strings.HasPrefix(id, "sidecar~127.0.0.1~") {
		t.Errorf("default ip: %q", id)
	}
	if _, err := RequesterNodeID("app-1.default", "nope"); err == nil {
		t.Error("bad ip accepted")
	}
	if _, err := RequesterNodeID("app-1", ""); err == nil {
		t.Error("bad proxy id accepted")
	}
	for in, want := range map[string]string{
		"sidecar~10.0.0.1~app-1.default~default.svc.cluster.local": "default",
		"sidecar~10.0.0.1~whatever~prod.svc.cluster.local":         "prod",
		"sidecar~10.0.0.1~whatever~":                               "",
		"sidecar~~app-1.default~default.svc.cluster.local":         "",
		"app-1.default": "",
	} {
		ns, err := requesterNamespace(in)
		if ns != want || (err != nil) != (want == "") {
			t.Errorf("requesterNamespace(%q) = %q %v, want %q", in, ns, err, want)
		}
	}
}
