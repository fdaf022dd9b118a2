package envoyadmin

import (
	"bytes"
	"errors"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/meshready/meshready/internal/fixture"
)

type typeWant struct {
	kind, typeURL, version string
	n, warming             int
	versions               map[string]int // VersionInfo → how many resources carry it; nil = unchecked
	sample                 *Resource      // one resource that must be present exactly
}

func ts(s string) time.Time {
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		panic(err)
	}
	return t
}

const (
	v3Cluster  = "type.googleapis.com/envoy.config.cluster.v3.Cluster"
	v3Listener = "type.googleapis.com/envoy.config.listener.v3.Listener"
	v3Route    = "type.googleapis.com/envoy.config.route.v3.RouteConfiguration"
	v3Scoped   = "type.googleapis.com/envoy.config.route.v3.ScopedRouteConfiguration"
	v3Endpoint = "type.googleapis.com/envoy.config.endpoint.v3.ClusterLoadAssignment"
	v3Secret   = "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.Secret"
	v3ECDS     = "type.googleapis.com/envoy.config.core.v3.TypedExtensionConfig"
)

var configDumpFixtures = []struct {
	file  string
	node  string
	types []typeWant // in the dump's order
}{
	{
		file: "istio-1.20.8-ossm-2.6-sidecar-envoy-1.28.8-config_dump.json",
		node: "sidecar~10.129.0.60~hello-openshift-5b7bcb9b6d-kggwf.vanilla-playground~vanilla-playground.svc.cluster.local",
		types: []typeWant{
			{kind: KindClusters, typeURL: v3Cluster, version: "2025-06-04T14:49:56Z/41", n: 20,
				versions: map[string]int{"2025-06-04T14:49:56Z/41": 20},
				sample:   &Resource{Name: "BlackHoleCluster", VersionInfo: "2025-06-04T14:49:56Z/41", LastUpdated: ts("2025-06-04T14:50:21.081Z")}},
			{kind: KindListeners, typeURL: v3Listener, version: "2025-06-04T14:49:56Z/41", n: 16,
				versions: map[string]int{"2025-06-04T14:49:56Z/41": 16},
				sample:   &Resource{Name: "virtualInbound", VersionInfo: "2025-06-04T14:49:56Z/41", LastUpdated: ts("2025-06-04T14:50:21.198Z")}},
			{kind: KindScopedRoutes, typeURL: v3Scoped},
			{kind: KindRoutes, typeURL: v3Route, n: 9,
				versions: map[string]int{"2025-06-04T14:49:56Z/41": 9},
				sample:   &Resource{Name: "15010", VersionInfo: "2025-06-04T14:49:56Z/41", LastUpdated: ts("2025-06-04T14:50:21.201Z")}},
			{kind: KindSecrets, typeURL: v3Secret, n: 2, versions: map[string]int{"": 2},
				sample: &Resource{Name: "ROOTCA", LastUpdated: ts("2025-06-04T14:50:21.119Z")}},
		},
	},
	{
		file: "istio-1.20.8-ossm-2.6-ingressgateway-envoy-1.28.8-config_dump.json",
		node: "router~10.130.0.29~istio-ingressgateway-74ddf8dd9f-6p8p2.istio-system~istio-system.svc.cluster.local",
		types: []typeWant{
			{kind: KindClusters, typeURL: v3Cluster, version: "2025-06-04T14:24:41Z/32", n: 17,
				versions: map[string]int{"2025-06-04T12:10:23Z/5": 7, "2025-06-04T12:10:24Z/6": 5, "2025-06-04T12:11:01Z/10": 2,
					"2025-06-04T12:10:26Z/7": 1, "2025-06-04T14:24:41Z/32": 1, "2025-06-04T12:12:35Z/12": 1},
				sample: &Resource{Name: "outbound|8080||curl-test.vanilla-playground.svc.cluster.local", VersionInfo: "2025-06-04T14:24:41Z/32", LastUpdated: ts("2025-06-04T14:24:41.404Z")}},
			{kind: KindListeners, typeURL: v3Listener, version: "2025-06-04T12:49:45Z/19", n: 1,
				sample: &Resource{Name: "0.0.0.0_8080", VersionInfo: "2025-06-04T12:49:45Z/19", LastUpdated: ts("2025-06-04T12:49:45.496Z")}},
			{kind: KindScopedRoutes, typeURL: v3Scoped},
			{kind: KindRoutes, typeURL: v3Route, n: 1,
				sample: &Resource{Name: "http.8080", VersionInfo: "2025-06-04T14:30:56Z/38", LastUpdated: ts("2025-06-04T14:30:56.678Z")}},
			{kind: KindSecrets, typeURL: v3Secret, n: 2},
		},
	},
	{
		file: "istio-1.1.1-sidecar-productpage-envoy-1.10-dev-config_dump.json",
		node: "sidecar~10.52.2.21~productpage-v1-5cb458d74f-56sx7.default~default.svc.cluster.local",
		types: []typeWant{
			{kind: KindClusters, typeURL: "type.googleapis.com/envoy.api.v2.Cluster", version: "2019-04-02T20:47:51Z/31", n: 55,
				versions: map[string]int{"2019-04-02T19:54:27Z/16": 49, "2019-04-02T19:54:32Z/17": 1, "2019-04-02T20:05:39Z/23": 1,
					"2019-04-02T20:05:39Z/24": 1, "2019-04-02T20:05:54Z/25": 1, "2019-04-02T20:05:55Z/26": 1, "2019-04-02T20:05:56Z/27": 1},
				sample: &Resource{Name: "BlackHoleCluster", VersionInfo: "2019-04-02T19:54:27Z/16", LastUpdated: ts("2019-04-02T19:54:31.795Z")}},
			// v2alpha: dynamic_active_listeners, each with its own version.
			{kind: KindListeners, typeURL: "type.googleapis.com/envoy.api.v2.Listener", version: "2019-04-02T20:47:51Z/31", n: 39,
				versions: map[string]int{"2019-04-02T19:54:27Z/16": 38, "2019-04-02T20:47:51Z/31": 1},
				sample:   &Resource{Name: "10.52.2.21_9080", VersionInfo: "2019-04-02T20:47:51Z/31", LastUpdated: ts("2019-04-02T20:47:51.639Z")}},
			{kind: KindRoutes, typeURL: "type.googleapis.com/envoy.api.v2.RouteConfiguration", n: 14,
				versions: map[string]int{"2019-04-02T19:54:27Z/16": 14},
				sample:   &Resource{Name: "8080", VersionInfo: "2019-04-02T19:54:27Z/16", LastUpdated: ts("2019-04-03T22:12:58.670Z")}},
		},
	},
	{
		file: "istio-1.9.1-sidecar-productpage-envoy-1.17.1-config_dump.json",
		node: "sidecar~10.244.2.66~productpage-v1-64794f5db4-blnt8.default~default.svc.cluster.local",
		types: []typeWant{
			{kind: KindClusters, typeURL: v3Cluster, version: "2021-03-25T08:16:06Z/16", n: 32,
				versions: map[string]int{"2021-03-25T08:05:35Z/13": 27, "2021-03-25T08:13:13Z/14": 1, "2021-03-25T08:15:36Z/15": 3, "2021-03-25T08:16:06Z/16": 1}},
			{kind: KindListeners, typeURL: v3Listener, version: "2021-03-25T08:05:35Z/13", n: 20,
				versions: map[string]int{"2021-03-25T08:05:35Z/13": 20}},
			{kind: KindScopedRoutes, typeURL: v3Scoped},
			{kind: KindRoutes, typeURL: v3Route, n: 10,
				versions: map[string]int{"2021-03-25T08:05:35Z/13": 9, "2021-03-25T08:16:06Z/16": 1}},
			{kind: KindSecrets, typeURL: v3Secret, n: 2, versions: map[string]int{"0": 2},
				sample: &Resource{Name: "default", VersionInfo: "0", LastUpdated: ts("2021-03-28T20:12:04.571Z")}},
		},
	},
	{
		file: "istio-1.21-dev-waypoint-config_dump.json",
		node: "waypoint~192.168.252.229~httpbin-istio-waypoint-58f646c5ff-dbfkz.default~default.svc.cluster.local",
		types: []typeWant{
			{kind: KindClusters, typeURL: v3Cluster, version: "2023-12-26T05:56:10Z/3", n: 1,
				sample: &Resource{Name: "inbound-vip|8000|http|httpbin.default.svc.cluster.local", LastUpdated: ts("2023-12-26T05:57:09.956Z")}},
			// EDS: named by cluster_name, no version (Envoy hides it) and no last_updated.
			{kind: KindEndpoints, typeURL: v3Endpoint, n: 1,
				sample: &Resource{Name: "inbound-vip|8100|http|httpbin.default.svc.cluster.local"}},
			{kind: KindListeners, typeURL: v3Listener, version: "2023-12-26T05:57:39Z/1", n: 1,
				sample: &Resource{Name: "main_internal", LastUpdated: ts("2023-12-26T05:57:43.485Z")}},
			{kind: KindScopedRoutes, typeURL: v3Scoped},
			{kind: KindRoutes, typeURL: v3Route}, // static only
			{kind: KindSecrets, typeURL: v3Secret, n: 2},
		},
	},
	{
		file: "istio-sidecar-secrets-warming-config_dump.json",
		types: []typeWant{
			{kind: KindSecrets, typeURL: v3Secret, n: 3, warming: 1,
				versions: map[string]int{"": 2, "uninitialized": 1},
				sample:   &Resource{Name: "configmap://some/thing", VersionInfo: "uninitialized", Warming: true, LastUpdated: ts("2025-04-11T14:59:35.648Z")}},
		},
	},
	{
		file: "istio-1.17-dev-ecds-only-config_dump.json",
		types: []typeWant{
			{kind: KindECDS, typeURL: v3ECDS, n: 2, versions: map[string]int{"2022-12-08T09:07:09Z/10": 2},
				sample: &Resource{Name: "default.httpbin-rate-limiting", VersionInfo: "2022-12-08T09:07:09Z/10", LastUpdated: ts("2022-12-08T11:03:53.361Z")}},
		},
	},
	{
		file: "kuma-dp-envoy-1.19.0-config_dump.json",
		node: "default.backend-1",
		types: []typeWant{
			{kind: KindClusters, typeURL: v3Cluster, version: "9760ba3c-281c-4e54-b6eb-49dc480743c3", n: 3,
				versions: map[string]int{"9760ba3c-281c-4e54-b6eb-49dc480743c3": 3},
				sample:   &Resource{Name: "kuma:envoy:admin", VersionInfo: "9760ba3c-281c-4e54-b6eb-49dc480743c3", LastUpdated: ts("2022-02-03T17:48:09.471Z")}},
			{kind: KindListeners, typeURL: v3Listener, version: "dbc168e0-176a-4a52-929e-ddb29b554aed", n: 2,
				sample: &Resource{Name: "inbound:127.0.0.1:10010", VersionInfo: "dbc168e0-176a-4a52-929e-ddb29b554aed", LastUpdated: ts("2022-02-03T17:48:09.548Z")}},
			{kind: KindSecrets, typeURL: v3Secret}, // static_secrets only
		},
	},
	{
		file: "envoy-gateway-envoy-1.26-dev-config_dump.json",
		node: "", // Envoy Gateway's bootstrap sets no node.id
		types: []typeWant{
			{kind: KindClusters, typeURL: v3Cluster, version: "2", n: 1,
				sample: &Resource{Name: "default-backend-rule-0-match-0-www.example.com",
					VersionInfo: "2a0a1698a9d3e05b802047b0cd36b52a070afa49042e1ba267168c5265c7cabf", LastUpdated: ts("2023-02-23T09:05:38.443Z")}},
			{kind: KindListeners, typeURL: v3Listener, version: "2", n: 1,
				sample: &Resource{Name: "default-eg-http", VersionInfo: "42c71fb50c315ee3a32b327da69f8cc0baf420bc84b747e82d9c38e1b0c33eb2", LastUpdated: ts("2023-02-23T09:05:38.446Z")}},
			{kind: KindScopedRoutes, typeURL: v3Scoped},
			{kind: KindRoutes, typeURL: v3Route, n: 1,
				sample: &Resource{Name: "default-eg-http", VersionInfo: "cb1e51997a9c3aa6f4d920f39fd5bdbd966e9382b7b6bdf42efca8c22c6c3442", LastUpdated: ts("2023-02-23T09:05:38.448Z")}},
			{kind: KindSecrets, typeURL: v3Secret, n: 2,
				sample: &Resource{Name: "xds_trusted_ca", LastUpdated: ts("2023-02-23T09:05:23.447Z")}},
		},
	},
}

