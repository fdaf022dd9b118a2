package pilotclient

import (
	"errors"
	"maps"
	"os"
	"reflect"
	"strings"
	"testing"
)

func TestParseSynczAll(t *testing.T) {
	t.Parallel()
	two := `[{"proxy":"a.ns","resources":{"type.googleapis.com/envoy.config.route.v3.RouteConfiguration":{"sent":"2026-11-30T19:05:14Z/1ba581736-0aba-4d00-b565-98dd0a070735","acked":"2026-11-30T19:05:14Z/1ba581736-0aba-4d00-b565-98dd0a070735"}}},
	         {"proxy":"b.ns","cluster_sent":"x"},
	         {"proxy":7},
	         {"proxy":""}]`
	cases := []struct {
		name     string
		in       string
		max      int
		want     []string
		skipped  int
		wantErr  error
		errMatch string
	}{
		{name: "two proxies, odd entries skipped", in: two, max: 10, want: []string{"a.ns", "b.ns"}, skipped: 2},
		{name: "null", in: `null`, max: 10},
		{name: "empty", in: `[]`, max: 10},
		{name: "over the cap", in: two, max: 1, wantErr: ErrTooLarge},
		{name: "not an array", in: `{"proxy":"a"}`, max: 10, wantErr: ErrMalformed},
		{name: "truncated", in: `[{"proxy":"a.ns"}`, max: 10, wantErr: ErrMalformed},
		{name: "trailing garbage", in: `[] []`, max: 10, wantErr: ErrMalformed},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			all, skipped, err := ParseSynczAll(strings.NewReader(tc.in), tc.max)
			if tc.wantErr != nil {
				if !errors.Is(err, tc.wantErr) {
					t.Fatalf("err = %v, want %v", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			var ids []string
			for _, p := range all {
				ids = append(ids, p.ProxyID)
			}
			if !reflect.DeepEqual(ids, tc.want) || skipped != tc.skipped {
				t.Fatalf("got %v skipped %d, want %v skipped %d", ids, skipped, tc.want, tc.skipped)
			}
		})
	}
	all, _, _ := ParseSynczAll(strings.NewReader(two), 10)
	rds, ok := all[0].Type("RDS")
	if !ok || rds.AckedVersion != "2026-11-30T19:05:14Z/1" || rds.State != StateSynced {
		t.Fatalf("a.ns RDS = %+v", rds)
	}
}

// A route config as Pilot writes it (jsonpb, camelCase) and as Envoy does
// (snake_case): the gate reads both the same way.
const (
	hostFQDN  = "greeter.shop.svc.cluster.local"
	dumpCamel = `{"configs":[
 {"@type":"type.googleapis.com/envoy.admin.v3.BootstrapConfigDump"},
 {"@type":"type.googleapis.com/envoy.admin.v3.ClustersConfigDump","versionInfo":"2026-12-02T19:00:01Z/7",
  "dynamicActiveClusters":[{"cluster":{"name":"outbound|8080||greeter.shop.svc.cluster.local"}},
   {"cluster":{"name":"outbound|8080|v1|greeter.shop.svc.cluster.local"}},
   {"cluster":{"name":"outbound|8080|v2|greeter.shop.svc.cluster.local"}},
   {"cluster":{"name":"outbound|8080|v1|other.shop.svc.cluster.local"}},
   {"cluster":{"name":"BlackHoleCluster"}}]},
 {"@type":"type.googleapis.com/envoy.admin.v3.RoutesConfigDump","dynamicRouteConfigs":[
  {"versionInfo":"2026-12-02T19:00:01Z/7","routeConfig":{"name":"8080","virtualHosts":[
   {"name":"other.shop.svc.cluster.local:8080","domains":["other.shop.svc.cluster.local"],"routes":[{"route":{"cluster":"outbound|8080|v1|other.shop.svc.cluster.local"}}]},
   {"name":"greeter.shop.svc.cluster.local:8080","domains":["greeter.shop.svc.cluster.local","greeter"],"routes":[
    {"match":{"headers":[{"name":"x-canary"}]},"route":{"cluster":"outbound|8080|v2|greeter.shop.svc.cluster.local","retryPolicy":{"numRetries":2}}},
    {"name":"default","route":{"weightedClusters":{"clusters":[{"name":"outbound|8080|v1|greeter.shop.svc.cluster.local","weight":90},{"name":"outbound|8080|v2|greeter.shop.svc.cluster.local","weight":10}]},"timeout":"3s"}}]}]}}]}]}`
	dumpSnake = `{"configs":[
 {"@type":"type.googleapis.com/envoy.admin.v3.RoutesConfigDump","dynamic_route_configs":[
  {"version_info":"2026-12-02T19:00:01Z/8","route_config":{"virtual_hosts":[
   {"name":"greeter.shop.svc.cluster.local:8080","routes":[{"route":{"weighted_clusters":{"clusters":[{"name":"outbound|8080|v1|greeter.shop.svc.cluster.local","weight":"75"},{"name":"outbound|8080|v2|greeter.shop.svc.cluster.local","weight":{"value":25}}]}}}]}]}}]}]}`
)

func TestParseHostRouting(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name, in, host string
		want           HostRouting
		wantErr        error
	}{
		{name: "pilot's camelCase", in: dumpCamel, host: hostFQDN, want: HostRouting{
			Version: "2026-12-02T19:00:01Z/7",
			Subsets: map[string]bool{"": true, "v1": true, "v2": true},
			Routes:  []Route{{Weights: map[string]uint32{"v2": 100}}, {Name: "default", Weights: map[string]uint32{"v1": 90, "v2": 10}}},
			Routed:  true,
		}},
		{name: "envoy's snake_case, weights as strings and wrappers", in: dumpSnake, host: hostFQDN, want: HostRouting{
			Version: "2026-12-02T19:00:01Z/8",
			Subsets: map[string]bool{},
			Routes:  []Route{{Weights: map[string]uint32{"v1": 75, "v2": 25}}},
			Routed:  true,
		}},
		{name: "a host the proxy does not route", in: dumpCamel, host: "nope.shop.svc.cluster.local", want: HostRouting{
			Version: "2026-12-02T19:00:01Z/7", Subsets: map[string]bool{},
		}},
		{name: "no configs", in: `{}`, host: hostFQDN, wantErr: ErrMalformed},
		{name: "not JSON", in: `<html>`, host: hostFQDN, wantErr: ErrMalformed},
		{name: "configs of the wrong shape", in: `{"configs":{"a":1}}`, host: hostFQDN, wantErr: ErrMalformed},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			got, err := ParseHostRouting(strings.NewReader(tc.in), tc.host)
			if tc.wantErr != nil {
				if !errors.Is(err, tc.wantErr) {
					t.Fatalf("err = %v, want %v", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got.Version != tc.want.Version || got.Routed != tc.want.Routed || !maps.Equal(got.Subsets, tc.want.Subsets) || !reflect.DeepEqual(got.Routes, tc.want.Routes) {
				t.Fatalf("got %+v\nwant %+v", got, tc.want)
			}
		})
	}
}

func TestComparePushVersions(t *testing.T) {
	t.Parallel()
	cases := []struct {
		a, b string
		cmp  int
		ok   bool
	}{
		{"2026-12-02T19:00:01Z/7", "2026-12-02T19:00:01Z/7", 0, true},
		{"2026-12-02T19:00:01Z/7", "2026-12-02T19:00:01Z/10", -1, true}, // numeric, not lexical
		{"2026-12-02T19:00:02Z/1", "2026-12-02T19:00:01Z/10", 1, true},  // a restarted istiod
		{"C6JqN6wI4GU=", "2026-12-02T19:00:01Z/7", 0, false},            // Istio 1.10-1.14 ledger versions
		{"2026-12-02T19:00:01Z/x", "2026-12-02T19:00:01Z/7", 0, false},
		{"", "", 0, false},
	}
	for _, tc := range cases {
		cmp, ok := ComparePushVersions(tc.a, tc.b)
		if cmp != tc.cmp || ok != tc.ok {
			t.Errorf("ComparePushVersions(%q, %q) = %d, %v; want %d, %v", tc.a, tc.b, cmp, ok, tc.cmp, tc.ok)
		}
	}
}

func FuzzParseHostRouting(f *testing.F) {
	f.Add(dumpCamel, hostFQDN)
	f.Add(dumpSnake, hostFQDN)
	f.Add(`{"configs":[{"dynamicRouteConfigs":[{"routeConfig":{"virtualHosts":[{"name":"h:1","routes":[{"route":{"weightedClusters":{"clusters":[{"name":"outbound|1|a|h","weight":-3}]}}}]}]}}]}]}`, "h")
	f.Fuzz(func(t *testing.T, in, host string) {
		hr, err := ParseHostRouting(strings.NewReader(in), host)
		if err != nil {
			if !errors.Is(err, ErrMalformed) {
				t.Fatalf("error not ErrMalformed: %v", err)
			}
			return
		}
		if len(hr.Routes) > 0 && !hr.Routed {
			t.Fatalf("routes without a virtual host: %+v", hr)
		}
	})
}

func FuzzParseSynczAll(f *testing.F) {
	f.Add(`[{"proxy":"a.ns","cluster_sent":"x","cluster_acked":"x"}]`, 3)
	f.Add(`null`, 1)
	f.Fuzz(func(t *testing.T, in string, max int) {
		all, _, err := ParseSynczAll(strings.NewReader(in), max)
		if err == nil && max >= 0 && len(all) > max {
			t.Fatalf("%d entries over the cap %d", len(all), max)
		}
	})
}

func FuzzComparePushVersions(f *testing.F) {
	f.Add("2026-12-02T19:00:01Z/7", "2026-12-02T19:00:01Z/10")
	f.Fuzz(func(t *testing.T, a, b string) {
		ab, okA := ComparePushVersions(a, b)
		ba, okB := ComparePushVersions(b, a)
		if okA != okB || ab != -ba {
			t.Fatalf("not antisymmetric: %q %q: %d %v / %d %v", a, b, ab, okA, ba, okB)
		}
	})
}

// Real answers of istiod 1.31 (this repo's pin) on the local control plane,
// captured during a release: a proxyless gRPC caller's dump (it watches only
// the clusters its routes name) and a sidecar's (every cluster of the
// host), both after subset v2 was added.
func TestParseHostRoutingRealIstiod(t *testing.T) {
	t.Parallel()
	const host = "shop.default.svc.cluster.local"
	for _, tc := range []struct {
		file    string
		subsets map[string]bool
	}{
		{"testdata/istiod-config-dump-proxyless.json", map[string]bool{"v1": true}},
		{"testdata/istiod-config-dump-sidecar.json", map[string]bool{"": true, "v1": true, "v2": true}},
	} {
		f, err := os.Open(tc.file)
		if err != nil {
			t.Fatal(err)
		}
		hr, err := ParseHostRouting(f, host)
		f.Close()
		if err != nil {
			t.Fatalf("%s: %v", tc.file, err)
		}
		if hr.Version != "2026-12-02T19:04:44Z/12" || !hr.Routed || !maps.Equal(hr.Subsets, tc.subsets) {
			t.Errorf("%s: %+v", tc.file, hr)
		}
		if len(hr.Routes) != 1 || hr.Routes[0].Name != "default" || !maps.Equal(hr.Routes[0].Weights, map[string]uint32{"v1": 100}) {
			t.Errorf("%s: routes %+v", tc.file, hr.Routes)
		}
	}
}
