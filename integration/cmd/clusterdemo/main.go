// Command clusterdemo is the next `make demo` (issue 12): the local mesh on a real control plane on
// this machine — etcd, kube-apiserver, kube-controller-manager,
// kube-scheduler, istiod and Prometheus, with a kubelet stand-in for the
// Node and a sidecar stand-in in every injected pod — that narrates one
// pod's life under meshready, the start-up race, and a rolling restart by
// the Deployment controller under steady load, naive and meshready's way.
//
// Run it from the integration directory (make demo does, after make
// cluster-bins): it builds the agent, the sidecar stand-in and the greeter.
package main

import (
	"bufio"
	"context"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/meshready/meshready/integration"
	"github.com/meshready/meshready/internal/localcluster"
)

func main() {
	localcluster.EnterNetns()
	lag := flag.Duration("lag", time.Second, "the EndpointSlice controller's batch period (--endpointslice-updates-batch-period): a busy cluster's endpoint lag; 0 is Kubernetes' default")
	rate := flag.Int("rate", 200, "calls per second during the rolling restarts")
	linger := flag.Duration("linger", 0, "keep act 1's pod up this long once ready, to curl its agent or run kubectl")
	verbose := flag.Bool("v", false, "narrate the kubelet stand-in's every step")
	flag.Parse()
	os.Exit(run(*lag, *rate, *linger, *verbose))
}

func say(w io.Writer, format string, args ...any) { fmt.Fprintf(w, format, args...) }

func run(lag time.Duration, rate int, linger time.Duration, verbose bool) int {
	out := os.Stdout
	t0 := time.Now()
	if m := localcluster.Missing(localcluster.Options{Controllers: true, Istio: true, Prometheus: true}); m != "" {
		fmt.Fprintln(os.Stderr, "demo:", m)
		return 1
	}
	dir, err := os.MkdirTemp("", "meshready-demo-")
	if err != nil {
		fmt.Fprintln(os.Stderr, "demo:", err)
		return 1
	}
	say(out, "meshready demo: the local mesh on a real control plane\n")
	bins, err := integration.BuildClusterBinaries(".", filepath.Join(dir, "bin"))
	if err != nil {
		fmt.Fprintln(os.Stderr, "demo: build failed (run it from the integration directory: make demo):", err)
		return 1
	}
	say(out, "  built meshready, the sidecar stand-in and the greeter in %s\n", time.Since(t0).Round(100*time.Millisecond))

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var mesh *integration.ClusterMesh
	// Ctrl-C: stop every pod and the control plane, then exit.
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, os.Interrupt, syscall.SIGTERM)
	go func() {
		<-sig
		fmt.Fprintln(out, "\ninterrupted: stopping the local mesh")
		cancel()
		if mesh != nil {
			mesh.Close()
		}
		os.Exit(130)
	}()
	say(out, "  starting etcd, kube-apiserver, kube-controller-manager (EndpointSlice batch %s), kube-scheduler, istiod, Prometheus…\n", lag)
	mesh, err = integration.StartClusterMesh(ctx, integration.ClusterMeshOptions{
		Dir: dir, Bins: bins, Out: out, EndpointBatch: lag, Verbose: verbose,
	})
	if err != nil {
		say(out, "\ncluster failed to start: %v\n(logs under %s)\n", err, dir)
		return 1
	}
	defer mesh.Close()
	kubectl := filepath.Join(localcluster.BinDir(), "kubectl")
	say(out, "\n  kubeconfig: %s\n", mesh.Cluster.Kubeconfig)
	sudo := ""
	if os.Geteuid() != 0 && !strings.Contains(localcluster.Nsenter(), "-U") {
		sudo = "sudo "
	}
	say(out, "  watch it beside the demo, in another terminal (the cluster lives in this process's private network\n")
	say(out, "  namespace: nsenter runs kubectl, curl … inside it; pod IPs 10.244.x.y answer only there):\n")
	say(out, "    %s%s %s --kubeconfig %s get pods -o wide -w\n", sudo, localcluster.Nsenter(), kubectl, mesh.Cluster.Kubeconfig)
	say(out, "  what is real: etcd, kube-apiserver, kube-controller-manager, kube-scheduler, istiod, Prometheus, meshready, gRPC callers (grpc-go's xDS client)\n")
	say(out, "  stand-ins of ours: the kubelet (internal/kubeletstandin) and the sidecar (internal/cmd/sidecar-standin: a real xDS client of istiod, not Envoy)\n\n")

	code := 0
	if err := act1(ctx, out, mesh, linger); err != nil {
		say(out, "\nact 1 failed: %v\n%s\n", err, mesh.Describe())
		return 1
	}
	if err := act2(ctx, out, mesh); err != nil {
		say(out, "\nact 2 failed: %v\n%s\n", err, mesh.Describe())
		return 1
	}
	code = act3(ctx, out, mesh, lag, rate)
	if c := act4(ctx, out, mesh, dir); c != 0 {
		code = c
	}
	say(out, "\ndemo finished in %s (logs of every component and pod: %s)\n", time.Since(t0).Round(100*time.Millisecond), dir)
	say(out, "more: README.md \"The local mesh\"; the same runs as tests: cd integration && go test -v -run 'TestCluster' .\n")
	return code
}

