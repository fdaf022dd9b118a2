package integration

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// The local mesh: Istio's real discovery server, pods of the greeter gRPC
// service each made of a data-plane stand-in (the sidecar: ADS client,
// admin API, inbound and outbound listeners) and a main process (the
// greeter alone, or the greeter under `meshready run`), a kubelet-like
// readiness prober and an endpoints controller that edit the fake
// Kubernetes client as Kubernetes would, so that Pilot pushes real EDS.
//
// Every pod has its own loopback address (127.1.x.y): its ports are the
// production ones — app 8080, inbound 7070 (the Service's targetPort, where
// iptables would send traffic to Envoy), outbound 15001, stand-in admin
// 15000, agent 54321 — and its agent's endpoints answer on localhost while
// the mesh runs.

// The greeter Service as Pilot knows it.
const (
	GreeterHost    = "greeter.default.svc.cluster.local"
	GreeterPort    = 7070
	GreeterCluster = "outbound|7070||greeter.default.svc.cluster.local"
	greeterSlice   = "greeter-slice"
	appPort        = 8080
	agentPort      = 54321
	outboundPort   = 15001
	adminPort      = 15000
)

// GreeterKubeObjects is the greeter Service and its (empty) EndpointSlice:
// pass it as PilotOptions.ExtraKubeObjects; pods come and go with StartPod.
const GreeterKubeObjects = `
---
apiVersion: v1
kind: Service
metadata:
  name: greeter
  namespace: default
  labels:
    app: greeter
spec:
  clusterIP: 10.96.0.12
  selector:
    app: greeter
  ports:
  - name: grpc
    port: 7070
    targetPort: 7070
    protocol: TCP
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: greeter-slice
  namespace: default
  labels:
    kubernetes.io/service-name: greeter
addressType: IPv4
ports:
- name: grpc
  port: 7070
  protocol: TCP
endpoints: []
`

// Mode is how a pod's main process is started.
type Mode int

const (
	// Naive starts the app as the container's entrypoint, probed directly
	// (kubelet's gRPC probe on the app's port); SIGTERM reaches it at once.
	Naive Mode = iota
	// MeshReady starts it under `meshready run`, probed on the agent's
	// /health.
	MeshReady
)

func (m Mode) String() string { return [...]string{"naive", "meshready"}[m] }

// MeshOptions configure a local mesh.
type MeshOptions struct {
	Pilot      *Pilot
	Agent      string // the meshready binary
	Greeter    string // the greeter binary
	Out        io.Writer
	ProbeEvery time.Duration // kubelet's periodSeconds; default 1s, kubelet's minimum
	// Verbose copies every process's output to Out (prefixed by pod).
	Verbose bool
	// EndpointLag delays every EndpointSlice edit: the time Kubernetes
	// takes from a pod's change (probe result, deletion) to the
	// EndpointSlice istiod watches (kubelet → API server → EndpointSlice
	// controller → istiod's informer). Zero here is the floor; a busy
	// cluster takes longer. Edits keep their order.
	EndpointLag time.Duration
}

// LocalMesh runs pods against one Pilot.
type LocalMesh struct {
	o     MeshOptions
	start time.Time

	mu   sync.Mutex
	pods []*Pod

	edits chan sliceEdit // EndpointLag > 0: applied in order, each when due
	stop  chan struct{}
}

type sliceEdit struct {
	due  time.Time
	what string
	edit func(*discoveryv1.EndpointSlice)
}

// NewLocalMesh needs a Pilot started with GreeterKubeObjects.
func NewLocalMesh(o MeshOptions) *LocalMesh {
	if o.Out == nil {
		o.Out = io.Discard
	}
	if o.ProbeEvery == 0 {
		o.ProbeEvery = time.Second
	}
	m := &LocalMesh{o: o, start: time.Now(), edits: make(chan sliceEdit, 4096), stop: make(chan struct{})}
	if o.EndpointLag > 0 {
		go m.applyEdits()
	}
	return m
}

func (m *LocalMesh) applyEdits() {
	for {
		select {
		case <-m.stop:
			return
		case e := <-m.edits:
			select {
			case <-m.stop:
				return
			case <-time.After(time.Until(e.due)):
			}
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			if err := m.applySlice(ctx, e.edit); err != nil {
				m.Logf("endpoints controller: %s: %v", e.what, err)
			}
			cancel()
		}
	}
}

