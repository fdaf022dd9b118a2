package release

import (
	"encoding/json"
	"reflect"
	"testing"

	jsonpatch "github.com/evanphx/json-patch/v5"
	networking "istio.io/api/networking/v1alpha3"
	"sigs.k8s.io/yaml"
)

// The team's VirtualService: a header route for testers, the default
// route with retries and a timeout, a route to another service, and a field
// this controller has never heard of.
const teamVS = `
metadata: {name: greeter, namespace: shop, resourceVersion: "42"}
spec:
  hosts: [greeter]
  http:
  - name: testers
    match: [{headers: {x-tester: {exact: "yes"}}}]
    route: [{destination: {host: greeter, subset: v1}}]
  - name: default
    retries: {attempts: 3, perTryTimeout: 2s, retryOn: "unavailable,cancelled"}
    timeout: 5s
    route:
    - destination: {host: greeter.shop.svc.cluster.local, subset: v1, port: {number: 8080}}
      headers: {request: {set: {x-via: mesh}}}
  - name: other
    route: [{destination: {host: billing, subset: v3}}]
  futureField: {keep: me}
`

func decodeVS(t *testing.T, doc []byte) (map[string]any, *networking.VirtualService) {
	t.Helper()
	var obj map[string]any
	if err := yaml.Unmarshal(doc, &obj); err != nil {
		t.Fatal(err)
	}
	raw, _ := json.Marshal(obj["spec"])
	var spec networking.VirtualService
	// The spec's unknown field makes a strict decode fail: decode a copy without it.
	m := map[string]any{}
	_ = json.Unmarshal(raw, &m)
	delete(m, "futureField")
	raw, _ = json.Marshal(m)
	if err := json.Unmarshal(raw, &spec); err != nil {
		t.Fatal(err)
	}
	return obj, &spec
}

func TestWeightsPatchTouchesOnlyWeights(t *testing.T) {
	t.Parallel()
	steps := []map[string]int32{
		{"v1": 90, "v2": 10},
		{"v1": 75, "v2": 25},
		{"v1": 50, "v2": 50},
		{"v1": 0, "v2": 100},
		{"v2": 100}, // retire v1
		{"v2": 100}, // again: no patch
	}
	doc, _ := yaml.YAMLToJSON([]byte(teamVS))
	orig, _ := decodeVS(t, doc)
	for n, want := range steps {
		obj, vs := decodeVS(t, doc)
		i := ReleaseRoute(vs, "greeter", "shop", "v1", "v2")
		if i != 1 {
			t.Fatalf("step %d: route %d, want the default route 1", n, i)
		}
		p, err := WeightsPatch(vs, i, obj["metadata"].(map[string]any)["resourceVersion"].(string), "v1", want)
		if err != nil {
			t.Fatalf("step %d: %v", n, err)
		}
		if p == nil {
			if n != len(steps)-1 {
				t.Fatalf("step %d: no patch", n)
			}
			continue
		}
		patch, err := jsonpatch.DecodePatch(p)
		if err != nil {
			t.Fatalf("%v: %s", err, p)
		}
		doc, err = patch.Apply(doc)
		if err != nil {
			t.Fatalf("step %d: %v\npatch %s", n, err, p)
		}
		got, vs2 := decodeVS(t, doc)
		gotW := RouteWeights(vs2, 1)
		for sub, w := range want {
			if w != 0 && gotW[sub] != w {
				t.Fatalf("step %d: weights %v, want %v", n, gotW, want)
			}
		}
		// Everything but route 1's destinations is as the team wrote it.
		gs, os := got["spec"].(map[string]any), orig["spec"].(map[string]any)
		for _, k := range []string{"hosts", "futureField"} {
			if !reflect.DeepEqual(gs[k], os[k]) {
				t.Fatalf("step %d: spec.%s changed: %v", n, k, gs[k])
			}
		}
		gh, oh := gs["http"].([]any), os["http"].([]any)
		for _, j := range []int{0, 2} {
			if !reflect.DeepEqual(gh[j], oh[j]) {
				t.Fatalf("step %d: route %d changed: %v", n, j, gh[j])
			}
		}
		g1, o1 := gh[1].(map[string]any), oh[1].(map[string]any)
		for _, k := range []string{"name", "retries", "timeout"} {
			if !reflect.DeepEqual(g1[k], o1[k]) {
				t.Fatalf("step %d: default route's %s changed: %v", n, k, g1[k])
			}
		}
		// A new destination is a copy of v1's: port and header edits kept.
		for _, d := range g1["route"].([]any) {
			dm := d.(map[string]any)
			dest := dm["destination"].(map[string]any)
			if dest["port"] == nil || dm["headers"] == nil && dest["subset"] == "v1" {
				t.Fatalf("step %d: destination lost its port or headers: %v", n, dm)
			}
		}
		// Bump the resourceVersion as the apiserver would.
		got["metadata"].(map[string]any)["resourceVersion"] = "4" + string(rune('3'+n))
		doc, _ = json.Marshal(got)
	}
}

