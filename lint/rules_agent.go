package lint

import (
	"fmt"
	"math"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
)

// The agent's contract with the kubelet (DESIGN.md, "Endpoints on :54321").
const (
	AgentPort      = 54321
	AgentReadyPath = "/health"
	AgentLivePath  = "/health/live"
	// kubernetesTerminationGrace is a pod spec's default
	// terminationGracePeriodSeconds.
	kubernetesTerminationGrace = 30 * time.Second
	// sidecarName is Istio's injected proxy: a manifest already through
	// `istioctl kube-inject` has it, and no rule about the app applies to it.
	sidecarName = "istio-proxy"
)

// appContainers are the indices of the pod's containers that are not Istio's
// proxy.
func appContainers(pod *corev1.PodSpec) []int {
	var idx []int
	for i, c := range pod.Containers {
		if c.Name != sidecarName {
			idx = append(idx, i)
		}
	}
	return idx
}

// probePort is the port number an httpGet probe calls (a named port is
// looked up in the container's ports); 0 if unknown.
func probePort(c *corev1.Container, port intstr.IntOrString) int32 {
	if port.Type == intstr.Int {
		return port.IntVal
	}
	for _, p := range c.Ports {
		if p.Name == port.StrVal {
			return p.ContainerPort
		}
	}
	return 0
}

// probesAgent says the probe is an httpGet of the agent's port at path
// (query ignored).
func probesAgent(c *corev1.Container, p *corev1.Probe, path string) bool {
	if p == nil || p.HTTPGet == nil || probePort(c, p.HTTPGet.Port) != AgentPort {
		return false
	}
	got, _, _ := strings.Cut(p.HTTPGet.Path, "?")
	return got == path
}

// runsAgent says the container is the one meshready runs in: a probe on its
// port. (Its env or command alone could be leftovers; a probe is the
// contract.)
func runsAgent(c *corev1.Container) bool {
	for _, p := range []*corev1.Probe{c.ReadinessProbe, c.LivenessProbe, c.StartupProbe} {
		if p != nil && p.HTTPGet != nil && probePort(c, p.HTTPGet.Port) == AgentPort {
			return true
		}
	}
	return false
}

func describeProbe(c *corev1.Container, p *corev1.Probe) string {
	switch {
	case p.HTTPGet != nil:
		return fmt.Sprintf("httpGet :%s%s", portString(c, p.HTTPGet.Port), p.HTTPGet.Path)
	case p.TCPSocket != nil:
		return "tcpSocket :" + portString(c, p.TCPSocket.Port)
	case p.GRPC != nil:
		return fmt.Sprintf("grpc :%d", p.GRPC.Port)
	case p.Exec != nil:
		return "exec " + strings.Join(p.Exec.Command, " ")
	}
	return "a probe with no handler"
}

func portString(c *corev1.Container, port intstr.IntOrString) string {
	if port.Type == intstr.String {
		if n := probePort(c, port); n != 0 {
			return fmt.Sprintf("%s (%d)", port.StrVal, n)
		}
	}
	return port.String()
}

func containerField(i int, rest string) string {
	return fmt.Sprintf("spec.template.spec.containers[%d].%s", i, rest)
}

