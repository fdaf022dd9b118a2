package pilotclient

import (
	"bytes"
	"encoding/json"
	"errors"
	"os"
	"slices"
	"strings"
	"testing"

	statusv3 "github.com/envoyproxy/go-control-plane/envoy/service/status/v3"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/meshready/meshready/internal/fixture"
)

var validStates = []State{StateSynced, StateStale, StateNotSent, StateError, StateUnknown}

func checkStatus(t *testing.T, st ProxyStatus) {
	t.Helper()
	for _, ty := range st.Types {
		if !slices.Contains(validStates, ty.State) || ty.Type == "" || ty.TypeURL == "" {
			t.Fatalf("bad type status %+v", ty)
		}
	}
	_ = st.Synced()
}

func checkOneLine(t *testing.T, err error) {
	t.Helper()
	if strings.ContainsAny(err.Error(), "\n\r") {
		t.Fatalf("multi-line error %q", err)
	}
}

func FuzzParseSyncz(f *testing.F) {
	// Seeds are real answers, trimmed to a few entries: the fuzzer spends
	// its time minimizing every new input, and a 23 KB seed makes that take
	// the whole budget. The full files are covered by the unit tests.
	for _, p := range fixture.Glob(f, "pilot/syncz/*.json") {
		b, err := os.ReadFile(p)
		if err != nil {
			f.Fatal(err)
		}
		var all []json.RawMessage
		if err := json.Unmarshal(b, &all); err != nil {
			f.Fatal(err)
		}
		for i := 0; i < len(all); i += 8 {
			chunk, _ := json.Marshal(all[i:min(i+2, len(all))])
			var first struct{ Proxy string }
			_ = json.Unmarshal(all[i], &first)
			f.Add(chunk, first.Proxy)
			f.Add(chunk, "nope.ns")
		}
	}
	f.Add([]byte(`[{"proxy":"a.b","proxy_version":"1.0.6","cluster_sent":"x","cluster_acked":"x","route_sent":"y","endpoint_percent":50}]`), "a.b")
	f.Add([]byte(`null`), "a.b")
	f.Add([]byte(`[{"proxy":"a.b","resources":{"t":{"sent":"s","lastError":"e","sentTime":"2026-11-30T19:11:23Z"}}}]`), "a.b")
	f.Fuzz(func(t *testing.T, data []byte, proxyID string) {
		st, found, err := ParseSyncz(bytes.NewReader(data), proxyID)
		if err != nil {
			if found || !errors.Is(err, ErrMalformed) {
				t.Fatalf("found=%v err=%v: a bytes reader can only fail as malformed", found, err)
			}
			checkOneLine(t, err)
			return
		}
		if !found {
			return
		}
		if st.ProxyID != proxyID || proxyID == "" || st.Source != SourceSyncz {
			t.Fatalf("found %q for %q", st.ProxyID, proxyID)
		}
		checkStatus(t, st)
		for _, ty := range st.Types {
			if ty.SentVersion != "" && !strings.HasPrefix(ty.Sent, ty.SentVersion) {
				t.Fatalf("version %q not a prefix of nonce %q", ty.SentVersion, ty.Sent)
			}
			if ty.State == StateSynced && (ty.Sent == "" || ty.Sent != ty.Acked) {
				t.Fatalf("SYNCED with sent %q acked %q", ty.Sent, ty.Acked)
			}
		}
	})
}

