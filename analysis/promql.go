package analysis

import (
	"fmt"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Istio's standard metrics and the labels the queries use, as Istio's stats
// plugin writes them (https://istio.io/latest/docs/reference/config/metrics/).
const (
	MetricRequests = "istio_requests_total"
	MetricDuration = "istio_request_duration_milliseconds_bucket"

	labelReporter  = "reporter"
	labelWorkload  = "destination_workload"
	labelNamespace = "destination_workload_namespace"
	labelService   = "destination_service_name"
	labelCode      = "response_code"
	labelGRPC      = "grpc_response_status"
)

// byWorkload is the grouping of every query: one row per version.
const byWorkload = labelNamespace + ", " + labelWorkload

// DefaultGRPCFailureCodes is the server-fault set of grpc-status codes
// counted as failures: Unknown, DeadlineExceeded, Unimplemented, Internal,
// Unavailable, DataLoss.
var DefaultGRPCFailureCodes = []int32{2, 4, 12, 13, 14, 15}

// Quantiles are the latency quantiles every window reports, in the order
// of Numbers.Latency and Thresholds.MaxLatency.
var Quantiles = [4]float64{0.5, 0.9, 0.95, 0.99}

// Indices into Quantiles.
const (
	P50 = iota
	P90
	P95
	P99
)

var quantileNames = [4]string{"p50", "p90", "p95", "p99"}

// quoteString writes s as a PromQL double-quoted string literal. PromQL
// strings take Go's escapes (the lexer accepts \a \b \f \n \r \t \v \\ \"
// \NNN \xNN \uNNNN \UNNNNNNNN and the parser unquotes them with
// strconv.Unquote), so strconv.Quote's output is a literal whose value is s,
// byte for byte.
func quoteString(s string) string { return strconv.Quote(s) }

// queries are the PromQL expressions of one window, evaluated at its end.
type queries struct {
	Requests string
	Failed   string
	Latency  [4]string
}

// buildQueries renders the window's expressions. Every selector reads
// exactly (End-W, End] with W = End-Start: `increase(m{…}[W] @ end)`.
// Window bounds are taken to the millisecond (Prometheus' resolution).
func buildQueries(t Target, w Window, grpcCodes []int32) (queries, error) {
	if err := t.validate(); err != nil {
		return queries{}, err
	}
	rng, at, err := w.promql()
	if err != nil {
		return queries{}, err
	}
	sel := selector(t)
	inc := func(metric, extra string) string {
		return "increase(" + metric + "{" + sel + extra + "}[" + rng + "] @ " + at + ")"
	}
	var q queries
	q.Requests = "sum by (" + byWorkload + ") (" + inc(MetricRequests, "") + ")"
	// A request fails when its HTTP status is 5xx or its grpc-status is in
	// the failure set. The two selectors are disjoint (the second excludes
	// 5xx), so a request with both (503 + grpc-status 14) counts once; `or`
	// keeps every series of both sides (their response_code differs).
	q.Failed = "sum by (" + byWorkload + ") (" +
		inc(MetricRequests, ","+labelCode+`=~"5.."`) + " or " +
		inc(MetricRequests, ","+labelCode+`!~"5..",`+labelGRPC+"=~"+quoteString(codesRegexp(grpcCodes))) + ")"
	for i, qq := range Quantiles {
		q.Latency[i] = "histogram_quantile(" + strconv.FormatFloat(qq, 'f', -1, 64) +
			", sum by (" + byWorkload + ", le) (" + inc(MetricDuration, "") + "))"
	}
	return q, nil
}

func (q queries) all() []string {
	return append([]string{q.Requests, q.Failed}, q.Latency[:]...)
}

// selector is the label matchers shared by every query: the destination's
// own report of the two versions' workloads, and the Service when named.
func selector(t Target) string {
	names := []string{regexp.QuoteMeta(t.ToWorkload)}
	if t.FromWorkload != "" && t.FromWorkload != t.ToWorkload {
		names = append(names, regexp.QuoteMeta(t.FromWorkload))
	}
	s := labelReporter + `="destination",` +
		labelNamespace + "=" + quoteString(t.Namespace) + "," +
		labelWorkload + "=~" + quoteString(strings.Join(names, "|"))
	if t.Service != "" {
		s += "," + labelService + "=" + quoteString(t.Service)
	}
	return s
}

// codesRegexp is "2|4|12|13|14|15": sorted, deduplicated (PromQL regexps
// are anchored, so "1" does not match "14").
func codesRegexp(codes []int32) string {
	if len(codes) == 0 {
		codes = DefaultGRPCFailureCodes
	}
	c := slices.Clone(codes)
	slices.Sort(c)
	c = slices.Compact(c)
	parts := make([]string, len(c))
	for i, v := range c {
		parts[i] = strconv.FormatInt(int64(v), 10)
	}
	return strings.Join(parts, "|")
}

// promql renders the window as a range ("60s", "60500ms") and an @
// timestamp ("1796212345.678"), both in whole milliseconds.
func (w Window) promql() (rng, at string, err error) {
	if w.Start.IsZero() || w.End.IsZero() {
		return "", "", fmt.Errorf("analysis: window %s has a zero bound", w)
	}
	s, e := w.Start.UnixMilli(), w.End.UnixMilli()
	if e <= s {
		return "", "", fmt.Errorf("analysis: window %s is empty (end must be after start, to the millisecond)", w)
	}
	if e < 0 || s < 0 {
		return "", "", fmt.Errorf("analysis: window %s is before 1970", w)
	}
	d := e - s
	if d%1000 == 0 {
		rng = strconv.FormatInt(d/1000, 10) + "s"
	} else {
		rng = strconv.FormatInt(d, 10) + "ms"
	}
	return rng, fmt.Sprintf("%d.%03d", e/1000, e%1000), nil
}

// String is "[start, end]" in RFC 3339 with milliseconds.
func (w Window) String() string {
	return "[" + w.Start.UTC().Format(time.RFC3339Nano) + ", " + w.End.UTC().Format(time.RFC3339Nano) + "]"
}

// Duration is End - Start.
func (w Window) Duration() time.Duration { return w.End.Sub(w.Start) }

func (t Target) validate() error {
	switch {
	case t.Namespace == "":
		return fmt.Errorf("analysis: target has no namespace")
	case t.ToWorkload == "":
		return fmt.Errorf("analysis: target has no workload to judge (ToWorkload)")
	}
	return nil
}
