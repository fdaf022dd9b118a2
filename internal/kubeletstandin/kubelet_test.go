package kubeletstandin

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/client-go/kubernetes"

	"github.com/meshready/meshready/internal/localcluster"
)

const nodeName = "standin-1"

var opts = localcluster.Options{Controllers: true}

// shared is one control plane and one kubelet stand-in for every test
// (the control plane's ports are fixed: one at a time); each test has its
// own namespace.
var shared struct {
	once      sync.Once
	err       error
	dir       string
	c         *localcluster.Cluster
	k         *Kubelet
	testapp   string
	logPath   string
	readyIn   time.Duration // Start → Node schedulable
	startedAt time.Time
}

func TestMain(m *testing.M) {
	localcluster.EnterNetns()
	code := m.Run()
	if shared.k != nil {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		shared.k.Stop(ctx)
		cancel()
	}
	if shared.c != nil {
		shared.c.Stop()
	}
	if shared.dir != "" {
		if code == 0 {
			os.RemoveAll(shared.dir)
		} else {
			fmt.Fprintf(os.Stderr, "kubeletstandin tests: run dir kept: %s (kubelet stand-in log %s)\n", shared.dir, shared.logPath)
		}
	}
	os.Exit(code)
}

// need skips the test when the binaries are not built — loudly, and only
// outside CI: with MESHREADY_REQUIRE_CLUSTER=1 (.ci/run sets it) a missing
// binary fails the test.
func need(t *testing.T, o localcluster.Options) {
	t.Helper()
	if m := localcluster.Missing(o); m != "" {
		if os.Getenv("MESHREADY_REQUIRE_CLUSTER") != "" {
			t.Fatal(m)
		}
		t.Skip("SKIPPED, real control plane not built: " + m)
	}
}

// env starts (once) the control plane and the kubelet stand-in, and dumps
// both when the test fails.
func env(t *testing.T) (*localcluster.Cluster, *Kubelet) {
	t.Helper()
	need(t, opts)
	shared.once.Do(func() { shared.err = startShared() })
	if shared.err != nil {
		t.Fatal(shared.err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("kubelet stand-in log: %s\n%s\n%s", shared.logPath, shared.k.Describe(), shared.c.Describe())
		}
	})
	return shared.c, shared.k
}

func startShared() error {
	dir, err := os.MkdirTemp("", "kubeletstandin-test-")
	if err != nil {
		return err
	}
	shared.dir = dir
	app := filepath.Join(dir, "testapp")
	build := exec.Command("go", "build", "-o", app, "./testdata/testapp")
	if out, err := build.CombinedOutput(); err != nil {
		return fmt.Errorf("build testapp: %v\n%s", err, out)
	}
	shared.testapp = app
	wrapper := filepath.Join(dir, "wrapper.sh")
	if err := os.WriteFile(wrapper, []byte("#!/bin/sh\n# an ENTRYPOINT like `meshready run --`\n[ \"$1\" = -- ] && shift\necho \"wrapper: exec $*\"\nexec \"$@\"\n"), 0o755); err != nil {
		return err
	}
	o := opts
	o.Dir = filepath.Join(dir, "cluster")
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	c, err := localcluster.Start(ctx, o)
	if err != nil {
		return err
	}
	shared.c = c
	shared.logPath = filepath.Join(dir, "kubelet-standin.log")
	logf, err := os.Create(shared.logPath)
	if err != nil {
		return err
	}
	var logMu sync.Mutex
	t0 := time.Now()
	k, err := Start(ctx, Config{
		Client:   c.Client,
		NodeName: nodeName,
		Dir:      filepath.Join(dir, "kubelet"),
		Images: map[string]Image{
			"testapp:v1": {Entrypoint: []string{"/app/testapp"}},
			"wrapped:v1": {Entrypoint: []string{"/usr/local/bin/wrapper", "--"}, Cmd: []string{"/app/testapp"}, Env: []string{"FROM_IMAGE=yes"}},
			"shell:v1":   {Entrypoint: []string{"/bin/sh"}, Cmd: []string{"-c", "sleep 3600"}},
		},
		Binaries:     map[string]string{"/app/testapp": app, "/usr/local/bin/wrapper": wrapper},
		MountPathEnv: map[string]string{"/etc/podinfo": "MESHREADY_PODINFO"},
		Sidecar: func(pod *corev1.Pod, podIP string) ([]string, []string) {
			return []string{"/app/testapp", "--sidecar-for=" + pod.Name}, []string{"LISTEN=" + podIP + ":15090", "ON_TERM=exit", "TERM_DELAY=300ms"}
		},
		Logf: func(format string, args ...any) {
			logMu.Lock()
			fmt.Fprintf(logf, time.Now().Format("15:04:05.000 ")+format+"\n", args...)
			logMu.Unlock()
		},
	})
	if err != nil {
		return err
	}
	shared.k = k
	if err := k.WaitSchedulable(ctx); err != nil {
		return err
	}
	shared.readyIn = time.Since(t0)
	shared.startedAt = t0
	return nil
}

func waitFor(t *testing.T, timeout time.Duration, what string, cond func() (bool, string)) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	last := ""
	for {
		ok, msg := cond()
		if ok {
			return
		}
		if msg != "" {
			last = msg
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %v (last: %s)", what, timeout, last)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func newNamespace(t *testing.T, cs kubernetes.Interface, labels map[string]string) string {
	t.Helper()
	ctx := context.Background()
	ns, err := cs.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{
		GenerateName: strings.ToLower(strings.ReplaceAll(t.Name(), "/", "-"))[:min(len(t.Name()), 40)] + "-", Labels: labels}}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	// The ServiceAccount admission refuses pods until "default" exists.
	waitFor(t, 30*time.Second, "default ServiceAccount", func() (bool, string) {
		_, err := cs.CoreV1().ServiceAccounts(ns.Name).Get(ctx, "default", metav1.GetOptions{})
		return err == nil, fmt.Sprint(err)
	})
	return ns.Name
}

func fieldEnv(name, path string) corev1.EnvVar {
	return corev1.EnvVar{Name: name, ValueFrom: &corev1.EnvVarSource{FieldRef: &corev1.ObjectFieldSelector{FieldPath: path}}}
}

