package analysis

import (
	"context"
	"errors"
	"fmt"
	"math"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/meshready/meshready/api/v1alpha1"
)

var (
	testEnd    = time.Date(2026, 12, 2, 18, 0, 0, 0, time.UTC)
	testWindow = Window{Start: testEnd.Add(-time.Minute), End: testEnd}
	testTarget = Target{Namespace: "shop", ToWorkload: "greeter-v2", FromWorkload: "greeter-v1"}
	testTh     = Thresholds{MaxErrorRate: 0.01, MinRequests: 50, MaxLatency: [4]time.Duration{P99: 250 * time.Millisecond}}
)

// vector is a Prometheus instant-vector answer with one sample per
// workload (value as Prometheus writes it: "12", "NaN").
func vector(values map[string]string) string {
	var rows []string
	for w, v := range values {
		rows = append(rows, fmt.Sprintf(`{"metric":{"destination_workload":%q,"destination_workload_namespace":"shop"},"value":[1796234400,%q]}`, w, v))
	}
	return `{"status":"success","data":{"resultType":"vector","result":[` + strings.Join(rows, ",") + `]}}`
}

// fakeProm answers the window's six queries from per-query tables.
type fakeProm struct {
	requests, failed map[string]string
	latency          [4]map[string]string
	warnings         []string
}

func (f fakeProm) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.URL.Path != "/api/v1/query" {
		http.NotFound(w, r)
		return
	}
	q := r.FormValue("query")
	var body string
	switch {
	case strings.HasPrefix(q, "histogram_quantile("):
		for i, qq := range []string{"0.5,", "0.9,", "0.95,", "0.99,"} {
			if strings.HasPrefix(q, "histogram_quantile("+qq) {
				body = vector(f.latency[i])
			}
		}
	case strings.Contains(q, `response_code=~"5.."`):
		body = vector(f.failed)
	default:
		body = vector(f.requests)
	}
	if len(f.warnings) > 0 {
		body = strings.TrimSuffix(body, "}") + `,"warnings":["` + strings.Join(f.warnings, `","`) + `"]}`
	}
	w.Header().Set("Content-Type", "application/json")
	_, _ = w.Write([]byte(body))
}

func cleanProm() fakeProm {
	return fakeProm{
		requests: map[string]string{"greeter-v2": "600", "greeter-v1": "5400"},
		failed:   map[string]string{"greeter-v1": "6"},
		latency: [4]map[string]string{
			{"greeter-v2": "20", "greeter-v1": "19"}, {"greeter-v2": "40", "greeter-v1": "41"},
			{"greeter-v2": "60", "greeter-v1": "58"}, {"greeter-v2": "120", "greeter-v1": "110"},
		},
	}
}

func newTestAnalyzer(t *testing.T, url string, c Config) *Analyzer {
	t.Helper()
	c.URL = url
	if c.QueryTimeout == 0 {
		c.QueryTimeout = 2 * time.Second
	}
	a, err := New(c)
	if err != nil {
		t.Fatal(err)
	}
	return a
}

func TestJudgeFakeAnswers(t *testing.T) {
	t.Parallel()
	srv := httptest.NewServer(cleanProm())
	t.Cleanup(srv.Close)
	a := newTestAnalyzer(t, srv.URL, Config{})
	r, err := a.Judge(context.Background(), testTarget, testWindow, testTh)
	if err != nil {
		t.Fatal(err)
	}
	if r.Verdict != v1alpha1.VerdictPass {
		t.Fatalf("verdict %s (%s), want Pass", r.Verdict, r.Reason)
	}
	if r.Observed != 10 {
		t.Errorf("observed %v, want 10", r.Observed)
	}
	if r.To.Requests != 600 || r.To.Failed != 0 || r.To.ErrorRate != 0 || r.To.Latency != [4]float64{20, 40, 60, 120} {
		t.Errorf("to = %+v", r.To)
	}
	if r.From.Requests != 5400 || r.From.Failed != 6 || math.Abs(r.From.ErrorRate-6.0/5400) > 1e-15 {
		t.Errorf("from = %+v", r.From)
	}
	if len(r.Queries) != 6 || !r.EvaluatedAt.Equal(testEnd) {
		t.Errorf("queries %d at %s", len(r.Queries), r.EvaluatedAt)
	}
	var row v1alpha1.HistoryRow
	r.Fill(&row)
	if row.Verdict != v1alpha1.VerdictPass || row.Observed != "10" || row.To.Requests != "600" || row.To.ErrorRate != "0" ||
		row.To.P99 != "120" || row.From.ErrorRate != "0.001111" || len(row.Queries) != 6 || !row.WindowEnd.Time.Equal(testEnd) {
		t.Errorf("history row %+v to %+v from %+v", row, *row.To, *row.From)
	}
	t.Logf("reason: %s", r.Reason)
}

