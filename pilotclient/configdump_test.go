package pilotclient

import (
	"bytes"
	"errors"
	"maps"
	"path/filepath"
	"strings"
	"testing"

	adminv3 "github.com/envoyproxy/go-control-plane/envoy/admin/v3"
	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"

	"github.com/meshready/meshready/internal/fixture"
)

func mustAny(t testing.TB, m proto.Message) *anypb.Any {
	t.Helper()
	a, err := anypb.New(m)
	if err != nil {
		t.Fatal(err)
	}
	return a
}

// pilotConfigDump builds the envoy.admin.v3.ConfigDump Pilot's
// connectionConfigDump (pilot/pkg/xds/debug.go) writes: every section
// stamped with the push version, bootstrap and scoped routes empty.
func pilotConfigDump(t testing.TB, version string, clusters int) *adminv3.ConfigDump {
	var dc []*adminv3.ClustersConfigDump_DynamicCluster
	for i := range clusters {
		dc = append(dc, &adminv3.ClustersConfigDump_DynamicCluster{
			Cluster: mustAny(t, &clusterv3.Cluster{Name: "outbound|80||svc-" + strings.Repeat("x", i%50) + ".default.svc.cluster.local"}),
		})
	}
	return &adminv3.ConfigDump{Configs: []*anypb.Any{
		mustAny(t, &adminv3.BootstrapConfigDump{}),
		mustAny(t, &adminv3.ClustersConfigDump{VersionInfo: version, DynamicActiveClusters: dc}),
		mustAny(t, &adminv3.ListenersConfigDump{VersionInfo: version, DynamicListeners: []*adminv3.ListenersConfigDump_DynamicListener{{
			Name:        "0.0.0.0_80",
			ActiveState: &adminv3.ListenersConfigDump_DynamicListenerState{VersionInfo: version, Listener: mustAny(t, &listenerv3.Listener{Name: "0.0.0.0_80"})},
		}}}),
		mustAny(t, &adminv3.ScopedRoutesConfigDump{}),
		mustAny(t, &adminv3.RoutesConfigDump{DynamicRouteConfigs: []*adminv3.RoutesConfigDump_DynamicRouteConfig{
			{VersionInfo: version, RouteConfig: mustAny(t, &routev3.RouteConfiguration{Name: "80"})},
			{VersionInfo: version, RouteConfig: mustAny(t, &routev3.RouteConfiguration{Name: "8080"})},
		}}),
		mustAny(t, &adminv3.SecretsConfigDump{DynamicActiveSecrets: []*adminv3.SecretsConfigDump_DynamicSecret{
			{VersionInfo: version, Secret: mustAny(t, &tlsv3.Secret{Name: "default"})},
		}}),
		mustAny(t, &adminv3.EcdsConfigDump{EcdsFilters: []*adminv3.EcdsConfigDump_EcdsFilterConfig{
			{VersionInfo: version, EcdsFilter: mustAny(t, &corev3.TypedExtensionConfig{Name: "wasm"})},
		}}),
	}}
}

func TestParseConfigDumpVersions_PilotShape(t *testing.T) {
	t.Parallel()
	const v = "2026-11-30T19:11:18Z/3"
	dump := pilotConfigDump(t, v, 20)
	want := map[string]string{KindClusters: v, KindListeners: v, KindRoutes: v, KindSecrets: v, KindECDS: v}
	// Pilot writes with jsonpb (camelCase names); Envoy's admin writes proto
	// names. Both must read the same.
	for name, opts := range map[string]protojson.MarshalOptions{
		"camelCase (Pilot, jsonpb)":  {},
		"snake_case (Envoy's admin)": {UseProtoNames: true},
		"indented":                   {Multiline: true, Indent: "    "},
	} {
		t.Run(name, func(t *testing.T) {
			b, err := opts.Marshal(dump)
			if err != nil {
				t.Fatal(err)
			}
			got, err := ParseConfigDumpVersions(bytes.NewReader(b))
			if err != nil {
				t.Fatal(err)
			}
			if !maps.Equal(got, want) {
				t.Errorf("got %v, want %v", got, want)
			}
		})
	}
}