// Logf writes one timestamped line of narration.
func (m *LocalMesh) Logf(format string, args ...any) {
	fmt.Fprintf(m.o.Out, "%s  %s\n", time.Now().Format("15:04:05.000"), fmt.Sprintf(format, args...))
}

// PodSpec is one pod of the greeter Deployment.
type PodSpec struct {
	Name string
	Mode Mode
	// GreeterArgs are extra greeter flags (-never-ready, -ignore-sigterm, -call).
	GreeterArgs []string
	// AgentArgs are extra `meshready run` flags (MeshReady only).
	AgentArgs []string
	// SidecarSlow keeps the stand-in sitting on Pilot's responses this
	// long (a sidecar slow to start: nothing applied, no listeners).
	SidecarSlow time.Duration
	// Outbound opens the stand-in's outbound listener (IP:15001) to the
	// greeter Service, for an app that calls through its sidecar.
	Outbound bool
	// CallAtBoot makes the app's first line a call to the greeter Service
	// through this pod's outbound listener (implies Outbound): the
	// start-up race.
	CallAtBoot bool
	// NotInService keeps the pod out of the greeter EndpointSlice (a
	// client pod of another Deployment).
	NotInService bool
	// TerminationGrace is the pod's terminationGracePeriodSeconds: after
	// it, "kubelet" SIGKILLs the main process; default 30s.
	TerminationGrace time.Duration
	// SidecarDrain is how long the sidecar keeps its listeners open after
	// the app has exited: as a native sidecar (Kubernetes ≥ 1.29, Istio's
	// ENABLE_NATIVE_SIDECARS) it is stopped only after the app containers,
	// and Istio's agent then drains Envoy for terminationDrainDuration
	// (default 5s). Callers whose proxies have not caught up are answered
	// by it, with no app behind it. Default 5s; negative: none.
	SidecarDrain time.Duration
	// OnLine, when set, gets each line the pod's processes write.
	OnLine func(line string)
}

// Pod is a running pod.
type Pod struct {
	m       *LocalMesh
	Spec    PodSpec
	IP      string
	Sidecar *DataPlane

	cmd      *exec.Cmd
	exited   chan struct{}
	gone     chan struct{} // sidecar stopped, endpoint and Pod object removed
	killed   chan struct{}
	killOnce sync.Once
	exitCode int
	exitAt   time.Time
	delMu    sync.Mutex
	deleted  time.Time
	output   syncBuffer

	readyCh   chan struct{}
	readyOnce sync.Once
	ready     atomic.Bool
	deleting  chan struct{}
	delOnce   sync.Once
	probeConn *grpc.ClientConn
}

var podIPs atomic.Int32

// nextPodIP hands out 127.1.x.y, unique in the process.
func nextPodIP() string {
	n := podIPs.Add(1)
	return fmt.Sprintf("127.1.%d.%d", n/250, n%250+1)
}

// AgentURL is the agent's base URL (MeshReady pods).
func (p *Pod) AgentURL() string { return fmt.Sprintf("http://%s:%d", p.IP, agentPort) }

// InboundAddr is where callers reach the pod (the endpoint Pilot sends).
func (p *Pod) InboundAddr() string { return fmt.Sprintf("%s:%d", p.IP, GreeterPort) }

// OutboundAddr is the stand-in's outbound listener.
func (p *Pod) OutboundAddr() string { return fmt.Sprintf("%s:%d", p.IP, outboundPort) }

// Output is what the pod's processes wrote.
func (p *Pod) Output() string { return p.output.String() }

