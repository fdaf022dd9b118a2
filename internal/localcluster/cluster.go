// Package localcluster runs a real Kubernetes control plane and a real
// istiod on this machine, for tests and `make demo`: etcd, kube-apiserver
// (RBAC), kube-controller-manager, kube-scheduler, Istio's CRDs, istiod
// (pilot-discovery) and Prometheus, as the binaries `make cluster-bins`
// builds into ~/.cache/meshready/current.
//
// Everything runs in a private network namespace (EnterNetns, called first
// in main or TestMain) where pod IPs are 10.244.x.y: the EndpointSlice
// controller refuses loopback addresses, and the namespace makes a private
// range behave like loopback without touching the host. Control-plane
// components listen on 127.0.0.1 with their usual ports; istiod has its own
// "pod" address (IstiodIP) so that its Service can have EndpointSlices.
//
// What only runs part of the way:
//
//	Start(ctx, Options{})                               etcd + apiserver (envtest-style: enough for clients and CRDs)
//	Start(ctx, Options{Controllers: true})              + controller-manager + scheduler
//	Start(ctx, Options{Controllers: true, Istio: true, Prometheus: true})  the whole local mesh's control plane
//
// Pods need a kubelet: see internal/kubeletstandin. Every process gets
// Pdeathsig, so a killed test leaves nothing running; Stop ends them in
// reverse order with bounded waits. Each component's log is in
// <Dir>/logs/<name>.log; Describe names them for a failing test.
package localcluster

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
)

// Addresses inside the namespace.
const (
	APIServerURL = "https://127.0.0.1:6443"
	EtcdURL      = "http://127.0.0.1:2379"
	// IstiodIP is istiod's "pod IP": inside PodCIDR, so its Service's
	// EndpointSlice is valid, and out of the kubelet stand-in's range.
	IstiodIP         = "10.244.255.10"
	IstiodXDS        = IstiodIP + ":15010" // plaintext ADS (proxyless gRPC, stand-ins)
	IstiodMonitorURL = "http://" + IstiodIP + ":15014"
	// IstiodDebugURL is istiod's HTTP debug server (syncz, config_dump) on
	// loopback. istiod serves /debug/* to unauthenticated callers only from
	// a loopback address (allowAuthenticatedOrLocalhost); its :15014 on the
	// pod address answers 401 to a caller without a Kubernetes token it can
	// review. All pods here share one network namespace, so they reach this
	// one; a real pod would go through its agent's :15004 or present a token.
	IstiodDebugURL  = "http://127.0.0.1:8080"
	IstiodReadyURL  = IstiodDebugURL + "/ready"
	PrometheusURL   = "http://127.0.0.1:9090"
	IstioNamespace  = "istio-system"
	ServiceCIDR     = "10.0.0.0/24"
	binsHint        = "run `make cluster-bins` (builds them once into ~/.cache/meshready, ~20 min cold)"
	defaultStartMax = 90 * time.Second
)

// Options pick the components. The zero value is etcd + apiserver.
type Options struct {
	// Dir holds the PKI, kubeconfigs, data and logs; a new temp dir if empty.
	Dir string
	// Controllers adds kube-controller-manager and kube-scheduler.
	Controllers bool
	// Istio applies Istio's CRDs and starts istiod (needs Controllers for
	// anything pod-related, but runs without).
	Istio bool
	// Prometheus starts Prometheus scraping pods by Istio's prometheus.io/*
	// annotations every ScrapeInterval (default 1s).
	Prometheus     bool
	ScrapeInterval time.Duration
	// IstiodEnv adds environment to istiod (e.g. PILOT_DEBOUNCE_AFTER).
	IstiodEnv []string
	// ControllerManagerArgs adds flags to kube-controller-manager, e.g.
	// --endpointslice-updates-batch-period=1s: the EndpointSlice lag of a
	// busy cluster, with the real controller doing the batching.
	ControllerManagerArgs []string
	// Logf narrates start and stop (nil: silent).
	Logf func(format string, args ...any)
}

// Cluster is a running control plane.
type Cluster struct {
	Dir        string
	Kubeconfig string // admin (system:masters), for the user and the tests
	Bins       string
	REST       *rest.Config
	Client     kubernetes.Interface

	o     Options
	pki   *pki
	logs  string
	mu    sync.Mutex
	procs map[string]*proc
	order []string
}