// act1 narrates one pod: held → synced → app started → ready → deleted →
// draining → app stopped, from its agent's /health as the kubelet sees it
// and the agent's own log lines.
func act1(ctx context.Context, out io.Writer, mesh *integration.ClusterMesh, linger time.Duration) error {
	say(out, "Act 1: one pod's life under `meshready run` (Deployment greeter-v1, 1 replica)\n\n")
	spec := integration.DeploymentSpec{Name: "greeter-v1", Version: "v1", Mode: integration.MeshReady, Replicas: 1}
	if err := mesh.Cluster.Apply(ctx, spec.Manifest()); err != nil {
		return err
	}
	pod, ip, err := waitPodIP(ctx, mesh, "v1", 30*time.Second)
	if err != nil {
		return err
	}
	stopStory := tellStory(mesh, pod)
	defer stopStory()
	agent := "http://" + ip + ":54321"
	say(out, "  %s has IP %s; its agent: %s/health  %s/health?verbose=1  %s/metrics\n\n", pod, ip, agent, agent, agent)
	watch := watchHealth(mesh, pod, agent)
	if err := mesh.WaitComplete(ctx, spec.Name, 60*time.Second); err != nil {
		return err
	}
	mesh.Logf("%-26s Ready: the EndpointSlice controller lists it, istiod pushes EDS", pod)
	conn, err := integration.DialGreeter(localcluster.IstiodXDS, "caller-act1", 30*time.Second)
	if err != nil {
		return err
	}
	defer conn.Close()
	load := integration.StartLoad(conn, 50)
	time.Sleep(2 * time.Second)
	mesh.Logf("%-26s callers: %s", "", load.Snapshot())
	if linger > 0 {
		mesh.Logf("lingering %s: %s curl %s/health?verbose=1", linger, localcluster.Nsenter(), agent)
		time.Sleep(linger)
	}
	// Two replicas, so that something answers once the first stops.
	spec.Replicas = 2
	if err := mesh.Deploy(ctx, spec, 60*time.Second); err != nil {
		return err
	}
	mesh.Logf("%-26s kubectl delete pod: the EndpointSlice marks it terminating, the kubelet sends SIGTERM to meshready", pod)
	deleted := time.Now()
	if err := mesh.Cluster.Client.CoreV1().Pods("default").Delete(ctx, pod, metav1.DeleteOptions{}); err != nil {
		return err
	}
	gone, err := mesh.Kubelet.WaitGone(ctx, "default", pod, 60*time.Second)
	if err != nil {
		return err
	}
	<-watch
	res := load.Stop()
	mesh.Logf("%-26s app stopped: exit %d, %s after the delete", pod, gone.AppExit, gone.AppExitedAt.Sub(deleted).Round(time.Millisecond))
	if last := lastAnswer(res, pod); !last.IsZero() {
		mesh.Logf("%-26s its last call was answered %s after the delete: that is how long callers took to stop routing to it",
			pod, last.Sub(deleted).Round(time.Millisecond))
	}
	say(out, "\n  callers during act 1: %s\n\n", res)
	if _, err := mesh.Cluster.Kubectl(ctx, nil, "delete", "deployment", spec.Name, "--wait=true", "--timeout=60s"); err != nil {
		return err
	}
	if res.Failed != 0 {
		return fmt.Errorf("%d calls failed: %v", res.Failed, res.Samples)
	}
	return nil
}

func waitPodIP(ctx context.Context, mesh *integration.ClusterMesh, version string, d time.Duration) (name, ip string, err error) {
	deadline := time.Now().Add(d)
	for time.Now().Before(deadline) {
		pods, err := mesh.Pods(ctx, version)
		if err == nil && len(pods) > 0 && pods[0].Status.PodIP != "" {
			return pods[0].Name, pods[0].Status.PodIP, nil
		}
		time.Sleep(50 * time.Millisecond)
	}
	return "", "", fmt.Errorf("no pod of version %s got an IP within %s", version, d)
}

