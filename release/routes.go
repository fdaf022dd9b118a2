package release

import (
	"encoding/json"
	"fmt"
	"maps"
	"slices"
	"strings"

	networking "istio.io/api/networking/v1alpha3"
)

// The edits of the team's own Istio objects. Every write is an RFC 6902
// JSON patch whose ops touch only the weights (and the one destination
// entry a release adds or removes) of the one route that sends the host
// to from/to, guarded by test ops on the object's resourceVersion and on
// each touched entry's subset: a concurrent edit by a person makes the
// patch fail (and the controller re-reads) instead of landing on the
// wrong entry. Retries, timeouts, other routes and unknown fields are not
// in any op, so they survive every patch.

// hostMatches: a destination host as people write it (short name,
// name.namespace, the FQDN) names the Service.
func hostMatches(dest, service, namespace string) bool {
	switch strings.TrimSuffix(dest, ".") {
	case service, service + "." + namespace, service + "." + namespace + ".svc", service + "." + namespace + ".svc.cluster.local":
		return true
	}
	return false
}

// ReleaseRoute finds the HTTP route of vs that sends the Service's host to
// the release's versions: every destination is the host, with subset from
// or to. Of several, the one without match conditions (the default route)
// wins, else the last. -1 when there is none.
func ReleaseRoute(vs *networking.VirtualService, service, namespace, from, to string) int {
	found := -1
	for i, h := range vs.GetHttp() {
		if len(h.GetRoute()) == 0 {
			continue
		}
		ok, touches := true, false
		for _, d := range h.GetRoute() {
			dst := d.GetDestination()
			if !hostMatches(dst.GetHost(), service, namespace) {
				ok = false
				break
			}
			switch dst.GetSubset() {
			case from, to:
				touches = true
			default:
				ok = false
			}
		}
		if !ok || !touches {
			continue
		}
		if len(h.GetMatch()) == 0 {
			return i
		}
		found = i
	}
	return found
}

// FindFrom finds the route that sends all of the host to one subset other
// than to, and that subset: where a release starts. The default route (no
// match conditions) wins over matched ones. -1, "" when there is none.
func FindFrom(vs *networking.VirtualService, service, namespace, to string) (int, string) {
	idx, from := -1, ""
	for i, h := range vs.GetHttp() {
		if len(h.GetRoute()) == 0 {
			continue
		}
		mine := true
		for _, d := range h.GetRoute() {
			if !hostMatches(d.GetDestination().GetHost(), service, namespace) {
				mine = false
			}
		}
		if !mine {
			continue
		}
		f := FullSubset(vs, i)
		if f == "" || f == to {
			continue
		}
		if len(h.GetMatch()) == 0 {
			return i, f
		}
		idx, from = i, f
	}
	return idx, from
}

// FullSubset is the subset that holds 100 % of route i ("" if it is
// split).
func FullSubset(vs *networking.VirtualService, i int) string {
	rs := vs.GetHttp()[i].GetRoute()
	if len(rs) == 1 {
		if w := rs[0].GetWeight(); w == 0 || w == 100 {
			return rs[0].GetDestination().GetSubset()
		}
	}
	var full string
	for _, d := range rs {
		if d.GetWeight() == 100 {
			full = d.GetDestination().GetSubset()
		} else if d.GetWeight() != 0 {
			return ""
		}
	}
	return full
}

// RouteWeights reads route i's weights by subset (one destination without
// a weight has 100).
func RouteWeights(vs *networking.VirtualService, i int) map[string]int32 {
	out := map[string]int32{}
	rs := vs.GetHttp()[i].GetRoute()
	for _, d := range rs {
		w := d.GetWeight()
		if len(rs) == 1 && w == 0 {
			w = 100
		}
		out[d.GetDestination().GetSubset()] += w
	}
	return out
}

type patchOp struct {
	Op    string `json:"op"`
	Path  string `json:"path"`
	Value any    `json:"value,omitempty"`
}

