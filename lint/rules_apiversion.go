package lint

import "strings"

// removedDeploymentAPIs are the Deployment versions Kubernetes 1.16 stopped
// serving: such a manifest is refused by every supported cluster.
var removedDeploymentAPIs = map[string]bool{
	"extensions/v1beta1": true, "apps/v1beta1": true, "apps/v1beta2": true,
}

// MR140.
func checkDeploymentAPIVersion(s *Set, _ Options, emit emitter) {
	for _, d := range s.Deployments {
		if !removedDeploymentAPIs[d.Obj.APIVersion] {
			continue
		}
		selector := ""
		if d.Spec.Selector == nil {
			selector = ", and add spec.selector.matchLabels (required in apps/v1; the old API defaulted it to the pod labels): " + matchLabelsFor(d)
		}
		emit(d.Obj, "apiVersion", "Deployments on %s are no longer served (removed in Kubernetes 1.16) and the cluster refuses this manifest: change apiVersion to apps/v1%s", d.Obj.APIVersion, selector)
	}
}

// MR141: still served, so advice only; v1 has the same spec.
func checkIstioAPIVersion(s *Set, _ Options, emit emitter) {
	old := func(o Object) {
		if o.APIVersion != "networking.istio.io/v1" {
			emit(o, "apiVersion", "%s is still served, but networking.istio.io/v1 is the stable API since Istio 1.22 (same spec): change apiVersion to networking.istio.io/v1", o.APIVersion)
		}
	}
	for _, dr := range s.DestinationRules {
		old(dr.Obj)
	}
	for _, vs := range s.VirtualServices {
		old(vs.Obj)
	}
}

// matchLabelsFor is the selector an old Deployment had by default, as the
// fix to write: its pods' app and version labels (or a placeholder).
func matchLabelsFor(d *Deployment) string {
	sel := map[string]string{}
	for _, k := range workloadLabels {
		if v := d.PodLabels()[k]; v != "" {
			sel[k] = v
		}
	}
	if len(sel) == 0 {
		return "{app: my-service, version: v1}"
	}
	return "{" + strings.ReplaceAll(strings.ReplaceAll(labelString(sel), "=", ": "), ",", ", ") + "}"
}
