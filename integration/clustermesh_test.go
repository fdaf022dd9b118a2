package integration

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/meshready/meshready/internal/localcluster"
)

// One control plane for every cluster test (it takes ~15 s to start):
// started by the first test that needs it, stopped by TestMain.
var (
	clusterOnce sync.Once
	clusterMesh *ClusterMesh
	clusterErr  error
	clusterDir  string
)

func clusterOptions() localcluster.Options {
	return localcluster.Options{Controllers: true, Istio: true, Prometheus: true}
}

// needClusterMesh starts (once) the local mesh on the real control plane.
// Without the binaries it skips loudly — or fails, under
// MESHREADY_REQUIRE_CLUSTER=1 (make integration, CI).
func needClusterMesh(t *testing.T) *ClusterMesh {
	t.Helper()
	if testing.Short() {
		t.Skip("the real control plane: skipped under -short")
	}
	if m := localcluster.Missing(clusterOptions()); m != "" {
		if os.Getenv("MESHREADY_REQUIRE_CLUSTER") != "" {
			t.Fatal(m)
		}
		t.Skip("SKIPPED, real control plane not built: " + m)
	}
	clusterOnce.Do(func() {
		var err error
		clusterDir, err = os.MkdirTemp("", "meshready-clustermesh-")
		if err != nil {
			clusterErr = err
			return
		}
		bins, err := BuildClusterBinaries(".", clusterDir)
		if err != nil {
			clusterErr = err
			return
		}
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
		defer cancel()
		var out io.Writer = io.Discard
		if testing.Verbose() {
			out = os.Stdout
		}
		clusterMesh, clusterErr = StartClusterMesh(ctx, ClusterMeshOptions{Dir: clusterDir, Bins: bins, Out: out})
	})
	if clusterErr != nil {
		t.Fatalf("local mesh on the real control plane: %v (run dir %s)", clusterErr, clusterDir)
	}
	return clusterMesh
}

// stopClusterMesh ends the shared control plane (TestMain); its run dir is
// kept when a test failed.
func stopClusterMesh(failed bool) {
	if clusterMesh != nil {
		clusterMesh.Close()
	}
	if clusterDir != "" && !failed {
		_ = os.RemoveAll(clusterDir)
	} else if clusterDir != "" {
		fmt.Fprintf(os.Stderr, "local mesh run dir kept for its logs: %s\n", clusterDir)
	}
}

// TestClusterRollingRestart: the Deployment controller's own rolling
// restart (template change, maxSurge 1, maxUnavailable 0) of 3 greeter pods
// under 200 calls/s from proxyless gRPC callers routed by the real istiod,
// naive (SIGTERM at once) vs `meshready run`. meshready must lose nothing.
func TestClusterRollingRestart(t *testing.T) {
	m := needClusterMesh(t)
	ctx := context.Background()
	for _, mode := range []Mode{Naive, MeshReady} {
		t.Run(mode.String(), func(t *testing.T) {
			spec := DeploymentSpec{Name: "greeter-" + mode.String(), Version: "v1-" + mode.String(), Mode: mode}
			if err := m.Deploy(ctx, spec, 90*time.Second); err != nil {
				t.Fatalf("%v\n%s", err, m.Describe())
			}
			defer func() {
				if _, err := m.Cluster.Kubectl(ctx, nil, "delete", "deployment", spec.Name, "--wait=true", "--timeout=60s"); err != nil {
					t.Log(err)
				}
			}()
			conn, err := DialGreeter(localcluster.IstiodXDS, "caller-"+mode.String(), 30*time.Second)
			if err != nil {
				t.Fatalf("%v\n%s", err, m.Describe())
			}
			defer conn.Close()
			load := StartLoad(conn, 200)
			time.Sleep(time.Second)
			rep, err := m.RollingRestart(ctx, spec, 2*time.Minute)
			time.Sleep(time.Second)
			res := load.Stop()
			if err != nil {
				t.Fatalf("%v\n%s", err, m.Describe())
			}
			t.Logf("%s: %s; rollout took %s", mode, res, rep.Took.Round(100*time.Millisecond))
			for _, s := range rep.Steps {
				t.Logf("  %s: exit %d, stopped %s after deletion%s", s.Name, s.ExitCode, s.StoppedAft.Round(time.Millisecond), drainNote(s.Drain))
			}
			if len(rep.Steps) != 3 {
				t.Errorf("%d old pods replaced, want 3", len(rep.Steps))
			}
			if mode == MeshReady && res.Failed != 0 {
				t.Errorf("meshready lost %d of %d calls: %v", res.Failed, res.Total, res.Samples)
			}
			if res.Total < 1000 {
				t.Errorf("only %d calls were made: the load did not run", res.Total)
			}
			if mode == MeshReady {
				for _, s := range rep.Steps {
					if !strings.HasPrefix(s.Drain, "quiet") && !strings.HasPrefix(s.Drain, "max") {
						t.Errorf("%s: no drain in the agent's log (%q)", s.Name, s.Drain)
					}
				}
			}
		})
	}
}

