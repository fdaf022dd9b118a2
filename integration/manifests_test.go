package integration

// The Kubernetes examples in images/k8s and the base images' defaults in
// images/*/Dockerfile, checked against each other and against the agent.
// Kubernetes types are used here only: the agent's binary never imports them.

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"sigs.k8s.io/yaml"
)

// manifestDefaults is what a container gets when its pod spec does not set
// the variable: the base image's ENV (images/go/Dockerfile), which
// TestBaseImageDefaults checks against the agent's own defaults.
type manifestDefaults struct {
	Listen, Podinfo            string
	DrainMin, DrainMax, Grace  time.Duration
	TerminationGrace           time.Duration
	KubernetesTerminationGrace time.Duration // a pod spec without terminationGracePeriodSeconds
}

const (
	agentReadyPath = "/health"
	agentLivePath  = "/health/live"
	agentBinary    = "/usr/local/bin/meshready"
)

// Istio's protocol selection by port name: <protocol>[-<suffix>]
// (https://istio.io/latest/docs/ops/configuration/traffic-management/protocol-selection/).
var istioPortProtocols = map[string]bool{
	"http": true, "http2": true, "https": true, "grpc": true, "grpc-web": true, "tcp": true, "tls": true,
	"udp": true, "mongo": true, "mysql": true, "redis": true,
}

func istioPortNameOK(name string) bool {
	if istioPortProtocols[name] || strings.HasPrefix(name, "grpc-web-") {
		return true
	}
	proto, _, _ := strings.Cut(name, "-")
	return istioPortProtocols[proto]
}

// manifestSet is every object decoded from a set of YAML documents.
type manifestSet struct {
	Deployments []*appsv1.Deployment
	Services    []*corev1.Service
}

// decodeManifests decodes YAML documents ("---"-separated) strictly: an
// unknown or duplicated field is an error, as is a kind the checks don't know.
func decodeManifests(name string, data []byte, into *manifestSet) error {
	for i, doc := range regexp.MustCompile(`(?m)^---\s*$`).Split(string(data), -1) {
		if strings.TrimSpace(regexp.MustCompile(`(?m)^\s*#.*$`).ReplaceAllString(doc, "")) == "" {
			continue
		}
		var tm metav1.TypeMeta
		if err := yaml.Unmarshal([]byte(doc), &tm); err != nil {
			return fmt.Errorf("%s: document %d: %v", name, i+1, err)
		}
		switch tm.APIVersion + " " + tm.Kind {
		case "apps/v1 Deployment":
			var d appsv1.Deployment
			if err := yaml.UnmarshalStrict([]byte(doc), &d); err != nil {
				return fmt.Errorf("%s: document %d (Deployment): %v", name, i+1, err)
			}
			into.Deployments = append(into.Deployments, &d)
		case "v1 Service":
			var s corev1.Service
			if err := yaml.UnmarshalStrict([]byte(doc), &s); err != nil {
				return fmt.Errorf("%s: document %d (Service): %v", name, i+1, err)
			}
			into.Services = append(into.Services, &s)
		default:
			return fmt.Errorf("%s: document %d: %q %q is not a kind this test checks (add it to decodeManifests)", name, i+1, tm.APIVersion, tm.Kind)
		}
	}
	return nil
}

// checkManifests returns every way the set breaks the conventions; none is ok.
func checkManifests(set *manifestSet, def manifestDefaults) []string {
	var problems []string
	bad := func(format string, args ...any) { problems = append(problems, fmt.Sprintf(format, args...)) }
	if len(set.Deployments) == 0 {
		bad("no Deployment")
	}
	for _, d := range set.Deployments {
		for _, p := range checkDeployment(d, def) {
			bad("Deployment %s: %s", d.Name, p)
		}
	}
	for _, s := range set.Services {
		for _, p := range checkService(s, set.Deployments) {
			bad("Service %s: %s", s.Name, p)
		}
	}
	return problems
}

