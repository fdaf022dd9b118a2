package integration

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	statuspb "github.com/envoyproxy/go-control-plane/envoy/service/status/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/resolver"
	xdsgrpc "google.golang.org/grpc/xds" // registers the xds resolver and balancers
	"google.golang.org/grpc/xds/csds"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/meshready/meshready/api/v1alpha1"
	"github.com/meshready/meshready/integration/greeter"
	"github.com/meshready/meshready/internal/localcluster"
	"github.com/meshready/meshready/release"
)

// The release side on the local mesh: the shop service (its own Service,
// DestinationRule and VirtualService, as the seed's team writes them), the
// release controller as its own process (`meshrelease controller`, killed
// and restarted by the tests), and proxyless gRPC callers under steady
// load. One caller uses grpc-go's default xDS client, so grpc-go's own CSDS
// dump shows what it holds: the tests read it the moment a gate opens.

const (
	ShopHost = "shop.default.svc.cluster.local"
	shopPort = 7070
)

const shopObjects = `apiVersion: v1
kind: Service
metadata: {name: shop, namespace: default, labels: {app: shop}}
spec:
  selector: {app: shop}
  ports:
  - {name: grpc, port: 7070, targetPort: 7070, protocol: TCP}
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: shop, namespace: default}
spec:
  host: shop
  subsets:
  - name: v1
    labels: {version: v1}
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: shop, namespace: default}
spec:
  hosts: [shop]
  http:
  - name: default
    timeout: 10s
    retries: {attempts: 2, retryOn: cancelled}
    route:
    - destination: {host: shop, subset: v1}
`

// ReleaseMesh is the shop service, its callers and the controller.
type ReleaseMesh struct {
	M      *ClusterMesh
	Client client.Client
	dir    string
	bin    string

	mu          sync.Mutex
	ctrl        *exec.Cmd
	ctrlDone    chan struct{}
	metricsAddr string
}

// StartReleaseMesh installs the Release CRD and the shop objects, deploys
// shop-v1 and starts the controller.
func StartReleaseMesh(ctx context.Context, m *ClusterMesh, dir string) (*ReleaseMesh, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	bin := filepath.Join(dir, "meshrelease")
	if err := goBuild("..", bin, "./cmd/meshrelease"); err != nil {
		return nil, err
	}
	if _, err := m.Cluster.Kubectl(ctx, nil, "apply", "-f", filepath.Join("..", "config", "crd", "bases", "meshready.io_releases.yaml")); err != nil {
		return nil, err
	}
	if _, err := m.Cluster.Kubectl(ctx, nil, "wait", "--for=condition=Established", "--timeout=30s", "crd/releases.meshready.io"); err != nil {
		return nil, err
	}
	if _, err := m.Cluster.Kubectl(ctx, nil, "create", "namespace", "meshready-system"); err != nil && !strings.Contains(err.Error(), "AlreadyExists") {
		return nil, err
	}
	scheme, err := release.Scheme()
	if err != nil {
		return nil, err
	}
	c, err := client.New(m.Cluster.REST, client.Options{Scheme: scheme})
	if err != nil {
		return nil, err
	}
	if err := m.Cluster.Apply(ctx, shopObjects); err != nil {
		return nil, err
	}
	if err := m.Deploy(ctx, ShopSpec("v1"), 90*time.Second); err != nil {
		return nil, err
	}
	rm := &ReleaseMesh{M: m, Client: c, dir: dir, bin: bin, metricsAddr: "127.0.0.1:18080"}
	if err := rm.StartController(); err != nil {
		return nil, err
	}
	return rm, nil
}

// ShopSpec is one shop version's Deployment (2 replicas under meshready).
func ShopSpec(version string, greeterArgs ...string) DeploymentSpec {
	return DeploymentSpec{App: "shop", Version: version, Mode: MeshReady, Replicas: 2, GreeterArgs: greeterArgs}
}

// StartController starts `meshrelease controller` (leader election on, as
// installed), logging to the run dir.
func (rm *ReleaseMesh) StartController() error {
	rm.mu.Lock()
	defer rm.mu.Unlock()
	logf, err := os.OpenFile(filepath.Join(rm.dir, "controller.log"), os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
	if err != nil {
		return err
	}
	cmd := exec.Command(rm.bin, "controller",
		"--kubeconfig", rm.M.Cluster.Kubeconfig, "--leader-elect",
		"--pilot", localcluster.IstiodDebugURL, "--prometheus", localcluster.PrometheusURL,
		"--metrics-addr", rm.metricsAddr, "--health-addr", "127.0.0.1:18081",
		// The test's windows are seconds; Prometheus scrapes every second.
		"--settle", "2500ms")
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		logf.Close()
		return err
	}
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); logf.Close(); close(done) }()
	rm.ctrl, rm.ctrlDone = cmd, done
	return nil
}

