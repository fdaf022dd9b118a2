package release

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"
	"time"

	networkingv1 "istio.io/client-go/pkg/apis/networking/v1"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/meshready/meshready/analysis"
	"github.com/meshready/meshready/api/v1alpha1"
	"github.com/meshready/meshready/internal/oneline"
	"github.com/meshready/meshready/lint"
	"github.com/meshready/meshready/pilotclient"
)

func oneLine(s string) string { return oneline.Cut(s, 300) }

// ---- finding the team's objects ----

func (r *Reconciler) findVirtualService(ctx context.Context, rel *v1alpha1.Release, host string) (*networkingv1.VirtualService, error) {
	ns := rel.Namespace
	if name := firstNonEmpty(rel.Spec.VirtualService, rel.Status.VirtualService); name != "" {
		var vs networkingv1.VirtualService
		if err := r.Client.Get(ctx, types.NamespacedName{Namespace: ns, Name: name}, &vs); err != nil {
			return nil, fmt.Errorf("VirtualService %s/%s: %w", ns, name, err)
		}
		return &vs, nil
	}
	var list networkingv1.VirtualServiceList
	if err := r.Client.List(ctx, &list, client.InNamespace(ns)); err != nil {
		return nil, err
	}
	var found []*networkingv1.VirtualService
	for _, vs := range list.Items {
		for _, h := range vs.Spec.GetHosts() {
			if hostMatches(h, rel.Spec.Service, ns) || h == host {
				found = append(found, vs)
				break
			}
		}
	}
	if len(found) != 1 {
		return nil, fmt.Errorf("want one VirtualService in %s for host %s, found %d (name it in spec.virtualService)", ns, host, len(found))
	}
	return found[0], nil
}

func (r *Reconciler) findDestinationRule(ctx context.Context, rel *v1alpha1.Release, host string) (*networkingv1.DestinationRule, error) {
	ns := rel.Namespace
	if name := firstNonEmpty(rel.Spec.DestinationRule, rel.Status.DestinationRule); name != "" {
		var dr networkingv1.DestinationRule
		if err := r.Client.Get(ctx, types.NamespacedName{Namespace: ns, Name: name}, &dr); err != nil {
			return nil, fmt.Errorf("DestinationRule %s/%s: %w", ns, name, err)
		}
		return &dr, nil
	}
	var list networkingv1.DestinationRuleList
	if err := r.Client.List(ctx, &list, client.InNamespace(ns)); err != nil {
		return nil, err
	}
	var found []*networkingv1.DestinationRule
	for _, dr := range list.Items {
		if h := dr.Spec.GetHost(); hostMatches(h, rel.Spec.Service, ns) || h == host {
			found = append(found, dr)
		}
	}
	if len(found) != 1 {
		return nil, fmt.Errorf("want one DestinationRule in %s for host %s, found %d (name it in spec.destinationRule)", ns, host, len(found))
	}
	return found[0], nil
}

func firstNonEmpty(s ...string) string {
	for _, x := range s {
		if x != "" {
			return x
		}
	}
	return ""
}

// lintBlocks runs the onboarding lint on the release's objects and returns
// its errors in one line ("" when none): DESIGN.md, step 1.
func lintBlocks(svc *corev1.Service, dep *appsv1.Deployment, vs *networkingv1.VirtualService, dr *networkingv1.DestinationRule) string {
	set := &lint.Set{
		Services:         []*lint.Service{{Obj: lint.Object{Kind: "Service", APIVersion: "v1", Namespace: svc.Namespace, Name: svc.Name}, Service: *svc}},
		Deployments:      []*lint.Deployment{{Obj: lint.Object{Kind: "Deployment", APIVersion: "apps/v1", Namespace: dep.Namespace, Name: dep.Name}, Deployment: *dep}},
		DestinationRules: []*lint.DestinationRule{{Obj: lint.Object{Kind: "DestinationRule", APIVersion: "networking.istio.io/v1", Namespace: dr.Namespace, Name: dr.Name}, Meta: dr.ObjectMeta, Spec: &dr.Spec}},
		VirtualServices:  []*lint.VirtualService{{Obj: lint.Object{Kind: "VirtualService", APIVersion: "networking.istio.io/v1", Namespace: vs.Namespace, Name: vs.Name}, Meta: vs.ObjectMeta, Spec: &vs.Spec}},
	}
	rep := lint.Check(set, lint.DefaultOptions())
	var errs []string
	for _, f := range rep.Findings {
		if f.Level == lint.Error {
			errs = append(errs, f.Code+" "+f.Object+" "+f.Field+": "+f.Message)
		}
	}
	if len(errs) == 0 {
		return ""
	}
	return oneLine(fmt.Sprintf("%d error(s): %s (meshrelease lint --namespace %s)", len(errs), strings.Join(errs, "; "), svc.Namespace))
}