func checkDeployment(d *appsv1.Deployment, def manifestDefaults) []string {
	var problems []string
	bad := func(format string, args ...any) { problems = append(problems, fmt.Sprintf(format, args...)) }
	pod := &d.Spec.Template
	for _, where := range []struct {
		name   string
		labels map[string]string
	}{{"metadata.labels", d.Labels}, {"spec.template.metadata.labels", pod.Labels}} {
		for _, l := range []string{"app", "version"} {
			if where.labels[l] == "" {
				bad("%s: no %q label", where.name, l)
			}
		}
	}
	if d.Spec.Selector == nil || len(d.Spec.Selector.MatchLabels) == 0 {
		bad("spec.selector.matchLabels is empty")
	} else {
		for k, v := range d.Spec.Selector.MatchLabels {
			if pod.Labels[k] != v {
				bad("spec.selector.matchLabels %s=%s does not match the pod template's labels", k, v)
			}
		}
	}

	volumes := map[string]corev1.Volume{}
	for _, v := range pod.Spec.Volumes {
		volumes[v.Name] = v
	}
	tgps := def.KubernetesTerminationGrace
	if pod.Spec.TerminationGracePeriodSeconds != nil {
		tgps = time.Duration(*pod.Spec.TerminationGracePeriodSeconds) * time.Second
	}
	if len(pod.Spec.Containers) == 0 {
		bad("no containers")
	}
	for i := range pod.Spec.Containers {
		c := &pod.Spec.Containers[i]
		for _, p := range checkAgentContainer(c, pod, volumes, tgps, def) {
			bad("container %s: %s", c.Name, p)
		}
	}
	return problems
}

// checkAgentContainer checks a container whose image has the agent as its
// ENTRYPOINT (every container of these examples).
func checkAgentContainer(c *corev1.Container, pod *corev1.PodTemplateSpec, volumes map[string]corev1.Volume, tgps time.Duration, def manifestDefaults) []string {
	var problems []string
	bad := func(format string, args ...any) { problems = append(problems, fmt.Sprintf(format, args...)) }

	env := map[string]corev1.EnvVar{}
	for _, e := range c.Env {
		env[e.Name] = e
	}
	value := func(name, dflt string) string {
		e, ok := env[name]
		if !ok {
			return dflt
		}
		if e.ValueFrom != nil {
			bad("env %s comes from valueFrom: its value cannot be checked here", name)
			return dflt
		}
		return e.Value
	}
	duration := func(name string, dflt time.Duration) time.Duration {
		v := value(name, "")
		if v == "" {
			return dflt
		}
		d, err := time.ParseDuration(v)
		if err != nil {
			bad("env %s=%q: %v", name, v, err)
			return dflt
		}
		return d
	}

	if len(c.Command) > 0 && c.Command[0] != agentBinary {
		bad("command %q replaces the image's ENTRYPOINT (%s run --): set args instead", c.Command, agentBinary)
	}

	// The agent's port, and the probes on it.
	listen := value("MESHREADY_LISTEN", def.Listen)
	_, portText, err := splitHostPortLoose(listen)
	agentPort, perr := strconv.Atoi(portText)
	if err != nil || perr != nil {
		bad("MESHREADY_LISTEN=%q has no port", listen)
	}
	checkProbe := func(kind string, p *corev1.Probe, path string) {
		switch {
		case p == nil:
			bad("no %s", kind)
		case p.HTTPGet == nil:
			bad("%s is not an httpGet", kind)
		default:
			if p.HTTPGet.Path != path {
				bad("%s path %q, want %q", kind, p.HTTPGet.Path, path)
			}
			if port, ok := resolvePort(p.HTTPGet.Port, c); !ok {
				bad("%s port %s names no port of the container", kind, p.HTTPGet.Port.String())
			} else if port != agentPort {
				bad("%s port %d, want the agent's port %d", kind, port, agentPort)
			}
			if p.HTTPGet.Scheme != "" && p.HTTPGet.Scheme != corev1.URISchemeHTTP {
				bad("%s scheme %s, want HTTP", kind, p.HTTPGet.Scheme)
			}
		}
	}
	checkProbe("readinessProbe", c.ReadinessProbe, agentReadyPath)
	checkProbe("livenessProbe", c.LivenessProbe, agentLivePath)
	for _, p := range c.Ports {
		if p.Name != "" && !istioPortNameOK(p.Name) {
			bad("port name %q does not start with a protocol (http-, grpc-, tcp-, ...)", p.Name)
		}
	}

	// Identity for Pilot: POD_NAME and POD_NAMESPACE from the Downward API.
	for name, field := range map[string]string{"POD_NAME": "metadata.name", "POD_NAMESPACE": "metadata.namespace"} {
		e, ok := env[name]
		if !ok || e.ValueFrom == nil || e.ValueFrom.FieldRef == nil || e.ValueFrom.FieldRef.FieldPath != field {
			bad("env %s must come from fieldRef %s", name, field)
		}
	}

	// The Downward API volume the agent reads (annotations: is there a sidecar).
	podinfo := value("MESHREADY_PODINFO", def.Podinfo)
	mounted := false
	for _, m := range c.VolumeMounts {
		if filepath.Clean(m.MountPath) != filepath.Clean(podinfo) {
			continue
		}
		mounted = true
		v, ok := volumes[m.Name]
		if !ok || v.DownwardAPI == nil {
			bad("the volume at %s is not a downwardAPI volume", podinfo)
			break
		}
		items := map[string]string{}
		for _, it := range v.DownwardAPI.Items {
			if it.FieldRef != nil {
				items[it.Path] = it.FieldRef.FieldPath
			}
		}
		for path, field := range map[string]string{"annotations": "metadata.annotations", "labels": "metadata.labels"} {
			if items[path] != field {
				bad("downwardAPI volume %s: no item %s from %s", v.Name, path, field)
			}
		}
	}
	if !mounted {
		bad("no volume mounted at %s (the Downward API podinfo)", podinfo)
	}

	// The drain budget.
	drainMin := duration("MESHREADY_DRAIN_MIN", def.DrainMin)
	drainMax := duration("MESHREADY_DRAIN_MAX", def.DrainMax)
	grace := duration("MESHREADY_GRACE", def.Grace)
	if drainMin > drainMax {
		bad("drain-min %s > drain-max %s", drainMin, drainMax)
	}
	if drainMax+grace > tgps {
		bad("drain-max %s + grace %s = %s exceeds terminationGracePeriodSeconds %s: the kubelet would SIGKILL mid-drain", drainMax, grace, drainMax+grace, tgps)
	}
	if tg := duration("MESHREADY_TERMINATION_GRACE", def.TerminationGrace); tg != tgps {
		bad("MESHREADY_TERMINATION_GRACE %s differs from terminationGracePeriodSeconds %s", tg, tgps)
	}
	// Without native sidecars, Istio's agent stops Envoy terminationDrainDuration
	// after SIGTERM: it must outlast the app's drain and grace.
	if cfg, ok := pod.Annotations["proxy.istio.io/config"]; ok {
		var pc struct {
			TerminationDrainDuration string `json:"terminationDrainDuration"`
		}
		if err := yaml.Unmarshal([]byte(cfg), &pc); err != nil {
			bad("annotation proxy.istio.io/config: %v", err)
		} else if pc.TerminationDrainDuration != "" {
			tdd, err := time.ParseDuration(pc.TerminationDrainDuration)
			switch {
			case err != nil:
				bad("proxy.istio.io/config terminationDrainDuration %q: %v", pc.TerminationDrainDuration, err)
			case tdd < drainMax+grace:
				bad("proxy.istio.io/config terminationDrainDuration %s < drain-max + grace %s: Envoy would stop before the app", tdd, drainMax+grace)
			}
		}
	}
	return problems
}