// appContainer is testapp serving HTTP on $(POD_IP):8080 with a readiness probe.
func appContainer(name string, extra ...corev1.EnvVar) corev1.Container {
	return corev1.Container{
		Name:  name,
		Image: "testapp:v1",
		Env: append([]corev1.EnvVar{
			fieldEnv("POD_IP", "status.podIP"),
			{Name: "LISTEN", Value: "$(POD_IP):8080"},
			{Name: "UNREADY_FILE", Value: "unready"},
		}, extra...),
		Ports: []corev1.ContainerPort{{Name: "http", ContainerPort: 8080}},
		ReadinessProbe: &corev1.Probe{
			ProbeHandler:  corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{Path: "/ready", Port: intstr.FromString("http")}},
			PeriodSeconds: 1, FailureThreshold: 1, TimeoutSeconds: 1,
		},
	}
}

func createPod(t *testing.T, cs kubernetes.Interface, ns string, pod *corev1.Pod) *corev1.Pod {
	t.Helper()
	p, err := cs.CoreV1().Pods(ns).Create(context.Background(), pod, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func getPod(cs kubernetes.Interface, ns, name string) (*corev1.Pod, error) {
	return cs.CoreV1().Pods(ns).Get(context.Background(), name, metav1.GetOptions{})
}

func podReady(p *corev1.Pod) bool {
	for _, c := range p.Status.Conditions {
		if c.Type == corev1.PodReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}

func waitPodReady(t *testing.T, cs kubernetes.Interface, ns, name string, timeout time.Duration) *corev1.Pod {
	t.Helper()
	var p *corev1.Pod
	waitFor(t, timeout, "pod "+name+" Running and Ready", func() (bool, string) {
		var err error
		p, err = getPod(cs, ns, name)
		if err != nil {
			return false, err.Error()
		}
		return p.Status.Phase == corev1.PodRunning && podReady(p), fmt.Sprintf("phase %s conditions %v", p.Status.Phase, p.Status.Conditions)
	})
	return p
}

func waitPodGone(t *testing.T, cs kubernetes.Interface, ns, name string, uid types.UID, timeout time.Duration) {
	t.Helper()
	waitFor(t, timeout, "pod "+name+" gone", func() (bool, string) {
		p, err := getPod(cs, ns, name)
		if apierrors.IsNotFound(err) || (err == nil && p.UID != uid) {
			return true, ""
		}
		if err != nil {
			return false, err.Error()
		}
		return false, fmt.Sprintf("phase %s deletionTimestamp %v", p.Status.Phase, p.DeletionTimestamp)
	})
}

func httpGetBody(url string) (string, error) {
	hc := &http.Client{Timeout: 2 * time.Second}
	resp, err := hc.Get(url)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return string(b), err
}

// appEnv asks testapp for its argv and environment.
func appEnv(t *testing.T, ip string, port int) (args []string, envs map[string]string, probeUA string) {
	t.Helper()
	body, err := httpGetBody(fmt.Sprintf("http://%s:%d/env", ip, port))
	if err != nil {
		t.Fatal(err)
	}
	var v struct {
		Args    []string `json:"args"`
		Env     []string `json:"env"`
		ProbeUA string   `json:"probe_ua"`
	}
	if err := json.Unmarshal([]byte(body), &v); err != nil {
		t.Fatalf("%v: %s", err, body)
	}
	envs = map[string]string{}
	for _, kv := range v.Env {
		n, val, _ := strings.Cut(kv, "=")
		envs[n] = val
	}
	return v.Args, envs, v.ProbeUA
}

func info(t *testing.T, k *Kubelet, ns, name string) PodInfo {
	t.Helper()
	pi, ok := k.Pod(ns, name)
	if !ok {
		t.Fatalf("the kubelet stand-in does not know pod %s/%s", ns, name)
	}
	return pi
}

// TestNodeReadyAndStaysReady: the Node registers Ready, the not-ready
// taint goes, and over 65 s (longer than the node-lifecycle controller's
// 40 s grace and 50 s unreachable point) the Lease and heartbeats move
// and no not-ready/unreachable taint ever appears.
func TestNodeReadyAndStaysReady(t *testing.T) {
	c, k := env(t)
	t.Parallel()
	t.Logf("node schedulable %v after kubelet stand-in Start", shared.readyIn.Round(10*time.Millisecond))
	ctx := context.Background()
	n, err := c.Client.CoreV1().Nodes().Get(ctx, k.NodeName(), metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if v := n.Status.NodeInfo.KubeletVersion; v != KubeletVersion {
		t.Errorf("kubeletVersion %q", v)
	}
	if len(n.Status.Addresses) == 0 || n.Status.Addresses[0].Type != corev1.NodeInternalIP {
		t.Errorf("addresses %v", n.Status.Addresses)
	}
	for _, r := range []corev1.ResourceName{corev1.ResourceCPU, corev1.ResourceMemory, corev1.ResourcePods} {
		if q, ok := n.Status.Capacity[r]; !ok || q.IsZero() {
			t.Errorf("capacity %s missing", r)
		}
	}
	end := time.Now().Add(65 * time.Second)
	if min := shared.startedAt.Add(65 * time.Second); min.After(end) {
		end = min
	}
	heartbeats, renewals := map[string]bool{}, map[string]bool{}
	for time.Now().Before(end) {
		n, err := c.Client.CoreV1().Nodes().Get(ctx, k.NodeName(), metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if !NodeSchedulable(n) {
			t.Fatalf("node not schedulable after %v: taints %v conditions %v", time.Since(shared.startedAt).Round(time.Second), n.Spec.Taints, n.Status.Conditions)
		}
		for _, cond := range n.Status.Conditions {
			if cond.Type == corev1.NodeReady {
				heartbeats[cond.LastHeartbeatTime.String()] = true
			}
		}
		l, err := c.Client.CoordinationV1().Leases(corev1.NamespaceNodeLease).Get(ctx, k.NodeName(), metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		renewals[l.Spec.RenewTime.String()] = true
		time.Sleep(time.Second)
	}
	if len(heartbeats) < 6 || len(renewals) < 6 {
		t.Errorf("over 65 s: %d distinct heartbeats, %d lease renewals; want ≥ 6 each (every 10 s)", len(heartbeats), len(renewals))
	}
	t.Logf("Ready and untainted for %v since Start: %d heartbeats, %d lease renewals seen", time.Since(shared.startedAt).Round(time.Second), len(heartbeats), len(renewals))
}

func slicesOf(t *testing.T, cs kubernetes.Interface, ns, svc string) map[string]discoveryv1.Endpoint {
	t.Helper()
	l, err := cs.DiscoveryV1().EndpointSlices(ns).List(context.Background(), metav1.ListOptions{LabelSelector: discoveryv1.LabelServiceName + "=" + svc})
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]discoveryv1.Endpoint{}
	for _, s := range l.Items {
		for _, e := range s.Endpoints {
			for _, a := range e.Addresses {
				out[a] = e
			}
		}
	}
	return out
}

func epString(e discoveryv1.Endpoint) string {
	b := func(p *bool) string {
		if p == nil {
			return "nil"
		}
		return fmt.Sprint(*p)
	}
	return fmt.Sprintf("ready=%s serving=%s terminating=%s", b(e.Conditions.Ready), b(e.Conditions.Serving), b(e.Conditions.Terminating))
}

func is(p *bool, v bool) bool { return p != nil && *p == v }

// TestDeploymentEndpointSliceLifecycle: a Deployment of 2 gets Running and
// Ready pods with distinct pod IPs that the real EndpointSlice controller
// lists ready; a failing readiness probe takes one out (ready=false); a
// delete sends SIGTERM, the endpoint turns terminating (still serving
// while its readiness passes), the process exits and the pod is gone.
func TestDeploymentEndpointSliceLifecycle(t *testing.T) {
	c, k := env(t)
	t.Parallel()
	cs := c.Client
	ctx := context.Background()
	ns := newNamespace(t, cs, nil)
	labels := map[string]string{"app": "web"}
	if _, err := cs.CoreV1().Services(ns).Create(ctx, &corev1.Service{ObjectMeta: metav1.ObjectMeta{Name: "web"},
		Spec: corev1.ServiceSpec{Selector: labels, Ports: []corev1.ServicePort{{Name: "http", Port: 80, TargetPort: intstr.FromString("http")}}}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	created := time.Now()
	grace := int64(10)
	if _, err := cs.AppsV1().Deployments(ns).Create(ctx, &appsv1.Deployment{ObjectMeta: metav1.ObjectMeta{Name: "web"},
		Spec: appsv1.DeploymentSpec{Replicas: ptrTo[int32](2), Selector: &metav1.LabelSelector{MatchLabels: labels},
			Template: corev1.PodTemplateSpec{ObjectMeta: metav1.ObjectMeta{Labels: labels},
				Spec: corev1.PodSpec{TerminationGracePeriodSeconds: &grace, Containers: []corev1.Container{
					appContainer("web", corev1.EnvVar{Name: "TERM_DELAY", Value: "3s"}, corev1.EnvVar{Name: "TERM_EXIT", Value: "0"})}}}}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	var pods []corev1.Pod
	readyAt := map[string]time.Duration{}
	waitFor(t, 60*time.Second, "2 Running+Ready pods", func() (bool, string) {
		l, err := cs.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{LabelSelector: "app=web"})
		if err != nil {
			return false, err.Error()
		}
		pods = nil
		for _, p := range l.Items {
			if p.Status.Phase == corev1.PodRunning && podReady(&p) && p.DeletionTimestamp == nil {
				pods = append(pods, p)
				if _, ok := readyAt[p.Name]; !ok {
					readyAt[p.Name] = time.Since(created)
				}
			}
		}
		return len(pods) == 2, fmt.Sprintf("%d of %d pods ready", len(pods), len(l.Items))
	})
	for _, p := range pods {
		pi := info(t, k, ns, p.Name)
		started := pi.Find("web", "Started")
		t.Logf("pod %s: IP %s, Ready %v after the Deployment was created (process started %v after it)", p.Name, p.Status.PodIP,
			readyAt[p.Name].Round(10*time.Millisecond), started.At.Sub(created).Round(10*time.Millisecond))
	}
	ipA, ipB := pods[0].Status.PodIP, pods[1].Status.PodIP
	for _, ip := range []string{ipA, ipB} {
		a, err := netip.ParseAddr(ip)
		if err != nil || !inPodRange(a) {
			t.Errorf("pod IP %q outside 10.244.1.0-10.244.254.255", ip)
		}
	}
	if ipA == ipB {
		t.Fatalf("both pods have IP %s", ipA)
	}
	if pods[0].Status.HostIP == "" || pods[0].Status.ContainerStatuses[0].State.Running == nil {
		t.Errorf("status lacks hostIP or running state: %+v", pods[0].Status)
	}
	waitFor(t, 30*time.Second, "EndpointSlice lists both ready", func() (bool, string) {
		eps := slicesOf(t, cs, ns, "web")
		a, b := eps[ipA], eps[ipB]
		return is(a.Conditions.Ready, true) && is(b.Conditions.Ready, true), fmt.Sprintf("%v", eps)
	})
	if body, err := httpGetBody("http://" + ipA + ":8080/ready"); err != nil || !strings.Contains(body, "ok") {
		t.Fatalf("pod A does not answer on its IP: %v %q", err, body)
	}

	// Readiness fails → pod not Ready → ready=false serving=false.
	podA := pods[0]
	unready := filepath.Join(info(t, k, ns, podA.Name).Dir, "containers", "web", "unready")
	if err := os.WriteFile(unready, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 15*time.Second, "pod A not Ready, its endpoint ready=false", func() (bool, string) {
		p, err := getPod(cs, ns, podA.Name)
		if err != nil {
			return false, err.Error()
		}
		e := slicesOf(t, cs, ns, "web")[ipA]
		return !podReady(p) && is(e.Conditions.Ready, false) && is(e.Conditions.Serving, false), epString(e)
	})
	os.Remove(unready)
	waitFor(t, 15*time.Second, "pod A Ready again", func() (bool, string) {
		e := slicesOf(t, cs, ns, "web")[ipA]
		return is(e.Conditions.Ready, true), epString(e)
	})

	// Delete → SIGTERM → terminating (serving while its readiness passes) → exit → gone.
	delAt := time.Now()
	if err := cs.CoreV1().Pods(ns).Delete(ctx, podA.Name, metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	var sawTerminating string
	waitFor(t, 15*time.Second, "endpoint A terminating", func() (bool, string) {
		e, ok := slicesOf(t, cs, ns, "web")[ipA]
		if ok && is(e.Conditions.Terminating, true) {
			sawTerminating = epString(e)
			return true, ""
		}
		return false, epString(e)
	})
	if !strings.Contains(sawTerminating, "ready=false") || !strings.Contains(sawTerminating, "serving=true") {
		t.Errorf("terminating endpoint %s, want ready=false serving=true (readiness still passes during the drain)", sawTerminating)
	}
	waitPodGone(t, cs, ns, podA.Name, podA.UID, 20*time.Second)
	gone := time.Since(delAt)
	pi := info(t, k, ns, podA.Name)
	web, _ := pi.Container("web")
	if web.TermAt.IsZero() || !web.KillAt.IsZero() {
		t.Errorf("want SIGTERM and no SIGKILL: term %v kill %v", web.TermAt, web.KillAt)
	}
	if web.ExitCode == nil || *web.ExitCode != 0 {
		t.Errorf("exit code %v, want 0", web.ExitCode)
	}
	if exited := pi.Find("web", "Exited"); exited == nil || exited.At.Sub(web.TermAt) < 2900*time.Millisecond {
		t.Errorf("the process should exit ~3 s after SIGTERM (its TERM_DELAY): %+v", exited)
	}
	if syscall.Kill(web.PID, 0) == nil {
		t.Errorf("pid %d still alive", web.PID)
	}
	if !pi.Deleted {
		t.Error("PodInfo.Deleted not set")
	}
	t.Logf("deleted → SIGTERM after %v; endpoint %s; exited %v after SIGTERM; pod gone %v after the delete",
		web.TermAt.Sub(delAt).Round(time.Millisecond), sawTerminating, pi.Find("web", "Exited").At.Sub(web.TermAt).Round(time.Millisecond), gone.Round(time.Millisecond))
	if _, ok := slicesOf(t, cs, ns, "web")[ipA]; ok {
		waitFor(t, 10*time.Second, "endpoint A removed", func() (bool, string) {
			_, ok := slicesOf(t, cs, ns, "web")[ipA]
			return !ok, ""
		})
	}
}

// TestSIGKILLAtGracePeriod: a process ignoring SIGTERM gets SIGKILL at
// terminationGracePeriodSeconds, exit code 137, and the delete finishes.
func TestSIGKILLAtGracePeriod(t *testing.T) {
	c, k := env(t)
	t.Parallel()
	cs := c.Client
	ns := newNamespace(t, cs, nil)
	grace := int64(2)
	p := createPod(t, cs, ns, &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "stubborn"}, Spec: corev1.PodSpec{
		TerminationGracePeriodSeconds: &grace,
		Containers:                    []corev1.Container{appContainer("app", corev1.EnvVar{Name: "ON_TERM", Value: "ignore"})}}})
	waitPodReady(t, cs, ns, p.Name, 60*time.Second)
	if err := cs.CoreV1().Pods(ns).Delete(context.Background(), p.Name, metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	waitPodGone(t, cs, ns, p.Name, p.UID, 15*time.Second)
	app, _ := info(t, k, ns, p.Name).Container("app")
	if app.TermAt.IsZero() || app.KillAt.IsZero() {
		t.Fatalf("want SIGTERM then SIGKILL: %+v", app)
	}
	if d := app.KillAt.Sub(app.TermAt); d < 1900*time.Millisecond || d > 2600*time.Millisecond {
		t.Errorf("SIGKILL %v after SIGTERM, want ~2 s (the grace period)", d)
	}
	if app.ExitCode == nil || *app.ExitCode != 137 {
		t.Errorf("exit code %v, want 137", app.ExitCode)
	}
	t.Logf("SIGKILL %v after SIGTERM, exit %d", app.KillAt.Sub(app.TermAt).Round(time.Millisecond), *app.ExitCode)
}

// TestLivenessFailureRestarts: liveness fails on the first run → the
// container is killed and restarted (restartCount 1, lastState its exit
// code), and the second run stays up and Ready.
func TestLivenessFailureRestarts(t *testing.T) {
	c, k := env(t)
	t.Parallel()
	cs := c.Client
	ns := newNamespace(t, cs, nil)
	ctr := appContainer("app", corev1.EnvVar{Name: "LIVE_FAIL_AFTER", Value: "1s"}, corev1.EnvVar{Name: "TERM_EXIT", Value: "3"})
	ctr.LivenessProbe = &corev1.Probe{ProbeHandler: corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{Path: "/live", Port: intstr.FromInt32(8080)}},
		PeriodSeconds: 1, FailureThreshold: 2, TimeoutSeconds: 1}
	p := createPod(t, cs, ns, &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "flaky"}, Spec: corev1.PodSpec{Containers: []corev1.Container{ctr}}})
	var st corev1.ContainerStatus
	waitFor(t, 60*time.Second, "restartCount 1, running and ready", func() (bool, string) {
		got, err := getPod(cs, ns, p.Name)
		if err != nil || len(got.Status.ContainerStatuses) == 0 {
			return false, fmt.Sprint(err)
		}
		st = got.Status.ContainerStatuses[0]
		return st.RestartCount == 1 && st.State.Running != nil && st.Ready, fmt.Sprintf("%+v", st)
	})
	if lt := st.LastTerminationState.Terminated; lt == nil || lt.ExitCode != 3 || lt.Reason != "Error" {
		t.Errorf("lastState %+v, want terminated exit 3 (the app's SIGTERM exit) reason Error", st.LastTerminationState)
	}
	pi := info(t, k, ns, p.Name)
	if pi.Find("app", "Killing") == nil || pi.Find("app", "Unhealthy") == nil {
		t.Error("no Unhealthy/Killing event")
	}
	time.Sleep(3 * time.Second)
	got, _ := getPod(cs, ns, p.Name)
	if n := got.Status.ContainerStatuses[0].RestartCount; n != 1 {
		t.Errorf("restartCount %d 3 s later, want still 1", n)
	}
}

// TestEnvCommandAndExpansion: ENTRYPOINT/CMD with in-image paths mapped,
// args replacing CMD, command replacing ENTRYPOINT, fieldRef env and
// $(VAR) expansion as the kubelet does, no leak of the test's environment,
// and the probe's User-Agent.
func TestEnvCommandAndExpansion(t *testing.T) {
	c, k := env(t)
	t.Parallel()
	cs := c.Client
	ns := newNamespace(t, cs, nil)
	envs := []corev1.EnvVar{
		fieldEnv("POD_NAME", "metadata.name"), fieldEnv("POD_NAMESPACE", "metadata.namespace"), fieldEnv("POD_UID", "metadata.uid"),
		fieldEnv("HOST_IP", "status.hostIP"), fieldEnv("NODE_NAME", "spec.nodeName"), fieldEnv("SA", "spec.serviceAccountName"),
		fieldEnv("APP_LABEL", "metadata.labels['app']"),
		{Name: "GREETING", Value: "hello $(POD_NAME) in $(POD_NAMESPACE)"},
		{Name: "ESCAPED", Value: "$$(POD_NAME)"},
		{Name: "UNDEFINED", Value: "$(NOPE)"},
		{Name: "IMAGE_VAR", Value: "$(FROM_IMAGE)"},
	}
	image := appContainer("image", envs...) // ENTRYPOINT wrapper -- + CMD /app/testapp
	image.Image = "wrapped:v1"
	args := appContainer("args", envs...) // ENTRYPOINT + args
	args.Image = "wrapped:v1"
	args.Args = []string{"/app/testapp", "--pod=$(POD_NAME)", "$$(POD_NAME)"}
	args.Env[1].Value = "$(POD_IP):8081"
	args.Ports[0] = corev1.ContainerPort{Name: "http-args", ContainerPort: 8081}
	args.ReadinessProbe.HTTPGet.Port = intstr.FromString("http-args")
	cmd := appContainer("cmd", envs...) // command replaces ENTRYPOINT, drops CMD
	cmd.Image = "wrapped:v1"
	cmd.Command = []string{"/app/testapp", "--ns=$(POD_NAMESPACE)"}
	cmd.Env[1].Value = "$(POD_IP):8082"
	cmd.Ports[0] = corev1.ContainerPort{Name: "http-cmd", ContainerPort: 8082}
	cmd.ReadinessProbe.HTTPGet.Port = intstr.FromString("http-cmd")
	p := createPod(t, cs, ns, &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "envy", Labels: map[string]string{"app": "envy"}},
		Spec: corev1.PodSpec{Containers: []corev1.Container{image, args, cmd}}})
	p = waitPodReady(t, cs, ns, p.Name, 60*time.Second)
	ip := p.Status.PodIP
	want := map[string]string{
		"POD_NAME": "envy", "POD_NAMESPACE": ns, "POD_UID": string(p.UID), "POD_IP": ip, "HOST_IP": p.Status.HostIP,
		"NODE_NAME": nodeName, "SA": "default", "APP_LABEL": "envy",
		"GREETING": "hello envy in " + ns, "ESCAPED": "$(POD_NAME)", "UNDEFINED": "$(NOPE)", "IMAGE_VAR": "$(FROM_IMAGE)",
		"FROM_IMAGE": "yes", "HOSTNAME": "envy",
	}
	for name, port := range map[string]int{"image": 8080, "args": 8081, "cmd": 8082} {
		argv, got, ua := appEnv(t, ip, port)
		for n, v := range want {
			if got[n] != v {
				t.Errorf("%s: env %s=%q, want %q", name, n, got[n], v)
			}
		}
		if _, leak := got["MESHREADY_LOCALCLUSTER_NETNS"]; leak {
			t.Errorf("%s: the test's environment leaked into the container", name)
		}
		if ua != probeUserAgent {
			t.Errorf("%s: probe User-Agent %q", name, ua)
		}
		var wantArgs []string
		switch name {
		case "image", "args":
			pi, _ := info(t, k, ns, p.Name).Container(name)
			if len(pi.Argv) < 3 || pi.Argv[1] != "--" || pi.Argv[2] != shared.testapp {
				t.Errorf("%s: argv %q: want the wrapper ENTRYPOINT, then the mapped /app/testapp", name, pi.Argv)
			}
			wantArgs = []string{shared.testapp}
			if name == "args" {
				wantArgs = append(wantArgs, "--pod=envy", "$(POD_NAME)")
			}
		case "cmd":
			wantArgs = []string{shared.testapp, "--ns=" + ns}
		}
		if strings.Join(argv, " ") != strings.Join(wantArgs, " ") {
			t.Errorf("%s: testapp's argv %q, want %q", name, argv, wantArgs)
		}
	}
}

// TestDownwardAPIFiles: labels and annotations files in the kubelet's
// format, the name item, the env that points at the host directory, and
// an update when the labels change.
func TestDownwardAPIFiles(t *testing.T) {
	c, k := env(t)
	t.Parallel()
	cs := c.Client
	ns := newNamespace(t, cs, nil)
	ctr := appContainer("app")
	ctr.VolumeMounts = []corev1.VolumeMount{{Name: "podinfo", MountPath: "/etc/podinfo"}}
	p := createPod(t, cs, ns, &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "info", Labels: map[string]string{"app": "info", "version": "v1"},
			Annotations: map[string]string{"note": "say \"hi\"\nbye", "a.example/x": "1"}},
		Spec: corev1.PodSpec{Containers: []corev1.Container{ctr}, Volumes: []corev1.Volume{{Name: "podinfo", VolumeSource: corev1.VolumeSource{
			DownwardAPI: &corev1.DownwardAPIVolumeSource{Items: []corev1.DownwardAPIVolumeFile{
				{Path: "labels", FieldRef: &corev1.ObjectFieldSelector{FieldPath: "metadata.labels"}},
				{Path: "annotations", FieldRef: &corev1.ObjectFieldSelector{FieldPath: "metadata.annotations"}},
				{Path: "name", FieldRef: &corev1.ObjectFieldSelector{FieldPath: "metadata.name"}},
				{Path: "sub/namespace", FieldRef: &corev1.ObjectFieldSelector{FieldPath: "metadata.namespace"}},
			}}}}}}})
	p = waitPodReady(t, cs, ns, p.Name, 60*time.Second)
	dir := info(t, k, ns, p.Name).Volumes["podinfo"]
	read := func(f string) string {
		b, err := os.ReadFile(filepath.Join(dir, f))
		if err != nil {
			t.Fatal(err)
		}
		return string(b)
	}
	if got, want := read("labels"), "app=\"info\"\nversion=\"v1\""; got != want {
		t.Errorf("labels file %q, want %q", got, want)
	}
	if got, want := read("annotations"), "a.example/x=\"1\"\nnote=\"say \\\"hi\\\"\\nbye\""; got != want {
		t.Errorf("annotations file %q, want %q", got, want)
	}
	if read("name") != "info" || read("sub/namespace") != ns {
		t.Errorf("name %q namespace %q", read("name"), read("sub/namespace"))
	}
	_, envs, _ := appEnv(t, p.Status.PodIP, 8080)
	if envs["MESHREADY_PODINFO"] != dir {
		t.Errorf("MESHREADY_PODINFO=%q, want the volume's host dir %q", envs["MESHREADY_PODINFO"], dir)
	}
	patch := []byte(`{"metadata":{"labels":{"version":"v2"}}}`)
	if _, err := cs.CoreV1().Pods(ns).Patch(context.Background(), p.Name, types.MergePatchType, patch, metav1.PatchOptions{}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 5*time.Second, "labels file updated", func() (bool, string) {
		got := read("labels")
		return got == "app=\"info\"\nversion=\"v2\"", got
	})
}

// TestInjection: only a pod in an istio-injection=enabled namespace that
// does not opt out gets the injector's annotations (before its containers
// start: the app sees them in its Downward API file) and the sidecar,
// started first and stopped after the app on delete.
func TestInjection(t *testing.T) {
	c, k := env(t)
	t.Parallel()
	cs := c.Client
	ctx := context.Background()
	meshNS := newNamespace(t, cs, map[string]string{"istio-injection": "enabled"})
	plainNS := newNamespace(t, cs, nil)
	pod := func(name string, annotations map[string]string) *corev1.Pod {
		return &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: name, Annotations: annotations}, Spec: corev1.PodSpec{
			Containers: []corev1.Container{{Name: "app", Image: "shell:v1", Command: []string{"/bin/sh", "-c",
				`echo "annotations at start:"; cat "$MESHREADY_PODINFO/annotations"; echo; trap 'echo bye; exit 0' TERM; while :; do sleep 0.1; done`},
				VolumeMounts: []corev1.VolumeMount{{Name: "podinfo", MountPath: "/etc/podinfo"}}}},
			Volumes: []corev1.Volume{{Name: "podinfo", VolumeSource: corev1.VolumeSource{DownwardAPI: &corev1.DownwardAPIVolumeSource{
				Items: []corev1.DownwardAPIVolumeFile{{Path: "annotations", FieldRef: &corev1.ObjectFieldSelector{FieldPath: "metadata.annotations"}}}}}}}}}
	}
	injected := createPod(t, cs, meshNS, pod("meshed", nil))
	optOut := createPod(t, cs, meshNS, pod("opted-out", map[string]string{"sidecar.istio.io/inject": "false"}))
	plain := createPod(t, cs, plainNS, pod("plain", nil))
	for _, p := range []*corev1.Pod{injected, optOut, plain} {
		got := waitPodReady(t, cs, p.Namespace, p.Name, 60*time.Second)
		pi := info(t, k, p.Namespace, p.Name)
		want := p == injected
		if _, has := got.Annotations["sidecar.istio.io/status"]; has != want || pi.Injected != want {
			t.Errorf("%s: sidecar.istio.io/status present %v, PodInfo.Injected %v; want %v", p.Name, has, pi.Injected, want)
		}
		if !want {
			if _, ok := pi.Container(SidecarName); ok {
				t.Errorf("%s: has a sidecar", p.Name)
			}
			continue
		}
		if got.Annotations["sidecar.istio.io/status"] != InjectionStatus {
			t.Errorf("status annotation %q", got.Annotations["sidecar.istio.io/status"])
		}
		for n, v := range map[string]string{"prometheus.io/scrape": "true", "prometheus.io/port": "15090", "prometheus.io/path": "/stats/prometheus"} {
			if got.Annotations[n] != v {
				t.Errorf("annotation %s=%q, want %q", n, got.Annotations[n], v)
			}
		}
		if len(got.Spec.Containers) != 1 || len(got.Status.ContainerStatuses) != 1 {
			t.Errorf("the sidecar must not appear in the spec or status: %d containers, %d statuses", len(got.Spec.Containers), len(got.Status.ContainerStatuses))
		}
		sc, ok := pi.Container(SidecarName)
		if !ok || !sc.Sidecar || len(sc.Argv) < 2 || sc.Argv[0] != shared.testapp || sc.Argv[1] != "--sidecar-for=meshed" {
			t.Fatalf("sidecar %+v", sc)
		}
		scStart, appStart := pi.Find(SidecarName, "Started"), pi.Find("app", "Started")
		if scStart == nil || appStart == nil || !scStart.At.Before(appStart.At) {
			t.Errorf("the sidecar must start first: sidecar %v app %v", scStart, appStart)
		}
		if body, err := httpGetBody("http://" + got.Status.PodIP + ":15090/ready"); err != nil || !strings.Contains(body, "ok") {
			t.Errorf("the sidecar does not answer on the pod IP: %v", err)
		}
		app, _ := pi.Container("app")
		waitFor(t, 5*time.Second, "app's log shows the status annotation", func() (bool, string) {
			b, _ := os.ReadFile(app.Log)
			return strings.Contains(string(b), "sidecar.istio.io/status="), string(b)
		})
	}
	// Delete: the app gets SIGTERM, exits, then the sidecar gets SIGTERM.
	if err := cs.CoreV1().Pods(meshNS).Delete(ctx, injected.Name, metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	waitPodGone(t, cs, meshNS, injected.Name, injected.UID, 20*time.Second)
	pi := info(t, k, meshNS, injected.Name)
	app, _ := pi.Container("app")
	sc, _ := pi.Container(SidecarName)
	appExit := pi.Find("app", "Exited")
	if app.TermAt.IsZero() || appExit == nil || sc.TermAt.IsZero() || sc.TermAt.Before(appExit.At) {
		t.Errorf("want app SIGTERM → app exit → sidecar SIGTERM: app term %v exit %v, sidecar term %v", app.TermAt, appExit, sc.TermAt)
	}
	if !sc.KillAt.IsZero() || !app.KillAt.IsZero() || sc.ExitCode == nil || *sc.ExitCode != 0 {
		t.Errorf("nothing should need SIGKILL: app %+v sidecar %+v", app, sc)
	}
}