func TestParseConfigDumpVersions_EnvoyFixtures(t *testing.T) {
	t.Parallel()
	// Envoy's own /config_dump is the same envoy.admin ConfigDump; real ones
	// prove the reader on real shapes (v2alpha and v3).
	want := map[string]map[string]string{
		"istio-1.20.8-ossm-2.6-sidecar-envoy-1.28.8-config_dump.json": {
			KindClusters: "2025-06-04T14:49:56Z/41", KindListeners: "2025-06-04T14:49:56Z/41", KindRoutes: "2025-06-04T14:49:56Z/41"},
		"istio-1.20.8-ossm-2.6-ingressgateway-envoy-1.28.8-config_dump.json": {
			KindClusters: "2025-06-04T14:24:41Z/32", KindListeners: "2025-06-04T12:49:45Z/19", KindRoutes: "2025-06-04T14:30:56Z/38"},
		"istio-1.9.1-sidecar-productpage-envoy-1.17.1-config_dump.json": {
			KindClusters: "2021-03-25T08:16:06Z/16", KindListeners: "2021-03-25T08:05:35Z/13", KindRoutes: "2021-03-25T08:05:35Z/13", KindSecrets: "0"},
		"istio-1.1.1-sidecar-productpage-envoy-1.10-dev-config_dump.json": {
			KindClusters: "2019-04-02T20:47:51Z/31", KindListeners: "2019-04-02T20:47:51Z/31", KindRoutes: "2019-04-02T19:54:27Z/16"},
		"istio-1.17-dev-ecds-only-config_dump.json":      {KindECDS: "2022-12-08T09:07:09Z/10"},
		"istio-1.21-dev-waypoint-config_dump.json":       {KindClusters: "2023-12-26T05:56:10Z/3", KindListeners: "2023-12-26T05:57:39Z/1"},
		"istio-sidecar-secrets-warming-config_dump.json": {},
		"kuma-dp-envoy-1.19.0-config_dump.json": {
			KindClusters: "9760ba3c-281c-4e54-b6eb-49dc480743c3", KindListeners: "dbc168e0-176a-4a52-929e-ddb29b554aed"},
		"envoy-gateway-envoy-1.26-dev-config_dump.json": {
			KindClusters: "2", KindListeners: "2", KindRoutes: "cb1e51997a9c3aa6f4d920f39fd5bdbd966e9382b7b6bdf42efca8c22c6c3442"},
	}
	for _, p := range fixture.Glob(t, "envoy/config_dump/*.json") {
		name := filepath.Base(p)
		w, ok := want[name]
		if !ok {
			t.Errorf("%s: no expectation (new fixture?)", name)
			continue
		}
		got, err := ParseConfigDumpVersions(bytes.NewReader(fixture.Read(t, "envoy/config_dump/"+name)))
		if err != nil || !maps.Equal(got, w) {
			t.Errorf("%s: %v %v, want %v", name, got, err, w)
		}
	}
}

func TestParseConfigDumpVersions_Bad(t *testing.T) {
	t.Parallel()
	for name, in := range map[string]string{
		"empty":              ``,
		"array":              `[]`,
		"no configs":         `{}`,
		"configs not a list": `{"configs":{}}`,
		"config not object":  `{"configs":[1]}`,
		"version not string": `{"configs":[{"@type":"x.ClustersConfigDump","versionInfo":3}]}`,
		"entries not list":   `{"configs":[{"@type":"x.RoutesConfigDump","dynamicRouteConfigs":{}}]}`,
		"cut short":          `{"configs":[{"@type":"x.ClustersConfigDump","dynamicActiveClusters":[{"cluster":`,
		"trailing":           `{"configs":[]} {}`,
		"html":               `<html></html>`,
	} {
		got, err := ParseConfigDumpVersions(strings.NewReader(in))
		if err == nil || !errors.Is(err, ErrMalformed) || strings.ContainsAny(err.Error(), "\n") {
			t.Errorf("%s: %v %v, want one-line ErrMalformed", name, got, err)
		}
	}
	got, err := ParseConfigDumpVersions(strings.NewReader(`{"configs":[null,{"@type":"x.Unknown","versionInfo":"1"},{"versionInfo":"2"}],"extra":{"a":[1,{"b":2}]}}`))
	if err != nil || len(got) != 0 {
		t.Errorf("unknown dumps: %v %v, want none and no error", got, err)
	}
}