// rollUnderLoad deploys spec, rolls it under 200 calls/s (onDelete as in
// RollingRestartHook) and deletes it; it fails the test on any error.
func rollClusterUnderLoad(t *testing.T, m *ClusterMesh, spec DeploymentSpec, onDelete func(i int, pod string)) (LoadResult, ClusterRollout) {
	t.Helper()
	ctx := context.Background()
	if err := m.Deploy(ctx, spec, 90*time.Second); err != nil {
		t.Fatalf("%v\n%s", err, m.Describe())
	}
	t.Cleanup(func() {
		if _, err := m.Cluster.Kubectl(ctx, nil, "delete", "deployment", spec.Name, "--wait=true", "--timeout=90s"); err != nil {
			t.Log(err)
		}
	})
	conn, err := DialGreeter(localcluster.IstiodXDS, "caller-"+spec.Name, 30*time.Second)
	if err != nil {
		t.Fatalf("%v\n%s", err, m.Describe())
	}
	defer conn.Close()
	load := StartLoad(conn, 200)
	time.Sleep(time.Second)
	rep, err := m.RollingRestartHook(ctx, spec, 3*time.Minute, onDelete)
	time.Sleep(time.Second)
	res := load.Stop()
	if err != nil {
		t.Fatalf("%v\n%s", err, m.Describe())
	}
	t.Logf("%s: %s; rollout took %s", spec.Name, res, rep.Took.Round(100*time.Millisecond))
	for _, s := range rep.Steps {
		t.Logf("  %s: exit %d, stopped %s after deletion%s", s.Name, s.ExitCode, s.StoppedAft.Round(time.Millisecond), drainNote(s.Drain))
	}
	return res, rep
}

// TestClusterAppIgnoresSIGTERM: an app that ignores SIGTERM is SIGKILLed
// by meshready at --grace after the drain (exit 137), well inside the pod's
// terminationGracePeriodSeconds, and no call fails.
func TestClusterAppIgnoresSIGTERM(t *testing.T) {
	m := needClusterMesh(t)
	res, rep := rollClusterUnderLoad(t, m, DeploymentSpec{Name: "greeter-stubborn", Version: "v1-stubborn", Mode: MeshReady,
		GreeterArgs: []string{"-ignore-sigterm"}, AgentEnv: map[string]string{"MESHREADY_GRACE": "2s"}}, nil)
	if res.Failed != 0 {
		t.Errorf("%d of %d calls failed: %v", res.Failed, res.Total, res.Samples)
	}
	for _, s := range rep.Steps {
		if !s.Killed() {
			t.Errorf("%s: exit %d, want 137 (SIGKILLed by meshready at --grace)", s.Name, s.ExitCode)
		}
		if s.StoppedAft > 20*time.Second {
			t.Errorf("%s: stopped %s after deletion: the kubelet's 30 s, not meshready's drain + --grace", s.Name, s.StoppedAft)
		}
	}
}

// TestClusterIstiodRestart: the real istiod process is stopped for 6 s as
// the first old pod is deleted. Callers keep routing to it until they
// reconnect and get the EDS without it; the drain must outlast that (it
// watches inbound traffic, not a clock), and no call may fail.
func TestClusterIstiodRestart(t *testing.T) {
	m := needClusterMesh(t)
	const outage = 6 * time.Second
	restarted := make(chan error, 1)
	res, rep := rollClusterUnderLoad(t, m, DeploymentSpec{Name: "greeter-outage", Version: "v1-outage", Mode: MeshReady,
		TerminationGrace: time.Minute,
		// grpc-go's xDS client backs off its reconnects (~13 s seen): room in --drain-max.
		AgentEnv: map[string]string{"MESHREADY_DRAIN_MAX": "45s"}},
		func(i int, pod string) {
			if i != 0 {
				return
			}
			m.Logf("istiod stopped for %s as %s is deleted", outage, pod)
			restarted <- m.Cluster.RestartIstiod(context.Background(), outage)
		})
	if err := <-restarted; err != nil {
		t.Fatalf("istiod did not come back: %v\n%s", err, m.Describe())
	}
	if res.Failed != 0 {
		t.Errorf("%d of %d calls failed: %v", res.Failed, res.Total, res.Samples)
	}
	if len(rep.Steps) == 0 || !strings.HasPrefix(rep.Steps[0].Drain, "quiet") {
		t.Errorf("the first pod's drain did not end quiet: %+v", rep.Steps)
	}
}

