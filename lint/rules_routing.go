package lint

import (
	"fmt"
	"sort"
	"strings"

	networking "istio.io/api/networking/v1alpha3"
	corev1 "k8s.io/api/core/v1"
)

// serviceHost is a host as Istio resolves it from an object in namespace
// ns: a short name (no dot) is a Service of that namespace, and
// NAME.NS.svc.DOMAIN is Service NAME of NS. Other hosts (external names,
// wildcards) are compared as written and name no Service.
type serviceHost struct {
	key           string // what two hosts that mean the same compare equal by
	name, ns      string // the Service, when the host is one
	isServiceHost bool
}

func resolveHost(host, ns string) serviceHost {
	host = strings.ToLower(strings.TrimSuffix(host, "."))
	if strings.Contains(host, "*") {
		return serviceHost{key: host}
	}
	parts := strings.Split(host, ".")
	switch {
	case len(parts) == 1:
		return serviceHost{key: host + "." + ns + ".svc", name: host, ns: ns, isServiceHost: true}
	case len(parts) >= 3 && parts[2] == "svc":
		return serviceHost{key: parts[0] + "." + parts[1] + ".svc", name: parts[0], ns: parts[1], isServiceHost: true}
	}
	return serviceHost{key: host}
}

// subsetSelector is what a subset's pods must carry: the Service's selector
// (a subset only narrows the Service's endpoints) and the subset's labels.
func (s *Set) subsetSelector(h serviceHost, subset *networking.Subset) map[string]string {
	want := map[string]string{}
	if svc := s.service(h.name, h.ns); svc != nil && hasSelector(svc) {
		for k, v := range svc.Spec.Selector {
			want[k] = v
		}
	}
	for k, v := range subset.GetLabels() {
		want[k] = v
	}
	return want
}

// MR130. Judged only with Deployments of the host's namespace in the input.
func checkSubsetsSelectDeployments(s *Set, _ Options, emit emitter) {
	for _, dr := range s.DestinationRules {
		h := resolveHost(dr.Spec.GetHost(), dr.Obj.Namespace)
		deps := s.deploymentsIn(h.ns)
		if !h.isServiceHost || len(deps) == 0 {
			continue
		}
		for i, sub := range dr.Spec.GetSubsets() {
			want := s.subsetSelector(h, sub)
			if len(want) == 0 {
				continue
			}
			found := false
			for _, d := range deps {
				found = found || selects(want, d.PodLabels())
			}
			if !found {
				emit(dr.Obj, fmt.Sprintf("spec.subsets[%d].labels", i), "subset %q (%s) selects the pods of none of the %d Deployments in namespace %s: traffic routed to it gets 503 no healthy upstream; deploy that version first (pod labels app and version), then add its subset",
					sub.GetName(), labelString(want), len(deps), h.ns)
			}
		}
	}
}

// routeDestination is one place a VirtualService sends traffic.
type routeDestination struct {
	field   string // path of the destination's subset
	host    string
	subset  string
	traffic bool // gets requests (weight > 0, or the route's only destination); mirrors do not count
}

func destinations(vs *networking.VirtualService) []routeDestination {
	var out []routeDestination
	add := func(field string, d *networking.Destination, traffic bool) {
		if d != nil {
			out = append(out, routeDestination{field: field + ".subset", host: d.GetHost(), subset: d.GetSubset(), traffic: traffic})
		}
	}
	for i, r := range vs.GetHttp() {
		for j, rd := range r.GetRoute() {
			add(fmt.Sprintf("spec.http[%d].route[%d].destination", i, j), rd.GetDestination(), rd.GetWeight() > 0 || len(r.GetRoute()) == 1)
		}
		add(fmt.Sprintf("spec.http[%d].mirror", i), r.GetMirror(), false)
		for j, m := range r.GetMirrors() {
			add(fmt.Sprintf("spec.http[%d].mirrors[%d].destination", i, j), m.GetDestination(), false)
		}
	}
	for i, r := range vs.GetTcp() {
		for j, rd := range r.GetRoute() {
			add(fmt.Sprintf("spec.tcp[%d].route[%d].destination", i, j), rd.GetDestination(), rd.GetWeight() > 0 || len(r.GetRoute()) == 1)
		}
	}
	for i, r := range vs.GetTls() {
		for j, rd := range r.GetRoute() {
			add(fmt.Sprintf("spec.tls[%d].route[%d].destination", i, j), rd.GetDestination(), rd.GetWeight() > 0 || len(r.GetRoute()) == 1)
		}
	}
	return out
}