// ---- Deploy ----

func (r *Reconciler) deploy(ctx context.Context, rel *v1alpha1.Release) (ctrl.Result, error) {
	st := &rel.Status
	ns := rel.Namespace
	appKey, verKey := r.labels()
	name := r.toName(rel)
	var dep appsv1.Deployment
	err := r.Client.Get(ctx, types.NamespacedName{Namespace: ns, Name: name}, &dep)
	switch {
	case apierrors.IsNotFound(err) && rel.Spec.To.Image != "":
		var from appsv1.Deployment
		if err := r.Client.Get(ctx, types.NamespacedName{Namespace: ns, Name: st.FromDeployment}, &from); err != nil {
			return ctrl.Result{}, fmt.Errorf("reading %s to clone it: %w", st.FromDeployment, err)
		}
		clone, err := cloneDeployment(&from, name, rel, verKey)
		if err != nil {
			r.enter(rel, v1alpha1.PhaseFailed, v1alpha1.StageDone, err.Error())
			return ctrl.Result{}, nil
		}
		if err := r.Client.Create(ctx, clone); err != nil && !apierrors.IsAlreadyExists(err) {
			return ctrl.Result{}, fmt.Errorf("creating Deployment %s/%s: %w", ns, name, err)
		}
		st.ToDeployment = name
		st.Message = fmt.Sprintf("created Deployment %s (image %s); waiting for its pods to be Ready", name, rel.Spec.To.Image)
		return ctrl.Result{RequeueAfter: time.Second}, nil
	case apierrors.IsNotFound(err):
		if r.deadlinePassed(rel, rel.Spec.ProgressDeadline.Duration, 10*time.Minute) {
			r.enter(rel, v1alpha1.PhaseFailed, v1alpha1.StageDone, fmt.Sprintf("Deployment %s/%s never appeared within spec.progressDeadline", ns, name))
			return ctrl.Result{}, nil
		}
		st.Message = fmt.Sprintf("waiting: Deployment %s/%s (spec.to.deployment) not found", ns, name)
		return ctrl.Result{RequeueAfter: 5 * time.Second}, nil
	case err != nil:
		return ctrl.Result{}, err
	}
	st.ToDeployment = name
	if dep.Spec.Template.Labels[verKey] != rel.Spec.To.Version || dep.Spec.Template.Labels[appKey] != st.App {
		r.enter(rel, v1alpha1.PhaseFailed, v1alpha1.StageDone, fmt.Sprintf("Deployment %s/%s's pods are not labelled %s=%s,%s=%s: the %s subset would not select them", ns, name, appKey, st.App, verKey, rel.Spec.To.Version, rel.Spec.To.Version))
		return ctrl.Result{}, nil
	}
	want := int32(1)
	if dep.Spec.Replicas != nil {
		want = *dep.Spec.Replicas
	}
	ready := dep.Status.ObservedGeneration >= dep.Generation && dep.Status.UpdatedReplicas == want && dep.Status.ReadyReplicas == want && want > 0
	if !ready {
		if r.deadlinePassed(rel, rel.Spec.ProgressDeadline.Duration, 10*time.Minute) {
			r.enter(rel, v1alpha1.PhaseRollingBack, v1alpha1.StageScaleDown, fmt.Sprintf("%s's pods not Ready within spec.progressDeadline (%d/%d Ready): no traffic moved; scaling it to 0", name, dep.Status.ReadyReplicas, want))
			return ctrl.Result{Requeue: true}, nil
		}
		st.Message = fmt.Sprintf("waiting for %s's pods to be Ready: %d/%d", name, dep.Status.ReadyReplicas, want)
		return ctrl.Result{RequeueAfter: time.Second}, nil
	}
	r.enter(rel, v1alpha1.PhaseProgressing, v1alpha1.StageSubset, fmt.Sprintf("%s Ready (%d/%d); adding subset %s", name, want, want, rel.Spec.To.Version))
	return ctrl.Result{Requeue: true}, nil
}

