// Package integration proves meshready against Istio's real discovery server
// (istiod's xDS server, run in-process with a fake Kubernetes client) and a
// data-plane stand-in of ours: a real xDS client that ACKs or NACKs on
// command and answers the Envoy admin endpoints the agent reads. The
// stand-in is not Envoy and is never called so.
//
// It is its own Go module: istio's dependency graph is far too large for the
// agent's module, which must not require it.
package integration

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	discovery "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"google.golang.org/grpc"

	"github.com/meshready/meshready/internal/sidecarstandin"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	networking "istio.io/api/networking/v1alpha3"
	"istio.io/istio/pilot/pkg/features"
	"istio.io/istio/pilot/test/xds"
	"istio.io/istio/pkg/config/schema/gvk"
	istiolog "istio.io/istio/pkg/log"
	"istio.io/istio/pkg/test"
)

// PilotOptions shape the mesh the discovery server serves.
type PilotOptions struct {
	// Pods is how many app pods (app-1 … app-N, IPs 10.0.0.1 …) back the
	// Service "app" in namespace default; default 2.
	Pods int
	// DebounceAfter is Pilot's push debounce; default 100ms, istiod's
	// PILOT_DEBOUNCE_AFTER default (the fake's own default is 0).
	DebounceAfter time.Duration
	// DisableDebugEndpointAuth runs Pilot as with ENABLE_DEBUG_ENDPOINT_AUTH=false,
	// so the xDS debug type istio.io/debug/syncz answers on plaintext. The
	// flag is a process-wide variable in istio: Pilots that disagree on it
	// must not run at the same time.
	DisableDebugEndpointAuth bool
	// EndpointsNotReady starts every app endpoint not ready (a rollout: the
	// pods exist, their readiness probes have not passed yet); flip them
	// with SetEndpointReady, as the endpoint controller would.
	EndpointsNotReady bool
	// ExtraKubeObjects are more Kubernetes objects (YAML) for the fake
	// client, e.g. the local mesh's Service greeter (GreeterKubeObjects).
	ExtraKubeObjects string
}

// Pilot is Istio's discovery server (xds.FakeDiscoveryServer: the real push,
// ack and syncz logic over a fake Kubernetes client) served as istiod serves
// it: ADS over gRPC on 127.0.0.1:<port>, and Pilot's own debug handlers
// (/debug/syncz, /debug/config_dump, …, with istiod's
// allow-authenticated-or-localhost wrapper) over HTTP on 127.0.0.1:<port>.
//
// Every request that reaches the debug HTTP server, and every xDS request
// for an istio.io/debug/* type, is counted: that is how the load on Pilot is
// measured.
type Pilot struct {
	Fake *xds.FakeDiscoveryServer

	xdsAddr   string
	debugAddr string
	debugMux  *http.ServeMux

	mu       sync.Mutex
	grpcSrv  *grpc.Server
	httpSrv  *http.Server
	forced   map[string]int // path → status code answered instead of Pilot's handler
	counts   map[string]int64
	bytes    int64
	bumps    int
	hang     chan struct{} // non-nil: debug requests block until it closes
	stopping bool

	xdsStreams atomic.Int64

	pods    int
	sliceMu sync.Mutex // serialises SetEndpointReady's read-modify-write
}