// splitHostPortLoose splits ":54321" and "127.0.0.1:54321" alike.
func splitHostPortLoose(listen string) (host, port string, err error) {
	i := strings.LastIndex(listen, ":")
	if i < 0 {
		return "", "", fmt.Errorf("no port in %q", listen)
	}
	return listen[:i], listen[i+1:], nil
}

// resolvePort turns a probe's or Service's port (a number or a port name) into
// the container's port number.
func resolvePort(p intstr.IntOrString, c *corev1.Container) (int, bool) {
	if p.Type == intstr.Int {
		return p.IntValue(), true
	}
	for _, cp := range c.Ports {
		if cp.Name == p.StrVal {
			return int(cp.ContainerPort), true
		}
	}
	return 0, false
}

func checkService(s *corev1.Service, deployments []*appsv1.Deployment) []string {
	var problems []string
	bad := func(format string, args ...any) { problems = append(problems, fmt.Sprintf(format, args...)) }
	if s.Labels["app"] == "" {
		bad(`metadata.labels: no "app" label`)
	}
	if s.Spec.Selector["app"] == "" {
		bad(`spec.selector: no "app"`)
	}
	if _, ok := s.Spec.Selector["version"]; ok {
		bad(`spec.selector has "version": a Service spans the versions Istio routes between`)
	}
	var selected []*appsv1.Deployment
	for _, d := range deployments {
		match := len(s.Spec.Selector) > 0
		for k, v := range s.Spec.Selector {
			if d.Spec.Template.Labels[k] != v {
				match = false
			}
		}
		if match {
			selected = append(selected, d)
		}
	}
	if len(selected) == 0 {
		bad("selects no Deployment's pods")
	}
	if len(s.Spec.Ports) == 0 {
		bad("no ports")
	}
	for _, p := range s.Spec.Ports {
		if p.AppProtocol == nil && !istioPortNameOK(p.Name) {
			bad("port %d: name %q does not start with a protocol (grpc-, http-, tcp-, ...) and no appProtocol", p.Port, p.Name)
		}
		target := p.TargetPort
		if target.Type == intstr.Int && target.IntVal == 0 {
			target = intstr.FromInt32(p.Port)
		}
		for _, d := range selected {
			found := false
			for i := range d.Spec.Template.Spec.Containers {
				c := &d.Spec.Template.Spec.Containers[i]
				port, ok := resolvePort(target, c)
				for _, cp := range c.Ports {
					if ok && int(cp.ContainerPort) == port {
						found = true
					}
				}
			}
			if !found {
				bad("port %s: targetPort %s is no container port of Deployment %s", p.Name, target.String(), d.Name)
			}
		}
	}
	return problems
}