// StartPod creates the pod: the Pod object and a not-ready endpoint (as the
// endpoints controller does for a running pod), the sidecar stand-in, the
// main process, and the readiness prober.
func (m *LocalMesh) StartPod(spec PodSpec) (*Pod, error) {
	if spec.TerminationGrace == 0 {
		spec.TerminationGrace = 30 * time.Second
	}
	if spec.SidecarDrain == 0 {
		spec.SidecarDrain = 5 * time.Second
	}
	p := &Pod{m: m, Spec: spec, IP: nextPodIP(), exited: make(chan struct{}), gone: make(chan struct{}),
		readyCh: make(chan struct{}), deleting: make(chan struct{}), killed: make(chan struct{})}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := m.createPodObject(ctx, p); err != nil {
		return nil, fmt.Errorf("pod %s: %w", spec.Name, err)
	}
	if !spec.NotInService {
		if err := m.writeEndpoint(ctx, p, false, false); err != nil {
			return nil, fmt.Errorf("pod %s endpoint: %w", spec.Name, err)
		}
	}
	mode := AckAll
	if spec.SidecarSlow > 0 {
		mode = Freeze
	}
	dp, err := StartDataPlane(DataPlaneOptions{
		Pilot: m.o.Pilot.XDSAddr(), Pod: spec.Name, IP: p.IP, Mode: mode,
		Labels:    map[string]string{"app": "greeter", "version": "v1"},
		AdminAddr: fmt.Sprintf("%s:%d", p.IP, adminPort),
	})
	if err != nil {
		if errors.Is(err, syscall.EADDRINUSE) {
			err = fmt.Errorf("%w (is another make demo or make integration running? pods use 127.1.x.y)", err)
		}
		return nil, fmt.Errorf("pod %s sidecar: %w", spec.Name, err)
	}
	p.Sidecar = dp
	if spec.SidecarSlow > 0 {
		time.AfterFunc(spec.SidecarSlow, func() { dp.SetMode(AckAll) })
	}
	if err := dp.ServeInbound(p.InboundAddr(), fmt.Sprintf("%s:%d", p.IP, appPort)); err != nil {
		dp.Close()
		return nil, err
	}
	if spec.Outbound || spec.CallAtBoot {
		if err := dp.ServeOutbound(p.OutboundAddr(), GreeterCluster); err != nil {
			dp.Close()
			return nil, err
		}
	}

	greeter := append([]string{m.o.Greeter, "-listen", fmt.Sprintf("%s:%d", p.IP, appPort), "-name", spec.Name}, spec.GreeterArgs...)
	if spec.CallAtBoot {
		greeter = append(greeter, "-call", p.OutboundAddr())
	}
	argv := greeter
	if spec.Mode == MeshReady {
		argv = append([]string{m.o.Agent, "run",
			"--listen", fmt.Sprintf("%s:%d", p.IP, agentPort),
			"--envoy-admin", "http://" + fmt.Sprintf("%s:%d", p.IP, adminPort),
			"--sidecar", "required",
			"--pilot", m.o.Pilot.DebugURL(),
			"--app-ready", fmt.Sprintf("grpc://%s:%d", p.IP, appPort),
			"--termination-grace", spec.TerminationGrace.String(),
		}, spec.AgentArgs...)
		argv = append(append(argv, "--"), greeter...)
	}
	if spec.Mode == Naive && !spec.NotInService {
		// kubelet's gRPC probe of the app's port (grpc.NewClient does not
		// dial until used).
		conn, err := grpc.NewClient(fmt.Sprintf("%s:%d", p.IP, appPort), grpc.WithTransportCredentials(insecure.NewCredentials()))
		if err != nil {
			dp.Close()
			return nil, fmt.Errorf("pod %s probe: %w", spec.Name, err)
		}
		p.probeConn = conn
	}
	p.cmd = exec.Command(argv[0], argv[1:]...)
	p.cmd.Env = append(os.Environ(), "POD_NAME="+spec.Name, "POD_NAMESPACE=default")
	// Its own process group (kubelet's SIGKILL takes the app too); and it
	// dies with the test or demo, even a SIGKILLed one, so no agent is left
	// holding the pod's ports.
	p.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	outs := []io.Writer{&p.output}
	if m.o.Verbose {
		outs = append(outs, &lineWriter{fn: func(l string) { fmt.Fprintf(m.o.Out, "    %s | %s\n", spec.Name, l) }})
	}
	if spec.OnLine != nil {
		outs = append(outs, &lineWriter{fn: spec.OnLine})
	}
	out := io.MultiWriter(outs...)
	p.cmd.Stdout, p.cmd.Stderr = out, out
	if err := p.cmd.Start(); err != nil {
		dp.Close()
		return nil, fmt.Errorf("pod %s: %w", spec.Name, err)
	}
	m.mu.Lock()
	m.pods = append(m.pods, p)
	m.mu.Unlock()
	go p.wait()
	if !spec.NotInService {
		go p.kubelet()
	}
	return p, nil
}

