package lint

import (
	"fmt"
	"strings"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
)

// istioProtocols are the port-name prefixes Istio's protocol selection
// knows (<protocol>[-suffix]); the seed's list, and Istio's.
var istioProtocols = map[string]bool{
	"grpc": true, "grpc-web": true, "http": true, "http2": true, "https": true, "mongo": true,
	"mysql": true, "redis": true, "tcp": true, "tls": true, "udp": true,
}

// portNameHasProtocol is Istio's rule: the name, or its part before the
// first "-", is a protocol (grpc-web-x starts with grpc, so it passes too).
func portNameHasProtocol(name string) bool {
	name = strings.ToLower(name)
	proto, _, _ := strings.Cut(name, "-")
	return istioProtocols[name] || istioProtocols[proto]
}

// MR101. Istio's IST0118 reports this at Info level; the seed's experience
// is that a wrong name makes the proxy misbehave and the metrics vanish, so
// here it is an error.
func checkPortNames(s *Set, _ Options, emit emitter) {
	for _, svc := range s.Services {
		for i, p := range svc.Spec.Ports {
			if p.AppProtocol != nil && *p.AppProtocol != "" {
				continue // Istio takes the protocol from appProtocol
			}
			if portNameHasProtocol(p.Name) {
				continue
			}
			field := fmt.Sprintf("spec.ports[%d].name", i)
			if p.Name == "" {
				emit(svc.Obj, field, "port %d has no name: Istio cannot tell its protocol, treats it as TCP or sniffs it, and its HTTP/gRPC metrics vanish; name it <protocol>[-suffix], e.g. http-%d or grpc-%d, or set appProtocol", p.Port, p.Port, p.Port)
				continue
			}
			emit(svc.Obj, field, "port %d is named %q, which does not start with a protocol Istio knows (grpc, grpc-web, http, http2, https, mongo, mysql, redis, tcp, tls, udp): Istio treats it as TCP or sniffs it, and its HTTP/gRPC metrics vanish; rename it e.g. %q, or set appProtocol", p.Port, p.Name, "http-"+p.Name)
		}
	}
}

// MR102.
func checkSelectorVersion(s *Set, _ Options, emit emitter) {
	for _, svc := range s.Services {
		if v, ok := svc.Spec.Selector["version"]; ok {
			emit(svc.Obj, "spec.selector.version", "the selector picks version %s only: a release shifts traffic between versions behind one Service, by DestinationRule subsets; select by app alone", v)
		}
	}
}

// hasSelector: a Service whose endpoints come from its selector.
func hasSelector(svc *Service) bool {
	return len(svc.Spec.Selector) > 0 && svc.Spec.Type != corev1.ServiceTypeExternalName
}

// MR103. Only judged when the input has Deployments in the Service's
// namespace: linting a Service alone says nothing about its pods.
// (Workloads of other kinds are not decoded offline, so a Service over a
// StatefulSet's pods is judged by them only in --namespace mode.)
func checkServiceSelectsDeployment(s *Set, _ Options, emit emitter) {
	for _, svc := range s.Services {
		deps := s.deploymentsIn(svc.Obj.Namespace)
		if !hasSelector(svc) || len(deps) == 0 {
			continue
		}
		matched := false
		for _, d := range deps {
			matched = matched || selects(svc.Spec.Selector, d.PodLabels())
		}
		// Live, a Service over a StatefulSet's or a Job's pods is fine too:
		// what counts is that it has pods.
		for _, p := range s.Pods {
			matched = matched || (s.PodsKnown && p.Namespace == svc.Obj.Namespace && selects(svc.Spec.Selector, p.Labels))
		}
		if matched {
			continue
		}
		emit(svc.Obj, "spec.selector", "selector %s matches the pod labels of none of the %d Deployments in namespace %s (closest: %s): the Service gets no endpoints and callers get 503 no healthy upstream; make the selector and the pod template's labels agree",
			labelString(svc.Spec.Selector), len(deps), svc.Obj.Namespace, closest(svc.Spec.Selector, deps))
	}
}

// closest names the Deployment whose pod labels share the most pairs with
// sel, with its labels, so the message shows what differs.
func closest(sel map[string]string, deps []*Deployment) string {
	best, bestN := deps[0], -1
	for _, d := range deps {
		n := 0
		for k, v := range sel {
			if d.PodLabels()[k] == v {
				n++
			}
		}
		if n > bestN {
			best, bestN = d, n
		}
	}
	return fmt.Sprintf("%s with %s", best.Obj.Ref(), labelString(best.PodLabels()))
}

// MR104.
func checkTargetPorts(s *Set, _ Options, emit emitter) {
	for _, svc := range s.Services {
		if !hasSelector(svc) {
			continue
		}
		for _, d := range s.deploymentsIn(svc.Obj.Namespace) {
			if !selects(svc.Spec.Selector, d.PodLabels()) {
				continue
			}
			for i, p := range svc.Spec.Ports {
				target := p.TargetPort
				field := fmt.Sprintf("spec.ports[%d].targetPort", i)
				if target.Type == intstr.Int && target.IntVal == 0 {
					target = intstr.FromInt32(p.Port) // unset: the port itself
					field = fmt.Sprintf("spec.ports[%d].port", i)
				}
				if declaresPort(d.Spec.Template.Spec.Containers, target) {
					continue
				}
				if target.Type == intstr.String {
					emit(svc.Obj, field, "targetPort %q is not the name of a containerPort of %s: the Service gets no endpoints for port %d; name the container's port %q or fix targetPort", target.StrVal, d.Obj.Ref(), p.Port, target.StrVal)
					continue
				}
				emit(svc.Obj, field, "targetPort %d is not declared as a containerPort of %s: the mesh's inbound config and everyone reading the pod spec rely on declared ports; add {containerPort: %d, name: %s} to the container's ports", target.IntVal, d.Obj.Ref(), target.IntVal, suggestPortName(p))
			}
		}
	}
}

func suggestPortName(p corev1.ServicePort) string {
	if p.Name != "" {
		return p.Name
	}
	return fmt.Sprintf("http-%d", p.Port)
}

func declaresPort(containers []corev1.Container, target intstr.IntOrString) bool {
	for _, c := range containers {
		for _, cp := range c.Ports {
			if (target.Type == intstr.String && cp.Name == target.StrVal) || (target.Type == intstr.Int && cp.ContainerPort == target.IntVal) {
				return true
			}
		}
	}
	return false
}
