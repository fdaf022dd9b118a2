package lint

import "strings"

// The labels Istio's telemetry and the release's subsets select by.
var workloadLabels = []string{"app", "version"}

func missingLabels(labels map[string]string) []string {
	var missing []string
	for _, k := range workloadLabels {
		if labels[k] == "" {
			missing = append(missing, k)
		}
	}
	return missing
}

// MR110: what the mesh sees are the pods' labels.
func checkPodLabels(s *Set, _ Options, emit emitter) {
	for _, d := range s.Deployments {
		if m := missingLabels(d.PodLabels()); len(m) > 0 {
			emit(d.Obj, "spec.template.metadata.labels", "the pod template has no %s label: DestinationRule subsets select pods by version, Istio's metrics and Kiali group them by app and version; add %s under spec.template.metadata.labels",
				strings.Join(m, " or "), example(m))
		}
	}
}

// MR111: the Deployment's own labels are how people and tools (kubectl -l,
// the release's retire step) find it.
func checkDeploymentLabels(s *Set, _ Options, emit emitter) {
	for _, d := range s.Deployments {
		if m := missingLabels(d.Labels); len(m) > 0 {
			emit(d.Obj, "metadata.labels", "the Deployment has no %s label: `kubectl get deploy -l app=…,version=…` and the release's retire step find it by them; copy the pod template's app and version to metadata.labels",
				strings.Join(m, " or "))
		}
	}
}

func example(missing []string) string {
	parts := make([]string, len(missing))
	for i, k := range missing {
		v := "my-service"
		if k == "version" {
			v = "v1"
		}
		parts[i] = k + ": " + v
	}
	return strings.Join(parts, ", ")
}
