package integration

import (
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"
)

// The local mesh's scenarios (issue 5): a rolling restart of the greeter
// under steady load, the naive way and under meshready; the start-up race;
// and the bad conditions. Every pod is real processes (the greeter, and the
// agent for MeshReady pods) behind a data-plane stand-in; callers are
// proxyless gRPC clients of the real discovery server.

const (
	meshPods = 3
	meshRate = 200 // calls per second
)

type logWriter struct {
	t  testing.TB
	mu sync.Mutex
}

func (w *logWriter) Write(b []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.t.Log(strings.TrimRight(string(b), "\n"))
	return len(b), nil
}

func startLocalMesh(t *testing.T, lag time.Duration) (*LocalMesh, *Pilot) {
	t.Helper()
	needAgent(t)
	p := StartPilot(t, PilotOptions{ExtraKubeObjects: GreeterKubeObjects})
	m := NewLocalMesh(MeshOptions{Pilot: p, Agent: agentBin, Greeter: greeterBin, Out: &logWriter{t: t}, EndpointLag: lag})
	t.Cleanup(m.Close)
	return m, p
}

// startGreeters starts n pods and waits until every endpoint is ready.
func startGreeters(t *testing.T, m *LocalMesh, n int, mk func(i int) PodSpec) []*Pod {
	t.Helper()
	var pods []*Pod
	for i := range n {
		p, err := m.StartPod(mk(i))
		if err != nil {
			t.Fatal(err)
		}
		pods = append(pods, p)
	}
	for _, p := range pods {
		if err := p.WaitReady(30 * time.Second); err != nil {
			t.Fatalf("%v\n%s", err, tail(p.Output(), 30))
		}
	}
	return pods
}

func spec(name string, mode Mode, extra ...string) PodSpec {
	return PodSpec{Name: name, Mode: mode, GreeterArgs: extra}
}

// rollUnderLoad starts the v1 pods, puts steady load on the Service, rolls
// to v2 (made by next) and returns what the callers saw.
func rollUnderLoad(t *testing.T, m *LocalMesh, p *Pilot, v1 func(i int) PodSpec, v2 func(i int) PodSpec, before func(i int)) (LoadResult, RolloutReport, []*Pod) {
	t.Helper()
	old := startGreeters(t, m, meshPods, v1)
	conn, err := DialGreeter(p.XDSAddr(), "caller-"+strings.ToLower(t.Name()), 20*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	load := StartLoad(conn, meshRate)
	time.Sleep(time.Second) // a baseline before the first pod is replaced
	rep, fresh := m.Rollout(old, v2, 20*time.Second, before)
	time.Sleep(time.Second)
	res := load.Stop()
	m.Logf("load: %s", res)
	for _, s := range res.Samples {
		m.Logf("  failure: %s", s)
	}
	return res, rep, fresh
}

// TestRollingRestart is the promise: a rolling restart under steady load
// loses requests the naive way and none under meshready. It runs with no
// endpoint lag (this machine's floor: Pilot's 100 ms debounce is all that
// stands between a deletion and the callers) and with 1 s (an assumed
// Kubernetes → istiod delay of a busy cluster). Every row of the README's
// table comes from one run of this test (-v prints it).
func TestRollingRestart(t *testing.T) {
	type row struct {
		mode Mode
		lag  time.Duration
		res  LoadResult
		rep  RolloutReport
	}
	var rows []*row
	for _, lag := range []time.Duration{0, time.Second} {
		for _, mode := range []Mode{Naive, MeshReady} {
			r := &row{mode: mode, lag: lag}
			t.Run(fmt.Sprintf("%s/lag=%s", mode, lag), func(t *testing.T) {
				m, p := startLocalMesh(t, lag)
				res, rep, _ := rollUnderLoad(t, m, p,
					func(i int) PodSpec { return spec(fmt.Sprintf("v1-%d", i+1), mode) },
					func(i int) PodSpec { return spec(fmt.Sprintf("v2-%d", i+1), mode) }, nil)
				if rep.Stopped != nil || len(rep.Steps) != meshPods {
					t.Fatalf("rollout did not finish: %v (%d steps)", rep.Stopped, len(rep.Steps))
				}
				r.res, r.rep = res, rep
				rows = append(rows, r)
				if mode == MeshReady && res.Failed != 0 {
					t.Errorf("meshready: %d of %d calls failed during the rollout, want 0: %v", res.Failed, res.Total, res.Samples)
				}
				if mode == Naive && lag > 0 && res.Failed == 0 {
					t.Errorf("naive with %s endpoint lag: no call failed: the local mesh no longer shows the race it exists to show (callers routing to a pod whose app has stopped)", lag)
				}
			})
		}
	}
	var b strings.Builder
	fmt.Fprintf(&b, "| rolling restart, %d pods, %d calls/s | endpoint lag | calls | failed | p50 | p99 | max | rollout took |\n", meshPods, meshRate)
	fmt.Fprintf(&b, "|---|---|---|---|---|---|---|---|\n")
	for _, r := range rows {
		name := "naive: the app gets SIGTERM at once"
		if r.mode == MeshReady {
			name = "`meshready run`: 503, drain, then SIGTERM"
		}
		fmt.Fprintf(&b, "| %s | %s | %d | **%d** | %s | %s | %s | %s |\n", name, r.lag, r.res.Total, r.res.Failed,
			r.res.P50.Round(100*time.Microsecond), r.res.P99.Round(100*time.Microsecond), r.res.Max.Round(time.Millisecond), r.rep.Took.Round(100*time.Millisecond))
	}
	t.Logf("\n%s", b.String())
}