func (r *Reconciler) deadlinePassed(rel *v1alpha1.Release, d, def time.Duration) bool {
	if d <= 0 {
		d = def
	}
	return rel.Status.StageStartedAt != nil && r.now().Sub(rel.Status.StageStartedAt.Time) > d
}

// cloneDeployment is from's Deployment as <app>-<version>: the same spec
// with the version label (metadata, selector, template) and the image
// changed.
func cloneDeployment(from *appsv1.Deployment, name string, rel *v1alpha1.Release, verKey string) (*appsv1.Deployment, error) {
	to := rel.Spec.To.Version
	spec := from.Spec.DeepCopy()
	spec.Selector = spec.Selector.DeepCopy()
	spec.Selector.MatchLabels = maps.Clone(spec.Selector.MatchLabels)
	spec.Selector.MatchLabels[verKey] = to
	spec.Template.Labels = maps.Clone(spec.Template.Labels)
	spec.Template.Labels[verKey] = to
	spec.Template.Annotations = maps.Clone(spec.Template.Annotations)
	delete(spec.Template.Annotations, "kubectl.kubernetes.io/restartedAt")
	cs := spec.Template.Spec.Containers
	idx := 0
	if c := rel.Spec.To.Container; c != "" {
		idx = slices.IndexFunc(cs, func(x corev1.Container) bool { return x.Name == c })
		if idx < 0 {
			return nil, fmt.Errorf("Deployment %s has no container %q (spec.to.container)", from.Name, c)
		}
	}
	if len(cs) == 0 {
		return nil, fmt.Errorf("Deployment %s has no containers", from.Name)
	}
	cs[idx].Image = rel.Spec.To.Image
	labels := maps.Clone(from.Labels)
	if labels == nil {
		labels = map[string]string{}
	}
	labels[verKey] = to
	return &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{
			Name: name, Namespace: from.Namespace, Labels: labels,
			Annotations: map[string]string{releaseAnnotation: rel.Name},
		},
		Spec: *spec,
	}, nil
}

// ---- writes and their gates ----

func gateKey(rel *v1alpha1.Release) string {
	return string(rel.UID) + "|" + rel.Status.Gate.Object + "|" + rel.Status.Gate.ResourceVersion
}

// recordWrite starts a gate for object at resourceVersion, unless one for
// it is already recorded (a resumed controller).
func (r *Reconciler) recordWrite(rel *v1alpha1.Release, object, rv string, wrote bool) {
	g := rel.Status.Gate
	if g != nil && g.Object == object && (g.ResourceVersion == rv || !wrote) {
		return
	}
	rel.Status.Gate = &v1alpha1.GateStatus{Object: object, ResourceVersion: rv, WrittenAt: metav1.NewMicroTime(r.now())}
}

// firstLook is how long after a write the gate first asks Pilot.
const firstLook = 300 * time.Millisecond