func (p *Pod) wait() {
	err := p.cmd.Wait()
	p.exitCode = exitCode(p.cmd.ProcessState, err)
	p.exitAt = time.Now()
	close(p.exited)
	if p.probeConn != nil {
		_ = p.probeConn.Close()
	}
	// The sidecar outlives the app by its drain (see SidecarDrain); then
	// the pod is gone: sidecar, endpoint, Pod object.
	if p.Spec.SidecarDrain > 0 {
		select {
		case <-time.After(p.Spec.SidecarDrain):
		case <-p.killed:
		}
	}
	defer close(p.gone)
	p.Sidecar.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if !p.Spec.NotInService {
		_ = p.m.removeEndpoint(ctx, p)
	}
	_ = p.m.o.Pilot.Fake.KubeClient().Kube().CoreV1().Pods("default").Delete(ctx, p.Spec.Name, metav1.DeleteOptions{})
}

func exitCode(ps *os.ProcessState, err error) int {
	if ps == nil {
		return -1
	}
	if ws, ok := ps.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
		return 128 + int(ws.Signal())
	}
	if err != nil && ps.ExitCode() < 0 {
		return -1
	}
	return ps.ExitCode()
}

// kubelet probes readiness every ProbeEvery as kubelet does (timeout 1s,
// successThreshold 1, failureThreshold 3) and writes the endpoint's ready
// condition when it changes. It stops when the pod is deleted: from then on
// the endpoint is terminating whatever the probe says.
func (p *Pod) kubelet() {
	tick := time.NewTicker(p.m.o.ProbeEvery)
	defer tick.Stop()
	fails := 0
	for {
		ok, why := p.probe()
		select {
		case <-p.deleting:
			return
		case <-p.exited:
			return
		default:
		}
		switch {
		case ok:
			fails = 0
			if !p.ready.Load() {
				p.setReady(true, why)
			}
		default:
			fails++
			if p.ready.Load() && fails >= 3 {
				p.setReady(false, why)
			}
		}
		select {
		case <-p.deleting:
			return
		case <-p.exited:
			return
		case <-tick.C:
		}
	}
}

func (p *Pod) setReady(ready bool, why string) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := p.m.writeEndpoint(ctx, p, ready, false); err != nil {
		p.m.Logf("%s: endpoint update failed: %v", p.Spec.Name, err)
		return
	}
	p.ready.Store(ready)
	if ready {
		p.m.Logf("%-10s readiness probe passed (%s): endpoint ready, Pilot pushes EDS", p.Spec.Name, why)
		p.readyOnce.Do(func() { close(p.readyCh) })
	} else {
		p.m.Logf("%-10s readiness probe failed 3 times (%s): endpoint not ready", p.Spec.Name, why)
	}
}

var probeClient = &http.Client{Timeout: time.Second, Transport: &http.Transport{DisableKeepAlives: true}}