func lastAnswer(r integration.LoadResult, pod string) time.Time {
	var last time.Time
	for _, c := range r.Calls {
		if c.Pod == pod && c.At.Add(c.Took).After(last) {
			last = c.At.Add(c.Took)
		}
	}
	return last
}

// tellStory follows the pod's app container log (the agent's lines under
// meshready run, then the app's) and narrates the lifecycle lines.
func tellStory(mesh *integration.ClusterMesh, pod string) (stop func()) {
	done := make(chan struct{})
	go func() {
		var f *os.File
		var r *bufio.Reader
		for {
			select {
			case <-done:
				if f != nil {
					f.Close()
				}
				return
			case <-time.After(50 * time.Millisecond):
			}
			if f == nil {
				p, ok := mesh.Kubelet.Pod("default", pod)
				if !ok {
					continue
				}
				c, ok := p.Container("greeter")
				if !ok || c.Log == "" {
					continue
				}
				var err error
				if f, err = os.Open(c.Log); err != nil {
					continue
				}
				r = bufio.NewReader(f)
			}
			for {
				line, err := r.ReadString('\n')
				if err != nil {
					// a partial line stays for the next round
					if len(line) > 0 {
						_, _ = f.Seek(-int64(len(line)), io.SeekCurrent)
						r.Reset(f)
					}
					break
				}
				if what := storyLine(line); what != "" {
					mesh.Logf("%-26s %s", pod, what)
				}
			}
		}
	}()
	return func() { close(done) }
}