// TestProbeKinds: exec startup probe gating, gRPC readiness, TCP liveness.
func TestProbeKinds(t *testing.T) {
	c, k := env(t)
	t.Parallel()
	cs := c.Client
	ns := newNamespace(t, cs, nil)
	ctr := appContainer("app", corev1.EnvVar{Name: "GRPC_LISTEN", Value: "$(POD_IP):9090"})
	ctr.StartupProbe = &corev1.Probe{ProbeHandler: corev1.ProbeHandler{Exec: &corev1.ExecAction{Command: []string{"/bin/sh", "-c", "test -f ran-before && test -n \"$POD_IP\""}}},
		InitialDelaySeconds: 1, PeriodSeconds: 1, FailureThreshold: 10}
	ctr.ReadinessProbe = &corev1.Probe{ProbeHandler: corev1.ProbeHandler{GRPC: &corev1.GRPCAction{Port: 9090}}, PeriodSeconds: 1}
	ctr.LivenessProbe = &corev1.Probe{ProbeHandler: corev1.ProbeHandler{TCPSocket: &corev1.TCPSocketAction{Port: intstr.FromString("http")}}, PeriodSeconds: 1}
	p := createPod(t, cs, ns, &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "probed"}, Spec: corev1.PodSpec{Containers: []corev1.Container{ctr}}})
	got := waitPodReady(t, cs, ns, p.Name, 60*time.Second)
	st := got.Status.ContainerStatuses[0]
	if st.Started == nil || !*st.Started || st.RestartCount != 0 {
		t.Errorf("status %+v", st)
	}
	var readyT time.Time
	for _, cond := range got.Status.Conditions {
		if cond.Type == corev1.PodReady {
			readyT = cond.LastTransitionTime.Time
		}
	}
	started := info(t, k, ns, p.Name).Find("app", "Started")
	if readyT.Sub(started.At.Truncate(time.Second)) < time.Second {
		t.Errorf("Ready at %v, %v after the start: the startup probe (initial delay 1 s) must gate readiness", readyT, readyT.Sub(started.At))
	}

	// An exec probe that fails keeps the pod unready, with the reason in an event.
	bad := appContainer("app")
	bad.Env[1].Value = "$(POD_IP):8083"
	bad.Ports[0].ContainerPort = 8083
	bad.ReadinessProbe = &corev1.Probe{ProbeHandler: corev1.ProbeHandler{Exec: &corev1.ExecAction{Command: []string{"/bin/sh", "-c", "echo nope; exit 1"}}}, PeriodSeconds: 1}
	p2 := createPod(t, cs, ns, &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "unready"}, Spec: corev1.PodSpec{Containers: []corev1.Container{bad}}})
	waitFor(t, 30*time.Second, "exec readiness failure reported, pod Running", func() (bool, string) {
		pi, ok := k.Pod(ns, p2.Name)
		got, _ = getPod(cs, ns, p2.Name)
		return ok && pi.Find("app", "Unhealthy") != nil && got != nil && got.Status.Phase == corev1.PodRunning, ""
	})
	time.Sleep(1500 * time.Millisecond) // a few more failing probes
	got, _ = getPod(cs, ns, p2.Name)
	if podReady(got) || got.Status.Phase != corev1.PodRunning {
		t.Errorf("unready pod: phase %s ready %v", got.Status.Phase, podReady(got))
	}
	if e := info(t, k, ns, p2.Name).Find("app", "Unhealthy"); !strings.Contains(e.Message, "Readiness probe failed") {
		t.Errorf("event %+v", e)
	}
}

