package integration

import (
	"context"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"google.golang.org/grpc"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/meshready/meshready/api/v1alpha1"
)

// The release scenarios of issue 14 on the real control plane: each
// release goes through the controller process, every weight through the
// real istiod to proxyless gRPC callers, every window's numbers through
// the sidecar stand-ins' Istio metrics and the real Prometheus.

var (
	releaseOnce sync.Once
	releaseMesh *ReleaseMesh
	releaseErr  error
)

// rateShop is each caller's offered load (calls/s).
const rateShop = 60

type shopCallers struct {
	conns  []*grpc.ClientConn
	loads  []*Load
	csds   *grpc.ClientConn
	csdsLd *Load
}

var callers *shopCallers

func needReleaseMesh(t *testing.T) (*ReleaseMesh, *shopCallers) {
	t.Helper()
	m := needClusterMesh(t)
	releaseOnce.Do(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
		defer cancel()
		dir := filepath.Join(clusterDir, "release")
		if releaseErr = os.MkdirAll(dir, 0o755); releaseErr != nil {
			return
		}
		releaseMesh, releaseErr = StartReleaseMesh(ctx, m, dir)
		if releaseErr != nil {
			return
		}
		c := &shopCallers{}
		for i := range 2 {
			conn, err := DialShop(fmt.Sprintf("shop-caller-%d", i), 60*time.Second)
			if err != nil {
				releaseErr = err
				return
			}
			c.conns = append(c.conns, conn)
			c.loads = append(c.loads, StartLoad(conn, rateShop))
		}
		conn, err := DialShopDefaultPool(60 * time.Second)
		if err != nil {
			releaseErr = err
			return
		}
		c.csds, c.csdsLd = conn, StartLoad(conn, rateShop)
		callers = c
	})
	if releaseErr != nil {
		t.Fatalf("release mesh: %v\n%s", releaseErr, m.Describe())
	}
	return releaseMesh, callers
}

func (c *shopCallers) calls() []Call {
	var all []Call
	for i, l := range append(slices.Clone(c.loads), c.csdsLd) {
		name := "default-pool"
		if i < len(c.loads) {
			name = fmt.Sprintf("shop-caller-%d", i)
		}
		for _, call := range l.Snapshot().Calls {
			call.Caller = name
			all = append(all, call)
		}
	}
	sort.Slice(all, func(i, j int) bool { return all[i].At.Before(all[j].At) })
	return all
}

// gateSeen is one gate's opening as the test saw it, with what the CSDS
// caller held at that moment.
type gateSeen struct {
	Object  string
	Written time.Time
	Opened  time.Time
	Held    HeldRoute
	HeldErr error
	Weight  int32
	Stage   v1alpha1.Stage
}