// StartPilot starts the discovery server and its two listeners. Everything
// stops when t's cleanups run.
func StartPilot(t test.Failer, o PilotOptions) *Pilot {
	t.Helper()
	quietIstioLogs()
	if o.Pods <= 0 {
		o.Pods = 2
	}
	if o.DebounceAfter == 0 {
		o.DebounceAfter = 100 * time.Millisecond
	}
	if o.DisableDebugEndpointAuth {
		prev := features.EnableDebugEndpointAuth
		features.EnableDebugEndpointAuth = false
		t.Cleanup(func() { features.EnableDebugEndpointAuth = prev })
	}
	fake := xds.NewFakeDiscoveryServer(t, xds.FakeOptions{
		KubernetesObjectString: kubeObjects(o.Pods, !o.EndpointsNotReady) + o.ExtraKubeObjects,
		ConfigString:           meshConfigYAML,
		DebounceTime:           o.DebounceAfter,
	})
	p := &Pilot{Fake: fake, forced: map[string]int{}, counts: map[string]int64{}, pods: o.Pods}

	// istiod serves these handlers on :15014 (and :8080) wrapped in
	// allowAuthenticatedOrLocalhost; the fake only keeps the unwrapped
	// internal mux, so build the served one the way istiod does.
	p.debugMux = http.NewServeMux()
	fake.Discovery.AddDebugHandlers(p.debugMux, nil, false, func() map[string]string { return nil })

	xl, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("xDS listener: %v", err)
	}
	hl, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("debug listener: %v", err)
	}
	p.xdsAddr, p.debugAddr = xl.Addr().String(), hl.Addr().String()
	p.serveXDS(xl)
	p.serveDebug(hl)
	t.Cleanup(p.shutdown)
	return p
}

// XDSAddr is host:port of ADS (istiod's 15010, plaintext).
func (p *Pilot) XDSAddr() string { return p.xdsAddr }

// DebugURL is the debug HTTP base, e.g. http://127.0.0.1:40123 (istiod's 15014).
func (p *Pilot) DebugURL() string { return "http://" + p.debugAddr }

// GRPCURL is the xDS address in --pilot's form, grpc://127.0.0.1:PORT.
func (p *Pilot) GRPCURL() string { return "grpc://" + p.xdsAddr }

func (p *Pilot) serveXDS(l net.Listener) {
	srv := grpc.NewServer(grpc.StreamInterceptor(p.countStream))
	p.Fake.Discovery.Register(srv)
	p.mu.Lock()
	p.grpcSrv = srv
	p.mu.Unlock()
	go func() { _ = srv.Serve(l) }()
}

func (p *Pilot) serveDebug(l net.Listener) {
	srv := &http.Server{Handler: http.HandlerFunc(p.debugHandler), ReadHeaderTimeout: 5 * time.Second}
	p.mu.Lock()
	p.httpSrv = srv
	p.mu.Unlock()
	go func() { _ = srv.Serve(l) }()
}

func (p *Pilot) shutdown() {
	p.mu.Lock()
	p.stopping = true
	g, h := p.grpcSrv, p.httpSrv
	p.grpcSrv, p.httpSrv = nil, nil
	if p.hang != nil {
		close(p.hang)
		p.hang = nil
	}
	p.mu.Unlock()
	if h != nil {
		_ = h.Close()
	}
	if g != nil {
		g.Stop()
	}
}

// debugHandler counts the request, then applies the switches, then hands it
// to Pilot's own handler.
func (p *Pilot) debugHandler(w http.ResponseWriter, r *http.Request) {
	p.mu.Lock()
	p.counts["http "+r.URL.Path]++
	code := p.forced[r.URL.Path]
	hang := p.hang
	p.mu.Unlock()
	if hang != nil {
		select {
		case <-hang:
		case <-r.Context().Done():
			return
		}
	}
	if code != 0 {
		// istiod writes the status with no body (allowAuthenticatedOrLocalhost).
		w.WriteHeader(code)
		return
	}
	cw := &countingWriter{ResponseWriter: w}
	p.debugMux.ServeHTTP(cw, r)
	p.mu.Lock()
	p.bytes += cw.n
	p.mu.Unlock()
}

type countingWriter struct {
	http.ResponseWriter
	n int64
}

func (c *countingWriter) Write(b []byte) (int, error) {
	n, err := c.ResponseWriter.Write(b)
	c.n += int64(n)
	return n, err
}

// countStream counts xDS requests for Pilot's debug types.
func (p *Pilot) countStream(srv any, ss grpc.ServerStream, _ *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
	p.xdsStreams.Add(1)
	return handler(srv, &countedStream{ServerStream: ss, p: p})
}

