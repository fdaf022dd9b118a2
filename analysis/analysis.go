// Package analysis judges one release window from Prometheus: Istio's
// standard metrics for the version being released (To) and the one it
// replaces (From, the baseline), over exactly the window, against the
// Release's thresholds (DESIGN.md, "Part two", "Analysis (Prometheus)").
//
// A window is judged Pass only on complete data: Prometheus unreachable,
// an error answer, a timeout, a malformed or oversized answer, a warning,
// missing series or NaN make it Inconclusive (the step holds), never Pass.
// Fewer than MinRequests requests to To is Inconclusive too.
package analysis

import (
	"context"
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/common/model"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/meshready/meshready/api/v1alpha1"
)

// Target names the versions of one service in the window: workloads are
// Deployment names, Istio's destination_workload label.
type Target struct {
	Namespace string // destination_workload_namespace
	// Service, when set, narrows to requests for that Service
	// (destination_service_name).
	Service    string
	ToWorkload string // the version judged
	// FromWorkload is the baseline ("" : none; no baseline comparison, and
	// Observed is 100 % of what To got).
	FromWorkload string
}

// Window is one analysis window: the samples in (Start, End], to the
// millisecond.
type Window struct{ Start, End time.Time }

// Thresholds are what a window must show to pass. Build them from the
// Release's spec with NewThresholds.
type Thresholds struct {
	// MaxErrorRate is the highest failed/all fraction of To that passes.
	MaxErrorRate float64
	// MaxLatency per quantile (indices P50…P99); 0: not checked.
	MaxLatency [4]time.Duration
	// Baseline compares To with From; nil: no comparison.
	Baseline *BaselineThresholds
	// MinRequests to To in the window; fewer ⇒ Inconclusive.
	MinRequests int
	// GRPCFailureCodes are the grpc-status codes counted as failures
	// (nil: DefaultGRPCFailureCodes).
	GRPCFailureCodes []int32
}

// BaselineThresholds: how much worse than From To may be; nil fields are
// not compared.
type BaselineThresholds struct {
	MaxErrorRateIncrease *float64       // To's error rate minus From's
	MaxP99Increase       *time.Duration // To's p99 minus From's
}

// Defaults the CRD applies; NewThresholds applies them too, for objects
// made without the API server's defaulting (tests, the CLI's dry runs).
const (
	DefaultMaxErrorRate = 0.01
	DefaultMinRequests  = 50
)

// NewThresholds reads the Release's spec.analysis, with the CRD's defaults
// for unset fields.
func NewThresholds(a v1alpha1.Analysis) (Thresholds, error) {
	t := Thresholds{MaxErrorRate: DefaultMaxErrorRate, MinRequests: DefaultMinRequests}
	if a.MaxErrorRate != "" {
		v, err := ParseRate(a.MaxErrorRate)
		if err != nil {
			return Thresholds{}, fmt.Errorf("spec.analysis.maxErrorRate: %w", err)
		}
		t.MaxErrorRate = v
	}
	for q, d := range [4]*time.Duration{durPtr(a.MaxLatency.P50), durPtr(a.MaxLatency.P90), durPtr(a.MaxLatency.P95), durPtr(a.MaxLatency.P99)} {
		if d == nil {
			continue
		}
		if *d <= 0 {
			return Thresholds{}, fmt.Errorf("spec.analysis.maxLatency.%s: %s is not positive", quantileNames[q], *d)
		}
		t.MaxLatency[q] = *d
	}
	if b := a.Baseline; b != nil {
		bt := &BaselineThresholds{}
		if b.MaxErrorRateIncrease != "" {
			v, err := ParseRate(b.MaxErrorRateIncrease)
			if err != nil {
				return Thresholds{}, fmt.Errorf("spec.analysis.baseline.maxErrorRateIncrease: %w", err)
			}
			bt.MaxErrorRateIncrease = &v
		}
		if d := durPtr(b.MaxP99Increase); d != nil {
			if *d < 0 {
				return Thresholds{}, fmt.Errorf("spec.analysis.baseline.maxP99Increase: %s is negative", *d)
			}
			bt.MaxP99Increase = d
		}
		if bt.MaxErrorRateIncrease != nil || bt.MaxP99Increase != nil {
			t.Baseline = bt
		}
	}
	if a.MinRequests != 0 {
		if a.MinRequests < 1 {
			return Thresholds{}, fmt.Errorf("spec.analysis.minRequests: %d is below 1", a.MinRequests)
		}
		t.MinRequests = int(a.MinRequests)
	}
	for _, c := range a.GRPCFailureCodes {
		if c < 0 || c > 16 {
			return Thresholds{}, fmt.Errorf("spec.analysis.grpcFailureCodes: %d is not a gRPC status code (0-16)", c)
		}
	}
	t.GRPCFailureCodes = a.GRPCFailureCodes
	return t, nil
}