// probe is the pod's readinessProbe: httpGet :54321/health for MeshReady,
// grpc on the app's port for Naive.
func (p *Pod) probe() (bool, string) {
	if p.Spec.Mode == MeshReady {
		resp, err := probeClient.Get(p.AgentURL() + "/health")
		if err != nil {
			return false, "GET /health: no answer"
		}
		_ = resp.Body.Close()
		return resp.StatusCode == http.StatusOK, fmt.Sprintf("GET /health %d", resp.StatusCode)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	resp, err := healthpb.NewHealthClient(p.probeConn).Check(ctx, &healthpb.HealthCheckRequest{})
	if err != nil {
		return false, "grpc health: no answer"
	}
	return resp.GetStatus() == healthpb.HealthCheckResponse_SERVING, "grpc health " + resp.GetStatus().String()
}

// WaitReady waits until the endpoint is ready, the pod exits, or d passes.
func (p *Pod) WaitReady(d time.Duration) error {
	select {
	case <-p.readyCh:
		return nil
	case <-p.exited:
		return fmt.Errorf("%s exited with code %d before it was ready", p.Spec.Name, p.exitCode)
	case <-time.After(d):
		return fmt.Errorf("%s not ready after %s", p.Spec.Name, d)
	}
}

// Delete is `kubectl delete pod` with the Deployment controller's timing:
// the endpoint turns terminating (Pilot pushes EDS without it) and the main
// process gets SIGTERM at the same moment; after TerminationGrace it is
// SIGKILLed. Delete does not wait; Exited does.
func (p *Pod) Delete() {
	p.delOnce.Do(func() {
		p.delMu.Lock()
		p.deleted = time.Now()
		p.delMu.Unlock()
		close(p.deleting)
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if !p.Spec.NotInService {
			if err := p.m.writeEndpoint(ctx, p, false, true); err != nil {
				p.m.Logf("%s: endpoint update failed: %v", p.Spec.Name, err)
			}
		}
		_ = p.cmd.Process.Signal(syscall.SIGTERM)
		go func() {
			select {
			case <-p.exited:
			case <-time.After(p.Spec.TerminationGrace):
				p.m.Logf("%-10s terminationGracePeriod over: SIGKILL", p.Spec.Name)
				_ = syscall.Kill(-p.cmd.Process.Pid, syscall.SIGKILL)
			}
		}()
	})
}

// Exited is closed when the main process has exited.
func (p *Pod) Exited() <-chan struct{} { return p.exited }

// ExitCode is the main process's exit code (128+n for signal n), valid
// after Exited.
func (p *Pod) ExitCode() int { return p.exitCode }

// DeletedAt is when Delete was called.
func (p *Pod) DeletedAt() time.Time {
	p.delMu.Lock()
	defer p.delMu.Unlock()
	return p.deleted
}

// StoppedAfter is the time from Delete to exit, valid after Exited.
func (p *Pod) StoppedAfter() time.Duration { return p.exitAt.Sub(p.DeletedAt()) }

// Gone is closed when the whole pod is gone (the sidecar too).
func (p *Pod) Gone() <-chan struct{} { return p.gone }

// Kill ends the pod at once, sidecar included (cleanup).
func (p *Pod) Kill() {
	p.killOnce.Do(func() { close(p.killed) })
	select {
	case <-p.exited:
	default:
		_ = syscall.Kill(-p.cmd.Process.Pid, syscall.SIGKILL)
	}
	<-p.gone
}

// Close kills every pod still running.
func (m *LocalMesh) Close() {
	m.mu.Lock()
	pods := append([]*Pod(nil), m.pods...)
	m.mu.Unlock()
	for _, p := range pods {
		p.Kill()
	}
	select {
	case <-m.stop:
	default:
		close(m.stop)
	}
}

func (m *LocalMesh) createPodObject(ctx context.Context, p *Pod) error {
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{
			Name: p.Spec.Name, Namespace: "default",
			Labels:      map[string]string{"app": "greeter", "version": "v1"},
			Annotations: map[string]string{"sidecar.istio.io/status": `{"containers":["istio-proxy"]}`},
		},
		Spec: corev1.PodSpec{
			ServiceAccountName: "default", NodeName: "node-1",
			Containers: []corev1.Container{{Name: "greeter", Image: "example/greeter",
				Ports: []corev1.ContainerPort{{ContainerPort: GreeterPort, Name: "grpc"}}}},
		},
		Status: corev1.PodStatus{
			Phase: corev1.PodRunning, PodIP: p.IP, PodIPs: []corev1.PodIP{{IP: p.IP}},
			Conditions: []corev1.PodCondition{{Type: corev1.PodReady, Status: corev1.ConditionTrue}},
		},
	}
	if p.Spec.NotInService {
		pod.Labels["app"] = "client"
	}
	_, err := m.o.Pilot.Fake.KubeClient().Kube().CoreV1().Pods("default").Create(ctx, pod, metav1.CreateOptions{})
	return err
}