// MR120: readiness must be the agent's verdict, or the pod is Ready before
// its sidecar can route.
func checkReadiness(s *Set, _ Options, emit emitter) {
	for _, d := range s.Deployments {
		pod := &d.Spec.Template.Spec
		apps := appContainers(pod)
		if len(apps) == 0 {
			continue
		}
		target := -1
		ok := false
		for _, i := range apps {
			c := &pod.Containers[i]
			ok = ok || probesAgent(c, c.ReadinessProbe, AgentReadyPath)
			if target < 0 && c.ReadinessProbe != nil {
				target = i
			}
		}
		if ok {
			continue
		}
		if target < 0 {
			target = apps[0]
			emit(d.Obj, containerField(target, "readinessProbe"), "container %q has no readinessProbe: the pod turns Ready before its sidecar holds Pilot's config and its first calls fail; add readinessProbe: {httpGet: {path: %s, port: %d}} (meshready)", pod.Containers[target].Name, AgentReadyPath, AgentPort)
			continue
		}
		c := &pod.Containers[target]
		emit(d.Obj, containerField(target, "readinessProbe"), "container %q's readinessProbe is %s, not meshready's httpGet :%d%s: the kubelet sees the app alone, not the sidecar's sync; probe {httpGet: {path: %s, port: %d}} and give the app's own check to the agent as MESHREADY_APP_READY", c.Name, describeProbe(c, c.ReadinessProbe), AgentPort, AgentReadyPath, AgentReadyPath, AgentPort)
	}
}

// MR121: /health depends on Envoy and Pilot; liveness must not.
func checkLiveness(s *Set, _ Options, emit emitter) {
	for _, d := range s.Deployments {
		pod := &d.Spec.Template.Spec
		for _, i := range appContainers(pod) {
			c := &pod.Containers[i]
			if probesAgent(c, c.LivenessProbe, AgentReadyPath) {
				emit(d.Obj, containerField(i, "livenessProbe.httpGet.path"), "container %q's livenessProbe is the agent's readiness (%s): it fails while Envoy or Pilot is not ready, so a Pilot outage would make the kubelet restart every pod; use path %s", c.Name, AgentReadyPath, AgentLivePath)
			}
		}
	}
}

// agentDuration is the value the agent in c runs with for an env var: the
// container's literal value, else def (a value from a ConfigMap or field
// ref is unknown here, so the default stands in).
func agentDuration(c *corev1.Container, env string, def time.Duration) time.Duration {
	for _, e := range c.Env {
		if e.Name == env && e.ValueFrom == nil {
			if d, err := time.ParseDuration(e.Value); err == nil {
				return d
			}
		}
	}
	return def
}

// MR122: the kubelet SIGKILLs the pod at terminationGracePeriodSeconds,
// drain or no drain.
func checkTerminationGrace(s *Set, opts Options, emit emitter) {
	for _, d := range s.Deployments {
		pod := &d.Spec.Template.Spec
		tgp := kubernetesTerminationGrace
		if pod.TerminationGracePeriodSeconds != nil {
			tgp = time.Duration(*pod.TerminationGracePeriodSeconds) * time.Second
		}
		var need, drainMax, grace time.Duration
		for _, i := range appContainers(pod) {
			c := &pod.Containers[i]
			if !runsAgent(c) {
				continue
			}
			dm, g := agentDuration(c, "MESHREADY_DRAIN_MAX", opts.DrainMax), agentDuration(c, "MESHREADY_GRACE", opts.Grace)
			if dm+g > need {
				need, drainMax, grace = dm+g, dm, g
			}
		}
		if need <= tgp {
			continue
		}
		emit(d.Obj, "spec.template.spec.terminationGracePeriodSeconds", "terminationGracePeriodSeconds is %s, less than the agent's drain-max %s + grace %s = %s: the kubelet SIGKILLs the pod before the drain ends and in-flight calls fail; set it to %d, or lower MESHREADY_DRAIN_MAX / MESHREADY_GRACE",
			tgp, drainMax, grace, need, int64(math.Ceil(need.Seconds())))
	}
}