// watchHealth polls the agent's /health every 50 ms, as a fast kubelet
// would, and narrates each change; the channel closes when the agent no
// longer answers after it had.
func watchHealth(mesh *integration.ClusterMesh, pod, agent string) <-chan struct{} {
	done := make(chan struct{})
	hc := &http.Client{Timeout: time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	go func() {
		defer close(done)
		prev, answered := "", false
		for {
			time.Sleep(50 * time.Millisecond)
			now := "starting: agent not answering yet"
			resp, err := hc.Get(agent + "/health")
			if err == nil {
				answered = true
				b, _ := io.ReadAll(io.LimitReader(resp.Body, 1024))
				_ = resp.Body.Close()
				now = fmt.Sprintf("/health %d  %s", resp.StatusCode, phase(resp.StatusCode, strings.TrimSpace(string(b))))
			} else if answered {
				mesh.Logf("%-26s agent no longer answering: the pod has stopped", pod)
				return
			}
			if now != prev {
				mesh.Logf("%-26s %s", pod, now)
				prev = now
			}
		}
	}()
	return done
}

// storyLine picks the agent's and the app's log lines that tell the
// lifecycle, without their time and level.
func storyLine(l string) string {
	l = strings.TrimRight(l, "\n")
	for _, key := range []string{
		`msg="holding CMD`, `msg="mesh synced"`, `msg="sidecar ready"`, `msg="CMD started"`,
		`msg="SIGTERM: draining`, `msg="drain ended"`, `msg="SIGTERM sent`, `msg="CMD exited"`,
	} {
		if i := strings.Index(l, key); i >= 0 {
			return "agent: " + strings.Replace(l[i+len(`msg=`):], `"`, "", 2)
		}
	}
	for _, key := range []string{"serving on", "graceful stop", "stopped", "first outbound call"} {
		if i := strings.Index(l, ": "+key); i >= 0 {
			return "app:   " + l[i+2:]
		}
	}
	return ""
}

// phase names the lifecycle step a /health answer shows.
func phase(code int, body string) string {
	switch {
	case code == http.StatusOK:
		return "ready: " + body
	case strings.Contains(body, "draining"):
		return "draining: " + body + " (the app still serves what reaches it)"
	case strings.Contains(body, "app:"):
		return "synced, app started, not ready yet: " + body
	default:
		return "held (app not started): " + body
	}
}

// act2 is the start-up race: an app whose first line calls the greeter
// through its own sidecar, which is still fetching its config from istiod.
func act2(ctx context.Context, out io.Writer, mesh *integration.ClusterMesh) error {
	say(out, "Act 2: the start-up race: an app whose first line calls the greeter through its sidecar\n\n")
	// Its own Deployment: act 1's pods may still be draining.
	backend := integration.DeploymentSpec{Name: "greeter-backend", Version: "v1-backend", Mode: integration.MeshReady, Replicas: 1}
	if err := mesh.Deploy(ctx, backend, 60*time.Second); err != nil {
		return err
	}
	// The race is the caller's sidecar's, not the greeter's: the greeter
	// must be routable first. Ready is not enough — the EndpointSlice
	// controller batches (-lag) and istiod debounces before its EDS lists
	// the new endpoint, and a sidecar whose config arrived before that has
	// an empty cluster (Envoy, too, is LIVE with it and answers 503 UH).
	took, err := mesh.WaitRoutable(ctx, 30*time.Second)
	if err != nil {
		return err
	}
	mesh.Logf("%-26s Ready, and in istiod's EDS %s later (a proxyless caller reached it)", backend.Name, took.Round(time.Millisecond))
	for _, mode := range []integration.Mode{integration.Naive, integration.MeshReady} {
		name := "caller-" + mode.String()
		if err := mesh.Cluster.Apply(ctx, integration.CallerManifest(name, mode)); err != nil {
			return err
		}
		first, err := mesh.FirstCall(ctx, name, 30*time.Second)
		if err != nil {
			return err
		}
		mesh.Logf("%-26s %s", name, first)
		if _, err := mesh.Cluster.Kubectl(ctx, nil, "delete", "deployment", name, "--wait=true", "--timeout=60s"); err != nil {
			return err
		}
		if mode == integration.MeshReady && !strings.Contains(first, "succeeded") {
			return fmt.Errorf("%s: the first call failed under meshready run: %s", name, first)
		}
	}
	if _, err := mesh.Cluster.Kubectl(ctx, nil, "delete", "deployment", backend.Name, "--wait=true", "--timeout=60s"); err != nil {
		return err
	}
	say(out, "\n")
	return nil
}

// act3 rolls three pods under steady load, naive then meshready, by the
// Deployment controller's own rolling restart, and prints the callers'
// failed requests side by side.
func act3(ctx context.Context, out io.Writer, mesh *integration.ClusterMesh, lag time.Duration, rate int) int {
	say(out, "Act 3: `kubectl rollout restart` of 3 pods under %d calls/s, naive then `meshready run`\n", rate)
	say(out, "  the EndpointSlice controller batches pod changes for %s (-lag): the endpoint lag of a busy cluster\n", lag)
	type row struct {
		mode integration.Mode
		res  integration.LoadResult
		rep  integration.ClusterRollout
	}
	var rows []row
	for _, mode := range []integration.Mode{integration.Naive, integration.MeshReady} {
		say(out, "\n  -- %s --\n", mode)
		spec := integration.DeploymentSpec{Name: "greeter-" + mode.String(), Version: "v1-" + mode.String(), Mode: mode}
		if err := mesh.Deploy(ctx, spec, 90*time.Second); err != nil {
			say(out, "  %v\n", err)
			return 1
		}
		conn, err := integration.DialGreeter(localcluster.IstiodXDS, "caller-"+mode.String(), 30*time.Second)
		if err != nil {
			say(out, "  %v\n", err)
			return 1
		}
		load := integration.StartLoad(conn, rate)
		time.Sleep(time.Second)
		rep, err := mesh.RollingRestart(ctx, spec, 2*time.Minute)
		time.Sleep(time.Second)
		res := load.Stop()
		_ = conn.Close()
		if err != nil {
			say(out, "  %v\n", err)
			return 1
		}
		mesh.Logf("callers: %s", res)
		if len(res.Samples) > 0 {
			mesh.Logf("  e.g. %s", firstLine(res.Samples[0]))
		}
		if _, err := mesh.Cluster.Kubectl(ctx, nil, "delete", "deployment", spec.Name, "--wait=true", "--timeout=90s"); err != nil {
			say(out, "  %v\n", err)
			return 1
		}
		rows = append(rows, row{mode, res, rep})
	}
	say(out, "\n  %-28s %8s %8s %9s %9s %9s %10s\n", "rolling restart", "calls", "failed", "p50", "p99", "max", "took")
	for _, r := range rows {
		name := "naive (SIGTERM at once)"
		if r.mode == integration.MeshReady {
			name = "meshready run (drain)"
		}
		say(out, "  %-28s %8d %8d %9s %9s %9s %10s\n", name, r.res.Total, r.res.Failed, r.res.P50.Round(100*time.Microsecond),
			r.res.P99.Round(100*time.Microsecond), r.res.Max.Round(time.Millisecond), r.rep.Took.Round(100*time.Millisecond))
	}
	if rows[1].res.Failed != 0 {
		say(out, "\n  meshready lost %d calls: that is a bug (make integration runs this as TestClusterRollingRestart)\n", rows[1].res.Failed)
		return 1
	}
	return 0
}

func firstLine(s string) string {
	if i := strings.IndexByte(s, '\n'); i >= 0 {
		return s[:i]
	}
	return s
}