// waitGate looks at the release's gate once: true when every caller holds
// the write. A gate past spec.propagation.timeout pauses the release and
// names the proxies.
func (r *Reconciler) waitGate(ctx context.Context, rel *v1alpha1.Release, want Want) (bool, ctrl.Result, error) {
	g := rel.Status.Gate
	if g.OpenedAt != nil {
		return true, ctrl.Result{}, nil
	}
	if r.Gates == nil {
		return false, ctrl.Result{}, errors.New("no propagation gate configured")
	}
	// istiod debounces a change for 100 ms before it pushes: the first
	// look comes after that, so the gate opens a moment after the last
	// ACK instead of a whole poll interval later.
	if early := firstLook - r.now().Sub(g.WrittenAt.Time); early > 0 {
		rel.Status.Message = oneLine(fmt.Sprintf("waiting for %s to propagate", g.Object))
		return false, ctrl.Result{RequeueAfter: early}, nil
	}
	res, err := r.Gates.Check(ctx, gateKey(rel), want, g.WrittenAt.Time)
	if err == nil {
		g.Synced = res.Synced()
		g.Waiting = res.Waiting
		rel.Status.Weights.Synced = res.Synced()
	}
	if err == nil && res.Open {
		t := metav1.NewMicroTime(r.now())
		g.OpenedAt = &t
		g.Waiting = nil
		r.Gates.Close(gateKey(rel))
		return true, ctrl.Result{}, nil
	}
	timeout := rel.Spec.Propagation.Timeout.Duration
	if timeout <= 0 {
		timeout = 2 * time.Minute
	}
	if waited := r.now().Sub(g.WrittenAt.Time); waited > timeout {
		why := ""
		if err != nil {
			why = "Pilot could not be asked: " + err.Error()
		} else {
			var names []string
			for _, w := range res.Waiting {
				names = append(names, fmt.Sprintf("%s (%s on istiod %s, behind since %s)", w.Proxy, w.Type, w.Istiod, w.Since.Format(time.RFC3339)))
			}
			why = fmt.Sprintf("%d of %d callers have not ACKed it: %s", res.Total-res.Holding, res.Total, strings.Join(names, ", "))
		}
		r.Gates.Close(gateKey(rel))
		msg := oneLine(fmt.Sprintf("paused: %s not propagated after %s: %s; fix and meshrelease resume %s, or abort", g.Object, timeout, why, rel.Name))
		r.pauseForPerson(ctx, rel, msg)
		now := metav1.NewMicroTime(r.now())
		rel.Status.History = append(rel.Status.History, v1alpha1.HistoryRow{
			Step: rel.Status.Step, Weight: rel.Status.Weights.Desired, GateWrittenAt: &g.WrittenAt,
			WindowEnd: &now, Verdict: v1alpha1.VerdictGateTimeout, Reason: msg,
		})
		return false, ctrl.Result{}, nil
	}
	if err != nil {
		rel.Status.Message = oneLine(fmt.Sprintf("waiting for %s to propagate: %v", g.Object, err))
	} else {
		msg := fmt.Sprintf("waiting for %s to propagate: %s callers hold %s", g.Object, res.Synced(), want.What)
		if len(res.Unasked) > 0 {
			msg += "; not asked: " + strings.Join(res.Unasked, "; ")
		}
		rel.Status.Message = oneLine(msg)
	}
	return false, r.pollAgain(), nil
}

// pauseForPerson sets spec.paused, so that resume is the same edit
// whether a person or the controller paused.
func (r *Reconciler) pauseForPerson(ctx context.Context, rel *v1alpha1.Release, msg string) {
	rel.Status.Phase = v1alpha1.PhasePaused
	rel.Status.Message = msg
	patch := client.RawPatch(types.MergePatchType, []byte(`{"spec":{"paused":true}}`))
	cp := rel.DeepCopy()
	if err := r.Client.Patch(ctx, cp, patch); err != nil {
		rel.Status.Message = oneLine(msg + " (could not set spec.paused: " + err.Error() + ")")
		return
	}
	// rel keeps its resourceVersion: the status patch that follows is a
	// merge patch without one, so the spec edit cannot make it conflict.
	rel.Spec.Paused = true
}

func (r *Reconciler) wantSubset(rel *v1alpha1.Release, subset string, present bool) Want {
	verb := "subset " + subset
	if !present {
		verb = "no subset " + subset
	}
	return Want{Host: rel.Status.Host, Type: "CDS", What: verb,
		Holds: func(hr pilotclient.HostRouting) bool { return hr.Subsets[subset] == present },
		// A proxy with the host's subset-less cluster gets every cluster
		// of the host (Envoy's wildcard CDS); one without watches only
		// what its routes name (proxyless gRPC).
		Shows: func(hr pilotclient.HostRouting) bool { return hr.Subsets[""] },
	}
}