func TestWeightsPatchGuards(t *testing.T) {
	t.Parallel()
	doc, _ := yaml.YAMLToJSON([]byte(teamVS))
	_, vs := decodeVS(t, doc)
	p, err := WeightsPatch(vs, 1, "41", "v1", map[string]int32{"v1": 90, "v2": 10})
	if err != nil {
		t.Fatal(err)
	}
	patch, _ := jsonpatch.DecodePatch(p)
	if _, err := patch.Apply(doc); err == nil {
		t.Fatal("a patch made from resourceVersion 41 applied to 42")
	}
	if p, err := WeightsPatch(vs, 1, "42", "v1", map[string]int32{"v1": 100}); err != nil || p != nil {
		t.Fatalf("no-op patch: %s, %v", p, err)
	}
	if _, err := WeightsPatch(vs, 1, "42", "v1", map[string]int32{"v1": 0}); err == nil {
		t.Fatal("a patch that empties the route was made")
	}
}

func TestReleaseRoute(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name, doc string
		want      int
		full      string
	}{
		{"the default route", teamVS, 1, "v1"},
		{"only a matched route", `spec: {http: [{match: [{uri: {prefix: /}}], route: [{destination: {host: greeter, subset: v1}}]}]}`, 0, "v1"},
		{"split across another host", `spec: {http: [{route: [{destination: {host: greeter, subset: v1}, weight: 50}, {destination: {host: other, subset: v1}, weight: 50}]}]}`, -1, ""},
		{"no subset of ours", `spec: {http: [{route: [{destination: {host: greeter, subset: v0}}]}]}`, -1, ""},
		{"already split", `spec: {http: [{route: [{destination: {host: greeter, subset: v1}, weight: 60}, {destination: {host: greeter, subset: v2}, weight: 40}]}]}`, 0, ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			doc, _ := yaml.YAMLToJSON([]byte(tc.doc))
			_, vs := decodeVS(t, doc)
			got := ReleaseRoute(vs, "greeter", "shop", "v1", "v2")
			if got != tc.want {
				t.Fatalf("route %d, want %d", got, tc.want)
			}
			if got >= 0 && FullSubset(vs, got) != tc.full {
				t.Fatalf("full subset %q, want %q", FullSubset(vs, got), tc.full)
			}
		})
	}
}

func TestSubsetPatches(t *testing.T) {
	t.Parallel()
	dr := `{"metadata":{"resourceVersion":"7"},"spec":{"host":"greeter","trafficPolicy":{"tls":{"mode":"ISTIO_MUTUAL"}},"subsets":[{"name":"v1","labels":{"app":"greeter","version":"v1"},"trafficPolicy":{"connectionPool":{"tcp":{"maxConnections":10}}}}]}}`
	spec := func(doc []byte) *networking.DestinationRule {
		var m map[string]json.RawMessage
		_ = json.Unmarshal(doc, &m)
		var d networking.DestinationRule
		if err := json.Unmarshal(m["spec"], &d); err != nil {
			t.Fatal(err)
		}
		return &d
	}
	doc := []byte(dr)
	p, err := AddSubsetPatch(spec(doc), "7", "v1", "v2", "version")
	if err != nil {
		t.Fatal(err)
	}
	patch, _ := jsonpatch.DecodePatch(p)
	doc, err = patch.Apply(doc)
	if err != nil {
		t.Fatal(err)
	}
	d := spec(doc)
	if i := SubsetIndex(d, "v2"); i != 1 || d.GetSubsets()[1].GetLabels()["version"] != "v2" || d.GetSubsets()[1].GetLabels()["app"] != "greeter" || d.GetSubsets()[1].GetTrafficPolicy().GetConnectionPool() == nil {
		t.Fatalf("v2 subset: %v", d.GetSubsets())
	}
	if p, _ := AddSubsetPatch(d, "8", "v1", "v2", "version"); p != nil {
		t.Fatal("adding an existing subset made a patch")
	}
	p, err = RemoveSubsetPatch(d, "7", "v1")
	if err != nil {
		t.Fatal(err)
	}
	patch, _ = jsonpatch.DecodePatch(p)
	doc, err = patch.Apply(doc)
	if err != nil {
		t.Fatal(err)
	}
	if d := spec(doc); len(d.GetSubsets()) != 1 || d.GetSubsets()[0].GetName() != "v2" || d.GetTrafficPolicy().GetTls() == nil {
		t.Fatalf("after removing v1: %v", d)
	}
}