func durPtr(d *metav1.Duration) *time.Duration {
	if d == nil {
		return nil
	}
	v := d.Duration
	return &v
}

// ParseRate reads a fraction written as a decimal string, as the API
// writes rates: "0.01", ".5", "1", "0". Nothing else (no exponent, sign,
// percent, NaN or Inf), and never above 1.
func ParseRate(s string) (float64, error) {
	digits, dot := 0, 0
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case c >= '0' && c <= '9':
			digits++
		case c == '.':
			dot++
		default:
			return 0, fmt.Errorf("%q is not a decimal fraction like \"0.01\"", s)
		}
	}
	if digits == 0 || dot > 1 || len(s) > 32 {
		return 0, fmt.Errorf("%q is not a decimal fraction like \"0.01\"", s)
	}
	v, err := strconv.ParseFloat(s, 64)
	if err != nil {
		return 0, fmt.Errorf("%q is not a decimal fraction like \"0.01\"", s)
	}
	if v > 1 {
		return 0, fmt.Errorf("%q is above 1 (rates are fractions: 1 %% is \"0.01\")", s)
	}
	return v, nil
}

// Numbers are one version's window. NaN means no data.
type Numbers struct {
	Workload string
	// Series says Prometheus had request series for the workload in the
	// window (false: nothing recorded at all).
	Series    bool
	Requests  float64 // increase of istio_requests_total (extrapolated by Prometheus: may be fractional)
	Failed    float64
	ErrorRate float64    // Failed / Requests; NaN when Requests is 0 or unknown
	Latency   [4]float64 // milliseconds at Quantiles; NaN when unknown
}

func noNumbers(workload string) Numbers {
	return Numbers{Workload: workload, Requests: math.NaN(), Failed: math.NaN(), ErrorRate: math.NaN(),
		Latency: [4]float64{math.NaN(), math.NaN(), math.NaN(), math.NaN()}}
}

// API renders the numbers as the Release history's strings ("" for no
// data).
func (n Numbers) API() *v1alpha1.WindowNumbers {
	return &v1alpha1.WindowNumbers{
		Requests:  formatNum(n.Requests, 1),
		Failed:    formatNum(n.Failed, 1),
		ErrorRate: formatNum(n.ErrorRate, 6),
		P50:       formatNum(n.Latency[P50], 2),
		P90:       formatNum(n.Latency[P90], 2),
		P95:       formatNum(n.Latency[P95], 2),
		P99:       formatNum(n.Latency[P99], 2),
	}
}

// formatNum is v with at most decimals decimals, trailing zeros trimmed;
// "" for NaN or Inf.
func formatNum(v float64, decimals int) string {
	if math.IsNaN(v) || math.IsInf(v, 0) {
		return ""
	}
	s := strconv.FormatFloat(v, 'f', decimals, 64)
	if strings.Contains(s, ".") {
		s = strings.TrimRight(strings.TrimRight(s, "0"), ".")
	}
	if s == "-0" {
		s = "0"
	}
	return s
}

// Result is one window's verdict with everything it was judged on.
type Result struct {
	Verdict v1alpha1.Verdict // Pass, Fail or Inconclusive
	// Reason is the one line that decided the verdict.
	Reason string
	Window Window
	To     Numbers
	From   Numbers // zero (Workload "") when the target has no baseline
	// Observed is To's share of the window's requests to To and From, in
	// percent; NaN when there were none.
	Observed float64
	// Queries are the PromQL expressions evaluated, all at EvaluatedAt
	// (the window's end, to the millisecond; the expressions pin it with @).
	Queries     []string
	EvaluatedAt time.Time
	// Warnings are Prometheus' warnings on the answers; any makes a window
	// that would pass Inconclusive.
	Warnings []string
}

// Fill writes the result into a history row: verdict, reason, window,
// numbers, observed share and queries.
func (r Result) Fill(row *v1alpha1.HistoryRow) {
	row.Verdict = r.Verdict
	row.Reason = r.Reason
	s, e := metav1.NewMicroTime(r.Window.Start), metav1.NewMicroTime(r.Window.End)
	row.WindowStart, row.WindowEnd = &s, &e
	if r.To.Workload != "" {
		row.To = r.To.API()
	}
	if r.From.Workload != "" {
		row.From = r.From.API()
	}
	row.Observed = formatNum(r.Observed, 1)
	row.Queries = append([]string(nil), r.Queries...)
}