func (r *Reconciler) wantWeights(rel *v1alpha1.Release, routeName string, weights map[string]int32) Want {
	want := map[string]uint32{}
	var words []string
	for _, sub := range slices.Sorted(maps.Keys(weights)) {
		if weights[sub] > 0 {
			want[sub] = uint32(weights[sub])
		}
		words = append(words, fmt.Sprintf("%s=%d", sub, weights[sub]))
	}
	return Want{Host: rel.Status.Host, Type: "RDS", What: "weights " + strings.Join(words, " "), Holds: func(hr pilotclient.HostRouting) bool {
		// The route by name when the VirtualService names it; else the
		// last route sending only to this host (the default route).
		var pick *pilotclient.Route
		for i := range hr.Routes {
			rt := &hr.Routes[i]
			if routeName != "" {
				if rt.Name == routeName {
					pick = rt
				}
				continue
			}
			if !rt.Other && len(rt.Weights) > 0 {
				pick = rt
			}
		}
		if pick == nil {
			return false
		}
		got := map[string]uint32{}
		for k, v := range pick.Weights {
			if v > 0 {
				got[k] = v
			}
		}
		return maps.Equal(got, want)
	}}
}

// ---- Subset ----

func (r *Reconciler) subset(ctx context.Context, rel *v1alpha1.Release) (ctrl.Result, error) {
	st := &rel.Status
	to := rel.Spec.To.Version
	_, verKey := r.labels()
	if st.Gate == nil || !strings.HasPrefix(st.Gate.Object, "DestinationRule/") || st.Gate.OpenedAt == nil {
		dr, err := r.findDestinationRule(ctx, rel, st.Host)
		if err != nil {
			return ctrl.Result{}, err
		}
		p, err := AddSubsetPatch(&dr.Spec, dr.ResourceVersion, st.From, to, verKey)
		if err != nil {
			r.enter(rel, v1alpha1.PhaseFailed, v1alpha1.StageDone, err.Error())
			return ctrl.Result{}, nil
		}
		if p != nil {
			if err := r.Client.Patch(ctx, dr, client.RawPatch(types.JSONPatchType, p)); err != nil {
				return ctrl.Result{}, fmt.Errorf("adding subset %s to DestinationRule %s/%s: %w", to, dr.Namespace, dr.Name, err)
			}
		}
		r.recordWrite(rel, "DestinationRule/"+dr.Namespace+"/"+dr.Name, dr.ResourceVersion, p != nil)
	}
	open, res, err := r.waitGate(ctx, rel, r.wantSubset(rel, to, true))
	if !open {
		return res, err
	}
	st.Step = 0
	r.enter(rel, v1alpha1.PhaseProgressing, v1alpha1.StageWeights, "subset "+to+" is everywhere; step 1")
	return ctrl.Result{Requeue: true}, nil
}

// ---- Weights ----

func (r *Reconciler) stepWeights(rel *v1alpha1.Release) map[string]int32 {
	w := steps(rel)[rel.Status.Step]
	return map[string]int32{rel.Status.From: 100 - w, rel.Spec.To.Version: w}
}

// writeRoute makes route's weights want (if they are not) and records the
// gate; it returns the route's name for the gate's check.
func (r *Reconciler) writeRoute(ctx context.Context, rel *v1alpha1.Release, want map[string]int32) (string, error) {
	st := &rel.Status
	vs, err := r.findVirtualService(ctx, rel, st.Host)
	if err != nil {
		return "", err
	}
	i := ReleaseRoute(&vs.Spec, rel.Spec.Service, rel.Namespace, st.From, rel.Spec.To.Version)
	if i < 0 {
		return "", fmt.Errorf("VirtualService %s/%s no longer has a route sending %s to %s/%s (edited by hand?)", vs.Namespace, vs.Name, rel.Spec.Service, st.From, rel.Spec.To.Version)
	}
	name := vs.Spec.GetHttp()[i].GetName()
	object := "VirtualService/" + vs.Namespace + "/" + vs.Name
	if g := st.Gate; g != nil && g.Object == object && g.OpenedAt != nil && maps.Equal(RouteWeights(&vs.Spec, i), want) && g.ResourceVersion == vs.ResourceVersion {
		st.Weights.Applied = RouteWeights(&vs.Spec, i)[rel.Spec.To.Version]
		return name, nil
	}
	p, err := WeightsPatch(&vs.Spec, i, vs.ResourceVersion, st.From, want)
	if err != nil {
		return "", err
	}
	if p != nil {
		if err := r.Client.Patch(ctx, vs, client.RawPatch(types.JSONPatchType, p)); err != nil {
			return "", fmt.Errorf("patching VirtualService %s/%s's weights: %w", vs.Namespace, vs.Name, err)
		}
	}
	r.recordWrite(rel, object, vs.ResourceVersion, p != nil)
	st.Weights.Applied = RouteWeights(&vs.Spec, i)[rel.Spec.To.Version]
	if p != nil {
		st.Weights.Applied = want[rel.Spec.To.Version]
	}
	return name, nil
}