type countedStream struct {
	grpc.ServerStream
	p *Pilot
}

func (c *countedStream) RecvMsg(m any) error {
	err := c.ServerStream.RecvMsg(m)
	if err == nil {
		if req, ok := m.(*discovery.DiscoveryRequest); ok && strings.HasPrefix(req.GetTypeUrl(), "istio.io/debug") {
			c.p.mu.Lock()
			c.p.counts["xds "+req.GetTypeUrl()]++
			c.p.mu.Unlock()
		}
	}
	return err
}

// DebugRequests snapshots the counter of requests that reached Pilot's
// debug HTTP server (whatever the answer, forced ones included) and its xDS
// debug types.
func (p *Pilot) DebugRequests() Counts {
	p.mu.Lock()
	defer p.mu.Unlock()
	c := make(Counts, len(p.counts))
	for k, v := range p.counts {
		c[k] = v
	}
	return c
}

// DebugBytes is how many body bytes Pilot's debug handlers have written.
func (p *Pilot) DebugBytes() int64 {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.bytes
}

// XDSStreams counts gRPC streams opened on the xDS port (proxies and debug
// clients alike).
func (p *Pilot) XDSStreams() int64 { return p.xdsStreams.Load() }

// ForceStatus makes Pilot answer path (e.g. "/debug/syncz") with code and no
// body, as istiod does for a caller it refuses (403 from a pod's namespace
// under ENABLE_DEBUG_ENDPOINT_AUTH). 0 restores Pilot's own handler. The
// request is still counted: it reached Pilot.
func (p *Pilot) ForceStatus(path string, code int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if code == 0 {
		delete(p.forced, path)
		return
	}
	p.forced[path] = code
}

// Hang makes debug HTTP requests block (Pilot overloaded) until Unhang or
// the caller gives up.
func (p *Pilot) Hang() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.hang == nil && !p.stopping {
		p.hang = make(chan struct{})
	}
}

// Unhang releases hung requests.
func (p *Pilot) Unhang() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.hang != nil {
		close(p.hang)
		p.hang = nil
	}
}

// StopDebugHTTP closes the debug HTTP listener and its connections: the
// port refuses connections, as when istiod is gone.
func (p *Pilot) StopDebugHTTP() {
	p.mu.Lock()
	h := p.httpSrv
	p.httpSrv = nil
	p.mu.Unlock()
	if h != nil {
		_ = h.Close()
	}
}

// StartDebugHTTP serves the debug HTTP port again, on the same address.
func (p *Pilot) StartDebugHTTP() error {
	p.mu.Lock()
	running := p.httpSrv != nil || p.stopping
	p.mu.Unlock()
	if running {
		return nil
	}
	l, err := listenAgain(p.debugAddr)
	if err != nil {
		return err
	}
	p.serveDebug(l)
	return nil
}

// StopXDS stops the gRPC server: every ADS stream ends, the port refuses
// connections.
func (p *Pilot) StopXDS() {
	p.mu.Lock()
	g := p.grpcSrv
	p.grpcSrv = nil
	p.mu.Unlock()
	if g != nil {
		g.Stop()
	}
}

// StartXDS serves ADS again on the same address; proxies reconnect.
func (p *Pilot) StartXDS() error {
	p.mu.Lock()
	running := p.grpcSrv != nil || p.stopping
	p.mu.Unlock()
	if running {
		return nil
	}
	l, err := listenAgain(p.xdsAddr)
	if err != nil {
		return err
	}
	p.serveXDS(l)
	return nil
}

// Stop is istiod gone: both ports closed.
func (p *Pilot) Stop() {
	p.StopDebugHTTP()
	p.StopXDS()
}

// Start is istiod back on the same addresses.
func (p *Pilot) Start() error {
	return errors.Join(p.StartXDS(), p.StartDebugHTTP())
}