// hang answers nothing until the client goes away. It reads the form first,
// as Prometheus does: the server notices a closed connection only once the
// request body (the client's POSTed query) has been read.
func hang(w http.ResponseWriter, r *http.Request) {
	_ = r.ParseForm()
	select {
	case <-r.Context().Done():
	case <-time.After(10 * time.Second):
	}
}

// TestJudgeFailurePaths: every way Prometheus can fail to answer makes the
// window Inconclusive with an error naming what failed, never Pass.
func TestJudgeFailurePaths(t *testing.T) {
	t.Parallel()
	huge := strings.Repeat("x", 64<<10)
	closed := func() string {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		addr := l.Addr().String()
		l.Close()
		return "http://" + addr
	}()
	for _, tc := range []struct {
		name    string
		handler http.HandlerFunc
		url     string // instead of a server
		cfg     Config
		ctx     func() (context.Context, context.CancelFunc)
		kind    ErrorKind
		want    []string // substrings of the reason
	}{
		{name: "unreachable", url: closed, kind: KindUnreachable, want: []string{"prometheus unreachable", "connection refused", closed, "check the Prometheus URL"}},
		{name: "unresolvable", url: "http://prometheus.invalid:9090", kind: KindUnreachable, want: []string{"prometheus unreachable", "prometheus.invalid"}},
		{name: "500 plain text", handler: func(w http.ResponseWriter, r *http.Request) {
			http.Error(w, "internal meltdown", http.StatusInternalServerError)
		}, kind: KindServer, want: []string{"prometheus failed (HTTP 500)", "internal meltdown", "check Prometheus' health"}},
		{name: "503 Prometheus query timeout", handler: func(w http.ResponseWriter, r *http.Request) {
			w.WriteHeader(http.StatusServiceUnavailable)
			_, _ = w.Write([]byte(`{"status":"error","errorType":"timeout","error":"query timed out in expression evaluation"}`))
		}, kind: KindTimeout, want: []string{"prometheus timed out", "timeout: query timed out in expression evaluation", "never a pass"}},
		{name: "503 unavailable", handler: func(w http.ResponseWriter, r *http.Request) {
			w.WriteHeader(http.StatusServiceUnavailable)
			_, _ = w.Write([]byte(`{"status":"error","errorType":"unavailable","error":"Service Unavailable"}`))
		}, kind: KindServer, want: []string{"HTTP 503", "unavailable: Service Unavailable"}},
		{name: "400 bad query", handler: func(w http.ResponseWriter, r *http.Request) {
			w.WriteHeader(http.StatusBadRequest)
			_, _ = w.Write([]byte(`{"status":"error","errorType":"bad_data","error":"invalid parameter \"query\": 1:5: parse error: unexpected \"}\""}`))
		}, kind: KindBadQuery, want: []string{"rejected the query (HTTP 400)", `bad_data: invalid parameter "query": 1:5: parse error`}},
		{name: "422 execution", handler: func(w http.ResponseWriter, r *http.Request) {
			w.WriteHeader(http.StatusUnprocessableEntity)
			_, _ = w.Write([]byte(`{"status":"error","errorType":"execution","error":"query processing would load too many samples into memory"}`))
		}, kind: KindBadQuery, want: []string{"HTTP 422", "too many samples"}},
		{name: "404 not Prometheus", handler: http.NotFound, kind: KindBadQuery, want: []string{"HTTP 404", "404 page not found"}},
		{name: "client timeout", handler: hang, cfg: Config{QueryTimeout: 200 * time.Millisecond}, kind: KindTimeout, want: []string{"prometheus timed out: no answer within 200ms"}},
		{name: "caller's deadline", handler: hang, ctx: func() (context.Context, context.CancelFunc) {
			return context.WithTimeout(context.Background(), 150*time.Millisecond)
		},
			kind: KindTimeout, want: []string{"prometheus timed out: no answer before the caller's deadline"}},
		{name: "caller canceled", handler: hang, ctx: func() (context.Context, context.CancelFunc) {
			ctx, cancel := context.WithCancel(context.Background())
			time.AfterFunc(100*time.Millisecond, cancel)
			return ctx, cancel
		}, kind: KindCanceled, want: []string{"canceled"}},
		{name: "huge body with Content-Length", handler: func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Length", fmt.Sprint(len(huge)))
			_, _ = w.Write([]byte(huge))
		}, cfg: Config{MaxBodyBytes: 16 << 10}, kind: KindTooLarge, want: []string{"more than the body cap: answer body too large: Content-Length 65536 > 16384 bytes (http"}},
		{name: "huge body streamed", handler: func(w http.ResponseWriter, r *http.Request) {
			for range 64 {
				_, _ = w.Write([]byte(huge[:1024]))
				w.(http.Flusher).Flush()
			}
		}, cfg: Config{MaxBodyBytes: 16 << 10}, kind: KindTooLarge, want: []string{"answer body too large: more than 16384 bytes"}},
		{name: "malformed: HTML login page", handler: func(w http.ResponseWriter, r *http.Request) {
			_, _ = w.Write([]byte("<html><body>Please log in</body></html>"))
		}, kind: KindMalformed, want: []string{"not a Prometheus query result", "invalid character '<'"}},
		{name: "malformed: truncated JSON", handler: func(w http.ResponseWriter, r *http.Request) {
			_, _ = w.Write([]byte(`{"status":"success","data":{"resultType":"vector","result":[{"metric":{}`))
		}, kind: KindMalformed, want: []string{"not a Prometheus query result"}},
		{name: "malformed: a matrix", handler: func(w http.ResponseWriter, r *http.Request) {
			_, _ = w.Write([]byte(`{"status":"success","data":{"resultType":"matrix","result":[]}}`))
		}, kind: KindMalformed, want: []string{"result is matrix, want a vector"}},
		{name: "malformed: a value that is not a number", handler: func(w http.ResponseWriter, r *http.Request) {
			_, _ = w.Write([]byte(`{"status":"success","data":{"resultType":"vector","result":[{"metric":{},"value":[1,"many"]}]}}`))
		}, kind: KindMalformed, want: []string{"not a Prometheus query result"}},
		{name: "connection dropped mid-answer", handler: func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Length", "1000")
			_, _ = w.Write([]byte(`{"status":"success",`))
			w.(http.Flusher).Flush()
			panic(http.ErrAbortHandler)
		}, kind: KindMalformed, want: []string{"answer cut off after HTTP 200: unexpected EOF"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			url := tc.url
			if tc.handler != nil {
				srv := httptest.NewServer(tc.handler)
				t.Cleanup(srv.Close)
				url = srv.URL
			}
			ctx, cancel := context.WithCancel(context.Background())
			if tc.ctx != nil {
				ctx, cancel = tc.ctx()
			}
			defer cancel()
			a := newTestAnalyzer(t, url, tc.cfg)
			start := time.Now()
			r, err := a.Judge(ctx, testTarget, testWindow, testTh)
			if time.Since(start) > 5*time.Second {
				t.Errorf("Judge took %s", time.Since(start))
			}
			if r.Verdict != v1alpha1.VerdictInconclusive {
				t.Fatalf("verdict %s, want Inconclusive (reason %q)", r.Verdict, r.Reason)
			}
			var qe *QueryError
			if !errors.As(err, &qe) {
				t.Fatalf("err = %v (%T), want a *QueryError", err, err)
			}
			if qe.Kind != tc.kind {
				t.Errorf("kind %s, want %s (%v)", qe.Kind, tc.kind, err)
			}
			if !strings.HasPrefix(r.Reason, "no verdict, the step holds: prometheus ") {
				t.Errorf("reason %q", r.Reason)
			}
			for _, s := range tc.want {
				if !strings.Contains(r.Reason, s) {
					t.Errorf("reason %q\nlacks %q", r.Reason, s)
				}
			}
			if strings.Contains(r.Reason, "\n") {
				t.Errorf("reason spans lines: %q", r.Reason)
			}
			t.Logf("%s", r.Reason)
		})
	}
}