func TestParseConfigDumpFixtures(t *testing.T) {
	t.Parallel()
	covered := map[string]bool{}
	for _, tc := range configDumpFixtures {
		covered[tc.file] = true
	}
	for _, p := range fixture.Glob(t, "envoy/config_dump/*.json") {
		if !covered[filepath.Base(p)] {
			t.Errorf("fixture %s has no assertions in configDumpFixtures", filepath.Base(p))
		}
	}
	for _, tc := range configDumpFixtures {
		t.Run(tc.file, func(t *testing.T) {
			t.Parallel()
			d, err := ParseConfigDump(bytes.NewReader(fixture.Read(t, "envoy/config_dump/"+tc.file)))
			if err != nil {
				t.Fatal(err)
			}
			if d.NodeID != tc.node {
				t.Errorf("NodeID = %q, want %q", d.NodeID, tc.node)
			}
			if len(d.Types) != len(tc.types) {
				t.Fatalf("got %d types %v, want %d", len(d.Types), kinds(d), len(tc.types))
			}
			for i, w := range tc.types {
				got := d.Types[i]
				if got.Kind != w.kind || got.TypeURL != w.typeURL || got.VersionInfo != w.version {
					t.Errorf("type %d = %s %s %q, want %s %s %q", i, got.Kind, got.TypeURL, got.VersionInfo, w.kind, w.typeURL, w.version)
				}
				if len(got.Resources) != w.n {
					t.Errorf("%s: %d resources, want %d", w.kind, len(got.Resources), w.n)
				}
				warming := 0
				versions := map[string]int{}
				for _, r := range got.Resources {
					if r.Warming {
						warming++
					}
					if r.Name == "" {
						t.Errorf("%s: resource without a name: %+v", w.kind, r)
					}
					versions[r.VersionInfo]++
				}
				if warming != w.warming {
					t.Errorf("%s: %d warming, want %d", w.kind, warming, w.warming)
				}
				if w.versions != nil && !equalCounts(versions, w.versions) {
					t.Errorf("%s: versions %v, want %v", w.kind, versions, w.versions)
				}
				if w.sample != nil {
					found := false
					for _, r := range got.Resources {
						if r.Name == w.sample.Name {
							found = true
							if !r.LastUpdated.Equal(w.sample.LastUpdated) || r.VersionInfo != w.sample.VersionInfo || r.Warming != w.sample.Warming || r.Error != "" {
								t.Errorf("%s: %+v, want %+v", w.kind, r, *w.sample)
							}
						}
					}
					if !found {
						t.Errorf("%s: no resource %q", w.kind, w.sample.Name)
					}
				}
				if lookup, ok := d.Type(w.kind); !ok || lookup.Kind != w.kind {
					t.Errorf("Type(%q) not found", w.kind)
				}
			}
		})
	}
}