// TestClusterNeverReady: a new version that never becomes ready stalls the
// Deployment controller's rollout at its one surge pod; nothing routes to
// it, no call fails, and its /health names the app.
func TestClusterNeverReady(t *testing.T) {
	m := needClusterMesh(t)
	ctx := context.Background()
	spec := DeploymentSpec{Name: "greeter-stall", Version: "v1-stall", Mode: MeshReady}
	if err := m.Deploy(ctx, spec, 90*time.Second); err != nil {
		t.Fatalf("%v\n%s", err, m.Describe())
	}
	t.Cleanup(func() {
		_, _ = m.Cluster.Kubectl(ctx, nil, "delete", "deployment", spec.Name, "--wait=true", "--timeout=90s")
	})
	before, err := m.Pods(ctx, spec.Version)
	if err != nil {
		t.Fatal(err)
	}
	conn, err := DialGreeter(localcluster.IstiodXDS, "caller-stall", 30*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	load := StartLoad(conn, 100)
	bad := spec
	bad.GreeterArgs = []string{"-never-ready"}
	if err := m.Cluster.Apply(ctx, bad.Manifest()); err != nil {
		t.Fatal(err)
	}
	time.Sleep(15 * time.Second)
	res := load.Stop()
	pods, err := m.Pods(ctx, spec.Version)
	if err != nil {
		t.Fatal(err)
	}
	old := map[string]bool{}
	for _, p := range before {
		old[p.Name] = true
	}
	var fresh []string
	for _, p := range pods {
		if !old[p.Name] {
			fresh = append(fresh, p.Name)
			body := m.Kubelet.AppLog("default", p.Name)
			if strings.Contains(body, "CMD exited") {
				t.Errorf("%s: the new app exited: %s", p.Name, body)
			}
			if res.ByPod[p.Name] != 0 {
				t.Errorf("%d calls reached %s, which never became ready", res.ByPod[p.Name], p.Name)
			}
			if p.Status.PodIP != "" {
				if code, b := getHealth(t, "http://"+p.Status.PodIP+":54321/health"); code != 503 || !strings.Contains(b, "NOT_SERVING") {
					t.Errorf("%s /health: %d %q, want 503 naming the app's NOT_SERVING", p.Name, code, b)
				}
			}
		}
	}
	if len(fresh) != 1 {
		t.Errorf("new pods %v, want exactly one (maxSurge 1, maxUnavailable 0)", fresh)
	}
	if len(pods)-len(fresh) != 3 {
		t.Errorf("%d old pods left, want all 3 serving", len(pods)-len(fresh))
	}
	if res.Failed != 0 {
		t.Errorf("%d of %d calls failed: %v", res.Failed, res.Total, res.Samples)
	}
}

func getHealth(t *testing.T, url string) (int, string) {
	t.Helper()
	hc := &http.Client{Timeout: 2 * time.Second}
	resp, err := hc.Get(url)
	if err != nil {
		return 0, err.Error()
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
	return resp.StatusCode, string(b)
}

// TestClusterStartupRace: an app whose first line calls the greeter through
// its own sidecar. Under `meshready run` it is held until the sidecar can
// route, and the call succeeds; started directly it races the sidecar
// (reported; a classic-injection pod loses the race whenever the sidecar
// has not got its config yet).
func TestClusterStartupRace(t *testing.T) {
	m := needClusterMesh(t)
	ctx := context.Background()
	backend := DeploymentSpec{Name: "greeter-backend", Version: "v1-backend", Mode: MeshReady, Replicas: 1}
	if err := m.Deploy(ctx, backend, 90*time.Second); err != nil {
		t.Fatalf("%v\n%s", err, m.Describe())
	}
	t.Cleanup(func() {
		_, _ = m.Cluster.Kubectl(ctx, nil, "delete", "deployment", backend.Name, "--wait=true", "--timeout=90s")
	})
	// Ready is not routable yet (EndpointSlice batching, istiod's
	// debounce): the race under test is the caller's sidecar's, not this.
	if _, err := m.WaitRoutable(ctx, 30*time.Second); err != nil {
		t.Fatalf("%v\n%s", err, m.Describe())
	}
	for _, mode := range []Mode{Naive, MeshReady} {
		name := "caller-" + mode.String()
		if err := m.Cluster.Apply(ctx, CallerManifest(name, mode)); err != nil {
			t.Fatal(err)
		}
		first, err := m.FirstCall(ctx, name, 45*time.Second)
		_, _ = m.Cluster.Kubectl(ctx, nil, "delete", "deployment", name, "--wait=true", "--timeout=90s")
		if err != nil {
			t.Fatalf("%v\n%s", err, m.Describe())
		}
		t.Logf("%s: %s", name, first)
		if mode == MeshReady && !strings.Contains(first, "succeeded") {
			t.Errorf("under meshready run the first call failed: %s", first)
		}
	}
}