// KillController SIGKILLs the controller (no cleanup, no lease release).
func (rm *ReleaseMesh) KillController() {
	rm.mu.Lock()
	cmd, done := rm.ctrl, rm.ctrlDone
	rm.ctrl = nil
	rm.mu.Unlock()
	if cmd != nil {
		_ = cmd.Process.Kill()
		<-done
	}
}

// ControllerPid is the running controller's pid (0: none).
func (rm *ReleaseMesh) ControllerPid() int {
	rm.mu.Lock()
	defer rm.mu.Unlock()
	if rm.ctrl == nil {
		return 0
	}
	return rm.ctrl.Process.Pid
}

// Close stops the controller.
func (rm *ReleaseMesh) Close() { rm.KillController() }

// ControllerLog is the controller's log file.
func (rm *ReleaseMesh) ControllerLog() string { return filepath.Join(rm.dir, "controller.log") }

// Counters reads the controller's request counters: API requests (all
// verbs) and Pilot requests by kind.
func (rm *ReleaseMesh) Counters(ctx context.Context) (api float64, pilot map[string]float64, err error) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+rm.metricsAddr+"/metrics", nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	pilot = map[string]float64{}
	sc := bufio.NewScanner(io.LimitReader(resp.Body, 8<<20))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		name, val, ok := strings.Cut(line, " ")
		if !ok || strings.HasPrefix(line, "#") {
			continue
		}
		v, _ := strconv.ParseFloat(strings.TrimSpace(val), 64)
		switch {
		case strings.HasPrefix(name, "meshrelease_api_requests_total"):
			api += v
		case strings.HasPrefix(name, "meshrelease_pilot_requests_total"):
			kind := name[strings.Index(name, `kind="`)+6:]
			pilot[strings.TrimSuffix(kind, `"}`)] += v
		}
	}
	return api, pilot, sc.Err()
}

// ControllerRSS is the controller's resident set, bytes.
func (rm *ReleaseMesh) ControllerRSS() int64 {
	pid := rm.ControllerPid()
	if pid == 0 {
		return 0
	}
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0
	}
	for _, l := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(l, "VmRSS:") {
			f := strings.Fields(l)
			if len(f) >= 2 {
				kb, _ := strconv.ParseInt(f[1], 10, 64)
				return kb << 10
			}
		}
	}
	return 0
}

// Release reads a Release.
func (rm *ReleaseMesh) Release(ctx context.Context, name string) (*v1alpha1.Release, error) {
	var r v1alpha1.Release
	err := rm.Client.Get(ctx, types.NamespacedName{Namespace: "default", Name: name}, &r)
	return &r, err
}

// DialShop connects a proxyless caller (its own xDS client, node name) to
// the shop service and waits for one answer.
func DialShop(name string, wait time.Duration) (*grpc.ClientConn, error) {
	res, err := newXDSResolver(CallerBootstrap(localcluster.IstiodXDS, name))
	if err != nil {
		return nil, err
	}
	return dialXDS(fmt.Sprintf("xds:///%s:%d", ShopHost, shopPort), wait, grpc.WithResolvers(res))
}

func newXDSResolver(bootstrap []byte) (resolver.Builder, error) {
	return xdsgrpc.NewXDSResolverWithConfigForTesting(bootstrap)
}

// CSDSCaller is the node name of the caller on grpc-go's default xDS
// client.
const CSDSCaller = "shop-caller-csds"

// DialShopDefaultPool connects the one caller that uses grpc-go's default
// xDS client, so that CSDSRoute can read what it holds. grpc-go reads that
// client's bootstrap (GRPC_XDS_BOOTSTRAP_CONFIG) when the process starts:
// TestMain sets it, for node CSDSCaller, before the netns re-exec.
func DialShopDefaultPool(wait time.Duration) (*grpc.ClientConn, error) {
	if os.Getenv("GRPC_XDS_BOOTSTRAP_CONFIG") == "" {
		return nil, fmt.Errorf("GRPC_XDS_BOOTSTRAP_CONFIG not set at start: the CSDS caller has no bootstrap")
	}
	return dialXDS(fmt.Sprintf("xds:///%s:%d", ShopHost, shopPort), wait)
}