// destinationRulesFor are the set's DestinationRules for the host.
func (s *Set) destinationRulesFor(h serviceHost) []*DestinationRule {
	var out []*DestinationRule
	for _, dr := range s.DestinationRules {
		if resolveHost(dr.Spec.GetHost(), dr.Obj.Namespace).key == h.key {
			out = append(out, dr)
		}
	}
	return out
}

func findSubset(drs []*DestinationRule, name string) (*DestinationRule, *networking.Subset) {
	for _, dr := range drs {
		for _, sub := range dr.Spec.GetSubsets() {
			if sub.GetName() == name {
				return dr, sub
			}
		}
	}
	return nil, nil
}

func subsetNames(drs []*DestinationRule) string {
	var names []string
	for _, dr := range drs {
		for _, sub := range dr.Spec.GetSubsets() {
			names = append(names, sub.GetName())
		}
	}
	if len(names) == 0 {
		return "none"
	}
	sort.Strings(names)
	return strings.Join(names, ", ")
}

// MR131.
func checkRouteSubsetsDefined(s *Set, _ Options, emit emitter) {
	for _, vs := range s.VirtualServices {
		for _, d := range destinations(vs.Spec) {
			h := resolveHost(d.host, vs.Obj.Namespace)
			drs := s.destinationRulesFor(h)
			if d.subset == "" || len(drs) == 0 {
				continue
			}
			if _, sub := findSubset(drs, d.subset); sub == nil {
				emit(vs.Obj, d.field, "routes to subset %q of %s, which %s does not define (it defines: %s): Envoy has no such cluster and these requests fail with 503; add the subset to the DestinationRule first, or route to a defined one",
					d.subset, d.host, drs[0].Obj.Ref(), subsetNames(drs))
			}
		}
	}
}

// MR132: offline, the DestinationRule may be in a file not given, so this
// is a warning; MR131 is the error once it is given.
func checkRouteHostHasDestinationRule(s *Set, _ Options, emit emitter) {
	for _, vs := range s.VirtualServices {
		for _, d := range destinations(vs.Spec) {
			h := resolveHost(d.host, vs.Obj.Namespace)
			if d.subset == "" || len(s.destinationRulesFor(h)) > 0 {
				continue
			}
			emit(vs.Obj, d.field, "routes to subset %q of %s, but no DestinationRule for that host is in the input: the subset must be defined in one, or these requests fail with 503; lint the DestinationRule with the VirtualService", d.subset, d.host)
		}
	}
}

// runningPod is a pod that can serve: Running and not being deleted.
func runningPod(p *corev1.Pod) bool {
	return p.Status.Phase == corev1.PodRunning && p.DeletionTimestamp == nil
}

// MR133 (cluster only): a subset that gets traffic and selects no running
// pod is an outage now, not a risk.
func checkRoutedSubsetsHavePods(s *Set, _ Options, emit emitter) {
	for _, vs := range s.VirtualServices {
		for _, d := range destinations(vs.Spec) {
			if d.subset == "" || !d.traffic {
				continue
			}
			h := resolveHost(d.host, vs.Obj.Namespace)
			dr, sub := findSubset(s.destinationRulesFor(h), d.subset)
			if !h.isServiceHost || sub == nil {
				continue // MR131 and MR132 say it
			}
			want := s.subsetSelector(h, sub)
			if len(want) == 0 {
				continue
			}
			running := 0
			for _, p := range s.Pods {
				if p.Namespace == h.ns && runningPod(p) && selects(want, p.Labels) {
					running++
				}
			}
			if running == 0 {
				emit(vs.Obj, d.field, "sends traffic to subset %q of %s (%s, %s), and no running pod in namespace %s has those labels: these requests fail with 503 no healthy upstream now; move the weight to a subset with pods, or start the version's pods",
					d.subset, d.host, labelString(want), dr.Obj.Ref(), h.ns)
			}
		}
	}
}