// Analyzer judges windows against one Prometheus. Safe for concurrent use.
type Analyzer struct {
	c *client
}

// New makes an Analyzer for the Prometheus at c.URL.
func New(c Config) (*Analyzer, error) {
	cl, err := newClient(c)
	if err != nil {
		return nil, err
	}
	return &Analyzer{c: cl}, nil
}

// Judge reads the window's numbers for t from Prometheus and decides.
//
// The Result is always usable. err is non-nil only when Prometheus could
// not be asked or did not answer properly (a *QueryError: unreachable,
// 4xx/5xx, timeout, malformed, too large), or the target or window is
// invalid; the Result is then Inconclusive with err's line as its reason,
// so the step holds. Judge never answers Pass with an error.
func (a *Analyzer) Judge(ctx context.Context, t Target, w Window, th Thresholds) (Result, error) {
	r := Result{Window: w, EvaluatedAt: time.UnixMilli(w.End.UnixMilli()), Observed: math.NaN(),
		To: noNumbers(t.ToWorkload)}
	if t.FromWorkload != "" {
		r.From = noNumbers(t.FromWorkload)
	}
	q, err := buildQueries(t, w, th.GRPCFailureCodes)
	if err != nil {
		r.Verdict, r.Reason = v1alpha1.VerdictInconclusive, err.Error()
		return r, err
	}
	r.Queries = q.all()

	answers := make([]answer, len(r.Queries))
	errs := make([]error, len(r.Queries))
	var wg sync.WaitGroup
	for i, expr := range r.Queries {
		wg.Go(func() { answers[i], errs[i] = a.c.query(ctx, expr, r.EvaluatedAt) })
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		// The first failed query in order names the failure (they usually
		// all fail alike).
		for _, e := range errs {
			if e != nil {
				err = e
				break
			}
		}
		r.Verdict = v1alpha1.VerdictInconclusive
		r.Reason = "no verdict, the step holds: " + err.Error()
		return r, err
	}
	for _, an := range answers {
		r.Warnings = append(r.Warnings, an.warnings...)
	}

	r.To = numbersOf(t.ToWorkload, t.Namespace, answers)
	if t.FromWorkload != "" && t.FromWorkload != t.ToWorkload {
		r.From = numbersOf(t.FromWorkload, t.Namespace, answers)
	}
	r.Observed = observed(r.To, r.From)
	r.Verdict, r.Reason = decide(r.To, r.From, th, r.Warnings)
	return r, nil
}

// numbersOf picks one workload's numbers out of the window's answers
// (in the order of queries.all: requests, failed, p50…p99).
func numbersOf(workload, namespace string, ans []answer) Numbers {
	n := noNumbers(workload)
	req, ok := valueOf(ans[0].vector, workload, namespace)
	if !ok {
		return n
	}
	n.Series, n.Requests = true, req
	// No failing series: nothing failed (Istio makes a series for a label
	// combination on its first request).
	n.Failed = 0
	if f, ok := valueOf(ans[1].vector, workload, namespace); ok {
		n.Failed = f
	}
	if n.Requests > 0 && !math.IsNaN(n.Failed) {
		n.ErrorRate = n.Failed / n.Requests
	}
	for i := range Quantiles {
		if v, ok := valueOf(ans[2+i].vector, workload, namespace); ok {
			n.Latency[i] = v
		}
	}
	return n
}

func valueOf(v model.Vector, workload, namespace string) (float64, bool) {
	for _, s := range v {
		if string(s.Metric[labelWorkload]) == workload && string(s.Metric[labelNamespace]) == namespace {
			return float64(s.Value), true
		}
	}
	return 0, false
}

// observed is To's percent of To's and From's requests (NaN: none).
func observed(to, from Numbers) float64 {
	total := 0.0
	if to.Series {
		total += to.Requests
	}
	if from.Series {
		total += from.Requests
	}
	if !to.Series || math.IsNaN(total) || total <= 0 {
		return math.NaN()
	}
	// 100*to/total, not to/total*100: exact when the share is.
	return 100 * to.Requests / total
}