func dialXDS(target string, wait time.Duration, opts ...grpc.DialOption) (*grpc.ClientConn, error) {
	conn, err := grpc.NewClient(target, append(opts, grpc.WithTransportCredentials(insecure.NewCredentials()))...)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	if _, err := greeter.Hello(ctx, conn, "warm-up", grpc.WaitForReady(true)); err != nil {
		_ = conn.Close()
		return nil, fmt.Errorf("proxyless caller: no answer from %s within %s: %w", target, wait, err)
	}
	return conn, nil
}

// HeldRoute is what one caller's own xDS client holds for the shop's
// default route, from grpc-go's CSDS.
type HeldRoute struct {
	Weights     map[string]uint32 // subset → weight
	LastUpdated time.Time         // when the client accepted the route config
	Version     string
}

// CSDSRoute reads the default-pool caller's route for the shop host from
// grpc-go's own CSDS dump (what its xDS client accepted, not Pilot's view).
func CSDSRoute(ctx context.Context) (HeldRoute, error) {
	s, err := csds.NewClientStatusDiscoveryServer()
	if err != nil {
		return HeldRoute{}, err
	}
	defer s.Close()
	resp, err := s.FetchClientStatus(ctx, &statuspb.ClientStatusRequest{})
	if err != nil {
		return HeldRoute{}, err
	}
	for _, cfg := range resp.GetConfig() {
		for _, g := range cfg.GetGenericXdsConfigs() {
			if !strings.HasSuffix(g.GetTypeUrl(), "RouteConfiguration") || g.GetXdsConfig() == nil {
				continue
			}
			var rc routev3.RouteConfiguration
			if err := g.GetXdsConfig().UnmarshalTo(&rc); err != nil {
				continue
			}
			for _, vh := range rc.GetVirtualHosts() {
				if !strings.HasPrefix(vh.GetName(), ShopHost) && !containsPrefix(vh.GetDomains(), ShopHost) {
					continue
				}
				for _, rt := range vh.GetRoutes() {
					w := map[string]uint32{}
					a := rt.GetRoute()
					if c := a.GetCluster(); c != "" {
						w[subsetOf(c)] = 100
					}
					for _, wc := range a.GetWeightedClusters().GetClusters() {
						w[subsetOf(wc.GetName())] += wc.GetWeight().GetValue()
					}
					if len(w) > 0 {
						return HeldRoute{Weights: w, LastUpdated: g.GetLastUpdated().AsTime(), Version: g.GetVersionInfo()}, nil
					}
				}
			}
		}
	}
	return HeldRoute{}, fmt.Errorf("the default-pool caller holds no route for %s (CSDS)", ShopHost)
}

func containsPrefix(ss []string, p string) bool {
	for _, s := range ss {
		if strings.HasPrefix(s, p) {
			return true
		}
	}
	return false
}

func subsetOf(cluster string) string {
	parts := strings.Split(cluster, "|")
	if len(parts) == 4 {
		return parts[2]
	}
	return cluster
}

// VersionShare is the share (percent) of calls answered by pods of version
// in (from, to], and how many calls answered.
func VersionShare(calls []Call, version string, from, to time.Time) (float64, int) {
	n, hit := 0, 0
	for _, c := range calls {
		if c.Code != "OK" || !c.At.After(from) || c.At.After(to) {
			continue
		}
		n++
		if strings.HasPrefix(c.Pod, "shop-"+version+"-") {
			hit++
		}
	}
	if n == 0 {
		return 0, 0
	}
	return 100 * float64(hit) / float64(n), n
}

// FailedIn counts failed calls in (from, to].
func FailedIn(calls []Call, from, to time.Time) int {
	return len(FailedCalls(calls, from, to))
}

// FailedCalls are the failed calls in (from, to], in order.
func FailedCalls(calls []Call, from, to time.Time) []Call {
	var out []Call
	for _, c := range calls {
		if c.Code != "OK" && c.At.After(from) && !c.At.After(to) {
			out = append(out, c)
		}
	}
	return out
}

// jsonLine is a compact JSON of v, for test logs.
func jsonLine(v any) string {
	b, _ := json.Marshal(v)
	return string(b)
}
