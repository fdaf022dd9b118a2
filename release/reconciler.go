// Package release is the release controller: the state machine of
// DESIGN.md "The release, step by step" over the team's own objects
// (Deployments, the DestinationRule's subsets, the VirtualService's
// weights), gated by the propagation gate and judged by package analysis.
//
// Status is the only memory: every Reconcile reads the Release, does at
// most one idempotent action of the stage it is in, and writes what it
// learned back to status. A controller killed between an action and its
// status write finds the action done (the weights already there, the
// subset already added) and records it without doing it twice.
package release

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/go-logr/logr"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/meshready/meshready/analysis"
	"github.com/meshready/meshready/api/v1alpha1"
)

// Judge is what decides a window (an *analysis.Analyzer).
type Judge interface {
	Judge(ctx context.Context, t analysis.Target, w analysis.Window, th analysis.Thresholds) (analysis.Result, error)
}

// Reconciler reconciles Releases.
type Reconciler struct {
	// Client reads from the manager's informers and writes to the API
	// server.
	Client client.Client
	Gates  *Gatekeeper
	Judge  Judge
	Log    logr.Logger
	// Now is the clock (tests move it); nil: time.Now.
	Now func() time.Time
	// Settle is how long after a window's end its numbers are read:
	// Prometheus must have scraped the window's last second (its scrape
	// interval, plus margin). The query still ends exactly at the window's
	// end (@).
	Settle time.Duration
	// AppLabel and VersionLabel are the team's labels (app, version).
	AppLabel, VersionLabel string
}

const releaseAnnotation = "meshready.io/release"

func (r *Reconciler) now() time.Time {
	if r.Now != nil {
		return r.Now()
	}
	return time.Now()
}

func (r *Reconciler) labels() (app, version string) {
	app, version = r.AppLabel, r.VersionLabel
	if app == "" {
		app = "app"
	}
	if version == "" {
		version = "version"
	}
	return app, version
}

// SetupWithManager registers the reconciler: Releases are the only watch
// that triggers it; what it waits on (pods going Ready, proxies ACKing,
// a window ending) it polls by requeueing, reading other kinds from the
// manager's informers.
func (r *Reconciler) SetupWithManager(mgr ctrl.Manager) error {
	return ctrl.NewControllerManagedBy(mgr).
		For(&v1alpha1.Release{}).
		Named("release").
		Complete(r)
}

// Reconcile moves one Release on by at most one action.
func (r *Reconciler) Reconcile(ctx context.Context, req ctrl.Request) (ctrl.Result, error) {
	var rel v1alpha1.Release
	if err := r.Client.Get(ctx, req.NamespacedName, &rel); err != nil {
		return ctrl.Result{}, client.IgnoreNotFound(err)
	}
	if rel.Status.Phase.Terminal() {
		return ctrl.Result{}, nil
	}
	orig := rel.DeepCopy()
	res, err := r.step(ctx, &rel)
	if err != nil {
		// An API error: say it in status, try again (controller-runtime
		// backs off).
		rel.Status.Message = oneLine("retrying: " + err.Error())
	}
	if !equality.Semantic.DeepEqual(orig.Status, rel.Status) {
		rel.Status.ObservedGeneration = rel.Generation
		rel.Status.StepLabel = stepLabel(&rel)
		if perr := r.Client.Status().Patch(ctx, &rel, client.MergeFrom(orig)); perr != nil {
			return ctrl.Result{}, perr
		}
	}
	return res, err
}

func stepLabel(rel *v1alpha1.Release) string {
	steps := steps(rel)
	if rel.Status.Step < 0 || int(rel.Status.Step) >= len(steps) {
		return ""
	}
	return fmt.Sprintf("%d/%d (%d%%)", rel.Status.Step+1, len(steps), steps[rel.Status.Step])
}

func steps(rel *v1alpha1.Release) []int32 {
	if len(rel.Spec.Steps) > 0 {
		return rel.Spec.Steps
	}
	return []int32{10, 25, 50, 100}
}

func (r *Reconciler) enter(rel *v1alpha1.Release, phase v1alpha1.Phase, stage v1alpha1.Stage, msg string) {
	rel.Status.Phase, rel.Status.Stage, rel.Status.Message = phase, stage, msg
	t := metav1.NewTime(r.now())
	rel.Status.StageStartedAt = &t
}