func (r *Reconciler) weights(ctx context.Context, rel *v1alpha1.Release) (ctrl.Result, error) {
	st := &rel.Status
	if p := rel.Spec.Promote; p != nil && p.Full && int(st.Step) < len(steps(rel))-1 {
		st.Step = int32(len(steps(rel)) - 1)
	}
	want := r.stepWeights(rel)
	st.Weights.Desired = want[rel.Spec.To.Version]
	name, err := r.writeRoute(ctx, rel, want)
	if err != nil {
		return ctrl.Result{}, err
	}
	open, res, err := r.waitGate(ctx, rel, r.wantWeights(rel, name, want))
	if !open {
		return res, err
	}
	g := st.Gate
	if r.promoted(rel) {
		row := v1alpha1.HistoryRow{Step: st.Step, Weight: st.Weights.Desired, GateWrittenAt: &g.WrittenAt, GateOpenedAt: g.OpenedAt,
			Verdict: v1alpha1.VerdictPromoted, Reason: "promoted by a person (spec.promote): no analysis"}
		st.History = append(st.History, row)
		return r.nextStep(rel), nil
	}
	st.WindowStart = g.OpenedAt.DeepCopy()
	st.Inconclusive = 0
	r.enter(rel, v1alpha1.PhaseProgressing, v1alpha1.StageAnalysis, fmt.Sprintf("step %s: every caller holds the weights; measuring %s", stepLabel(rel), interval(rel)))
	return ctrl.Result{RequeueAfter: interval(rel)}, nil
}

func (r *Reconciler) promoted(rel *v1alpha1.Release) bool {
	p := rel.Spec.Promote
	return p != nil && (p.Full || p.Step != nil && *p.Step == rel.Status.Step)
}

func interval(rel *v1alpha1.Release) time.Duration {
	if d := rel.Spec.Interval.Duration; d > 0 {
		return d
	}
	return time.Minute
}

func (r *Reconciler) nextStep(rel *v1alpha1.Release) ctrl.Result {
	st := &rel.Status
	if int(st.Step) >= len(steps(rel))-1 {
		if rel.Spec.Retire.Skip {
			r.enter(rel, v1alpha1.PhaseSucceeded, v1alpha1.StageDone, "100 % "+rel.Spec.To.Version+"; "+st.From+" kept (spec.retire.skip)")
			return ctrl.Result{}
		}
		r.enter(rel, v1alpha1.PhaseRetiring, v1alpha1.StageRetireRoute, "100 % "+rel.Spec.To.Version+"; retiring "+st.From)
		return ctrl.Result{Requeue: true}
	}
	st.Step++
	r.enter(rel, v1alpha1.PhaseProgressing, v1alpha1.StageWeights, "step "+stepLabel(rel))
	return ctrl.Result{Requeue: true}
}

// ---- Analysis ----