// TestRestartPolicies: Never + exit 3 → Failed with the exit code;
// OnFailure + fail once → one restart then Succeeded; deleting a finished
// pod completes at once.
func TestRestartPolicies(t *testing.T) {
	c, k := env(t)
	t.Parallel()
	cs := c.Client
	ns := newNamespace(t, cs, nil)
	sh := func(name string, policy corev1.RestartPolicy, script string) *corev1.Pod {
		return createPod(t, cs, ns, &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: name}, Spec: corev1.PodSpec{RestartPolicy: policy,
			Containers: []corev1.Container{{Name: "job", Image: "shell:v1", Args: []string{"-c", script}}}}})
	}
	never := sh("never", corev1.RestartPolicyNever, "echo failing; exit 3")
	onFailure := sh("onfailure", corev1.RestartPolicyOnFailure, "if [ -f marker ]; then echo second run; exit 0; fi; touch marker; exit 1")
	phase := func(p *corev1.Pod, want corev1.PodPhase) *corev1.Pod {
		var got *corev1.Pod
		waitFor(t, 30*time.Second, p.Name+" "+string(want), func() (bool, string) {
			var err error
			got, err = getPod(cs, ns, p.Name)
			if err != nil {
				return false, err.Error()
			}
			return got.Status.Phase == want, fmt.Sprintf("%s %+v", got.Status.Phase, got.Status.ContainerStatuses)
		})
		return got
	}
	got := phase(never, corev1.PodFailed)
	if st := got.Status.ContainerStatuses[0]; st.State.Terminated == nil || st.State.Terminated.ExitCode != 3 || st.RestartCount != 0 || st.State.Terminated.Reason != "Error" {
		t.Errorf("never: %+v", st)
	}
	got = phase(onFailure, corev1.PodSucceeded)
	if st := got.Status.ContainerStatuses[0]; st.State.Terminated == nil || st.State.Terminated.ExitCode != 0 || st.RestartCount != 1 ||
		st.LastTerminationState.Terminated == nil || st.LastTerminationState.Terminated.ExitCode != 1 {
		t.Errorf("onfailure: %+v", st)
	}
	if ready := podReady(got); ready {
		t.Error("a Succeeded pod is not Ready")
	}
	logs := info(t, k, ns, onFailure.Name).Containers[0].Logs
	if len(logs) != 2 {
		t.Errorf("want a log per run (kubelet's N.log), got %q", logs)
	} else if b, _ := os.ReadFile(logs[1]); !strings.Contains(string(b), "second run") {
		t.Errorf("second run's log %s: %q", logs[1], b)
	}
	for _, p := range []*corev1.Pod{never, onFailure} {
		if err := cs.CoreV1().Pods(ns).Delete(context.Background(), p.Name, metav1.DeleteOptions{}); err != nil {
			t.Fatal(err)
		}
		waitPodGone(t, cs, ns, p.Name, p.UID, 10*time.Second)
	}
}