// BinDir is where `make cluster-bins` put the binaries: $MESHREADY_CACHE/current
// (default ~/.cache/meshready/current).
func BinDir() string {
	c := os.Getenv("MESHREADY_CACHE")
	if c == "" {
		if x := os.Getenv("XDG_CACHE_HOME"); x != "" {
			c = filepath.Join(x, "meshready")
		} else {
			home, _ := os.UserHomeDir()
			c = filepath.Join(home, ".cache", "meshready")
		}
	}
	return filepath.Join(c, "current")
}

// Missing names the binaries Options need that are not built yet ("" when
// all are there), with what to run.
func Missing(o Options) string {
	var miss []string
	for _, b := range needed(o) {
		if _, err := os.Stat(filepath.Join(BinDir(), b)); err != nil {
			miss = append(miss, b)
		}
	}
	if len(miss) == 0 {
		return ""
	}
	return fmt.Sprintf("missing in %s: %s; %s", BinDir(), strings.Join(miss, ", "), binsHint)
}

func needed(o Options) []string {
	b := []string{"etcd", "kube-apiserver", "kubectl"}
	if o.Controllers {
		b = append(b, "kube-controller-manager", "kube-scheduler")
	}
	if o.Istio {
		b = append(b, "pilot-discovery", "istio-crds.yaml")
	}
	if o.Prometheus {
		b = append(b, "prometheus")
	}
	return b
}

// Start brings the control plane up, in order, each component waited for.
// On error, everything started is stopped and the error names the log.
func Start(ctx context.Context, o Options) (*Cluster, error) {
	if !InNetns() {
		return nil, errors.New("localcluster: not in the private network namespace: call localcluster.EnterNetns() first in main or TestMain")
	}
	if m := Missing(o); m != "" {
		return nil, errors.New("localcluster: " + m)
	}
	if o.ScrapeInterval == 0 {
		o.ScrapeInterval = time.Second
	}
	if o.Logf == nil {
		o.Logf = func(string, ...any) {}
	}
	if o.Dir == "" {
		d, err := os.MkdirTemp("", "meshready-cluster-")
		if err != nil {
			return nil, err
		}
		o.Dir = d
	}
	c := &Cluster{Dir: o.Dir, Bins: BinDir(), o: o, logs: filepath.Join(o.Dir, "logs"), procs: map[string]*proc{}}
	if err := os.MkdirAll(c.logs, 0o755); err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(ctx, defaultStartMax)
	defer cancel()
	if err := c.start(ctx); err != nil {
		c.Stop()
		return nil, err
	}
	return c, nil
}

func (c *Cluster) start(ctx context.Context) error {
	t0 := time.Now()
	step := func(what string, f func(context.Context) error) error {
		s := time.Now()
		if err := f(ctx); err != nil {
			return fmt.Errorf("localcluster: %s: %w", what, err)
		}
		c.o.Logf("%-24s ready in %v", what, time.Since(s).Round(10*time.Millisecond))
		return nil
	}
	var err error
	c.pki, err = newPKI(filepath.Join(c.Dir, "pki"), []net.IP{net.ParseIP("127.0.0.1"), net.ParseIP("10.0.0.1"), net.ParseIP(IstiodIP)})
	if err != nil {
		return fmt.Errorf("localcluster: pki: %w", err)
	}
	c.Kubeconfig = filepath.Join(c.Dir, "kubeconfig")
	if err := c.pki.kubeconfig(c.Kubeconfig, APIServerURL, c.pki.Admin); err != nil {
		return err
	}
	if err := step("etcd", c.startEtcd); err != nil {
		return err
	}
	if err := step("kube-apiserver", c.startAPIServer); err != nil {
		return err
	}
	if c.o.Controllers {
		if err := step("kube-controller-manager", c.startControllerManager); err != nil {
			return err
		}
		if err := step("kube-scheduler", c.startScheduler); err != nil {
			return err
		}
	}
	if c.o.Istio {
		if err := step("istio CRDs", c.applyIstioCRDs); err != nil {
			return err
		}
		if err := step("istiod", c.StartIstiod); err != nil {
			return err
		}
	}
	if c.o.Prometheus {
		if err := step("prometheus", c.startPrometheus); err != nil {
			return err
		}
	}
	c.o.Logf("control plane ready in %v (logs: %s)", time.Since(t0).Round(10*time.Millisecond), c.logs)
	return nil
}