func (r *Reconciler) analyze(ctx context.Context, rel *v1alpha1.Release) (ctrl.Result, error) {
	st := &rel.Status
	if r.promoted(rel) {
		g := st.Gate
		st.History = append(st.History, v1alpha1.HistoryRow{Step: st.Step, Weight: st.Weights.Desired, GateWrittenAt: &g.WrittenAt, GateOpenedAt: g.OpenedAt,
			WindowStart: st.WindowStart, Verdict: v1alpha1.VerdictPromoted, Reason: "promoted by a person (spec.promote) during the window"})
		return r.nextStep(rel), nil
	}
	start := st.WindowStart.Time
	end := start.Add(interval(rel))
	settle := r.Settle
	if settle <= 0 {
		settle = 3 * time.Second
	}
	if wait := end.Add(settle).Sub(r.now()); wait > 0 {
		st.Message = fmt.Sprintf("step %s: measuring until %s", stepLabel(rel), end.UTC().Format(time.TimeOnly))
		return ctrl.Result{RequeueAfter: wait}, nil
	}
	th, err := analysis.NewThresholds(rel.Spec.Analysis)
	if err != nil {
		r.enter(rel, v1alpha1.PhaseFailed, v1alpha1.StageDone, "spec.analysis: "+err.Error())
		return ctrl.Result{}, nil
	}
	target := analysis.Target{Namespace: rel.Namespace, Service: rel.Spec.Service, ToWorkload: r.toName(rel), FromWorkload: st.FromDeployment}
	// At 100 % From still counts for Observed (a caller still sending
	// there shows); analysis skips the baseline when From served too few.
	res, _ := r.Judge.Judge(ctx, target, analysis.Window{Start: start, End: end}, th)
	g := st.Gate
	row := v1alpha1.HistoryRow{Step: st.Step, Weight: st.Weights.Desired}
	if g != nil {
		row.GateWrittenAt, row.GateOpenedAt = g.WrittenAt.DeepCopy(), g.OpenedAt.DeepCopy()
	}
	res.Fill(&row)
	st.History = append(st.History, row)
	st.Weights.Observed = row.Observed
	next := metav1.NewMicroTime(r.now())
	switch res.Verdict {
	case v1alpha1.VerdictPass:
		st.Inconclusive = 0
		return r.nextStep(rel), nil
	case v1alpha1.VerdictFail:
		st.Failures++
		limit := rel.Spec.Analysis.FailureLimit
		if limit <= 0 {
			limit = 2
		}
		if st.Failures >= limit {
			r.enter(rel, v1alpha1.PhaseRollingBack, v1alpha1.StageRollbackRoute, oneLine(fmt.Sprintf("rolling back after %d failed window(s): %s", st.Failures, res.Reason)))
			return ctrl.Result{Requeue: true}, nil
		}
		st.WindowStart = &next
		st.Message = oneLine(fmt.Sprintf("window failed (%d of %d allowed): %s; measuring again", st.Failures, limit, res.Reason))
	default:
		st.Inconclusive++
		limit := rel.Spec.Analysis.InconclusiveLimit
		if limit <= 0 {
			limit = 3
		}
		if st.Inconclusive >= limit {
			r.pauseForPerson(ctx, rel, oneLine(fmt.Sprintf("paused: %d inconclusive windows in a row (%s): promote, resume or abort", st.Inconclusive, res.Reason)))
			return ctrl.Result{}, nil
		}
		st.WindowStart = &next
		st.Message = oneLine(fmt.Sprintf("window inconclusive (%d of %d): %s; measuring again", st.Inconclusive, limit, res.Reason))
	}
	return ctrl.Result{RequeueAfter: interval(rel)}, nil
}

// ---- Rollback and retire ----

// routeTo writes the route's final weights (rollback: all From; retire:
// all To), waits for the gate, then moves to next.
func (r *Reconciler) routeTo(ctx context.Context, rel *v1alpha1.Release, want map[string]int32, next v1alpha1.Stage, phase v1alpha1.Phase) (ctrl.Result, error) {
	st := &rel.Status
	st.Weights.Desired = want[rel.Spec.To.Version]
	name, err := r.writeRoute(ctx, rel, want)
	if err != nil {
		return ctrl.Result{}, err
	}
	open, res, err := r.waitGate(ctx, rel, r.wantWeights(rel, name, want))
	if !open {
		return res, err
	}
	msg := "every caller routes 100 % to " + rel.Spec.To.Version + "; removing subset " + st.From
	if next == v1alpha1.StageScaleDown {
		msg = "every caller routes 100 % to " + st.From + "; scaling " + r.toName(rel) + " to 0"
	}
	r.enter(rel, phase, next, msg)
	return ctrl.Result{Requeue: true}, nil
}

func (r *Reconciler) scale(ctx context.Context, ns, name string, replicas int32) (*appsv1.Deployment, error) {
	var dep appsv1.Deployment
	if err := r.Client.Get(ctx, types.NamespacedName{Namespace: ns, Name: name}, &dep); err != nil {
		return nil, err
	}
	if dep.Spec.Replicas == nil || *dep.Spec.Replicas != replicas {
		p := client.RawPatch(types.MergePatchType, []byte(`{"spec":{"replicas":`+strconv.Itoa(int(replicas))+`}}`))
		if err := r.Client.Patch(ctx, &dep, p); err != nil {
			return nil, err
		}
	}
	return &dep, nil
}