// TestJudgeAnswers: complete answers with too little, missing or bad data.
func TestJudgeAnswers(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name    string
		prom    func(*fakeProm)
		th      func(*Thresholds)
		verdict v1alpha1.Verdict
		want    string
	}{
		{name: "clean", verdict: v1alpha1.VerdictPass, want: "greeter-v2: 600 requests, error rate 0% ≤ 1%, p99 120ms ≤ 250ms"},
		{name: "empty result", prom: func(f *fakeProm) { *f = fakeProm{} }, verdict: v1alpha1.VerdictInconclusive,
			want: "no requests to greeter-v2 recorded in the window"},
		{name: "only from has series", prom: func(f *fakeProm) { delete(f.requests, "greeter-v2") }, verdict: v1alpha1.VerdictInconclusive,
			want: "no requests to greeter-v2"},
		{name: "NaN requests", prom: func(f *fakeProm) { f.requests["greeter-v2"] = "NaN" }, verdict: v1alpha1.VerdictInconclusive,
			want: "greeter-v2's request count is NaN"},
		{name: "too few", prom: func(f *fakeProm) { f.requests["greeter-v2"] = "49.5" }, verdict: v1alpha1.VerdictInconclusive,
			want: "too few requests to greeter-v2: 49.5 < minRequests 50"},
		{name: "p99 NaN", prom: func(f *fakeProm) { f.latency[P99]["greeter-v2"] = "NaN" }, verdict: v1alpha1.VerdictInconclusive,
			want: "no data for greeter-v2's p99 (NaN or no series): never a pass on missing data"},
		{name: "p99 missing", prom: func(f *fakeProm) { delete(f.latency[P99], "greeter-v2") }, verdict: v1alpha1.VerdictInconclusive,
			want: "no data for greeter-v2's p99"},
		{name: "p50 missing but not checked", prom: func(f *fakeProm) { delete(f.latency[P50], "greeter-v2") }, verdict: v1alpha1.VerdictPass},
		{name: "failing beats missing", prom: func(f *fakeProm) {
			f.failed["greeter-v2"] = "30"
			delete(f.latency[P99], "greeter-v2")
		}, verdict: v1alpha1.VerdictFail, want: "greeter-v2 error rate 5% > 1% (30 of 600 requests failed)"},
		{name: "p99 over", prom: func(f *fakeProm) { f.latency[P99]["greeter-v2"] = "250.5" }, verdict: v1alpha1.VerdictFail,
			want: "greeter-v2 p99 250.5ms > 250ms"},
		{name: "p99 at the limit passes", prom: func(f *fakeProm) { f.latency[P99]["greeter-v2"] = "250" }, verdict: v1alpha1.VerdictPass},
		{name: "warning", prom: func(f *fakeProm) { f.warnings = []string{"PromQL warning: partial response"} }, verdict: v1alpha1.VerdictInconclusive,
			want: "Prometheus warned, so the numbers may be incomplete: PromQL warning: partial response"},
		{name: "warning does not hide a fail", prom: func(f *fakeProm) {
			f.warnings = []string{"w"}
			f.failed["greeter-v2"] = "60"
		}, verdict: v1alpha1.VerdictFail, want: "error rate 10% > 1%"},
		{name: "baseline error rate", prom: func(f *fakeProm) {
			f.failed["greeter-v2"] = "5" // 0.833 %, under 1 %, but v1 is at 0.111 %
		}, th: func(th *Thresholds) {
			d := 0.005
			th.Baseline = &BaselineThresholds{MaxErrorRateIncrease: &d}
		}, verdict: v1alpha1.VerdictFail, want: "greeter-v2 error rate 0.833% is 0.722% above greeter-v1's 0.111% (max increase 0.5%)"},
		{name: "baseline p99", th: func(th *Thresholds) {
			d := 5 * time.Millisecond
			th.Baseline = &BaselineThresholds{MaxP99Increase: &d}
		}, verdict: v1alpha1.VerdictFail, want: "greeter-v2 p99 120ms is 10ms above greeter-v1's 110ms (max increase 5ms)"},
		{name: "baseline within", th: func(th *Thresholds) {
			d, e := 10*time.Millisecond, 0.001
			th.Baseline = &BaselineThresholds{MaxP99Increase: &d, MaxErrorRateIncrease: &e}
		}, verdict: v1alpha1.VerdictPass, want: "no worse than greeter-v1 beyond the baseline limits"},
		{name: "baseline without from traffic", prom: func(f *fakeProm) {
			delete(f.requests, "greeter-v1")
		}, th: func(th *Thresholds) {
			d := 5 * time.Millisecond
			th.Baseline = &BaselineThresholds{MaxP99Increase: &d}
		}, verdict: v1alpha1.VerdictPass, want: "baseline not compared: greeter-v1 had 0 requests (< minRequests 50)"},
		{name: "baseline p99 missing", prom: func(f *fakeProm) { delete(f.latency[P99], "greeter-v1") }, th: func(th *Thresholds) {
			d := 5 * time.Millisecond
			th.Baseline = &BaselineThresholds{MaxP99Increase: &d}
		}, verdict: v1alpha1.VerdictInconclusive, want: "no data for the p99s to compare with the baseline"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			f := cleanProm()
			if tc.prom != nil {
				tc.prom(&f)
			}
			th := testTh
			if tc.th != nil {
				tc.th(&th)
			}
			srv := httptest.NewServer(f)
			t.Cleanup(srv.Close)
			r, err := newTestAnalyzer(t, srv.URL, Config{}).Judge(context.Background(), testTarget, testWindow, th)
			if err != nil {
				t.Fatal(err)
			}
			if r.Verdict != tc.verdict || !strings.Contains(r.Reason, tc.want) {
				t.Fatalf("%s %q\nwant %s %q", r.Verdict, r.Reason, tc.verdict, tc.want)
			}
		})
	}
}