func FuzzParseConfigDumpVersions(f *testing.F) {
	for _, p := range fixture.Glob(f, "envoy/config_dump/*.json") {
		b, err := os.ReadFile(p)
		if err != nil {
			f.Fatal(err)
		}
		if len(b) < 8<<10 { // big seeds make minimizing eat the fuzzing time (see FuzzParseSyncz)
			f.Add(b)
		}
	}
	for _, opts := range []protojson.MarshalOptions{{}, {UseProtoNames: true}} {
		b, err := opts.Marshal(pilotConfigDump(f, "2026-11-30T19:11:18Z/3", 2))
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Add([]byte(`{"configs":[null,{"@type":"x.RoutesConfigDump","dynamicRouteConfigs":[{"versionInfo":"a"},{"versionInfo":"b"}]}]}`))
	kinds := []string{KindClusters, KindListeners, KindRoutes, KindScopedRoutes, KindEndpoints, KindSecrets, KindECDS}
	f.Fuzz(func(t *testing.T, data []byte) {
		m, err := ParseConfigDumpVersions(bytes.NewReader(data))
		if err != nil {
			if !errors.Is(err, ErrMalformed) {
				t.Fatalf("%v: a bytes reader can only fail as malformed", err)
			}
			checkOneLine(t, err)
			return
		}
		for k, v := range m {
			if !slices.Contains(kinds, k) || v == "" {
				t.Fatalf("kind %q version %q", k, v)
			}
		}
	})
}

// FuzzDecodeClientConfig checks the hand-written decoder against the
// generated type: whatever protobuf decodes, ours decodes to the same
// values; on anything else it fails cleanly.
func FuzzDecodeClientConfig(f *testing.F) {
	S, ST, NS, E := statusv3.ConfigStatus_SYNCED, statusv3.ConfigStatus_STALE, statusv3.ConfigStatus_NOT_SENT, statusv3.ConfigStatus_ERROR
	for _, cc := range []*statusv3.ClientConfig{
		istiodClientConfig(f, "app-1.default", map[string]statusv3.ConfigStatus{cdsURL: S, ldsURL: S, rdsURL: S, edsURL: S}, ""),
		istiodClientConfig(f, "app-2.default", map[string]statusv3.ConfigStatus{cdsURL: ST, ldsURL: E, rdsURL: NS}, "nack"),
		oldIstiodClientConfig("old-1.default"),
		{},
	} {
		b, err := proto.Marshal(cc)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	nested, _ := structpb.NewStruct(map[string]any{"LABELS": map[string]any{"app": "x"}, "IPS": []any{"1", 2.0, true, nil}, "ISTIO_VERSION": "1.31.0"})
	b, _ := proto.Marshal(&statusv3.ClientConfig{Node: istiodClientConfig(f, "n.ns", nil, "").Node})
	f.Add(b)
	b, _ = proto.Marshal(nested)
	f.Add(append([]byte{0x0a, byte(len(b) + 2), 0x1a, byte(len(b))}, b...)) // Node{metadata: nested}
	f.Fuzz(func(t *testing.T, data []byte) {
		cc, err := decodeClientConfig(data)
		if err != nil {
			if !errors.Is(err, ErrMalformed) {
				t.Fatalf("%v is not ErrMalformed", err)
			}
			checkOneLine(t, err)
		} else {
			checkStatus(t, cc.status())
		}
		var real statusv3.ClientConfig
		if proto.Unmarshal(data, &real) != nil {
			return // protobuf rejects it; ours may be more lenient
		}
		if err != nil {
			t.Fatalf("protobuf decodes it, ours fails: %v", err)
		}
		if cc.nodeID != real.GetNode().GetId() {
			t.Fatalf("node id %q, protobuf %q", cc.nodeID, real.GetNode().GetId())
		}
		strs := map[string]string{}
		for k, v := range real.GetNode().GetMetadata().GetFields() {
			if s, ok := v.GetKind().(*structpb.Value_StringValue); ok {
				strs[k] = s.StringValue
			}
		}
		if len(strs) != len(cc.meta) {
			t.Fatalf("metadata %v, protobuf's strings %v", cc.meta, strs)
		}
		for k, v := range strs {
			if cc.meta[k] != v {
				t.Fatalf("metadata %q = %q, protobuf %q", k, cc.meta[k], v)
			}
		}
		if len(cc.generic) != len(real.GetGenericXdsConfigs()) || len(cc.perXds) != len(real.GetXdsConfig()) {
			t.Fatalf("%d/%d configs, protobuf %d/%d", len(cc.generic), len(cc.perXds), len(real.GetGenericXdsConfigs()), len(real.GetXdsConfig()))
		}
		for i, g := range real.GetGenericXdsConfigs() {
			o := cc.generic[i]
			if o.typeURL != g.GetTypeUrl() || o.name != g.GetName() || o.versionInfo != g.GetVersionInfo() ||
				o.configStatus != int32(g.GetConfigStatus()) || o.clientStatus != int32(g.GetClientStatus()) ||
				o.errorDetails != g.GetErrorState().GetDetails() || o.isStatic != g.GetIsStaticResource() ||
				o.lastUpdated.set != (g.GetLastUpdated() != nil) ||
				o.lastUpdated.seconds != g.GetLastUpdated().GetSeconds() || o.lastUpdated.nanos != g.GetLastUpdated().GetNanos() {
				t.Fatalf("generic[%d] %+v, protobuf %v", i, o, g)
			}
		}
		for i, p := range real.GetXdsConfig() {
			o := cc.perXds[i]
			var kind int
			switch p.GetPerXdsConfig().(type) {
			case *statusv3.PerXdsConfig_ListenerConfig:
				kind = 2
			case *statusv3.PerXdsConfig_ClusterConfig:
				kind = 3
			case *statusv3.PerXdsConfig_RouteConfig:
				kind = 4
			case *statusv3.PerXdsConfig_ScopedRouteConfig:
				kind = 5
			case *statusv3.PerXdsConfig_EndpointConfig:
				kind = 6
			}
			if o.status != int32(p.GetStatus()) || int(o.kind) != kind {
				t.Fatalf("perXds[%d] %+v, protobuf %v", i, o, p)
			}
		}
	})
}

func FuzzProxyIDFromNodeID(f *testing.F) {
	for _, s := range []string{
		"sidecar~10.0.0.1~app-1.default~default.svc.cluster.local",
		"router~10.130.0.29~istio-ingressgateway-74ddf8dd9f-6p8p2.istio-system~istio-system.svc.cluster.local",
		"sidecar~10.52.2.21~productpage-v1-5cb458d74f-56sx7.default~default.svc.cluster.local",
		"waypoint~192.168.252.229~httpbin-istio-waypoint-5c8f6b5c8d-abcde.default~default.svc.cluster.local",
		"default.backend-1", "app-1.default", "meshready.default", "a~b", "~~~", "x.y.z", "",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		id, err := ProxyIDFromNodeID(s)
		if err != nil {
			checkOneLine(t, err)
			if id != "" {
				t.Fatalf("id %q with error", id)
			}
			return
		}
		if !strings.Contains(s, id) || strings.Contains(id, "~") || !strings.Contains(id, ".") {
			t.Fatalf("%q from %q", id, s)
		}
		if again, err := ProxyIDFromNodeID(id); err != nil || again != id {
			t.Fatalf("not idempotent: %q → %q %v", id, again, err)
		}
		req, err := RequesterNodeID(id, "")
		if err != nil {
			t.Fatal(err)
		}
		if ns, err := requesterNamespace(req); err != nil || ns != namespaceOf(id) {
			t.Fatalf("requester %q: namespace %q %v, want %q", req, ns, err, namespaceOf(id))
		}
		if third := strings.Split(req, "~")[2]; strings.Contains(third, ".") || strings.Contains(third, id) {
			t.Fatalf("requester id %q could be mistaken for %q", third, id)
		}
	})
}