// TestStopEndsEverything: a second stand-in (a tainted node, so the
// scheduler leaves it alone) runs a pod bound to it by nodeName; Stop
// ends the pod's processes and returns.
func TestStopEndsEverything(t *testing.T) {
	c, _ := env(t)
	t.Parallel()
	cs := c.Client
	ns := newNamespace(t, cs, nil)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	k2, err := Start(ctx, Config{Client: cs, NodeName: "standin-stop", Dir: t.TempDir(),
		Images:   map[string]Image{"testapp:v1": {Entrypoint: []string{"/app/testapp"}}},
		Binaries: map[string]string{"/app/testapp": shared.testapp},
		Taints:   []corev1.Taint{{Key: "meshready.io/test-only", Effect: corev1.TaintEffectNoSchedule}},
		Logf:     t.Logf})
	if err != nil {
		t.Fatal(err)
	}
	stopped := false
	defer func() {
		if !stopped {
			k2.Stop(context.Background())
		}
	}()
	ctr := appContainer("app", corev1.EnvVar{Name: "ON_TERM", Value: "ignore"})
	ctr.Env[1].Value = "$(POD_IP):8090"
	ctr.Ports[0].ContainerPort = 8090
	p := createPod(t, cs, ns, &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "bound"}, Spec: corev1.PodSpec{NodeName: "standin-stop", Containers: []corev1.Container{ctr}}})
	waitPodReady(t, cs, ns, p.Name, 30*time.Second)
	pi, _ := k2.Pod(ns, p.Name)
	pid := pi.Containers[0].PID
	sctx, scancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer scancel()
	t0 := time.Now()
	k2.Stop(sctx)
	stopped = true
	if d := time.Since(t0); d > 5*time.Second {
		t.Errorf("Stop took %v with a 2 s context", d)
	}
	if err := syscall.Kill(pid, 0); err == nil {
		t.Errorf("pid %d (ignores SIGTERM) still alive after Stop", pid)
	}
	pi, _ = k2.Pod(ns, p.Name)
	t.Logf("Stop in %v; app SIGTERM→SIGKILL %v", time.Since(t0).Round(time.Millisecond), pi.Containers[0].KillAt.Sub(pi.Containers[0].TermAt).Round(time.Millisecond))
	_ = cs.CoreV1().Nodes().Delete(context.Background(), "standin-stop", metav1.DeleteOptions{})
}