// writeEndpoint upserts the pod's endpoint in the greeter EndpointSlice, as
// the endpoints controller does: ready follows the readiness probe; a
// deleted pod is terminating and not ready (serving keeps the last
// readiness).
func (m *LocalMesh) writeEndpoint(ctx context.Context, p *Pod, ready, terminating bool) error {
	serving := ready
	if terminating {
		serving = p.ready.Load()
	}
	what := fmt.Sprintf("%s ready=%t terminating=%t", p.Spec.Name, ready, terminating)
	return m.editSlice(ctx, what, func(es *discoveryv1.EndpointSlice) {
		ep := discoveryv1.Endpoint{
			Addresses:  []string{p.IP},
			Conditions: discoveryv1.EndpointConditions{Ready: &ready, Serving: &serving, Terminating: &terminating},
			TargetRef:  &corev1.ObjectReference{Kind: "Pod", Name: p.Spec.Name, Namespace: "default"},
		}
		for i := range es.Endpoints {
			if r := es.Endpoints[i].TargetRef; r != nil && r.Name == p.Spec.Name {
				es.Endpoints[i] = ep
				return
			}
		}
		es.Endpoints = append(es.Endpoints, ep)
	})
}

func (m *LocalMesh) removeEndpoint(ctx context.Context, p *Pod) error {
	return m.editSlice(ctx, p.Spec.Name+" removed", func(es *discoveryv1.EndpointSlice) {
		kept := es.Endpoints[:0]
		for _, ep := range es.Endpoints {
			if r := ep.TargetRef; r == nil || r.Name != p.Spec.Name {
				kept = append(kept, ep)
			}
		}
		es.Endpoints = kept
	})
}