func TestNewThresholds(t *testing.T) {
	t.Parallel()
	th, err := NewThresholds(v1alpha1.Analysis{})
	if err != nil || th.MaxErrorRate != 0.01 || th.MinRequests != 50 || th.Baseline != nil || th.MaxLatency != [4]time.Duration{} {
		t.Fatalf("defaults: %+v %v", th, err)
	}
	for _, tc := range []struct {
		a       v1alpha1.Analysis
		wantErr string
	}{
		{a: v1alpha1.Analysis{MaxErrorRate: "1%"}, wantErr: "spec.analysis.maxErrorRate"},
		{a: v1alpha1.Analysis{MaxErrorRate: "1.5"}, wantErr: "above 1"},
		{a: v1alpha1.Analysis{Baseline: &v1alpha1.Baseline{MaxErrorRateIncrease: "x"}}, wantErr: "baseline.maxErrorRateIncrease"},
		{a: v1alpha1.Analysis{MinRequests: -1}, wantErr: "minRequests"},
		{a: v1alpha1.Analysis{GRPCFailureCodes: []int32{17}}, wantErr: "grpcFailureCodes"},
	} {
		if _, err := NewThresholds(tc.a); err == nil || !strings.Contains(err.Error(), tc.wantErr) {
			t.Errorf("%+v: err %v, want %q", tc.a, err, tc.wantErr)
		}
	}
}

