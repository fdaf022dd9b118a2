package releasecli

import (
	"fmt"
	"io"
	"sort"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/duration"

	"github.com/meshready/meshready/api/v1alpha1"
)

func table(w io.Writer) *tabwriter.Writer { return tabwriter.NewWriter(w, 0, 4, 2, ' ', 0) }

// dash is "-" for an empty value, as kubectl prints <none>.
func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func age(t metav1.Time, now time.Time) string {
	if t.IsZero() {
		return "-"
	}
	return duration.HumanDuration(now.Sub(t.Time))
}

// stepLabel is status.stepLabel, or "i/n (w%)" from step and spec.
func stepLabel(r *v1alpha1.Release) string {
	if r.Status.StepLabel != "" {
		return r.Status.StepLabel
	}
	i := r.Status.Step
	if r.Status.Phase == "" || i < 0 || int(i) >= len(r.Spec.Steps) {
		return "-"
	}
	return fmt.Sprintf("%d/%d (%d%%)", i+1, len(r.Spec.Steps), r.Spec.Steps[i])
}

// weight is the desired weight as "25%", "-" before the first step.
func weight(r *v1alpha1.Release) string {
	if r.Status.Phase == "" {
		return "-"
	}
	return fmt.Sprintf("%d%%", r.Status.Weights.Desired)
}

// WriteList is `meshrelease list`: one row per release, sorted.
func WriteList(w io.Writer, items []v1alpha1.Release, allNamespaces bool, now time.Time) error {
	sort.Slice(items, func(i, j int) bool {
		if items[i].Namespace != items[j].Namespace {
			return items[i].Namespace < items[j].Namespace
		}
		return items[i].Name < items[j].Name
	})
	tw := table(w)
	if allNamespaces {
		fmt.Fprint(tw, "NAMESPACE\t")
	}
	fmt.Fprintln(tw, "NAME\tSERVICE\tFROM\tTO\tPHASE\tSTEP\tWEIGHT\tSYNCED\tAGE")
	for i := range items {
		r := &items[i]
		if allNamespaces {
			fmt.Fprintf(tw, "%s\t", r.Namespace)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", r.Name, r.Spec.Service, dash(r.Status.From), r.Spec.To.Version,
			phase(r), stepLabel(r), weight(r), dash(r.Status.Weights.Synced), age(r.CreationTimestamp, now))
	}
	return tw.Flush()
}

// phase is status.phase, with the spec's pending edits the controller has
// not acted on yet ("Progressing, pausing").
func phase(r *v1alpha1.Release) string {
	p := string(r.Status.Phase)
	if p == "" {
		p = "Pending"
	}
	if r.Status.Phase.Terminal() {
		return p
	}
	switch {
	case r.Spec.Abort && r.Status.Phase != v1alpha1.PhaseRollingBack:
		return p + " (aborting)"
	case r.Spec.Paused && r.Status.Phase != v1alpha1.PhasePaused:
		return p + " (pausing)"
	}
	return p
}

// percent prints a fraction string ("0.0123") as "1.23%"; "" is "-".
func percent(frac string) string {
	if frac == "" {
		return "-"
	}
	f, err := strconv.ParseFloat(frac, 64)
	if err != nil {
		return frac
	}
	return strconv.FormatFloat(f*100, 'f', 2, 64) + "%"
}

// ms prints a millisecond string ("12.5") as "12.5ms"; "" is "-".
func ms(v string) string {
	if v == "" {
		return "-"
	}
	if f, err := strconv.ParseFloat(v, 64); err == nil {
		return strconv.FormatFloat(f, 'f', -1, 64) + "ms"
	}
	return v
}

// share prints an observed percent string ("24.8") as "24.8%".
func share(v string) string {
	if v == "" {
		return "-"
	}
	if strings.HasSuffix(v, "%") {
		return v
	}
	return v + "%"
}

func clock(t *metav1.Time) string {
	if t == nil || t.IsZero() {
		return "-"
	}
	return t.UTC().Format("15:04:05")
}

// clockMicro is a gate's or window's time: to the millisecond, as gates
// open within a second of the last ACK.
func clockMicro(t *metav1.MicroTime) string {
	if t == nil || t.IsZero() {
		return "-"
	}
	return t.UTC().Format("15:04:05.000")
}