// editSlice applies edit to the greeter EndpointSlice now, or after
// EndpointLag (then errors are logged, not returned).
func (m *LocalMesh) editSlice(ctx context.Context, what string, edit func(*discoveryv1.EndpointSlice)) error {
	if m.o.EndpointLag <= 0 {
		return m.applySlice(ctx, edit)
	}
	select {
	case m.edits <- sliceEdit{due: time.Now().Add(m.o.EndpointLag), what: what, edit: edit}:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (m *LocalMesh) applySlice(ctx context.Context, edit func(*discoveryv1.EndpointSlice)) error {
	pl := m.o.Pilot
	pl.sliceMu.Lock()
	defer pl.sliceMu.Unlock()
	slices := pl.Fake.KubeClient().Kube().DiscoveryV1().EndpointSlices("default")
	es, err := slices.Get(ctx, greeterSlice, metav1.GetOptions{})
	if err != nil {
		return fmt.Errorf("EndpointSlice default/%s: %w (start Pilot with GreeterKubeObjects)", greeterSlice, err)
	}
	es = es.DeepCopy()
	edit(es)
	_, err = slices.Update(ctx, es, metav1.UpdateOptions{})
	return err
}

// Replacement is one step of a rollout.
type Replacement struct {
	Old, New      string
	Drain         string        // how the old pod's agent ended its drain (MeshReady), from its log
	NewReadyAfter time.Duration // StartPod → endpoint ready
	OldExit       int           // the old main process's exit code
	OldStopped    time.Duration // Delete → exit
}

// Killed says the old pod's app was SIGKILLed (exit 137).
func (r Replacement) Killed() bool { return r.OldExit == 128+int(syscall.SIGKILL) }

// RolloutReport is what a rolling restart did.
type RolloutReport struct {
	Steps []Replacement
	Took  time.Duration
	// Stopped is why the rollout stopped early (a new pod never ready).
	Stopped error
	// PilotRequests counts the debug requests (syncz, config_dump, xDS
	// debug types) Pilot received during the rollout: the agents' load.
	PilotRequests int64
}

// Kills counts old pods whose app had to be SIGKILLed.
func (r RolloutReport) Kills() int {
	n := 0
	for _, s := range r.Steps {
		if s.Killed() {
			n++
		}
	}
	return n
}

// Rollout replaces each old pod in turn as a Deployment with maxSurge 1,
// maxUnavailable 0 does: start the new pod, wait until its endpoint is
// ready (at most readyTimeout, else the rollout stops and the old pod
// stays), delete the old pod, go on without waiting for it to stop. It
// returns when every deleted pod has exited. The hooks, when set, run
// before each step's new pod starts and before its old pod is deleted (a
// scenario's bad condition).
type RolloutHooks struct {
	BeforeStart, BeforeDelete func(i int)
}

func (m *LocalMesh) Rollout(old []*Pod, next func(i int) PodSpec, readyTimeout time.Duration, hooks RolloutHooks) (RolloutReport, []*Pod) {
	began := time.Now()
	pilotBefore := m.o.Pilot.DebugRequests()
	var rep RolloutReport
	var fresh []*Pod
	var deleted []*Pod
	for i, o := range old {
		if hooks.BeforeStart != nil {
			hooks.BeforeStart(i)
		}
		spec := next(i)
		m.Logf("%-10s starting (%s), to replace %s", spec.Name, spec.Mode, o.Spec.Name)
		t0 := time.Now()
		n, err := m.StartPod(spec)
		if err != nil {
			rep.Stopped = err
			break
		}
		fresh = append(fresh, n)
		if err := n.WaitReady(readyTimeout); err != nil {
			rep.Stopped = fmt.Errorf("rollout stopped: %w; %s keeps serving", err, o.Spec.Name)
			m.Logf("%-10s %v", spec.Name, rep.Stopped)
			break
		}
		rep.Steps = append(rep.Steps, Replacement{Old: o.Spec.Name, New: spec.Name, NewReadyAfter: time.Since(t0)})
		if hooks.BeforeDelete != nil {
			hooks.BeforeDelete(i)
		}
		m.Logf("%-10s deleted: endpoint terminating + SIGTERM", o.Spec.Name)
		o.Delete()
		deleted = append(deleted, o)
	}
	for i, o := range deleted {
		<-o.Exited()
		rep.Steps[i].OldExit, rep.Steps[i].OldStopped = o.ExitCode(), o.StoppedAfter()
		drain := ""
		if mm := drainEnded.FindStringSubmatch(o.Output()); mm != nil {
			rep.Steps[i].Drain = mm[1] + " after " + mm[2]
			drain = " (drain ended: " + rep.Steps[i].Drain + ")"
		}
		m.Logf("%-10s exited %d, %s after SIGTERM%s", o.Spec.Name, o.ExitCode(), o.StoppedAfter().Round(time.Millisecond), drain)
	}
	rep.Took = time.Since(began)
	rep.PilotRequests = m.o.Pilot.DebugRequests().Sub(pilotBefore).Total()
	return rep, fresh
}

// drainEnded reads the agent's "drain ended" log line (text format).
var drainEnded = regexp.MustCompile(`drain ended.* why=(\S+).* took=(\S+)`)

// lineWriter hands each whole line written to fn.
type lineWriter struct {
	mu  sync.Mutex
	fn  func(line string)
	buf []byte
}

func (l *lineWriter) Write(b []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.buf = append(l.buf, b...)
	for {
		i := bytes.IndexByte(l.buf, '\n')
		if i < 0 {
			return len(b), nil
		}
		l.fn(string(l.buf[:i]))
		l.buf = l.buf[i+1:]
	}
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.b.Len() > 1<<20 { // keep the head and stop: enough to say why
		return len(p), nil
	}
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// BuildBinaries builds the agent (in the repository root, its own module,
// with the shipped binary's flags: Makefile's build) and the greeter (in
// this module) into dir. integrationDir is this module's directory.
func BuildBinaries(integrationDir, dir string) (agent, greeterBin string, err error) {
	agent, greeterBin = filepath.Join(dir, "meshready"), filepath.Join(dir, "greeter")
	if err := goBuild(filepath.Join(integrationDir, ".."), agent, "./cmd/meshready"); err != nil {
		return "", "", err
	}
	if err := goBuild(integrationDir, greeterBin, "./cmd/greeter"); err != nil {
		return "", "", err
	}
	return agent, greeterBin, nil
}

// goBuild builds pkg (in module directory wd) as a static stripped binary.
func goBuild(wd, out, pkg string) error {
	cmd := exec.Command("go", "build", "-trimpath", "-ldflags=-s -w", "-o", out, pkg)
	cmd.Dir = wd
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if b, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("go build %s (in %s): %v\n%s", pkg, wd, err, b)
	}
	return nil
}