// step does the one thing the release's stage calls for.
func (r *Reconciler) step(ctx context.Context, rel *v1alpha1.Release) (ctrl.Result, error) {
	st := &rel.Status
	if st.Stage == "" {
		st.Step = -1
		r.enter(rel, v1alpha1.PhasePending, v1alpha1.StagePreconditions, "checking preconditions")
	}
	// A person's edits come first.
	if rel.Spec.Abort && !r.rollingBack(rel) {
		return r.abort(ctx, rel)
	}
	if rel.Spec.Paused && !r.rollingBack(rel) {
		if st.Phase != v1alpha1.PhasePaused {
			st.Phase = v1alpha1.PhasePaused
			if !strings.HasPrefix(st.Message, "paused") {
				st.Message = "paused (spec.paused): meshrelease resume " + rel.Name + " to go on"
			}
		}
		return ctrl.Result{}, nil
	}
	if st.Phase == v1alpha1.PhasePaused {
		r.resume(rel)
	}
	switch st.Stage {
	case v1alpha1.StagePreconditions:
		return r.preconditions(ctx, rel)
	case v1alpha1.StageDeploy:
		return r.deploy(ctx, rel)
	case v1alpha1.StageSubset:
		return r.subset(ctx, rel)
	case v1alpha1.StageWeights:
		return r.weights(ctx, rel)
	case v1alpha1.StageAnalysis:
		return r.analyze(ctx, rel)
	case v1alpha1.StageRollbackRoute:
		return r.routeTo(ctx, rel, map[string]int32{st.From: 100}, v1alpha1.StageScaleDown, v1alpha1.PhaseRollingBack)
	case v1alpha1.StageScaleDown:
		return r.scaleDown(ctx, rel)
	case v1alpha1.StageRetireRoute:
		return r.routeTo(ctx, rel, map[string]int32{rel.Spec.To.Version: 100}, v1alpha1.StageRetireSubset, v1alpha1.PhaseRetiring)
	case v1alpha1.StageRetireSubset:
		return r.retireSubset(ctx, rel)
	case v1alpha1.StageRetireDeploy:
		return r.retireDeploy(ctx, rel)
	}
	return ctrl.Result{}, nil
}

func (r *Reconciler) rollingBack(rel *v1alpha1.Release) bool {
	switch rel.Status.Stage {
	case v1alpha1.StageRollbackRoute, v1alpha1.StageScaleDown:
		return true
	}
	return false
}

// resume: the person said go on. The step's window starts afresh; a gate
// that timed out gets a new timeout.
func (r *Reconciler) resume(rel *v1alpha1.Release) {
	st := &rel.Status
	phase := v1alpha1.PhaseProgressing
	switch st.Stage {
	case v1alpha1.StagePreconditions:
		phase = v1alpha1.PhasePending
	case v1alpha1.StageDeploy:
		phase = v1alpha1.PhaseDeploying
	case v1alpha1.StageRetireRoute, v1alpha1.StageRetireSubset, v1alpha1.StageRetireDeploy:
		phase = v1alpha1.PhaseRetiring
	}
	r.enter(rel, phase, st.Stage, "resumed")
	st.Inconclusive = 0
	if st.Stage == v1alpha1.StageAnalysis {
		t := metav1.NewMicroTime(r.now())
		st.WindowStart = &t
	}
	if st.Gate != nil && st.Gate.OpenedAt == nil {
		st.Gate.WrittenAt = metav1.NewMicroTime(r.now())
	}
}

func (r *Reconciler) abort(ctx context.Context, rel *v1alpha1.Release) (ctrl.Result, error) {
	st := &rel.Status
	switch st.Stage {
	case v1alpha1.StagePreconditions, v1alpha1.StageDeploy:
		// Nothing routes to To yet.
		if st.ToDeployment == "" && rel.Spec.To.Deployment == "" {
			r.enter(rel, v1alpha1.PhaseRolledBack, v1alpha1.StageDone, "aborted before any traffic moved")
			return ctrl.Result{}, nil
		}
		r.enter(rel, v1alpha1.PhaseRollingBack, v1alpha1.StageScaleDown, "aborted: scaling "+r.toName(rel)+" to 0")
	case v1alpha1.StageRetireRoute, v1alpha1.StageRetireSubset, v1alpha1.StageRetireDeploy:
		st.Message = "abort ignored: 100 % already goes to " + rel.Spec.To.Version + " and " + st.From + " is being retired"
		return ctrl.Result{}, nil
	default:
		r.enter(rel, v1alpha1.PhaseRollingBack, v1alpha1.StageRollbackRoute, "aborted: weights back to 100 % "+st.From)
	}
	return ctrl.Result{Requeue: true}, nil
}

