package release

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	networkingv1 "istio.io/client-go/pkg/apis/networking/v1"
	appsv1 "k8s.io/api/apps/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/meshready/meshready/analysis"
	"github.com/meshready/meshready/api/v1alpha1"
	"github.com/meshready/meshready/internal/localcluster"
	"github.com/meshready/meshready/pilotclient"
)

// The state machine against a real kube-apiserver (etcd + apiserver from
// `make cluster-bins`, no controllers, no kubelet: the test writes
// Deployment status as the Deployment controller would). Pilot and
// Prometheus are played by the test (fakePilot, fakeJudge) so that each
// path is deterministic; the end-to-end scenarios with the real istiod and
// Prometheus are in integration/release_test.go.

func TestMain(m *testing.M) {
	if localcluster.Missing(localcluster.Options{}) == "" {
		localcluster.EnterNetns()
	}
	os.Exit(m.Run())
}

var (
	apiOnce sync.Once
	apiC    *localcluster.Cluster
	apiErr  error
)

func needAPIServer(t *testing.T) client.Client {
	t.Helper()
	if testing.Short() {
		t.Skip("real kube-apiserver: skipped under -short")
	}
	if m := localcluster.Missing(localcluster.Options{}); m != "" {
		if os.Getenv("MESHREADY_REQUIRE_CLUSTER") != "" {
			t.Fatal(m)
		}
		t.Skip("SKIPPED, no real kube-apiserver to test against: " + m)
	}
	apiOnce.Do(func() {
		dir, err := os.MkdirTemp("", "meshready-release-test-")
		if err != nil {
			apiErr = err
			return
		}
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer cancel()
		apiC, apiErr = localcluster.Start(ctx, localcluster.Options{Dir: dir})
		if apiErr != nil {
			return
		}
		for _, f := range []string{filepath.Join(localcluster.BinDir(), "istio-crds.yaml"), filepath.Join("..", "config", "crd", "bases", "meshready.io_releases.yaml")} {
			if _, apiErr = apiC.Kubectl(ctx, nil, "apply", "--server-side", "-f", f); apiErr != nil {
				return
			}
		}
		_, apiErr = apiC.Kubectl(ctx, nil, "wait", "--for=condition=Established", "--timeout=60s", "crd/releases.meshready.io", "crd/virtualservices.networking.istio.io", "crd/destinationrules.networking.istio.io")
	})
	if apiErr != nil {
		t.Fatalf("kube-apiserver: %v", apiErr)
	}
	scheme, err := Scheme()
	if err != nil {
		t.Fatal(err)
	}
	c, err := client.New(apiC.REST, client.Options{Scheme: scheme})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

const testObjects = `apiVersion: v1
kind: Service
metadata: {name: shop, namespace: NS, labels: {app: shop}}
spec:
  selector: {app: shop}
  ports: [{name: grpc, port: 7070, targetPort: 7070}]
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: shop, namespace: NS}
spec:
  host: shop
  subsets: [{name: v1, labels: {version: v1}}]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: shop, namespace: NS}
spec:
  hosts: [shop]
  http:
  - name: testers
    match: [{headers: {x-tester: {exact: "yes"}}}]
    route: [{destination: {host: shop, subset: v1}}]
  - name: default
    timeout: 5s
    retries: {attempts: 3, retryOn: unavailable}
    route: [{destination: {host: shop, subset: v1}}]
`

func deployment(ns, version string) string {
	return fmt.Sprintf(`apiVersion: apps/v1
kind: Deployment
metadata: {name: shop-%[2]s, namespace: %[1]s, labels: {app: shop, version: %[2]s}}
spec:
  replicas: 2
  selector: {matchLabels: {app: shop, version: %[2]s}}
  template:
    metadata: {labels: {app: shop, version: %[2]s}}
    spec:
      terminationGracePeriodSeconds: 40
      containers:
      - name: shop
        image: shop:%[2]s
        ports: [{name: grpc, containerPort: 7070}, {name: health, containerPort: 54321}]
        readinessProbe: {httpGet: {path: /health, port: 54321}}
        livenessProbe: {httpGet: {path: /health/live, port: 54321}}
`, ns, version)
}

// world is one test's namespace, objects and fakes.
type world struct {
	t     *testing.T
	c     client.Client
	ns    string
	clock time.Time
	pilot *fakePilot
	judge *fakeJudge
	r     *Reconciler
}

func newWorld(t *testing.T, name string) *world {
	t.Helper()
	c := needAPIServer(t)
	ctx := context.Background()
	ns := strings.ToLower(name)
	if _, err := apiC.Kubectl(ctx, nil, "create", "namespace", ns); err != nil {
		t.Fatal(err)
	}
	w := &world{t: t, c: c, ns: ns, clock: time.Now()}
	w.apply(strings.ReplaceAll(testObjects, "NS", ns))
	w.apply(deployment(ns, "v1"))
	w.apply(deployment(ns, "v2"))
	w.setReady("shop-v1", 2)
	w.setReady("shop-v2", 2)
	w.pilot = &fakePilot{c: c, ns: ns, acks: true}
	w.judge = &fakeJudge{}
	w.newController()
	return w
}

// newController is a restarted controller: nothing in memory.
func (w *world) newController() {
	w.r = &Reconciler{
		Client: w.c, Judge: w.judge, Now: func() time.Time { return w.clock }, Settle: time.Second,
		Gates: &Gatekeeper{PollInterval: time.Millisecond, StragglerAfter: time.Hour,
			Replicas: func(context.Context) ([]Replica, error) { return []Replica{{Name: "istiod-0", API: w.pilot}}, nil }},
	}
}

func (w *world) apply(doc string) {
	w.t.Helper()
	if err := apiC.Apply(context.Background(), doc); err != nil {
		w.t.Fatal(err)
	}
}

// setReady writes a Deployment's status as the Deployment controller would.
func (w *world) setReady(name string, n int32) {
	w.t.Helper()
	ctx := context.Background()
	var d appsv1.Deployment
	if err := w.c.Get(ctx, types.NamespacedName{Namespace: w.ns, Name: name}, &d); err != nil {
		w.t.Fatal(err)
	}
	d.Status = appsv1.DeploymentStatus{ObservedGeneration: d.Generation, Replicas: n, UpdatedReplicas: n, ReadyReplicas: n, AvailableReplicas: n}
	if err := w.c.Status().Update(ctx, &d); err != nil {
		w.t.Fatal(err)
	}
}

func (w *world) create(steps []int32, mod func(*v1alpha1.Release)) {
	w.t.Helper()
	rel := &v1alpha1.Release{
		ObjectMeta: metav1.ObjectMeta{Name: "shop-v2", Namespace: w.ns},
		Spec: v1alpha1.ReleaseSpec{Service: "shop", To: v1alpha1.ReleaseTarget{Version: "v2", Deployment: "shop-v2"}, Steps: steps,
			Interval: metav1.Duration{Duration: 10 * time.Second}, Propagation: v1alpha1.Propagation{Timeout: metav1.Duration{Duration: 30 * time.Second}},
			Analysis: v1alpha1.Analysis{FailureLimit: 2, InconclusiveLimit: 2, MinRequests: 10, MaxErrorRate: "0.01"}},
	}
	if mod != nil {
		mod(rel)
	}
	if err := w.c.Create(context.Background(), rel); err != nil {
		w.t.Fatal(err)
	}
}

func (w *world) release() *v1alpha1.Release {
	w.t.Helper()
	var rel v1alpha1.Release
	if err := w.c.Get(context.Background(), types.NamespacedName{Namespace: w.ns, Name: "shop-v2"}, &rel); err != nil {
		w.t.Fatal(err)
	}
	return &rel
}

// run reconciles until until() holds (or the release is terminal), moving
// the fake clock by each RequeueAfter. It fails after max reconciles.
func (w *world) run(limit int, until func(*v1alpha1.Release) bool) *v1alpha1.Release {
	w.t.Helper()
	ctx := context.Background()
	for i := 0; i < limit; i++ {
		rel := w.release()
		if rel.Status.Phase.Terminal() || (until != nil && until(rel)) {
			return rel
		}
		if rel.Status.Stage == v1alpha1.StageRetireDeploy {
			w.setReady(rel.Status.FromDeployment, 0) // the ReplicaSet controller ended the pods
		}
		if rel.Status.Stage == v1alpha1.StageDeploy && rel.Status.ToDeployment != "" && rel.Spec.To.Image != "" {
			w.setReady(rel.Status.ToDeployment, 2) // the clone's pods came up
		}
		res, err := w.r.Reconcile(ctx, ctrl.Request{NamespacedName: types.NamespacedName{Namespace: w.ns, Name: "shop-v2"}})
		if err != nil && !apierrors.IsConflict(err) && !strings.Contains(err.Error(), "test operation") {
			w.t.Logf("reconcile %d: %v", i, err)
		}
		w.clock = w.clock.Add(max(res.RequeueAfter, 100*time.Millisecond))
		time.Sleep(5 * time.Millisecond) // let the apiserver's watch cache catch up
	}
	rel := w.release()
	w.t.Fatalf("not done after %d reconciles: %s %s %s", limit, rel.Status.Phase, rel.Status.Stage, rel.Status.Message)
	return nil
}

func (w *world) vs() *networkingv1.VirtualService {
	w.t.Helper()
	var vs networkingv1.VirtualService
	if err := w.c.Get(context.Background(), types.NamespacedName{Namespace: w.ns, Name: "shop"}, &vs); err != nil {
		w.t.Fatal(err)
	}
	return &vs
}

// fakePilot is one istiod replica over one caller: every write to the
// namespace's VirtualService or DestinationRule is a new push version, and
// the caller ACKs it at once (acks) or never.
type fakePilot struct {
	c    client.Client
	ns   string
	acks bool

	mu      sync.Mutex
	seen    string // the resourceVersions last pushed
	version int
	acked   int
	calls   map[string]int
}

func (p *fakePilot) push(ctx context.Context) (pilotclient.HostRouting, error) {
	var vs networkingv1.VirtualService
	var dr networkingv1.DestinationRule
	if err := p.c.Get(ctx, types.NamespacedName{Namespace: p.ns, Name: "shop"}, &vs); err != nil {
		return pilotclient.HostRouting{}, err
	}
	if err := p.c.Get(ctx, types.NamespacedName{Namespace: p.ns, Name: "shop"}, &dr); err != nil {
		return pilotclient.HostRouting{}, err
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if key := vs.ResourceVersion + "/" + dr.ResourceVersion; key != p.seen {
		p.seen = key
		p.version++
		if p.acks || p.acked == 0 {
			p.acked = p.version
		}
	}
	hr := pilotclient.HostRouting{Version: p.ver(p.version), Subsets: map[string]bool{}, Routed: true}
	for _, s := range dr.Spec.GetSubsets() {
		hr.Subsets[s.GetName()] = true
	}
	for i, h := range vs.Spec.GetHttp() {
		w := map[string]uint32{}
		for sub, x := range RouteWeights(&vs.Spec, i) {
			w[sub] = uint32(x)
		}
		hr.Routes = append(hr.Routes, pilotclient.Route{Name: h.GetName(), Weights: w})
	}
	return hr, nil
}

func (p *fakePilot) ver(n int) string { return fmt.Sprintf("2026-12-02T10:00:00Z/%d", n) }

func (p *fakePilot) count(kind string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.calls == nil {
		p.calls = map[string]int{}
	}
	p.calls[kind]++
}

func (p *fakePilot) Fleet(ctx context.Context, _ string, _ int) ([]pilotclient.ProxyStatus, error) {
	p.count("syncz")
	if _, err := p.push(ctx); err != nil {
		return nil, err
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	mk := func(typ string) pilotclient.TypeStatus {
		return pilotclient.TypeStatus{Type: typ, Sent: p.ver(p.version) + "x", SentVersion: p.ver(p.version), Acked: p.ver(p.acked) + "x", AckedVersion: p.ver(p.acked)}
	}
	return []pilotclient.ProxyStatus{{ProxyID: "caller-1." + p.ns, Types: []pilotclient.TypeStatus{mk("CDS"), mk("RDS")}}}, nil
}

func (p *fakePilot) HostRouting(ctx context.Context, proxyID, host string) (pilotclient.HostRouting, error) {
	p.count("config_dump")
	return p.push(ctx)
}

// fakeJudge answers windows from a script, in order (then Pass).
type fakeJudge struct {
	mu      sync.Mutex
	queue   []v1alpha1.Verdict
	windows []analysis.Window
}

func (j *fakeJudge) Judge(_ context.Context, t analysis.Target, w analysis.Window, _ analysis.Thresholds) (analysis.Result, error) {
	j.mu.Lock()
	defer j.mu.Unlock()
	j.windows = append(j.windows, w)
	v := v1alpha1.VerdictPass
	if len(j.queue) > 0 {
		v, j.queue = j.queue[0], j.queue[1:]
	}
	return analysis.Result{Verdict: v, Reason: "scripted " + string(v), Window: w}, nil
}

func verdicts(rel *v1alpha1.Release) string {
	var out []string
	for _, h := range rel.Status.History {
		out = append(out, fmt.Sprintf("%d:%s", h.Weight, h.Verdict))
	}
	return strings.Join(out, " ")
}

func TestReleaseStateMachine(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name    string
		steps   []int32
		script  []v1alpha1.Verdict
		acks    bool
		mod     func(*v1alpha1.Release)
		phase   v1alpha1.Phase
		history string
		route   map[string]int32 // the default route at the end
		subsets []string
	}{
		{name: "good", steps: []int32{10, 50, 100}, acks: true, phase: v1alpha1.PhaseSucceeded,
			history: "10:Pass 50:Pass 100:Pass", route: map[string]int32{"v2": 100}, subsets: []string{"v2"}},
		{name: "fails twice", steps: []int32{10, 50, 100}, acks: true, script: []v1alpha1.Verdict{v1alpha1.VerdictPass, v1alpha1.VerdictFail, v1alpha1.VerdictFail},
			phase: v1alpha1.PhaseRolledBack, history: "10:Pass 50:Fail 50:Fail", route: map[string]int32{"v1": 100}, subsets: []string{"v1", "v2"}},
		{name: "one failure is not a rollback", steps: []int32{50, 100}, acks: true, script: []v1alpha1.Verdict{v1alpha1.VerdictFail, v1alpha1.VerdictPass},
			phase: v1alpha1.PhaseSucceeded, history: "50:Fail 50:Pass 100:Pass", route: map[string]int32{"v2": 100}, subsets: []string{"v2"}},
		{name: "inconclusive pauses", steps: []int32{10, 100}, acks: true, script: []v1alpha1.Verdict{v1alpha1.VerdictInconclusive, v1alpha1.VerdictInconclusive},
			phase: v1alpha1.PhasePaused, history: "10:Inconclusive 10:Inconclusive", route: map[string]int32{"v1": 90, "v2": 10}, subsets: []string{"v1", "v2"}},
		{name: "a proxy that never ACKs pauses and is named", steps: []int32{10, 100}, acks: false,
			// The subset's push is ACKed (the fake's first); step 1's weights never are.
			phase: v1alpha1.PhasePaused, history: "10:GateTimeout", route: map[string]int32{"v1": 90, "v2": 10}, subsets: []string{"v1", "v2"}},
		{name: "cloned from v1 with a new image", steps: []int32{50, 100}, acks: true,
			mod: func(r *v1alpha1.Release) {
				r.Spec.To = v1alpha1.ReleaseTarget{Version: "v3", Image: "shop:v3"}
			},
			phase: v1alpha1.PhaseSucceeded, history: "50:Pass 100:Pass", route: map[string]int32{"v3": 100}, subsets: []string{"v3"}},
		{name: "retire skipped", steps: []int32{100}, acks: true, mod: func(r *v1alpha1.Release) { r.Spec.Retire.Skip = true },
			phase: v1alpha1.PhaseSucceeded, history: "100:Pass", route: map[string]int32{"v1": 0, "v2": 100}, subsets: []string{"v1", "v2"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			w := newWorld(t, "sm-"+strings.ReplaceAll(tc.name, " ", "-"))
			w.pilot.acks = tc.acks
			w.judge.queue = tc.script
			w.create(tc.steps, tc.mod)
			rel := w.run(400, func(r *v1alpha1.Release) bool { return r.Status.Phase == v1alpha1.PhasePaused })
			if rel.Status.Phase != tc.phase {
				t.Fatalf("phase %s (%s), want %s", rel.Status.Phase, rel.Status.Message, tc.phase)
			}
			if got := verdicts(rel); got != tc.history {
				t.Errorf("history %q, want %q", got, tc.history)
			}
			vs := w.vs()
			to := rel.Spec.To.Version
			i := ReleaseRoute(&vs.Spec, "shop", w.ns, "v1", to)
			if got := RouteWeights(&vs.Spec, i); fmt.Sprint(got) != fmt.Sprint(tc.route) {
				t.Errorf("default route %v, want %v", got, tc.route)
			}
			// The other route and the default route's own settings are untouched.
			if h := vs.Spec.GetHttp(); len(h) != 2 || h[0].GetName() != "testers" || fmt.Sprint(RouteWeights(&vs.Spec, 0)) != "map[v1:100]" || h[1].GetTimeout().AsDuration() != 5*time.Second || h[1].GetRetries().GetAttempts() != 3 {
				t.Errorf("the VirtualService was changed beyond the default route's weights: %v", vs.Spec.GetHttp())
			}
			var dr networkingv1.DestinationRule
			if err := w.c.Get(context.Background(), types.NamespacedName{Namespace: w.ns, Name: "shop"}, &dr); err != nil {
				t.Fatal(err)
			}
			var subs []string
			for _, s := range dr.Spec.GetSubsets() {
				subs = append(subs, s.GetName())
			}
			if fmt.Sprint(subs) != fmt.Sprint(tc.subsets) {
				t.Errorf("subsets %v, want %v", subs, tc.subsets)
			}
			switch tc.phase {
			case v1alpha1.PhaseRolledBack:
				var d appsv1.Deployment
				_ = w.c.Get(context.Background(), types.NamespacedName{Namespace: w.ns, Name: "shop-v2"}, &d)
				if d.Spec.Replicas == nil || *d.Spec.Replicas != 0 {
					t.Errorf("rolled back, but shop-v2 not scaled to 0")
				}
			case v1alpha1.PhaseSucceeded:
				if rel.Spec.To.Image != "" {
					var c appsv1.Deployment
					if err := w.c.Get(context.Background(), types.NamespacedName{Namespace: w.ns, Name: "shop-v3"}, &c); err != nil {
						t.Fatalf("the clone: %v", err)
					}
					if c.Spec.Template.Spec.Containers[0].Image != "shop:v3" || c.Spec.Selector.MatchLabels["version"] != "v3" || c.Spec.Template.Labels["version"] != "v3" || c.Labels["version"] != "v3" ||
						c.Spec.Template.Spec.TerminationGracePeriodSeconds == nil || *c.Spec.Template.Spec.TerminationGracePeriodSeconds != 40 || c.Annotations[releaseAnnotation] != "shop-v2" {
						t.Errorf("the clone is not v1's Deployment with image and version changed: %+v", c)
					}
				}
				var d appsv1.Deployment
				err := w.c.Get(context.Background(), types.NamespacedName{Namespace: w.ns, Name: "shop-v1"}, &d)
				if tc.mod == nil && !apierrors.IsNotFound(err) {
					t.Errorf("shop-v1 not deleted: %v", err)
				}
			case v1alpha1.PhasePaused:
				if !rel.Spec.Paused {
					t.Errorf("paused by the controller without spec.paused")
				}
				if !strings.HasPrefix(rel.Status.Message, "paused: ") || strings.Contains(rel.Status.Message, "spec.paused") {
					t.Errorf("paused without the controller's reason: %s", rel.Status.Message)
				}
				if !tc.acks && !strings.Contains(rel.Status.Message, "caller-1."+w.ns) {
					t.Errorf("the proxy that did not ACK is not named: %s", rel.Status.Message)
				}
			}
		})
	}
}

// The controller restarted before every reconcile (nothing in memory but
// status): the release ends the same, each step judged once, and every
// write made once.
func TestReleaseResumesFromStatusAlone(t *testing.T) {
	t.Parallel()
	w := newWorld(t, "resume")
	w.create([]int32{25, 50, 100}, nil)
	ctx := context.Background()
	gen0 := w.vs().Generation
	for i := 0; i < 400; i++ {
		w.newController()
		rel := w.release()
		if rel.Status.Phase.Terminal() {
			break
		}
		if rel.Status.Stage == v1alpha1.StageRetireDeploy {
			w.setReady("shop-v1", 0)
		}
		res, _ := w.r.Reconcile(ctx, ctrl.Request{NamespacedName: types.NamespacedName{Namespace: w.ns, Name: "shop-v2"}})
		w.clock = w.clock.Add(max(res.RequeueAfter, 100*time.Millisecond))
	}
	rel := w.release()
	if rel.Status.Phase != v1alpha1.PhaseSucceeded {
		t.Fatalf("phase %s: %s", rel.Status.Phase, rel.Status.Message)
	}
	if got := verdicts(rel); got != "25:Pass 50:Pass 100:Pass" {
		t.Errorf("history %q", got)
	}
	// 25, 50, 100, retire: four writes of the VirtualService, no more.
	if d := w.vs().Generation - gen0; d != 4 {
		t.Errorf("the VirtualService was written %d times, want 4", d)
	}
}

// A person's edits: pause holds, resume goes on, promote skips the
// window of the step named, promote --full goes straight to 100 %, abort
// rolls back.
func TestReleasePersonEdits(t *testing.T) {
	t.Parallel()
	w := newWorld(t, "person")
	w.create([]int32{10, 25, 50, 100}, nil)
	ctx := context.Background()
	patch := func(p string) {
		t.Helper()
		rel := w.release()
		if err := w.c.Patch(ctx, rel, client.RawPatch(types.MergePatchType, []byte(p))); err != nil {
			t.Fatal(err)
		}
	}
	inAnalysis := func(step int32) func(*v1alpha1.Release) bool {
		return func(r *v1alpha1.Release) bool {
			return r.Status.Stage == v1alpha1.StageAnalysis && r.Status.Step == step
		}
	}
	w.run(100, inAnalysis(0))
	patch(`{"spec":{"paused":true}}`)
	rel := w.run(5, func(r *v1alpha1.Release) bool { return r.Status.Phase == v1alpha1.PhasePaused })
	for range 5 { // time passes; nothing moves
		w.clock = w.clock.Add(time.Minute)
		_, _ = w.r.Reconcile(ctx, ctrl.Request{NamespacedName: types.NamespacedName{Namespace: w.ns, Name: "shop-v2"}})
	}
	if r := w.release(); r.Status.Step != 0 || len(r.Status.History) != 0 {
		t.Fatalf("paused release moved: step %d, history %s", r.Status.Step, verdicts(r))
	}
	patch(`{"spec":{"paused":false}}`)
	w.run(100, inAnalysis(1))
	patch(`{"spec":{"promote":{"step":1}}}`)
	rel = w.run(100, inAnalysis(2))
	if got := verdicts(rel); got != "10:Pass 25:Promoted" {
		t.Errorf("history after promote: %q", got)
	}
	patch(`{"spec":{"abort":true}}`)
	rel = w.run(100, nil)
	if rel.Status.Phase != v1alpha1.PhaseRolledBack {
		t.Fatalf("after abort: %s %s", rel.Status.Phase, rel.Status.Message)
	}
	vs := w.vs()
	if got := RouteWeights(&vs.Spec, 1); fmt.Sprint(got) != "map[v1:100]" {
		t.Errorf("after abort the route is %v", got)
	}
}