// follow polls the Release until it is terminal (or stop), recording
// every gate opening and reading the CSDS caller the moment it sees one.
func follow(ctx context.Context, t *testing.T, rm *ReleaseMesh, name string, timeout time.Duration, onPoll func(*v1alpha1.Release) bool) (*v1alpha1.Release, []gateSeen) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	var seen []gateSeen
	lastOpened := ""
	lastMsg := ""
	for {
		rel, err := rm.Release(ctx, name)
		if err == nil {
			if g := rel.Status.Gate; g != nil && g.OpenedAt != nil {
				key := g.Object + "@" + g.ResourceVersion
				if key != lastOpened {
					lastOpened = key
					held, herr := CSDSRoute(ctx)
					seen = append(seen, gateSeen{Object: g.Object, Written: g.WrittenAt.Time, Opened: g.OpenedAt.Time, Held: held, HeldErr: herr, Weight: rel.Status.Weights.Desired, Stage: rel.Status.Stage})
				}
			}
			if m := fmt.Sprintf("%s %s %s", rel.Status.Phase, rel.Status.StepLabel, rel.Status.Message); m != lastMsg {
				lastMsg = m
				t.Logf("%s: %s", name, m)
			}
			if rel.Status.Phase.Terminal() || (onPoll != nil && onPoll(rel)) {
				return rel, seen
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("release %s not done within %s: %s\ncontroller log: %s", name, timeout, lastMsg, rm.ControllerLog())
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func createRelease(ctx context.Context, t *testing.T, rm *ReleaseMesh, name, to string, steps []int32, interval time.Duration, mod func(*v1alpha1.Release)) {
	t.Helper()
	rel := &v1alpha1.Release{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "default"},
		Spec: v1alpha1.ReleaseSpec{
			Service: "shop", To: v1alpha1.ReleaseTarget{Version: to, Deployment: "shop-" + to},
			Steps: steps, Interval: metav1.Duration{Duration: interval},
			Analysis:    v1alpha1.Analysis{MaxErrorRate: "0.01", MinRequests: 40, FailureLimit: 2, InconclusiveLimit: 2},
			Propagation: v1alpha1.Propagation{Timeout: metav1.Duration{Duration: time.Minute}},
		},
	}
	if mod != nil {
		mod(rel)
	}
	if err := rm.Client.Create(ctx, rel); err != nil {
		t.Fatal(err)
	}
}

// historyTable prints a release's history as the README shows it.
func historyTable(rel *v1alpha1.Release, calls []Call) string {
	var b strings.Builder
	fmt.Fprintf(&b, "%-5s %-6s %-8s %-12s %-12s %-9s %-9s %-9s %-9s %-8s %s\n", "STEP", "WEIGHT", "VERDICT", "GATE", "V2 CALLS", "V2 ERR", "V2 P99", "V1 P99", "OBSERVED", "CALLERS", "REASON")
	for _, h := range rel.Status.History {
		gate := "-"
		if h.GateWrittenAt != nil && h.GateOpenedAt != nil {
			gate = h.GateOpenedAt.Sub(h.GateWrittenAt.Time).Round(time.Millisecond).String()
		}
		to, from := h.To, h.From
		if to == nil {
			to = &v1alpha1.WindowNumbers{}
		}
		if from == nil {
			from = &v1alpha1.WindowNumbers{}
		}
		share := "-"
		if h.WindowStart != nil && h.WindowEnd != nil {
			s, n := VersionShare(calls, rel.Spec.To.Version, h.WindowStart.Time, h.WindowEnd.Time)
			share = fmt.Sprintf("%.1f%% of %d", s, n)
		}
		fmt.Fprintf(&b, "%-5d %-6d %-8s %-12s %-12s %-9s %-9s %-9s %-9s %-8s %s\n", h.Step+1, h.Weight, h.Verdict, gate, to.Requests, to.ErrorRate, to.P99, from.P99, h.Observed, share, h.Reason)
	}
	return b.String()
}

// checkGates: at every weights gate's opening, the CSDS caller already
// held the weights, accepted no later than the opening.
func checkGates(t *testing.T, rel *v1alpha1.Release, seen []gateSeen) (lead []time.Duration) {
	t.Helper()
	for _, g := range seen {
		if !strings.HasPrefix(g.Object, "VirtualService/") {
			continue
		}
		if g.HeldErr == nil && g.Held.LastUpdated.Before(g.Written) {
			// The write did not change what the caller gets (retiring a
			// subset already at weight 0): nothing new to hold.
			continue
		}
		if g.HeldErr != nil {
			t.Errorf("gate %s opened at %s: reading the caller's CSDS: %v", g.Object, g.Opened.Format(time.TimeOnly), g.HeldErr)
			continue
		}
		if g.Held.LastUpdated.After(g.Opened) {
			t.Errorf("gate %s opened at %s before the caller accepted its route (%s)", g.Object, g.Opened.Format("15:04:05.000"), g.Held.LastUpdated.Format("15:04:05.000"))
		}
		lead = append(lead, g.Opened.Sub(g.Held.LastUpdated))
		t.Logf("gate %s (weight %d): written %s, caller accepted %s, opened %s: caller holds %v", g.Object, g.Weight,
			g.Written.Format("15:04:05.000"), g.Held.LastUpdated.Format("15:04:05.000"), g.Opened.Format("15:04:05.000"), g.Held.Weights)
	}
	return lead
}

// TestReleaseGoodV2: (a) a good v2 promoted 10→25→50→100 and v1 retired
// under steady load, with 0 failed calls; each window's observed share in
// the callers' own traffic matches the step; every gate opened only once
// the CSDS caller held the weights.
func TestReleaseGoodV2(t *testing.T) {
	rm, c := needReleaseMesh(t)
	ctx := context.Background()
	if err := rm.M.Deploy(ctx, ShopSpec("v2"), 90*time.Second); err != nil {
		t.Fatal(err)
	}
	api0, pilot0, err := rm.Counters(ctx)
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	createRelease(ctx, t, rm, "shop-v2", "v2", []int32{10, 25, 50, 100}, 8*time.Second, nil)
	rel, seen := follow(ctx, t, rm, "shop-v2", 5*time.Minute, nil)
	took := time.Since(start)
	calls := c.calls()
	t.Logf("release shop-v1 → shop-v2 (%s):\n%s", took.Round(time.Second), historyTable(rel, calls))
	if rel.Status.Phase != v1alpha1.PhaseSucceeded {
		t.Fatalf("phase %s: %s", rel.Status.Phase, rel.Status.Message)
	}
	if failed := FailedCalls(calls, start, time.Now()); len(failed) != 0 {
		t.Errorf("%d calls failed during the release:\n%s", len(failed), callLines(failed))
	}
	var windows time.Duration
	passed := map[int32]bool{}
	for _, h := range rel.Status.History {
		if h.Verdict == v1alpha1.VerdictPass {
			passed[h.Step] = true
		}
	}
	for _, h := range rel.Status.History {
		if h.Verdict == v1alpha1.VerdictInconclusive && strings.HasPrefix(h.Reason, "too few requests") && passed[h.Step] {
			// A new version's first window can undercount: Prometheus scrapes
			// a new pod only once its discovery has caught up (seconds), and
			// increase() cannot count what a series held at its first sample.
			// The controller repeats the window instead of passing on too few
			// numbers, which is the behaviour wanted; the step must still pass.
			t.Logf("step %d: one window repeated: %s", h.Step+1, h.Reason)
			continue
		}
		if h.Verdict != v1alpha1.VerdictPass {
			t.Errorf("step %d: %s (%s)", h.Step+1, h.Verdict, h.Reason)
			continue
		}
		windows += h.WindowEnd.Sub(h.WindowStart.Time)
		share, n := VersionShare(calls, "v2", h.WindowStart.Time, h.WindowEnd.Time)
		if d := share - float64(h.Weight); d > 8 || d < -8 || n < 100 {
			t.Errorf("step %d: the callers sent %.1f%% of %d calls to v2, want %d%%", h.Step+1, share, n, h.Weight)
		}
	}
	lead := checkGates(t, rel, seen)
	api1, pilot1, err := rm.Counters(ctx)
	if err != nil {
		t.Fatal(err)
	}
	time.Sleep(5 * time.Second)
	_, pilot2, _ := rm.Counters(ctx)
	t.Logf("figures: wall %s, windows %s; gate opened after the caller accepted by %v; API requests %.0f; Pilot requests %v (at rest over 5s: %v); controller RSS %.1f MiB",
		took.Round(time.Second), windows, lead, api1-api0, diff(pilot1, pilot0), diff(pilot2, pilot1), float64(rm.ControllerRSS())/(1<<20))
	if d := diff(pilot2, pilot1); len(d) > 0 {
		t.Errorf("the controller asked Pilot %v with no gate open", d)
	}
	// v1 is retired: no Deployment, no subset, no route entry.
	if out, err := rm.M.Cluster.Kubectl(ctx, nil, "get", "deployment", "shop-v1", "--ignore-not-found", "-o", "name"); err != nil || strings.TrimSpace(out) != "" {
		t.Errorf("shop-v1 still there: %q %v", out, err)
	}
}

// callLines is one line per call: when it was sent, how long it took,
// its code and message (what a failed call's cause is read from).
func callLines(calls []Call) string {
	var b strings.Builder
	for _, c := range calls {
		fmt.Fprintf(&b, "  %s %s took %s: %s %s\n", c.At.Format("15:04:05.000"), c.Caller, c.Took.Round(time.Millisecond), c.Code, c.Message)
	}
	return b.String()
}

func diff(a, b map[string]float64) map[string]float64 {
	out := map[string]float64{}
	for k, v := range a {
		if d := v - b[k]; d != 0 {
			out[k] = d
		}
	}
	return out
}

// TestReleaseBadV3: (b) a v3 that fails 5 % of its gRPC calls is rolled
// back within two windows; the failed calls are counted and shown.
func TestReleaseBadV3(t *testing.T) {
	rm, c := needReleaseMesh(t)
	ctx := context.Background()
	from := currentVersion(ctx, t, rm)
	if err := rm.M.Deploy(ctx, ShopSpec("v3", "-fail-every", "20"), 90*time.Second); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	createRelease(ctx, t, rm, "shop-v3", "v3", []int32{25, 50, 100}, 8*time.Second, nil)
	rel, _ := follow(ctx, t, rm, "shop-v3", 4*time.Minute, nil)
	calls := c.calls()
	t.Logf("release shop-%s → shop-v3 (fails every 20th call):\n%s", from, historyTable(rel, calls))
	t.Logf("failed calls seen by the callers during the release: %d", FailedIn(calls, start, time.Now()))
	if rel.Status.Phase != v1alpha1.PhaseRolledBack {
		t.Fatalf("phase %s, want RolledBack: %s", rel.Status.Phase, rel.Status.Message)
	}
	fails := 0
	for _, h := range rel.Status.History {
		if h.Verdict == v1alpha1.VerdictPass {
			t.Errorf("a failing v3 passed step %d: %s", h.Step+1, h.Reason)
		}
		if h.Verdict == v1alpha1.VerdictFail {
			fails++
		}
	}
	if fails > 2 || len(rel.Status.History) > 2 {
		t.Errorf("rolled back after %d windows, want within two", len(rel.Status.History))
	}
	assertAllTo(ctx, t, rm, from)
}

// TestReleaseSlowV4: (c) a v4 whose p99 is 30 ms over the threshold is
// rolled back on latency.
func TestReleaseSlowV4(t *testing.T) {
	rm, c := needReleaseMesh(t)
	ctx := context.Background()
	from := currentVersion(ctx, t, rm)
	if err := rm.M.Deploy(ctx, ShopSpec("v4", "-extra-latency", "50ms"), 90*time.Second); err != nil {
		t.Fatal(err)
	}
	createRelease(ctx, t, rm, "shop-v4", "v4", []int32{25, 50, 100}, 8*time.Second, func(r *v1alpha1.Release) {
		p99 := metav1.Duration{Duration: 40 * time.Millisecond} // the greeter's work is 20 ms; v4's 70 ms
		r.Spec.Analysis.MaxLatency.P99 = &p99
	})
	rel, _ := follow(ctx, t, rm, "shop-v4", 4*time.Minute, nil)
	t.Logf("release shop-%s → shop-v4 (50 ms slower):\n%s", from, historyTable(rel, c.calls()))
	if rel.Status.Phase != v1alpha1.PhaseRolledBack {
		t.Fatalf("phase %s, want RolledBack: %s", rel.Status.Phase, rel.Status.Message)
	}
	if last := rel.Status.History[len(rel.Status.History)-1]; !strings.Contains(last.Reason, "p99") {
		t.Errorf("rolled back for %q, want the p99", last.Reason)
	}
	assertAllTo(ctx, t, rm, from)
}

// TestReleaseTooLittleTraffic: (d) too few requests ⇒ inconclusive ⇒
// paused, never promoted; abort rolls it back.
func TestReleaseTooLittleTraffic(t *testing.T) {
	rm, c := needReleaseMesh(t)
	ctx := context.Background()
	from := currentVersion(ctx, t, rm)
	if err := rm.M.Deploy(ctx, ShopSpec("v5"), 90*time.Second); err != nil {
		t.Fatal(err)
	}
	createRelease(ctx, t, rm, "shop-v5", "v5", []int32{10, 100}, 6*time.Second, func(r *v1alpha1.Release) {
		r.Spec.Analysis.MinRequests = 100000 // more than the callers send in a window
	})
	rel, _ := follow(ctx, t, rm, "shop-v5", 3*time.Minute, func(r *v1alpha1.Release) bool { return r.Status.Phase == v1alpha1.PhasePaused })
	t.Logf("release shop-%s → shop-v5 (min requests 100000):\n%s", from, historyTable(rel, c.calls()))
	if rel.Status.Phase != v1alpha1.PhasePaused || !rel.Spec.Paused {
		t.Fatalf("phase %s paused=%v, want Paused by the controller", rel.Status.Phase, rel.Spec.Paused)
	}
	if rel.Status.Step != 0 || rel.Status.Weights.Desired != 10 {
		t.Fatalf("moved to step %d (%d%%) without a verdict", rel.Status.Step+1, rel.Status.Weights.Desired)
	}
	for _, h := range rel.Status.History {
		if h.Verdict != v1alpha1.VerdictInconclusive {
			t.Errorf("window verdict %s, want Inconclusive", h.Verdict)
		}
	}
	// A person aborts.
	if err := rm.Client.Patch(ctx, rel, clientMerge(`{"spec":{"abort":true}}`)); err != nil {
		t.Fatal(err)
	}
	rel, _ = follow(ctx, t, rm, "shop-v5", 2*time.Minute, nil)
	if rel.Status.Phase != v1alpha1.PhaseRolledBack {
		t.Fatalf("after abort: %s %s", rel.Status.Phase, rel.Status.Message)
	}
	assertAllTo(ctx, t, rm, from)
}

// TestReleaseControllerKilled: (e) the controller SIGKILLed in every
// stage it passes through (deploy, subset gate, weights gate, window,
// retire) and restarted: the release resumes from status alone, no step is
// judged twice, no weight moves backwards, and nothing fails.
func TestReleaseControllerKilled(t *testing.T) {
	rm, c := needReleaseMesh(t)
	ctx := context.Background()
	from := currentVersion(ctx, t, rm)
	if err := rm.M.Deploy(ctx, ShopSpec("v6"), 90*time.Second); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	createRelease(ctx, t, rm, "shop-v6", "v6", []int32{20, 60, 100}, 6*time.Second, nil)
	killed := map[string]bool{}
	var weights []int32
	rel, _ := follow(ctx, t, rm, "shop-v6", 5*time.Minute, func(r *v1alpha1.Release) bool {
		if n := len(weights); n == 0 || weights[n-1] != r.Status.Weights.Desired {
			weights = append(weights, r.Status.Weights.Desired)
		}
		key := string(r.Status.Stage) + "/" + fmt.Sprint(r.Status.Step)
		if r.Status.Stage != "" && r.Status.Stage != v1alpha1.StageDone && !killed[key] {
			killed[key] = true
			rm.KillController()
			t.Logf("killed the controller in %s (step %s)", r.Status.Stage, r.Status.StepLabel)
			time.Sleep(300 * time.Millisecond)
			if err := rm.StartController(); err != nil {
				t.Fatal(err)
			}
		}
		return false
	})
	calls := c.calls()
	t.Logf("release shop-%s → shop-v6, controller killed %d times:\n%s", from, len(killed), historyTable(rel, calls))
	if rel.Status.Phase != v1alpha1.PhaseSucceeded {
		t.Fatalf("phase %s: %s", rel.Status.Phase, rel.Status.Message)
	}
	steps := map[int32]int{}
	for _, h := range rel.Status.History {
		steps[h.Step]++
	}
	for s, n := range steps {
		if n != 1 {
			t.Errorf("step %d judged %d times", s+1, n)
		}
	}
	if len(steps) != 3 {
		t.Errorf("steps judged: %v, want 3", slices.Sorted(maps.Keys(steps)))
	}
	for i := 1; i < len(weights); i++ {
		if weights[i] < weights[i-1] {
			t.Errorf("weight moved backwards: %v", weights)
		}
	}
	if failed := FailedCalls(calls, start, time.Now()); len(failed) != 0 {
		t.Errorf("%d calls failed:\n%s", len(failed), callLines(failed))
	}
}

// TestReleaseIstiodRestartedInGate: (f) istiod restarted while a gate is
// open: the gate waits, then opens; the release completes.
func TestReleaseIstiodRestartedInGate(t *testing.T) {
	rm, c := needReleaseMesh(t)
	ctx := context.Background()
	from := currentVersion(ctx, t, rm)
	if err := rm.M.Deploy(ctx, ShopSpec("v7"), 90*time.Second); err != nil {
		t.Fatal(err)
	}
	createRelease(ctx, t, rm, "shop-v7", "v7", []int32{50, 100}, 6*time.Second, nil)
	restarted := false
	rel, seen := follow(ctx, t, rm, "shop-v7", 5*time.Minute, func(r *v1alpha1.Release) bool {
		if !restarted && r.Status.Stage == v1alpha1.StageAnalysis && r.Status.Step == 0 {
			// The next write (step 2's weights) meets an istiod that is down.
			restarted = true
			go func() {
				time.Sleep(6 * time.Second)
				t.Logf("restarting istiod (5 s down)")
				if err := rm.M.Cluster.RestartIstiod(ctx, 5*time.Second); err != nil {
					t.Errorf("restart istiod: %v", err)
				}
			}()
		}
		return false
	})
	calls := c.calls()
	t.Logf("release shop-%s → shop-v7, istiod restarted in step 2's gate:\n%s", from, historyTable(rel, calls))
	if rel.Status.Phase != v1alpha1.PhaseSucceeded {
		t.Fatalf("phase %s: %s", rel.Status.Phase, rel.Status.Message)
	}
	// The callers that reconnected after the restart held the weights
	// before the window began: their traffic in every window matches.
	for _, h := range rel.Status.History {
		share, n := VersionShare(calls, "v7", h.WindowStart.Time, h.WindowEnd.Time)
		if d := share - float64(h.Weight); d > 8 || d < -8 {
			t.Errorf("step %d: the callers sent %.1f%% of %d calls to v7, want %d%%", h.Step+1, share, n, h.Weight)
		}
	}
	checkGates(t, rel, seen)
}

// TestReleasePrometheusStopped: (g) Prometheus frozen (SIGSTOP) during a
// window: the step holds (inconclusive, never promoted); thawed, it goes
// on.
func TestReleasePrometheusStopped(t *testing.T) {
	rm, c := needReleaseMesh(t)
	ctx := context.Background()
	from := currentVersion(ctx, t, rm)
	if err := rm.M.Deploy(ctx, ShopSpec("v8"), 90*time.Second); err != nil {
		t.Fatal(err)
	}
	createRelease(ctx, t, rm, "shop-v8", "v8", []int32{50, 100}, 6*time.Second, func(r *v1alpha1.Release) {
		r.Spec.Analysis.InconclusiveLimit = 5
	})
	pid := rm.M.Cluster.Pid("prometheus")
	if pid == 0 {
		t.Fatal("no prometheus process")
	}
	frozen, thawed := false, false
	var sawHold bool
	rel, _ := follow(ctx, t, rm, "shop-v8", 5*time.Minute, func(r *v1alpha1.Release) bool {
		if !frozen && r.Status.Stage == v1alpha1.StageAnalysis {
			frozen = true
			_ = syscall.Kill(pid, syscall.SIGSTOP)
			t.Logf("Prometheus frozen (SIGSTOP)")
		}
		if frozen && !thawed && r.Status.Inconclusive > 0 {
			sawHold = true
			if r.Status.Step != 0 {
				t.Errorf("moved on to step %d with Prometheus frozen", r.Status.Step+1)
			}
			thawed = true
			_ = syscall.Kill(pid, syscall.SIGCONT)
			t.Logf("Prometheus thawed (SIGCONT)")
		}
		return false
	})
	_ = syscall.Kill(pid, syscall.SIGCONT)
	t.Logf("release shop-%s → shop-v8, Prometheus frozen in step 1's window:\n%s", from, historyTable(rel, c.calls()))
	if !sawHold {
		t.Errorf("no inconclusive window while Prometheus was frozen")
	}
	if rel.Status.Phase != v1alpha1.PhaseSucceeded {
		t.Fatalf("phase %s: %s", rel.Status.Phase, rel.Status.Message)
	}
	first := rel.Status.History[0]
	if first.Verdict != v1alpha1.VerdictInconclusive || !strings.Contains(first.Reason, "holds") {
		t.Errorf("first window with Prometheus frozen: %s %q", first.Verdict, first.Reason)
	}
}

// currentVersion is the subset holding 100 % of the shop now.
func currentVersion(ctx context.Context, t *testing.T, rm *ReleaseMesh) string {
	t.Helper()
	out, err := rm.M.Cluster.Kubectl(ctx, nil, "get", "virtualservice", "shop", "-o", "jsonpath={.spec.http[0].route[*].destination.subset}")
	if err != nil {
		t.Fatal(err)
	}
	f := strings.Fields(out)
	if len(f) != 1 {
		t.Fatalf("the shop's route is split (%q): an earlier release did not finish", out)
	}
	return f[0]
}

func assertAllTo(ctx context.Context, t *testing.T, rm *ReleaseMesh, version string) {
	t.Helper()
	if got := currentVersion(ctx, t, rm); got != version {
		t.Errorf("route sends 100%% to %s, want %s", got, version)
	}
}

func clientMerge(patch string) client.Patch {
	return client.RawPatch(types.MergePatchType, []byte(patch))
}
