package releasecli

import (
	"fmt"

	"github.com/meshready/meshready/api/v1alpha1"
)

// The edits a person makes to a running Release, shared by the CLI verbs
// and the dashboard's actions: each reads the Release as it is and returns
// the spec fields to merge-patch and a sentence saying what was done, or
// refuses. The caller has already refused a Release that has ended.

// An EditFunc decides one edit of r.
type EditFunc func(r *v1alpha1.Release) (spec map[string]any, done string, err error)

// Edits names every edit by its verb.
var Edits = map[string]EditFunc{
	"pause":        EditPause,
	"resume":       EditResume,
	"promote":      EditPromote,
	"promote-full": EditPromoteFull,
	"abort":        EditAbort,
}

// EditPause holds the release at its current step.
func EditPause(r *v1alpha1.Release) (map[string]any, string, error) {
	return map[string]any{"paused": true}, "paused: it holds at step " + stepLabel(r) + " (meshrelease resume lets it go on)", nil
}

// EditResume lets a paused release go on.
func EditResume(r *v1alpha1.Release) (map[string]any, string, error) {
	done := "resumed"
	if !r.Spec.Paused && r.Status.Phase == v1alpha1.PhasePaused {
		done += " (it was paused by the controller, not by spec.paused: " + dash(r.Status.Message) + ")"
	}
	return map[string]any{"paused": false}, done, nil
}

// EditPromote skips the analysis of the step under way, named from status
// so that promoting twice does not skip two steps.
func EditPromote(r *v1alpha1.Release) (map[string]any, string, error) {
	switch r.Status.Phase {
	case v1alpha1.PhaseProgressing, v1alpha1.PhasePaused:
	default:
		return nil, "", fmt.Errorf("promote release %q: it is %s, not at a step yet (--full promotes it all the way)", r.Name, phase(r))
	}
	if r.Status.Step < 0 || int(r.Status.Step) >= len(r.Spec.Steps) {
		return nil, "", fmt.Errorf("promote release %q: no step under way yet (--full promotes it all the way)", r.Name)
	}
	return map[string]any{"promote": map[string]any{"step": r.Status.Step}},
		"promoted step " + stepLabel(r) + ": the next step starts once this one's gate has opened", nil
}

// EditPromoteFull goes straight to 100 % of the new version, then retires.
func EditPromoteFull(*v1alpha1.Release) (map[string]any, string, error) {
	return map[string]any{"promote": map[string]any{"full": true}}, "promoted in full: straight to 100 %, then retire", nil
}

// EditAbort rolls the release back.
func EditAbort(r *v1alpha1.Release) (map[string]any, string, error) {
	return map[string]any{"abort": true}, "aborted: rolling back to 100 % " + dash(r.Status.From), nil
}