// baseImageEnv reads the MESHREADY_* defaults a base image's Dockerfile sets
// with ENV, and its ENTRYPOINT, USER and EXPOSE lines.
func baseImageEnv(t *testing.T, dockerfile string) (env map[string]string, entrypoint, user, expose string) {
	t.Helper()
	data, err := os.ReadFile(dockerfile)
	if err != nil {
		t.Fatal(err)
	}
	// Join continuation lines, drop comments.
	text := regexp.MustCompile(`\\\n\s*`).ReplaceAllString(string(data), "")
	env = map[string]string{}
	for _, line := range strings.Split(text, "\n") {
		line = strings.TrimSpace(line)
		switch {
		case strings.HasPrefix(line, "ENV "):
			for _, kv := range strings.Fields(strings.TrimPrefix(line, "ENV ")) {
				if k, v, ok := strings.Cut(kv, "="); ok && strings.HasPrefix(k, "MESHREADY_") {
					env[k] = v
				}
			}
		case strings.HasPrefix(line, "ENTRYPOINT "):
			entrypoint = strings.TrimPrefix(line, "ENTRYPOINT ")
		case strings.HasPrefix(line, "USER "):
			user = strings.TrimPrefix(line, "USER ")
		case strings.HasPrefix(line, "EXPOSE "):
			expose = strings.TrimPrefix(line, "EXPOSE ")
		}
	}
	return env, entrypoint, user, expose
}

// imageDefaults is the Go base's ENV: what the example Deployment (an app on
// the Go base) gets for what it does not set.
func imageDefaults(t *testing.T) manifestDefaults {
	t.Helper()
	env, _, _, _ := baseImageEnv(t, "../images/go/Dockerfile")
	dur := func(name string) time.Duration {
		d, err := time.ParseDuration(env[name])
		if err != nil {
			t.Fatalf("images/go/Dockerfile: ENV %s=%q: %v", name, env[name], err)
		}
		return d
	}
	return manifestDefaults{
		Listen:                     env["MESHREADY_LISTEN"],
		Podinfo:                    env["MESHREADY_PODINFO"],
		DrainMin:                   dur("MESHREADY_DRAIN_MIN"),
		DrainMax:                   dur("MESHREADY_DRAIN_MAX"),
		Grace:                      dur("MESHREADY_GRACE"),
		TerminationGrace:           dur("MESHREADY_TERMINATION_GRACE"),
		KubernetesTerminationGrace: 30 * time.Second,
	}
}

// TestManifests: every file in images/k8s decodes strictly into k8s.io/api
// types and keeps the conventions: probes on the agent's port and paths, the
// drain inside the grace period, podinfo, identity, labels, port names.
func TestManifests(t *testing.T) {
	files, err := filepath.Glob("../images/k8s/*.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if len(files) == 0 {
		t.Fatal("no manifests in images/k8s")
	}
	var set manifestSet
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		if err := decodeManifests(f, data, &set); err != nil {
			t.Fatal(err)
		}
	}
	if len(set.Services) == 0 {
		t.Error("no Service in images/k8s")
	}
	for _, p := range checkManifests(&set, imageDefaults(t)) {
		t.Error(p)
	}
	t.Logf("%d Deployment(s), %d Service(s) from %d files", len(set.Deployments), len(set.Services), len(files))
}