// WeightsPatch is the JSON patch that gives route i of vs the weights
// want (subset → percent; a subset in the route but not in want is
// removed from it, one at 0 stays at weight 0, a new one is added as a
// copy of from's destination with its subset changed, so its port and
// header edits match). It returns nil when the route already has them.
// resourceVersion guards the whole patch.
func WeightsPatch(vs *networking.VirtualService, i int, resourceVersion, from string, want map[string]int32) ([]byte, error) {
	h := vs.GetHttp()[i]
	have := RouteWeights(vs, i)
	if maps.Equal(have, want) {
		return nil, nil
	}
	base := fmt.Sprintf("/spec/http/%d/route", i)
	ops := []patchOp{{Op: "test", Path: "/metadata/resourceVersion", Value: resourceVersion}}
	var fromDest map[string]any
	kept := 0
	var removes []int
	for j, d := range h.GetRoute() {
		sub := d.GetDestination().GetSubset()
		ops = append(ops, patchOp{Op: "test", Path: fmt.Sprintf("%s/%d/destination/subset", base, j), Value: sub})
		if sub == from {
			raw, err := json.Marshal(d.GetDestination())
			if err != nil {
				return nil, err
			}
			if err := json.Unmarshal(raw, &fromDest); err != nil {
				return nil, err
			}
		}
		w, ok := want[sub]
		if !ok {
			removes = append(removes, j)
			continue
		}
		if w > 0 {
			kept++
		}
		ops = append(ops, patchOp{Op: "add", Path: fmt.Sprintf("%s/%d/weight", base, j), Value: w}) // add sets or replaces
	}
	// Removing from the end keeps the indexes of the earlier ones.
	for _, j := range slices.Backward(removes) {
		ops = append(ops, patchOp{Op: "remove", Path: fmt.Sprintf("%s/%d", base, j)})
	}
	for _, sub := range slices.Sorted(maps.Keys(want)) {
		if _, ok := have[sub]; ok {
			continue
		}
		if fromDest == nil {
			return nil, fmt.Errorf("route %d has no destination with subset %q to copy", i, from)
		}
		dest := maps.Clone(fromDest)
		dest["subset"] = sub
		ops = append(ops, patchOp{Op: "add", Path: base + "/-", Value: map[string]any{"destination": dest, "weight": want[sub]}})
		if want[sub] > 0 {
			kept++
		}
	}
	if kept == 0 {
		return nil, fmt.Errorf("weights %v would leave route %d with no destination", want, i)
	}
	return json.Marshal(ops)
}

// SubsetIndex is the index of the subset named in dr (-1: none).
func SubsetIndex(dr *networking.DestinationRule, name string) int {
	for i, s := range dr.GetSubsets() {
		if s.GetName() == name {
			return i
		}
	}
	return -1
}

// AddSubsetPatch adds subset to as a copy of from's with its version label
// changed (from's traffic policy comes along: the new pods get the same
// connection pool and TLS settings). nil when it is there already.
func AddSubsetPatch(dr *networking.DestinationRule, resourceVersion, from, to, versionLabel string) ([]byte, error) {
	if SubsetIndex(dr, to) >= 0 {
		return nil, nil
	}
	i := SubsetIndex(dr, from)
	if i < 0 {
		return nil, fmt.Errorf("DestinationRule has no subset %q to copy", from)
	}
	raw, err := json.Marshal(dr.GetSubsets()[i])
	if err != nil {
		return nil, err
	}
	var sub map[string]any
	if err := json.Unmarshal(raw, &sub); err != nil {
		return nil, err
	}
	sub["name"] = to
	labels := map[string]any{}
	if l, ok := sub["labels"].(map[string]any); ok {
		labels = maps.Clone(l)
	}
	labels[versionLabel] = to
	sub["labels"] = labels
	return json.Marshal([]patchOp{
		{Op: "test", Path: "/metadata/resourceVersion", Value: resourceVersion},
		{Op: "add", Path: "/spec/subsets/-", Value: sub},
	})
}

// RemoveSubsetPatch removes subset name. nil when it is gone already.
func RemoveSubsetPatch(dr *networking.DestinationRule, resourceVersion, name string) ([]byte, error) {
	i := SubsetIndex(dr, name)
	if i < 0 {
		return nil, nil
	}
	return json.Marshal([]patchOp{
		{Op: "test", Path: "/metadata/resourceVersion", Value: resourceVersion},
		{Op: "test", Path: fmt.Sprintf("/spec/subsets/%d/name", i), Value: name},
		{Op: "remove", Path: fmt.Sprintf("/spec/subsets/%d", i)},
	})
}