func (r *Reconciler) scaleDown(ctx context.Context, rel *v1alpha1.Release) (ctrl.Result, error) {
	st := &rel.Status
	name := r.toName(rel)
	if _, err := r.scale(ctx, rel.Namespace, name, 0); err != nil && !apierrors.IsNotFound(err) {
		return ctrl.Result{}, fmt.Errorf("scaling %s to 0: %w", name, err)
	}
	why := st.Message
	for _, h := range slices.Backward(st.History) {
		if h.Verdict == v1alpha1.VerdictFail {
			why = "last failed window: " + h.Reason
			break
		}
	}
	r.enter(rel, v1alpha1.PhaseRolledBack, v1alpha1.StageDone, oneLine(fmt.Sprintf("rolled back: 100 %% %s, %s scaled to 0 (kept for debugging); %s", st.From, name, why)))
	return ctrl.Result{}, nil
}

func (r *Reconciler) retireSubset(ctx context.Context, rel *v1alpha1.Release) (ctrl.Result, error) {
	st := &rel.Status
	if st.Gate == nil || !strings.HasPrefix(st.Gate.Object, "DestinationRule/") || st.Gate.OpenedAt == nil {
		dr, err := r.findDestinationRule(ctx, rel, st.Host)
		if err != nil {
			return ctrl.Result{}, err
		}
		p, err := RemoveSubsetPatch(&dr.Spec, dr.ResourceVersion, st.From)
		if err != nil {
			return ctrl.Result{}, err
		}
		if p != nil {
			if err := r.Client.Patch(ctx, dr, client.RawPatch(types.JSONPatchType, p)); err != nil {
				return ctrl.Result{}, fmt.Errorf("removing subset %s from DestinationRule %s/%s: %w", st.From, dr.Namespace, dr.Name, err)
			}
		}
		r.recordWrite(rel, "DestinationRule/"+dr.Namespace+"/"+dr.Name, dr.ResourceVersion, p != nil)
	}
	open, res, err := r.waitGate(ctx, rel, r.wantSubset(rel, st.From, false))
	if !open {
		return res, err
	}
	r.enter(rel, v1alpha1.PhaseRetiring, v1alpha1.StageRetireDeploy, "subset "+st.From+" gone everywhere; draining "+st.FromDeployment)
	return ctrl.Result{Requeue: true}, nil
}

// retireDeploy scales From to 0 and deletes it once its pods are gone:
// they drain through meshready run, nothing routes to them any more.
func (r *Reconciler) retireDeploy(ctx context.Context, rel *v1alpha1.Release) (ctrl.Result, error) {
	st := &rel.Status
	dep, err := r.scale(ctx, rel.Namespace, st.FromDeployment, 0)
	if apierrors.IsNotFound(err) {
		r.enter(rel, v1alpha1.PhaseSucceeded, v1alpha1.StageDone, fmt.Sprintf("released: 100 %% %s; %s retired", rel.Spec.To.Version, st.From))
		return ctrl.Result{}, nil
	}
	if err != nil {
		return ctrl.Result{}, fmt.Errorf("scaling %s to 0: %w", st.FromDeployment, err)
	}
	if dep.Status.Replicas > 0 {
		st.Message = fmt.Sprintf("retiring %s: %d pod(s) draining", st.FromDeployment, dep.Status.Replicas)
		return ctrl.Result{RequeueAfter: time.Second}, nil
	}
	if err := r.Client.Delete(ctx, dep); err != nil && !apierrors.IsNotFound(err) {
		return ctrl.Result{}, fmt.Errorf("deleting %s: %w", st.FromDeployment, err)
	}
	r.enter(rel, v1alpha1.PhaseSucceeded, v1alpha1.StageDone, fmt.Sprintf("released: 100 %% %s; %s retired (subset and Deployment removed)", rel.Spec.To.Version, st.From))
	return ctrl.Result{}, nil
}