func listenAgain(addr string) (net.Listener, error) {
	var err error
	for range 50 {
		var l net.Listener
		if l, err = net.Listen("tcp", addr); err == nil {
			return l, nil
		}
		time.Sleep(20 * time.Millisecond)
	}
	return nil, fmt.Errorf("listen again on %s: %w", addr, err)
}

// PushVersion is the version of Pilot's current push context: what
// version_info its next (or last) push carries, and what its
// /debug/config_dump reports.
func (p *Pilot) PushVersion() string {
	if pc := p.Fake.Discovery.Env.PushContext(); pc != nil {
		return pc.PushVersion
	}
	return ""
}

// Bump changes mesh config so Pilot pushes a new version to every sidecar:
// the ServiceEntry bump.example.com moves to another port, which changes
// clusters (CDS), listeners (LDS) and routes (RDS). Pilot pushes after its
// debounce. It returns when the change was handed to Pilot.
func (p *Pilot) Bump() (time.Time, error) {
	store := p.Fake.Store()
	cur := store.Get(gvk.ServiceEntry, "bump", "default")
	if cur == nil {
		return time.Time{}, errors.New("ServiceEntry default/bump not found")
	}
	p.mu.Lock()
	p.bumps++
	n := p.bumps
	p.mu.Unlock()
	next := cur.DeepCopy()
	se := next.Spec.(*networking.ServiceEntry)
	se.Ports[0].Number = uint32(10000 + n)
	se.Ports[0].Name = fmt.Sprintf("http-bump-%d", n)
	next.ResourceVersion = ""
	at := time.Now()
	if _, err := store.Update(next); err != nil {
		return time.Time{}, fmt.Errorf("update ServiceEntry default/bump: %w", err)
	}
	return at, nil
}

// SetEndpointReady marks pod's endpoint in the app EndpointSlice ready or
// not, as Kubernetes does when its readiness probe passes or fails: Pilot
// sends every sidecar an EDS push (after its debounce).
func (p *Pilot) SetEndpointReady(ctx context.Context, pod string, ready bool) error {
	p.sliceMu.Lock()
	defer p.sliceMu.Unlock()
	slices := p.Fake.KubeClient().Kube().DiscoveryV1().EndpointSlices("default")
	es, err := slices.Get(ctx, "app-slice", metav1.GetOptions{})
	if err != nil {
		return err
	}
	es = es.DeepCopy()
	found := false
	for i := range es.Endpoints {
		if ref := es.Endpoints[i].TargetRef; ref != nil && ref.Name == pod {
			es.Endpoints[i].Conditions.Ready = &ready
			found = true
		}
	}
	if !found {
		return fmt.Errorf("no endpoint for pod %s in default/app-slice", pod)
	}
	_, err = slices.Update(ctx, es, metav1.UpdateOptions{})
	return err
}

// Syncz is Pilot's own /debug/syncz (every connected proxy), read through
// Pilot's internal mux, which istiod never serves: not counted as load.
func (p *Pilot) Syncz(ctx context.Context) ([]byte, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "/debug/syncz", nil)
	if err != nil {
		return nil, err
	}
	rec := &memWriter{h: http.Header{}}
	p.Fake.DiscoveryDebug.ServeHTTP(rec, req)
	if rec.code != 0 && rec.code != http.StatusOK {
		return nil, fmt.Errorf("internal /debug/syncz: %d", rec.code)
	}
	return rec.b, nil
}

type memWriter struct {
	h    http.Header
	b    []byte
	code int
}

func (m *memWriter) Header() http.Header { return m.h }
func (m *memWriter) Write(b []byte) (int, error) {
	m.b = append(m.b, b...)
	return len(b), nil
}
func (m *memWriter) WriteHeader(code int) { m.code = code }

var quietOnce sync.Once