// manifestOK is a small Deployment and Service that keep every convention; the
// table below breaks one thing at a time.
const manifestOK = `
apiVersion: apps/v1
kind: Deployment
metadata:
  name: shop
  labels: {app: shop, version: v2}
spec:
  selector:
    matchLabels: {app: shop, version: v2}
  template:
    metadata:
      labels: {app: shop, version: v2}
    spec:
      terminationGracePeriodSeconds: 40
      containers:
      - name: app
        image: registry.example/shop:2
        args: ["/app/shop"]
        ports:
        - {name: http-web, containerPort: 8080}
        - {name: http-meshready, containerPort: 54321}
        env:
        - {name: MESHREADY_DRAIN_MAX, value: 25s}
        - {name: MESHREADY_TERMINATION_GRACE, value: 40s}
        - name: POD_NAME
          valueFrom: {fieldRef: {fieldPath: metadata.name}}
        - name: POD_NAMESPACE
          valueFrom: {fieldRef: {fieldPath: metadata.namespace}}
        readinessProbe:
          httpGet: {path: /health, port: 54321}
        livenessProbe:
          httpGet: {path: /health/live, port: http-meshready}
        volumeMounts:
        - {name: podinfo, mountPath: /etc/podinfo}
      volumes:
      - name: podinfo
        downwardAPI:
          items:
          - {path: annotations, fieldRef: {fieldPath: metadata.annotations}}
          - {path: labels, fieldRef: {fieldPath: metadata.labels}}
---
apiVersion: v1
kind: Service
metadata:
  name: shop
  labels: {app: shop}
spec:
  selector: {app: shop}
  ports:
  - {name: http-web, port: 80, targetPort: http-web}
`

// TestManifestChecks: the checks TestManifests relies on do catch what they
// are for (a check that never fails proves nothing).
func TestManifestChecks(t *testing.T) {
	def := imageDefaults(t)
	for _, tc := range []struct {
		name      string
		old, new  string // replaced once in manifestOK ("" = as is)
		want      string // in a problem or the decode error; "" = no problem
		wantCount int
	}{
		{name: "ok"},
		{name: "readiness probe on the app's port", old: "httpGet: {path: /health, port: 54321}", new: "httpGet: {path: /health, port: 8080}", want: "readinessProbe port 8080, want the agent's port 54321"},
		{name: "readiness probe on an unknown port name", old: "httpGet: {path: /health, port: 54321}", new: "httpGet: {path: /health, port: http-nope}", want: "readinessProbe port http-nope names no port"},
		{name: "agent moved but probes not", old: "- {name: MESHREADY_DRAIN_MAX, value: 25s}", new: "- {name: MESHREADY_DRAIN_MAX, value: 25s}\n        - {name: MESHREADY_LISTEN, value: ':9000'}", want: "want the agent's port 9000", wantCount: 2},
		{name: "liveness on the readiness path", old: "path: /health/live", new: "path: /health", want: `livenessProbe path "/health", want "/health/live"`},
		{name: "drain longer than the grace period", old: "{name: MESHREADY_DRAIN_MAX, value: 25s}", new: "{name: MESHREADY_DRAIN_MAX, value: 35s}", want: "drain-max 35s + grace 10s = 45s exceeds terminationGracePeriodSeconds 40s"},
		{name: "default grace period too short", old: "      terminationGracePeriodSeconds: 40\n", new: "", want: "exceeds terminationGracePeriodSeconds 30s"},
		{name: "termination-grace flag out of step", old: "{name: MESHREADY_TERMINATION_GRACE, value: 40s}", new: "{name: MESHREADY_TERMINATION_GRACE, value: 30s}", want: "MESHREADY_TERMINATION_GRACE 30s differs"},
		{name: "Envoy stops before the app", old: "      labels: {app: shop, version: v2}\n    spec:", new: "      labels: {app: shop, version: v2}\n      annotations: {proxy.istio.io/config: '{\"terminationDrainDuration\": \"5s\"}'}\n    spec:", want: "terminationDrainDuration 5s < drain-max + grace 35s"},
		{name: "no podinfo volume", old: "        - {name: podinfo, mountPath: /etc/podinfo}\n", new: "", want: "no volume mounted at /etc/podinfo"},
		{name: "podinfo without labels", old: "          - {path: labels, fieldRef: {fieldPath: metadata.labels}}\n", new: "", want: "no item labels from metadata.labels"},
		{name: "POD_NAMESPACE as a literal", old: "valueFrom: {fieldRef: {fieldPath: metadata.namespace}}", new: "value: default", want: "env POD_NAMESPACE must come from fieldRef metadata.namespace"},
		{name: "command bypasses the agent", old: `args: ["/app/shop"]`, new: `command: ["/app/shop"]`, want: "replaces the image's ENTRYPOINT"},
		{name: "no version label", old: "  labels: {app: shop, version: v2}\nspec:", new: "  labels: {app: shop}\nspec:", want: `metadata.labels: no "version" label`},
		{name: "Service port without protocol", old: "- {name: http-web, port: 80, targetPort: http-web}", new: "- {name: web, port: 80, targetPort: http-web}", want: `name "web" does not start with a protocol`},
		{name: "Service selects a version", old: "selector: {app: shop}", new: "selector: {app: shop, version: v2}", want: `spec.selector has "version"`},
		{name: "Service targets no container port", old: "targetPort: http-web}", new: "targetPort: 9999}", want: "targetPort 9999 is no container port"},
		{name: "unknown field (strict decoding)", old: "readinessProbe:", new: "readinesProbe:", want: `unknown field "readinesProbe"`},
		{name: "duplicate field (strict decoding)", old: "        args: [\"/app/shop\"]\n", new: "        args: [\"/app/shop\"]\n        args: [\"/app/other\"]\n", want: "already set in map"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			doc := manifestOK
			if tc.old != "" {
				if !strings.Contains(doc, tc.old) {
					t.Fatalf("the case does not apply: %q is not in manifestOK", tc.old)
				}
				doc = strings.Replace(doc, tc.old, tc.new, 1)
			}
			var set manifestSet
			var problems []string
			if err := decodeManifests(tc.name, []byte(doc), &set); err != nil {
				problems = []string{err.Error()}
			} else {
				problems = checkManifests(&set, def)
			}
			if tc.want == "" {
				for _, p := range problems {
					t.Errorf("unexpected problem: %s", p)
				}
				return
			}
			n := 0
			for _, p := range problems {
				if strings.Contains(p, tc.want) {
					n++
				}
			}
			want := max(tc.wantCount, 1)
			if n != want {
				t.Errorf("want %d problem(s) containing %q, got %d in:\n  %s", want, tc.want, n, strings.Join(problems, "\n  "))
			}
		})
	}
}