// TestPreStopHookBeforeSIGTERM: on delete the preStop exec hook runs (in
// the container's environment and directory) and only then SIGTERM.
func TestPreStopHookBeforeSIGTERM(t *testing.T) {
	c, k := env(t)
	t.Parallel()
	cs := c.Client
	ns := newNamespace(t, cs, nil)
	ctr := appContainer("app")
	ctr.Env[1].Value = "$(POD_IP):8095"
	ctr.Ports[0].ContainerPort = 8095
	ctr.Lifecycle = &corev1.Lifecycle{PreStop: &corev1.LifecycleHandler{Exec: &corev1.ExecAction{
		Command: []string{"/bin/sh", "-c", `echo "$POD_IP" > prestop-ran; sleep 1`}}}}
	p := createPod(t, cs, ns, &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "hooked"}, Spec: corev1.PodSpec{Containers: []corev1.Container{ctr}}})
	p = waitPodReady(t, cs, ns, p.Name, 60*time.Second)
	if err := cs.CoreV1().Pods(ns).Delete(context.Background(), p.Name, metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	waitPodGone(t, cs, ns, p.Name, p.UID, 20*time.Second)
	pi := info(t, k, ns, p.Name)
	hook, kill := pi.Find("app", "PreStop"), pi.Find("", "Killing") // the pod-level "stopping containers"
	app, _ := pi.Container("app")
	if hook == nil || kill == nil || app.TermAt.Before(hook.At) || hook.At.Sub(kill.At) < 900*time.Millisecond {
		t.Errorf("want the ~1 s preStop hook, then SIGTERM: hook %+v, SIGTERM %v", hook, app.TermAt)
	}
	b, err := os.ReadFile(filepath.Join(pi.Dir, "containers", "app", "prestop-ran"))
	if err != nil || strings.TrimSpace(string(b)) != p.Status.PodIP {
		t.Errorf("hook output %q (%v), want the pod IP from the container's env", b, err)
	}
}

