package integration

import (
	"bytes"
	"fmt"
	"text/template"
	"time"

	"github.com/meshready/meshready/internal/localcluster"
)

// The greeter on the real control plane: a Service and one Deployment per
// version, as the seed's team writes them (app/version labels, probes on
// the agent's :54321, the image's ENTRYPOINT `meshready run --`), in the
// default namespace with Istio's injection on.
//
// Inside a pod, ports are the production ones on the pod's own IP: the
// sidecar stand-in takes POD_IP:7070 (the Service's targetPort: where
// iptables would hand callers to Envoy) and forwards to the app on
// POD_IP:8080; the agent serves POD_IP:54321 and reads the stand-in's admin
// on POD_IP:15000. (Containers of one pod would share a network namespace
// and 127.0.0.1; here all pods share one, so each binds its pod IP.)

// Images the kubelet stand-in knows: the tag picks what the container runs.
const (
	// ImageMeshready is the greeter built FROM our Go base image: ENTRYPOINT
	// ["/usr/local/bin/meshready", "run", "--"], CMD ["/app/greeter"].
	ImageMeshready = "greeter:v1"
	// ImageNaive is the greeter alone: ENTRYPOINT ["/app/greeter"].
	ImageNaive = "greeter-naive:v1"
)

const greeterService = `apiVersion: v1
kind: Service
metadata:
  name: greeter
  namespace: default
  labels: {app: greeter}
spec:
  selector: {app: greeter}
  ports:
  - {name: grpc, port: 7070, targetPort: 7070, protocol: TCP}
`

// DeploymentSpec is one greeter Deployment.
type DeploymentSpec struct {
	App      string // the app label (default greeter: the Service selects it)
	Name     string // default <app>-<version>
	Version  string // default v1
	Mode     Mode
	Replicas int // default 3
	// GreeterArgs are extra greeter flags (-never-ready, -ignore-sigterm).
	GreeterArgs []string
	// AgentEnv are extra MESHREADY_* settings for `meshready run`.
	AgentEnv map[string]string
	// TerminationGrace is terminationGracePeriodSeconds (default 30s).
	TerminationGrace time.Duration
	// Outbound opens the sidecar stand-in's outbound listener
	// (POD_IP:15001, to the greeter Service): for an app that calls
	// through its sidecar.
	Outbound bool
	// Restarted is the template's restartedAt annotation (what `kubectl
	// rollout restart` writes): change it to roll every pod.
	Restarted string
}

func (s *DeploymentSpec) defaults() {
	if s.App == "" {
		s.App = "greeter"
	}
	if s.Version == "" {
		s.Version = "v1"
	}
	if s.Name == "" {
		s.Name = s.App + "-" + s.Version
	}
	if s.Replicas == 0 {
		s.Replicas = 3
	}
	if s.TerminationGrace == 0 {
		s.TerminationGrace = 30 * time.Second
	}
}

var deploymentTmpl = template.Must(template.New("d").Parse(`apiVersion: apps/v1
kind: Deployment
metadata:
  name: {{.Name}}
  namespace: default
  labels: {app: {{.App}}, version: {{.Version}}}
spec:
  replicas: {{.Replicas}}
  selector:
    matchLabels: {app: {{.App}}, version: {{.Version}}}
  strategy:
    type: RollingUpdate
    rollingUpdate: {maxSurge: 1, maxUnavailable: 0}
  template:
    metadata:
      labels: {app: {{.App}}, version: {{.Version}}}
      annotations:
        kubectl.kubernetes.io/restartedAt: "{{.Restarted}}"
        standin.meshready.io/outbound: "{{.Outbound}}"
    spec:
      terminationGracePeriodSeconds: {{.GraceSeconds}}
      containers:
      - name: greeter
        image: {{.Image}}
        # args replace the image's CMD (Kubernetes' rule): under the
        # meshready ENTRYPOINT the app's path comes first.
        args: [{{if .Meshready}}"/app/greeter", {{end}}"-listen", "$(POD_IP):8080", "-name", "$(POD_NAME)"{{range .GreeterArgs}}, "{{.}}"{{end}}]
        ports:
        - {name: grpc, containerPort: 7070}
{{- if .Meshready}}
        - {name: health, containerPort: 54321}
{{- end}}
        env:
        - name: POD_NAME
          valueFrom: {fieldRef: {fieldPath: metadata.name}}
        - name: POD_NAMESPACE
          valueFrom: {fieldRef: {fieldPath: metadata.namespace}}
        - name: POD_IP
          valueFrom: {fieldRef: {fieldPath: status.podIP}}
{{- if .Meshready}}
        - {name: MESHREADY_LISTEN, value: "$(POD_IP):54321"}
        - {name: MESHREADY_ENVOY_ADMIN, value: "http://$(POD_IP):15000"}
        - {name: MESHREADY_PILOT, value: "{{.Pilot}}"}
        - {name: MESHREADY_APP_READY, value: "grpc://$(POD_IP):8080"}
        - {name: MESHREADY_TERMINATION_GRACE, value: "{{.Grace}}"}
{{- range $k, $v := .AgentEnv}}
        - {name: {{$k}}, value: "{{$v}}"}
{{- end}}
        readinessProbe:
          httpGet: {path: /health, port: 54321}
          periodSeconds: 1
          timeoutSeconds: 1
          failureThreshold: 3
        livenessProbe:
          httpGet: {path: /health/live, port: 54321}
          periodSeconds: 5
          timeoutSeconds: 1
          failureThreshold: 3
        volumeMounts:
        - {name: podinfo, mountPath: /etc/podinfo}
      volumes:
      - name: podinfo
        downwardAPI:
          items:
          - {path: annotations, fieldRef: {fieldPath: metadata.annotations}}
          - {path: labels, fieldRef: {fieldPath: metadata.labels}}
{{- else}}
        readinessProbe:
          grpc: {port: 8080}
          periodSeconds: 1
          timeoutSeconds: 1
          failureThreshold: 3
{{- end}}
`))

// Manifest is the Deployment's YAML.
func (s DeploymentSpec) Manifest() string {
	s.defaults()
	image := ImageNaive
	if s.Mode == MeshReady {
		image = ImageMeshready
	}
	var b bytes.Buffer
	err := deploymentTmpl.Execute(&b, map[string]any{
		"App": s.App, "Name": s.Name, "Version": s.Version, "Outbound": s.Outbound, "Replicas": s.Replicas, "Restarted": s.Restarted,
		"GraceSeconds": int(s.TerminationGrace.Seconds()), "Grace": s.TerminationGrace.String(),
		"Image": image, "Meshready": s.Mode == MeshReady, "GreeterArgs": s.GreeterArgs,
		"AgentEnv": s.AgentEnv, "Pilot": localcluster.IstiodDebugURL,
	})
	if err != nil {
		panic(fmt.Sprintf("deployment template: %v", err)) // a bug in the template, not input
	}
	return b.String()
}

// CallerManifest is a one-replica Deployment whose app's first line is a
// call to the greeter through its own sidecar's outbound listener: the
// start-up race.
func CallerManifest(name string, mode Mode) string {
	return DeploymentSpec{App: name, Name: name, Version: "v1", Mode: mode, Replicas: 1, Outbound: true,
		GreeterArgs: []string{"-call", fmt.Sprintf("$(POD_IP):%d", outboundPort)}}.Manifest()
}