func apiAnalysis(maxErr string, minReq int32, p99 time.Duration) v1alpha1.Analysis {
	return v1alpha1.Analysis{MaxErrorRate: maxErr, MinRequests: minReq,
		MaxLatency: v1alpha1.Latency{P99: &metav1.Duration{Duration: p99}}}
}

func TestNewThresholdsFull(t *testing.T) {
	t.Parallel()
	d := func(s string) *metav1.Duration {
		v, err := time.ParseDuration(s)
		if err != nil {
			t.Fatal(err)
		}
		return &metav1.Duration{Duration: v}
	}
	th, err := NewThresholds(v1alpha1.Analysis{
		MaxErrorRate: ".005",
		MaxLatency:   v1alpha1.Latency{P50: d("50ms"), P95: d("200ms"), P99: d("250ms")},
		Baseline:     &v1alpha1.Baseline{MaxErrorRateIncrease: "0.002", MaxP99Increase: d("20ms")},
		MinRequests:  100, GRPCFailureCodes: []int32{14},
	})
	if err != nil {
		t.Fatal(err)
	}
	if th.MaxErrorRate != 0.005 || th.MinRequests != 100 || th.MaxLatency != [4]time.Duration{50 * time.Millisecond, 0, 200 * time.Millisecond, 250 * time.Millisecond} ||
		th.Baseline == nil || *th.Baseline.MaxErrorRateIncrease != 0.002 || *th.Baseline.MaxP99Increase != 20*time.Millisecond ||
		len(th.GRPCFailureCodes) != 1 || th.GRPCFailureCodes[0] != 14 {
		t.Fatalf("%+v", th)
	}
	q, err := buildQueries(testTarget, testWindow, th.GRPCFailureCodes)
	if err != nil || !strings.Contains(q.Failed, `grpc_response_status=~"14"`) {
		t.Fatalf("%v %s", err, q.Failed)
	}
}

func TestJudgeInvalidInput(t *testing.T) {
	t.Parallel()
	a := newTestAnalyzer(t, "http://127.0.0.1:1", Config{})
	for _, tc := range []struct {
		t Target
		w Window
	}{
		{testTarget, Window{Start: testEnd, End: testEnd}},
		{Target{Namespace: "shop"}, testWindow},
	} {
		r, err := a.Judge(context.Background(), tc.t, tc.w, testTh)
		if err == nil || r.Verdict != v1alpha1.VerdictInconclusive || r.Reason != err.Error() || len(r.Queries) != 0 {
			t.Errorf("%+v %s: %s %q %v", tc.t, tc.w, r.Verdict, r.Reason, err)
		}
	}
	if _, err := New(Config{URL: "prometheus:9090"}); err == nil {
		t.Error("a URL without a scheme was accepted")
	}
}