func (c *Cluster) bin(name string) string { return filepath.Join(c.Bins, name) }

func (c *Cluster) run(name, bin string, args, env []string) (*proc, error) {
	p, err := startProc(c.logs, name, bin, args, env)
	if err != nil {
		return nil, err
	}
	c.mu.Lock()
	if _, ok := c.procs[name]; !ok {
		c.order = append(c.order, name)
	}
	c.procs[name] = p
	c.mu.Unlock()
	return p, nil
}

// Pid is a running component's process id (etcd, kube-apiserver, istiod,
// …), 0 when it is not running: for CPU and memory readings.
func (c *Cluster) Pid(name string) int {
	p := c.proc(name)
	if p == nil || p.cmd.Process == nil {
		return 0
	}
	if done, _ := p.exited(); done {
		return 0
	}
	return p.cmd.Process.Pid
}

func (c *Cluster) proc(name string) *proc {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.procs[name]
}

func (c *Cluster) startEtcd(ctx context.Context) error {
	p, err := c.run("etcd", c.bin("etcd"), []string{
		"--name=local", "--data-dir=" + filepath.Join(c.Dir, "etcd"),
		"--listen-client-urls=" + EtcdURL, "--advertise-client-urls=" + EtcdURL,
		"--listen-peer-urls=http://127.0.0.1:2380", "--initial-advertise-peer-urls=http://127.0.0.1:2380",
		"--initial-cluster=local=http://127.0.0.1:2380", "--unsafe-no-fsync", "--log-level=warn",
	}, []string{"ETCD_UNSUPPORTED_ARCH=" + os.Getenv("ETCD_UNSUPPORTED_ARCH")})
	if err != nil {
		return err
	}
	return p.waitUntil(ctx, "healthy", func(ctx context.Context) error {
		return get(ctx, http.DefaultClient, EtcdURL+"/health", `"health":"true"`)
	})
}

func (c *Cluster) startAPIServer(ctx context.Context) error {
	k := c.pki
	p, err := c.run("kube-apiserver", c.bin("kube-apiserver"), []string{
		"--etcd-servers=" + EtcdURL,
		"--bind-address=127.0.0.1", "--advertise-address=127.0.0.1", "--secure-port=6443",
		"--tls-cert-file=" + k.Serving.Cert, "--tls-private-key-file=" + k.Serving.Key,
		"--client-ca-file=" + k.CAFile,
		"--service-account-issuer=https://kubernetes.default.svc.cluster.local",
		"--service-account-key-file=" + k.SAPub, "--service-account-signing-key-file=" + k.SAKey,
		"--service-cluster-ip-range=" + ServiceCIDR,
		"--authorization-mode=Node,RBAC", "--allow-privileged=true",
		// The default reconciler writes 127.0.0.1 into Endpoints "kubernetes", which validation refuses.
		"--endpoint-reconciler-type=none",
		"--profiling=false", "--v=1",
	}, nil)
	if err != nil {
		return err
	}
	cfg, err := clientcmd.BuildConfigFromFlags("", c.Kubeconfig)
	if err != nil {
		return err
	}
	cfg.QPS, cfg.Burst = 100, 200
	cfg.Timeout = 10 * time.Second
	c.REST = cfg
	if c.Client, err = kubernetes.NewForConfig(cfg); err != nil {
		return err
	}
	hc, err := rest.HTTPClientFor(cfg)
	if err != nil {
		return err
	}
	return p.waitUntil(ctx, "ready", func(ctx context.Context) error {
		return get(ctx, hc, APIServerURL+"/readyz", "ok")
	})
}

// insecureHealth reads the components' /healthz (their serving certs are self-signed).
var insecureHealth = &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}}

func (c *Cluster) componentKubeconfig(name string, id pair) (string, error) {
	path := filepath.Join(c.Dir, name+".kubeconfig")
	return path, c.pki.kubeconfig(path, APIServerURL, id)
}