// imageChoices are the base images' deliberate departures from the agent's
// defaults: JSON logs, for the cluster's log pipeline.
var imageChoices = map[string]string{"MESHREADY_LOG_FORMAT": "json"}

// TestBaseImageDefaults: the base images spell out the agent's own defaults
// (so "defaults through ENV" says what the binary would do anyway, and the
// manifest checks above use the right numbers), agree with each other, and
// wrap the app with the agent on its port as a non-root user.
func TestBaseImageDefaults(t *testing.T) {
	needAgent(t)
	out, err := exec.Command(agentBin, "run", "--help").CombinedOutput()
	if err != nil {
		t.Fatalf("meshready run --help: %v\n%s", err, out)
	}
	help := string(out)
	flagDefault := func(flag string) string {
		m := regexp.MustCompile(`--` + regexp.QuoteMeta(flag) + `="?([^"\s]*)"?\s`).FindStringSubmatch(help)
		if m == nil {
			t.Fatalf("meshready run --help shows no default for --%s", flag)
		}
		return m[1]
	}
	var first map[string]string
	for _, lang := range []string{"go", "python", "java"} {
		f := "../images/" + lang + "/Dockerfile"
		env, entrypoint, user, expose := baseImageEnv(t, f)
		if entrypoint != `["/usr/local/bin/meshready", "run", "--"]` {
			t.Errorf("%s: ENTRYPOINT %s, want [\"/usr/local/bin/meshready\", \"run\", \"--\"]", f, entrypoint)
		}
		if user == "" || strings.HasPrefix(user, "0") || strings.HasPrefix(user, "root") {
			t.Errorf("%s: USER %q, want a non-root user", f, user)
		}
		if expose != "54321" {
			t.Errorf("%s: EXPOSE %q, want 54321", f, expose)
		}
		if len(env) == 0 {
			t.Errorf("%s: no MESHREADY_* ENV", f)
		}
		for k, v := range env {
			if imageChoices[k] == v {
				continue
			}
			flag := strings.ReplaceAll(strings.ToLower(strings.TrimPrefix(k, "MESHREADY_")), "_", "-")
			if d := flagDefault(flag); d != v {
				t.Errorf("%s: ENV %s=%s, but the agent's default for --%s is %s", f, k, v, flag, d)
			}
		}
		if first == nil {
			first = env
		} else if fmt.Sprint(env) != fmt.Sprint(first) {
			t.Errorf("%s: MESHREADY_* ENV %v differs from images/go's %v", f, env, first)
		}
	}
}