// TestInitContainersAndJobSidecar: init containers run in order to
// success before the app; a native sidecar (init container with
// restartPolicy Always) keeps running beside it; when a Never pod's app
// completes, its sidecars (native and injected) get SIGTERM and the pod
// is Succeeded.
func TestInitContainersAndJobSidecar(t *testing.T) {
	c, k := env(t)
	t.Parallel()
	cs := c.Client
	ns := newNamespace(t, cs, map[string]string{"istio-injection": "enabled"})
	always := corev1.ContainerRestartPolicyAlways
	native := corev1.Container{Name: "native", Image: "testapp:v1", RestartPolicy: &always,
		Env: []corev1.EnvVar{fieldEnv("POD_IP", "status.podIP"), {Name: "LISTEN", Value: "$(POD_IP):8096"}}}
	p := createPod(t, cs, ns, &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "job"}, Spec: corev1.PodSpec{
		RestartPolicy: corev1.RestartPolicyNever,
		InitContainers: []corev1.Container{
			{Name: "first", Image: "shell:v1", Args: []string{"-c", "echo first"}},
			{Name: "second", Image: "shell:v1", Args: []string{"-c", "sleep 0.3; echo second"}},
			native,
		},
		Containers: []corev1.Container{{Name: "main", Image: "shell:v1", Args: []string{"-c", "sleep 1; echo done"}}}}})
	var got *corev1.Pod
	waitFor(t, 30*time.Second, "pod Succeeded", func() (bool, string) {
		var err error
		got, err = getPod(cs, ns, p.Name)
		if err != nil {
			return false, err.Error()
		}
		return got.Status.Phase == corev1.PodSucceeded, fmt.Sprintf("%s %+v", got.Status.Phase, got.Status.InitContainerStatuses)
	})
	// The phase counts regular containers only (kubelet's getPhase): the
	// sidecars are stopped right after.
	var pi PodInfo
	waitFor(t, 10*time.Second, "sidecars stopped", func() (bool, string) {
		pi = info(t, k, ns, p.Name)
		for _, c := range pi.Containers {
			if c.Running {
				return false, c.Name + " running"
			}
		}
		return true, ""
	})
	order := []string{}
	for _, e := range pi.Events {
		if e.What == "Started" {
			order = append(order, e.Container)
		}
	}
	if strings.Join(order, ",") != SidecarName+",first,second,native,main" {
		t.Errorf("start order %v", order)
	}
	if len(got.Status.InitContainerStatuses) != 3 {
		t.Fatalf("initContainerStatuses %+v", got.Status.InitContainerStatuses)
	}
	for _, st := range got.Status.InitContainerStatuses[:2] {
		if st.State.Terminated == nil || st.State.Terminated.ExitCode != 0 {
			t.Errorf("init %s: %+v", st.Name, st.State)
		}
	}
	mainExit := pi.Find("main", "Exited")
	for _, name := range []string{"native", SidecarName} {
		sc, _ := pi.Container(name)
		if mainExit == nil || sc.TermAt.IsZero() || sc.TermAt.Before(mainExit.At) || sc.Running {
			t.Errorf("%s: want SIGTERM after main exited: %+v (main exit %v)", name, sc, mainExit)
		}
	}
	if err := cs.CoreV1().Pods(ns).Delete(context.Background(), p.Name, metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	waitPodGone(t, cs, ns, p.Name, p.UID, 10*time.Second)
}