// agentEnvEnums and agentEnvDurations are the agent's settings whose bad
// value makes it exit 2 at start (a crash-looping pod); a test checks them
// against cmd/meshready's flags.
var (
	agentEnvEnums = map[string][]string{
		"MESHREADY_SIDECAR":          {"auto", "required", "none"},
		"MESHREADY_PILOT_SOURCE":     {"auto", "syncz", "xds", "configdump", "local"},
		"MESHREADY_SYNC_GATE":        {"startup", "always", "off"},
		"MESHREADY_ON_START_TIMEOUT": {"start", "exit"},
		"MESHREADY_LOG_FORMAT":       {"text", "json"},
		"MESHREADY_LOG_LEVEL":        {"debug", "info", "warn", "error"},
		"MESHREADY_OUTPUT":           {"table", "json"},
	}
	agentEnvDurations = map[string]bool{
		"MESHREADY_INTERVAL": true, "MESHREADY_START_TIMEOUT": true, "MESHREADY_STALE_AFTER": true,
		"MESHREADY_TIMEOUT": true, "MESHREADY_DRAIN_MIN": true, "MESHREADY_DRAIN_QUIET": true,
		"MESHREADY_DRAIN_MAX": true, "MESHREADY_GRACE": true, "MESHREADY_TERMINATION_GRACE": true,
		"MESHREADY_WAIT_TIMEOUT": true,
	}
)

// MR123.
func checkAgentEnv(s *Set, _ Options, emit emitter) {
	for _, d := range s.Deployments {
		pod := &d.Spec.Template.Spec
		for _, i := range appContainers(pod) {
			c := &pod.Containers[i]
			for j, e := range c.Env {
				if e.ValueFrom != nil {
					continue
				}
				field := containerField(i, fmt.Sprintf("env[%d].value", j))
				if agentEnvDurations[e.Name] {
					if v, err := time.ParseDuration(e.Value); err != nil || v < 0 {
						emit(d.Obj, field, "%s=%q is not a duration the agent accepts: it exits 2 at start and the pod crash-loops; write a positive duration with its unit, e.g. 20s or 800ms", e.Name, e.Value)
					}
				}
				if allowed, ok := agentEnvEnums[e.Name]; ok && !contains(allowed, e.Value) {
					emit(d.Obj, field, "%s=%q is not one of %s: the agent exits 2 at start and the pod crash-loops", e.Name, e.Value, strings.Join(allowed, ", "))
				}
			}
		}
	}
}

func contains(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}

// MR124: the agent is the image's ENTRYPOINT; command: replaces it, so
// nothing serves :54321 and the pod never turns Ready.
func checkCommand(s *Set, _ Options, emit emitter) {
	for _, d := range s.Deployments {
		pod := &d.Spec.Template.Spec
		for _, i := range appContainers(pod) {
			c := &pod.Containers[i]
			if len(c.Command) == 0 || !runsAgent(c) || strings.Contains(strings.Join(c.Command, " "), "meshready") {
				continue
			}
			emit(d.Obj, containerField(i, "command"), "container %q sets command %q, which replaces the image's ENTRYPOINT (meshready run --): nothing serves :%d and the pod never turns Ready; move it to args", c.Name, strings.Join(c.Command, " "), AgentPort)
		}
	}
}

// MR125: the agent warns at start when drain-max + grace exceed
// --termination-grace; that warning is only as true as the value it is
// given, and the kubelet goes by the pod's own field.
func checkTerminationGraceEnv(s *Set, _ Options, emit emitter) {
	for _, d := range s.Deployments {
		pod := &d.Spec.Template.Spec
		tgp := kubernetesTerminationGrace
		if pod.TerminationGracePeriodSeconds != nil {
			tgp = time.Duration(*pod.TerminationGracePeriodSeconds) * time.Second
		}
		for _, i := range appContainers(pod) {
			c := &pod.Containers[i]
			for j, e := range c.Env {
				if e.Name != "MESHREADY_TERMINATION_GRACE" || e.ValueFrom != nil {
					continue
				}
				if v, err := time.ParseDuration(e.Value); err == nil && v != tgp {
					emit(d.Obj, containerField(i, fmt.Sprintf("env[%d].value", j)), "MESHREADY_TERMINATION_GRACE is %s but the pod's terminationGracePeriodSeconds is %s: the agent checks its drain against the wrong budget; set it to %s", v, tgp, tgp)
				}
			}
		}
	}
}