// WriteStatus is `meshrelease status NAME`: where the release is, the four
// weights, the open gate and the history with every window's numbers.
func WriteStatus(w io.Writer, r *v1alpha1.Release, now time.Time) error {
	s := &r.Status
	from := dash(s.From)
	fmt.Fprintf(w, "Release:  %s/%s  (service %s: %s → %s)\n", r.Namespace, r.Name, r.Spec.Service, from, r.Spec.To.Version)
	fmt.Fprintf(w, "Phase:    %s", phase(r))
	if s.Stage != "" {
		fmt.Fprintf(w, ", stage %s", s.Stage)
	}
	if l := stepLabel(r); l != "-" {
		fmt.Fprintf(w, ", step %s", l)
	}
	fmt.Fprintln(w)
	if s.Message != "" {
		fmt.Fprintf(w, "Message:  %s\n", s.Message)
	}
	steps := make([]string, len(r.Spec.Steps))
	for i, v := range r.Spec.Steps {
		steps[i] = strconv.Itoa(int(v)) + "%"
	}
	fmt.Fprintf(w, "Steps:    %s, window %s", strings.Join(steps, " → "), r.Spec.Interval.Duration)
	if s.WindowStart != nil && s.Stage == v1alpha1.StageAnalysis && !s.Phase.Terminal() {
		left := r.Spec.Interval.Duration - now.Sub(s.WindowStart.Time)
		if left < 0 {
			left = 0
		}
		fmt.Fprintf(w, " (this one opened %s, %s left)", clockMicro(s.WindowStart), left.Round(time.Second))
	}
	fmt.Fprintln(w)
	if s.Failures > 0 || s.Inconclusive > 0 {
		fmt.Fprintf(w, "Windows:  %d failed of %d allowed, %d inconclusive of %d in a row allowed, this step\n",
			s.Failures, r.Spec.Analysis.FailureLimit, s.Inconclusive, r.Spec.Analysis.InconclusiveLimit)
	}
	fmt.Fprintf(w, "Age:      %s\n", age(r.CreationTimestamp, now))

	fmt.Fprintf(w, "\nWeights to %s:\n", r.Spec.To.Version)
	tw := table(w)
	fmt.Fprintln(tw, "  DESIRED\tAPPLIED\tSYNCED\tOBSERVED")
	if s.Phase == "" {
		fmt.Fprintln(tw, "  -\t-\t-\t-")
	} else {
		fmt.Fprintf(tw, "  %d%%\t%d%%\t%s\t%s\n", s.Weights.Desired, s.Weights.Applied, dash(s.Weights.Synced), share(s.Weights.Observed))
	}
	if err := tw.Flush(); err != nil {
		return err
	}

	if g := s.Gate; g != nil {
		fmt.Fprintf(w, "\nGate:     %s (resourceVersion %s) written %s", g.Object, g.ResourceVersion, clockMicro(&g.WrittenAt))
		if g.OpenedAt != nil {
			fmt.Fprintf(w, ", opened %s after %s", clockMicro(g.OpenedAt), g.OpenedAt.Sub(g.WrittenAt.Time).Round(time.Millisecond))
		} else {
			fmt.Fprintf(w, ", open for %s", now.Sub(g.WrittenAt.Time).Round(time.Second))
		}
		if g.Synced != "" {
			fmt.Fprintf(w, ", synced %s", g.Synced)
		}
		fmt.Fprintln(w)
		if len(g.Waiting) > 0 {
			fmt.Fprintln(w, "Waiting for:")
			tw := table(w)
			fmt.Fprintln(tw, "  PROXY\tISTIOD\tTYPE\tWAITING")
			for _, p := range g.Waiting {
				since := "-"
				if p.Since != nil {
					since = now.Sub(p.Since.Time).Round(time.Second).String()
				}
				fmt.Fprintf(tw, "  %s\t%s\t%s\t%s\n", p.Proxy, dash(p.Istiod), dash(p.Type), since)
			}
			if err := tw.Flush(); err != nil {
				return err
			}
		}
	}

	fmt.Fprintln(w, "\nHistory:")
	if len(s.History) == 0 {
		fmt.Fprintln(w, "  (no window yet)")
		return nil
	}
	tw = table(w)
	fmt.Fprintln(tw, "  STEP\tWEIGHT\tWINDOW\tGATE\tVERDICT\tREQUESTS\tFAILED\tERROR RATE\tP50\tP99\tOBSERVED\tFROM ERR\tFROM P99\tREASON")
	for _, h := range s.History {
		to := h.To
		if to == nil {
			to = &v1alpha1.WindowNumbers{}
		}
		fromErr, fromP99 := "-", "-"
		if h.From != nil {
			fromErr, fromP99 = percent(h.From.ErrorRate), ms(h.From.P99)
		}
		gate := "-"
		if h.GateWrittenAt != nil && h.GateOpenedAt != nil {
			gate = h.GateOpenedAt.Sub(h.GateWrittenAt.Time).Round(time.Millisecond).String()
		}
		window := "-"
		if h.WindowStart != nil {
			window = clockMicro(h.WindowStart) + "–" + clockMicro(h.WindowEnd)
		}
		fmt.Fprintf(tw, "  %d\t%d%%\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n",
			h.Step+1, h.Weight, window, gate, h.Verdict, dash(to.Requests), dash(to.Failed), percent(to.ErrorRate),
			ms(to.P50), ms(to.P99), share(h.Observed), fromErr, fromP99, dash(h.Reason))
	}
	return tw.Flush()
}