func kinds(d ConfigDump) []string {
	var k []string
	for _, t := range d.Types {
		k = append(k, t.Kind)
	}
	return k
}

func equalCounts(a, b map[string]int) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if b[k] != v {
			return false
		}
	}
	return true
}

// The /clusters?format=json fixture is another endpoint; this package has no
// /clusters reader (nothing needs one). It must not be mistaken for a dump.
func TestClustersFixtureIsNotAConfigDump(t *testing.T) {
	t.Parallel()
	d, err := ParseConfigDump(bytes.NewReader(fixture.Read(t, "envoy/clusters/istio-1.2-era-clusters-format-json-camelCase.json")))
	if err != nil {
		t.Fatal(err)
	}
	if len(d.Types) != 0 || d.NodeID != "" {
		t.Fatalf("got %+v, want an empty dump", d)
	}
}

func TestParseConfigDumpShapes(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name, in string
		warming  bool // parseConfigDump's ?resource= hint
		want     ConfigDump
	}{
		{name: "empty object", in: `{}`, want: ConfigDump{}},
		{name: "empty configs", in: `{"configs": []}`, want: ConfigDump{}},
		{
			// ?mask=version_info: type-level versions only.
			name: "mask version_info",
			in: `{"configs":[{"@type":"type.googleapis.com/envoy.admin.v3.BootstrapConfigDump"},
				{"@type":"type.googleapis.com/envoy.admin.v3.ClustersConfigDump","version_info":"2026-11-30T19:05:14Z/7"},
				{"@type":"type.googleapis.com/envoy.admin.v3.ListenersConfigDump","version_info":"2026-11-30T19:05:14Z/7"}]}`,
			want: ConfigDump{Types: []TypeDump{
				{TypeURL: v3Cluster, Kind: KindClusters, VersionInfo: "2026-11-30T19:05:14Z/7"},
				{TypeURL: v3Listener, Kind: KindListeners, VersionInfo: "2026-11-30T19:05:14Z/7"},
			}},
		},
		{
			// ?resource=dynamic_warming_clusters&mask=version_info,cluster.name: one element per config.
			name:    "resource elements",
			warming: true,
			in: `{"configs":[
				{"@type":"type.googleapis.com/envoy.admin.v3.ClustersConfigDump.DynamicCluster","version_info":"v9","cluster":{"@type":"type.googleapis.com/envoy.config.cluster.v3.Cluster","name":"a"}},
				{"@type":"type.googleapis.com/envoy.admin.v3.ClustersConfigDump.DynamicCluster","version_info":"v9","cluster":{"name":"b"},"last_updated":"2026-11-30T19:05:14.5Z"},
				{"@type":"type.googleapis.com/envoy.admin.v3.ClustersConfigDump.StaticCluster","cluster":{"name":"static"}}]}`,
			want: ConfigDump{Types: []TypeDump{{TypeURL: v3Cluster, Kind: KindClusters, Resources: []Resource{
				{Name: "a", VersionInfo: "v9", Warming: true},
				{Name: "b", VersionInfo: "v9", Warming: true, LastUpdated: ts("2026-11-30T19:05:14.5Z")},
			}}}},
		},
		{
			// A listener updating (active + warming), one draining (left out),
			// and a new one Envoy rejected.
			name: "listener states and errors",
			in: `{"configs":[{"@type":"type.googleapis.com/envoy.admin.v3.ListenersConfigDump","version_info":"v2","dynamic_listeners":[
				{"name":"l1","active_state":{"version_info":"v1","listener":{"name":"l1"}},"warming_state":{"version_info":"v2","listener":{"name":"l1"}}},
				{"name":"old","draining_state":{"version_info":"v0","listener":{"name":"old"}}},
				{"name":"bad","error_state":{"failed_configuration":{},"details":"Error adding/updating listener(s) bad: duplicate\nsecond line"}}]}]}`,
			want: ConfigDump{Types: []TypeDump{{TypeURL: v3Listener, Kind: KindListeners, VersionInfo: "v2", Resources: []Resource{
				{Name: "l1", VersionInfo: "v1"},
				{Name: "l1", VersionInfo: "v2", Warming: true},
				{Name: "bad", Error: "Error adding/updating listener(s) bad: duplicate second line"},
			}}}},
		},
		{
			name: "v2alpha warming listeners and unknown types",
			in: `{"configs":[{"@type":"type.googleapis.com/envoy.admin.v2alpha.ListenersConfigDump","dynamic_warming_listeners":[{"version_info":"x","listener":{"name":"w"}}]},
				{"@type":"type.googleapis.com/envoy.admin.v3.SomethingNewDump","dynamic_things":[1,2]},
				{"@type":"type.googleapis.com/other.Thing"}], "extra": {"a":[1,{"b":null}]}}`,
			want: ConfigDump{Types: []TypeDump{{TypeURL: "type.googleapis.com/envoy.api.v2.Listener", Kind: KindListeners, Resources: []Resource{
				{Name: "w", VersionInfo: "x", Warming: true},
			}}}},
		},
		{
			name: "warming clusters and bad timestamp",
			in: `{"configs":[{"@type":"type.googleapis.com/envoy.admin.v3.ClustersConfigDump","dynamic_warming_clusters":[
				{"version_info":"v3","cluster":{"name":"c"},"last_updated":"yesterday"}]}]}`,
			want: ConfigDump{Types: []TypeDump{{TypeURL: v3Cluster, Kind: KindClusters, Resources: []Resource{
				{Name: "c", VersionInfo: "v3", Warming: true},
			}}}},
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			got, err := parseConfigDump(strings.NewReader(tc.in), tc.warming)
			if err != nil {
				t.Fatal(err)
			}
			if !equalDump(got, tc.want) {
				t.Fatalf("got  %+v\nwant %+v", got, tc.want)
			}
		})
	}
}