// decide is the verdict on complete answers. Order: no data or too little
// ⇒ Inconclusive; any threshold crossed on data present ⇒ Fail (a failing
// number needs no other to be known); any number a threshold needs
// missing, or a Prometheus warning ⇒ Inconclusive; else Pass.
func decide(to, from Numbers, th Thresholds, warnings []string) (v1alpha1.Verdict, string) {
	inc := v1alpha1.VerdictInconclusive
	if !to.Series {
		return inc, fmt.Sprintf("no requests to %s recorded in the window (no istio_requests_total series with reporter=\"destination\"): no traffic, or Prometheus does not scrape its sidecar", to.Workload)
	}
	if math.IsNaN(to.Requests) || math.IsInf(to.Requests, 0) {
		return inc, fmt.Sprintf("%s's request count is %v", to.Workload, to.Requests)
	}
	if to.Requests < float64(th.MinRequests) {
		return inc, fmt.Sprintf("too few requests to %s: %s < minRequests %d", to.Workload, formatNum(to.Requests, 1), th.MinRequests)
	}

	var fails, missing []string
	if math.IsNaN(to.ErrorRate) {
		missing = append(missing, to.Workload+"'s error rate")
	} else if to.ErrorRate > th.MaxErrorRate {
		fails = append(fails, fmt.Sprintf("%s error rate %s > %s (%s of %s requests failed)",
			to.Workload, pct(to.ErrorRate), pct(th.MaxErrorRate), formatNum(to.Failed, 1), formatNum(to.Requests, 1)))
	}
	for i, max := range th.MaxLatency {
		if max <= 0 {
			continue
		}
		l := to.Latency[i]
		switch {
		case math.IsNaN(l):
			missing = append(missing, to.Workload+"'s "+quantileNames[i])
		case l > ms(max):
			fails = append(fails, fmt.Sprintf("%s %s %sms > %s", to.Workload, quantileNames[i], formatNum(l, 2), max))
		}
	}
	baseline := ""
	if b := th.Baseline; b != nil && from.Workload != "" {
		switch {
		case !from.Series || math.IsNaN(from.Requests) || from.Requests < float64(th.MinRequests):
			// The 100 % step has no baseline traffic; the absolute
			// thresholds still decide.
			baseline = fmt.Sprintf("; baseline not compared: %s had %s requests (< minRequests %d)",
				from.Workload, orZero(from.Requests), th.MinRequests)
		default:
			if d := b.MaxErrorRateIncrease; d != nil {
				if math.IsNaN(to.ErrorRate) || math.IsNaN(from.ErrorRate) {
					missing = append(missing, "the error rates to compare with the baseline")
				} else if up := to.ErrorRate - from.ErrorRate; up > *d+1e-12 {
					fails = append(fails, fmt.Sprintf("%s error rate %s is %s above %s's %s (max increase %s)",
						to.Workload, pct(to.ErrorRate), pct(up), from.Workload, pct(from.ErrorRate), pct(*d)))
				}
			}
			if d := b.MaxP99Increase; d != nil {
				tp, fp := to.Latency[P99], from.Latency[P99]
				if math.IsNaN(tp) || math.IsNaN(fp) {
					missing = append(missing, "the p99s to compare with the baseline")
				} else if tp-fp > ms(*d) {
					fails = append(fails, fmt.Sprintf("%s p99 %sms is %sms above %s's %sms (max increase %s)",
						to.Workload, formatNum(tp, 2), formatNum(tp-fp, 2), from.Workload, formatNum(fp, 2), *d))
				}
			}
		}
	}
	switch {
	case len(fails) > 0:
		return v1alpha1.VerdictFail, strings.Join(fails, "; ")
	case len(missing) > 0:
		return inc, "no data for " + strings.Join(missing, ", ") + " (NaN or no series): never a pass on missing data"
	case len(warnings) > 0:
		return inc, "Prometheus warned, so the numbers may be incomplete: " + oneLine(strings.Join(warnings, "; "), 300)
	}
	s := fmt.Sprintf("%s: %s requests, error rate %s ≤ %s", to.Workload, formatNum(to.Requests, 1), pct(to.ErrorRate), pct(th.MaxErrorRate))
	for i, max := range th.MaxLatency {
		if max > 0 {
			s += fmt.Sprintf(", %s %sms ≤ %s", quantileNames[i], formatNum(to.Latency[i], 2), max)
		}
	}
	if th.Baseline != nil && from.Workload != "" && baseline == "" {
		s += "; no worse than " + from.Workload + " beyond the baseline limits"
	}
	return v1alpha1.VerdictPass, s + baseline
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

func pct(f float64) string { return formatNum(100*f, 3) + "%" }

func orZero(v float64) string {
	if math.IsNaN(v) {
		return "0"
	}
	return formatNum(v, 1)
}