func (c *Cluster) startControllerManager(ctx context.Context) error {
	kc, err := c.componentKubeconfig("kube-controller-manager", c.pki.KCM)
	if err != nil {
		return err
	}
	p, err := c.run("kube-controller-manager", c.bin("kube-controller-manager"), append([]string{
		"--kubeconfig=" + kc, "--authentication-kubeconfig=" + kc, "--authorization-kubeconfig=" + kc,
		"--bind-address=127.0.0.1", "--secure-port=10257", "--leader-elect=false",
		"--service-account-private-key-file=" + c.pki.SAKey, "--root-ca-file=" + c.pki.CAFile,
		"--use-service-account-credentials=true",
		"--cluster-signing-cert-file=" + c.pki.CAFile, "--cluster-signing-key-file=" + c.pki.CAKey,
		"--controllers=*", "--v=1",
	}, c.o.ControllerManagerArgs...), nil)
	if err != nil {
		return err
	}
	return p.waitUntil(ctx, "healthy", func(ctx context.Context) error {
		return get(ctx, insecureHealth, "https://127.0.0.1:10257/healthz", "ok")
	})
}

func (c *Cluster) startScheduler(ctx context.Context) error {
	kc, err := c.componentKubeconfig("kube-scheduler", c.pki.Sched)
	if err != nil {
		return err
	}
	p, err := c.run("kube-scheduler", c.bin("kube-scheduler"), []string{
		"--kubeconfig=" + kc, "--authentication-kubeconfig=" + kc, "--authorization-kubeconfig=" + kc,
		"--bind-address=127.0.0.1", "--secure-port=10259", "--leader-elect=false", "--v=1",
	}, nil)
	if err != nil {
		return err
	}
	return p.waitUntil(ctx, "healthy", func(ctx context.Context) error {
		return get(ctx, insecureHealth, "https://127.0.0.1:10259/healthz", "ok")
	})
}

// Kubectl runs the built kubectl against the cluster and returns its output.
func (c *Cluster) Kubectl(ctx context.Context, stdin io.Reader, args ...string) (string, error) {
	cmd := exec.CommandContext(ctx, c.bin("kubectl"), append([]string{"--kubeconfig=" + c.Kubeconfig}, args...)...)
	cmd.Stdin = stdin
	out, err := cmd.CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("kubectl %s: %v: %s", strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	return string(out), nil
}

// Apply is `kubectl apply --server-side -f -` of the given YAML.
func (c *Cluster) Apply(ctx context.Context, yaml string) error {
	_, err := c.Kubectl(ctx, strings.NewReader(yaml), "apply", "--server-side", "--force-conflicts", "-f", "-")
	return err
}

func (c *Cluster) applyIstioCRDs(ctx context.Context) error {
	if _, err := c.Kubectl(ctx, nil, "apply", "--server-side", "-f", c.bin("istio-crds.yaml")); err != nil {
		return err
	}
	_, err := c.Kubectl(ctx, nil, "wait", "--for=condition=Established", "--timeout=30s", "crd", "--all")
	return err
}

// Stop ends every process in reverse start order, each bounded (SIGTERM,
// SIGKILL after 5 s): istiod before the scheduler, etcd last.
func (c *Cluster) Stop() {
	c.mu.Lock()
	order := append([]string(nil), c.order...)
	c.mu.Unlock()
	for i := len(order) - 1; i >= 0; i-- {
		c.proc(order[i]).stop()
	}
}

// Describe names every component's log, for a failing test's output.
func (c *Cluster) Describe() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	var b strings.Builder
	fmt.Fprintf(&b, "cluster dir %s, kubeconfig %s; logs:", c.Dir, c.Kubeconfig)
	for _, n := range c.order {
		state := "running"
		if done, err := c.procs[n].exited(); done {
			state = fmt.Sprintf("exited: %v", err)
		}
		fmt.Fprintf(&b, "\n  %-24s %s (%s)", n, c.procs[n].log, state)
	}
	return b.String()
}

// LogDir is where each component's log is.
func (c *Cluster) LogDir() string { return c.logs }

// get answers nil when url answers 200 with a body containing want.
func get(ctx context.Context, hc *http.Client, url, want string) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	resp, err := hc.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	if resp.StatusCode != http.StatusOK || !strings.Contains(string(body), want) {
		return fmt.Errorf("GET %s: %d %q", url, resp.StatusCode, strings.TrimSpace(string(body)))
	}
	return nil
}