func equalDump(a, b ConfigDump) bool {
	if a.NodeID != b.NodeID || len(a.Types) != len(b.Types) {
		return false
	}
	for i := range a.Types {
		x, y := a.Types[i], b.Types[i]
		if x.TypeURL != y.TypeURL || x.Kind != y.Kind || x.VersionInfo != y.VersionInfo || len(x.Resources) != len(y.Resources) {
			return false
		}
		for j := range x.Resources {
			r, s := x.Resources[j], y.Resources[j]
			if r.Name != s.Name || r.VersionInfo != s.VersionInfo || r.Warming != s.Warming || r.Error != s.Error || !r.LastUpdated.Equal(s.LastUpdated) {
				return false
			}
		}
	}
	return true
}

func TestParseConfigDumpMalformed(t *testing.T) {
	t.Parallel()
	full := fixture.Read(t, "envoy/config_dump/istio-1.20.8-ossm-2.6-sidecar-envoy-1.28.8-config_dump.json")
	cases := map[string]string{
		"truncated fixture":  string(full[:len(full)/2]),
		"empty":              "",
		"not an object":      `["configs"]`,
		"configs not array":  `{"configs": {}}`,
		"wrong field type":   `{"configs":[{"@type":"type.googleapis.com/envoy.admin.v3.ClustersConfigDump","version_info":7}]}`,
		"garbage after key":  `{"configs": [ {"@type": "x"} ,, ]}`,
		"html":               `<html><body>hi</body></html>`,
		"unterminated array": `{"configs":[`,
	}
	for name, in := range cases {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			_, err := ParseConfigDump(strings.NewReader(in))
			if err == nil {
				t.Fatal("no error")
			}
			if !errors.Is(err, ErrMalformed) || !strings.HasPrefix(err.Error(), "malformed JSON from Envoy: ") || strings.ContainsAny(err.Error(), "\n\r") {
				t.Fatalf("error %q: want one line starting \"malformed JSON from Envoy: \" matching ErrMalformed", err)
			}
		})
	}
}

func BenchmarkParseConfigDump(b *testing.B) {
	body := fixture.Read(b, "envoy/config_dump/istio-1.20.8-ossm-2.6-sidecar-envoy-1.28.8-config_dump.json")
	b.ReportAllocs()
	b.SetBytes(int64(len(body)))
	for b.Loop() {
		if _, err := ParseConfigDump(bytes.NewReader(body)); err != nil {
			b.Fatal(err)
		}
	}
}