func (r *Reconciler) toName(rel *v1alpha1.Release) string {
	if rel.Spec.To.Deployment != "" {
		return rel.Spec.To.Deployment
	}
	if rel.Status.ToDeployment != "" {
		return rel.Status.ToDeployment
	}
	return rel.Status.App + "-" + rel.Spec.To.Version
}

// pollAgain is how soon a waiting stage looks again.
func (r *Reconciler) pollAgain() ctrl.Result {
	d := time.Second
	if r.Gates != nil && r.Gates.PollInterval > 0 {
		d = r.Gates.PollInterval
	}
	return ctrl.Result{RequeueAfter: d}
}

// ---- Preconditions ----

func (r *Reconciler) preconditions(ctx context.Context, rel *v1alpha1.Release) (ctrl.Result, error) {
	st := &rel.Status
	ns := rel.Namespace
	appKey, verKey := r.labels()
	var svc corev1.Service
	if err := r.Client.Get(ctx, types.NamespacedName{Namespace: ns, Name: rel.Spec.Service}, &svc); err != nil {
		if apierrors.IsNotFound(err) {
			st.Message = fmt.Sprintf("waiting: Service %s/%s not found", ns, rel.Spec.Service)
			return ctrl.Result{RequeueAfter: 10 * time.Second}, nil
		}
		return ctrl.Result{}, err
	}
	app := svc.Spec.Selector[appKey]
	if app == "" {
		st.Message = fmt.Sprintf("blocked: Service %s/%s selects no %q label", ns, svc.Name, appKey)
		return ctrl.Result{RequeueAfter: 30 * time.Second}, nil
	}
	host := svc.Name + "." + ns + ".svc.cluster.local"

	vs, err := r.findVirtualService(ctx, rel, host)
	if err != nil {
		st.Message = "blocked: " + err.Error()
		return ctrl.Result{RequeueAfter: 30 * time.Second}, nil
	}
	dr, err := r.findDestinationRule(ctx, rel, host)
	if err != nil {
		st.Message = "blocked: " + err.Error()
		return ctrl.Result{RequeueAfter: 30 * time.Second}, nil
	}
	i, from := FindFrom(&vs.Spec, svc.Name, ns, rel.Spec.To.Version)
	if i < 0 || from == "" {
		st.Message = fmt.Sprintf("blocked: VirtualService %s/%s has no route sending 100 %% of %s to one subset", ns, vs.Name, svc.Name)
		return ctrl.Result{RequeueAfter: 30 * time.Second}, nil
	}
	if SubsetIndex(&dr.Spec, from) < 0 {
		st.Message = fmt.Sprintf("blocked: DestinationRule %s/%s has no subset %q", ns, dr.Name, from)
		return ctrl.Result{RequeueAfter: 30 * time.Second}, nil
	}
	var deps appsv1.DeploymentList
	if err := r.Client.List(ctx, &deps, client.InNamespace(ns), client.MatchingLabels{appKey: app, verKey: from}); err != nil {
		return ctrl.Result{}, err
	}
	if len(deps.Items) != 1 {
		st.Message = fmt.Sprintf("blocked: want one Deployment labelled %s=%s,%s=%s in %s, found %d", appKey, app, verKey, from, ns, len(deps.Items))
		return ctrl.Result{RequeueAfter: 30 * time.Second}, nil
	}
	fromDep := &deps.Items[0]
	if fromDep.Spec.Selector == nil || fromDep.Spec.Selector.MatchLabels[verKey] != from {
		st.Message = fmt.Sprintf("blocked: Deployment %s/%s's selector does not include %s=%s: a %s Deployment beside it would share its pods", ns, fromDep.Name, verKey, from, rel.Spec.To.Version)
		return ctrl.Result{RequeueAfter: 30 * time.Second}, nil
	}
	if msg := lintBlocks(&svc, fromDep, vs, dr); msg != "" {
		st.Message = "blocked by the onboarding lint: " + msg
		return ctrl.Result{RequeueAfter: 30 * time.Second}, nil
	}
	st.From, st.FromDeployment, st.Host = from, fromDep.Name, host
	st.VirtualService, st.DestinationRule = vs.Name, dr.Name
	st.App = app
	r.enter(rel, v1alpha1.PhaseDeploying, v1alpha1.StageDeploy, "deploying "+rel.Spec.To.Version)
	return ctrl.Result{Requeue: true}, nil
}