// quietIstioLogs keeps istiod's info logs out of test output; set
// ISTIO_LOG=error (or info, debug) to see them.
func quietIstioLogs() {
	quietOnce.Do(func() {
		o := istiolog.DefaultOptions()
		level := istiolog.NoneLevel
		if v := os.Getenv("ISTIO_LOG"); v != "" {
			level = istiolog.StringToLevel(v)
		}
		o.SetDefaultOutputLevel("all", level)
		_ = istiolog.Configure(o)
	})
}

// meshConfigYAML is the Istio config the mesh starts with. The ServiceEntry
// is what Bump edits.
const meshConfigYAML = `
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata:
  name: bump
  namespace: default
spec:
  hosts:
  - bump.example.com
  location: MESH_EXTERNAL
  ports:
  - number: 10000
    name: http-bump-0
    protocol: HTTP
  resolution: DNS
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata:
  name: backend
  namespace: default
spec:
  hosts:
  - backend.default.svc.cluster.local
  http:
  - timeout: 5s
    route:
    - destination:
        host: backend.default.svc.cluster.local
`

// PodIP is app-n's address: 10.0.0.n for n ≤ 254, then 10.0.1.x, ….
func PodIP(n int) string { return sidecarstandin.PodIP(n) }

// KubeObjects is the Kubernetes side of the mesh: Service app (port 8080)
// backed by pods app-1 … app-n, and Service backend (port 9080) backed by
// backend-1, all in namespace default, with EndpointSlices as the
// endpoint controller would write them.
func KubeObjects(n int) string { return kubeObjects(n, true) }

func kubeObjects(n int, ready bool) string {
	var b strings.Builder
	svc := func(name, ip string, port int) {
		fmt.Fprintf(&b, `---
apiVersion: v1
kind: Service
metadata:
  name: %[1]s
  namespace: default
  labels:
    app: %[1]s
spec:
  clusterIP: %[2]s
  selector:
    app: %[1]s
  ports:
  - name: http
    port: %[3]d
    targetPort: %[3]d
    protocol: TCP
`, name, ip, port)
	}
	pod := func(name, app, ip string, port int) {
		fmt.Fprintf(&b, `---
apiVersion: v1
kind: Pod
metadata:
  name: %[1]s
  namespace: default
  labels:
    app: %[2]s
    version: v1
  annotations:
    sidecar.istio.io/status: '{"containers":["istio-proxy"]}'
spec:
  serviceAccountName: default
  nodeName: node-1
  containers:
  - name: %[2]s
    image: example/%[2]s
    ports:
    - containerPort: %[4]d
      name: http
status:
  phase: Running
  podIP: %[3]s
  podIPs:
  - ip: %[3]s
  conditions:
  - type: Ready
    status: "True"
`, name, app, ip, port)
	}
	slice := func(svcName string, port int, pods []string, ips []string, ready bool) {
		fmt.Fprintf(&b, `---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: %[1]s-slice
  namespace: default
  labels:
    kubernetes.io/service-name: %[1]s
addressType: IPv4
ports:
- name: http
  port: %[2]d
  protocol: TCP
endpoints:
`, svcName, port)
		for i := range pods {
			fmt.Fprintf(&b, `- addresses:
  - %s
  conditions:
    ready: %t
  targetRef:
    kind: Pod
    name: %s
    namespace: default
`, ips[i], ready, pods[i])
		}
	}
	svc("app", "10.96.0.10", 8080)
	svc("backend", "10.96.0.11", 9080)
	var pods, ips []string
	for i := 1; i <= n; i++ {
		name := fmt.Sprintf("app-%d", i)
		pod(name, "app", PodIP(i), 8080)
		pods, ips = append(pods, name), append(ips, PodIP(i))
	}
	pod("backend-1", "backend", "10.1.0.1", 9080)
	slice("app", 8080, pods, ips, ready)
	slice("backend", 9080, []string{"backend-1"}, []string{"10.1.0.1"}, true)
	return b.String()
}
