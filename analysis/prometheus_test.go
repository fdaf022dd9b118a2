package analysis

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"math"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"google.golang.org/protobuf/encoding/protowire"

	"github.com/meshready/meshready/internal/localcluster"
)

// The tests in this file run the real Prometheus (`make cluster-bins`
// builds it into ~/.cache/meshready/current/prometheus, Prometheus 3.16),
// push series through its remote-write receiver at exact timestamps and
// judge windows whose answers are known exactly.

func TestMain(m *testing.M) {
	code := m.Run()
	sharedOnce.Do(func() {}) // no start after this
	if shared != nil {
		shared.stop()
	}
	os.Exit(code)
}

// promBinary is `make cluster-bins`' Prometheus.
func promBinary() string { return filepath.Join(localcluster.BinDir(), "prometheus") }

// needPrometheus skips when the binary is not built — loudly, and only
// outside CI: with MESHREADY_REQUIRE_CLUSTER=1 a missing binary fails.
func needPrometheus(t *testing.T) string {
	t.Helper()
	bin := promBinary()
	if _, err := os.Stat(bin); err != nil {
		msg := fmt.Sprintf("Prometheus not built (%v): run `make cluster-bins`", err)
		if os.Getenv("MESHREADY_REQUIRE_CLUSTER") != "" {
			t.Fatal(msg)
		}
		t.Skip("SKIPPED, " + msg)
	}
	return bin
}

type promProc struct {
	url  string
	dir  string
	cmd  *exec.Cmd
	done chan struct{}
	once sync.Once
}

var (
	sharedOnce sync.Once
	shared     *promProc
	sharedErr  error
)

// sharedPrometheus is one Prometheus for the package's tests (each case
// writes its own series), stopped by TestMain.
func sharedPrometheus(t *testing.T) *promProc {
	bin := needPrometheus(t)
	sharedOnce.Do(func() { shared, sharedErr = startPrometheus(bin) })
	if sharedErr != nil {
		t.Fatal(sharedErr)
	}
	return shared
}

// startPrometheus runs Prometheus on a free loopback port with no scrape
// targets and the remote-write receiver on, and waits until it is ready.
func startPrometheus(bin string) (*promProc, error) {
	dir, err := os.MkdirTemp("", "meshready-analysis-prom-")
	if err != nil {
		return nil, err
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	addr := l.Addr().String()
	l.Close()
	cfg := filepath.Join(dir, "prometheus.yml")
	if err := os.WriteFile(cfg, []byte("global:\n  scrape_interval: 1h\n"), 0o644); err != nil {
		return nil, err
	}
	logf, err := os.Create(filepath.Join(dir, "prometheus.log"))
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(bin, "--config.file="+cfg, "--storage.tsdb.path="+filepath.Join(dir, "data"),
		"--web.listen-address="+addr, "--web.enable-remote-write-receiver", "--log.level=warn")
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	p := &promProc{url: "http://" + addr, dir: dir, cmd: cmd, done: make(chan struct{})}
	go func() { _ = cmd.Wait(); logf.Close(); close(p.done) }()
	deadline := time.Now().Add(60 * time.Second)
	for {
		resp, err := http.Get(p.url + "/-/ready")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return p, nil
			}
		}
		select {
		case <-p.done:
			log, _ := os.ReadFile(filepath.Join(dir, "prometheus.log"))
			return nil, fmt.Errorf("prometheus exited before ready: %s", log)
		case <-time.After(100 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			p.stop()
			return nil, fmt.Errorf("prometheus not ready within 60s at %s (log %s)", p.url, dir)
		}
	}
}

// stop ends the Prometheus this test started (SIGTERM, then SIGKILL after
// 10s) and removes its directory.
func (p *promProc) stop() {
	p.once.Do(func() {
		_ = p.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-p.done:
		case <-time.After(10 * time.Second):
			_ = p.cmd.Process.Kill()
			<-p.done
		}
		_ = os.RemoveAll(p.dir)
	})
}

// --- remote write (protocol 1.0: prometheus.WriteRequest, snappy) ---

type sample struct {
	t int64 // ms
	v float64
}

type series struct {
	labels  map[string]string // __name__ included
	samples []sample
}

// encodeWriteRequest hand-encodes prompb.WriteRequest:
// WriteRequest{1: repeated TimeSeries}; TimeSeries{1: repeated Label,
// 2: repeated Sample}; Label{1: name, 2: value}; Sample{1: double value,
// 2: int64 timestamp}. Labels sorted by name, as the protocol requires.
func encodeWriteRequest(ss []series) []byte {
	var out []byte
	for _, s := range ss {
		var ts []byte
		names := make([]string, 0, len(s.labels))
		for n := range s.labels {
			names = append(names, n)
		}
		slices.Sort(names)
		for _, n := range names {
			var l []byte
			l = protowire.AppendTag(l, 1, protowire.BytesType)
			l = protowire.AppendString(l, n)
			l = protowire.AppendTag(l, 2, protowire.BytesType)
			l = protowire.AppendString(l, s.labels[n])
			ts = protowire.AppendTag(ts, 1, protowire.BytesType)
			ts = protowire.AppendBytes(ts, l)
		}
		for _, smp := range s.samples {
			var b []byte
			b = protowire.AppendTag(b, 1, protowire.Fixed64Type)
			b = protowire.AppendFixed64(b, math.Float64bits(smp.v))
			b = protowire.AppendTag(b, 2, protowire.VarintType)
			b = protowire.AppendVarint(b, uint64(smp.t))
			ts = protowire.AppendTag(ts, 2, protowire.BytesType)
			ts = protowire.AppendBytes(ts, b)
		}
		out = protowire.AppendTag(out, 1, protowire.BytesType)
		out = protowire.AppendBytes(out, ts)
	}
	return out
}

// snappyLiterals is a valid Snappy block holding src as literals only (no
// compression: the format allows it, and any Snappy decoder reads it):
// the uncompressed length as a varint, then literal elements of at most
// 64 KiB (tag 0b00 with the length-1 in the tag's upper 6 bits, or in 1 or
// 2 following bytes for tags 60 and 61).
func snappyLiterals(src []byte) []byte {
	dst := binary.AppendUvarint(nil, uint64(len(src)))
	for len(src) > 0 {
		n := min(len(src), 1<<16)
		switch m := n - 1; {
		case m < 60:
			dst = append(dst, byte(m)<<2)
		case m < 1<<8:
			dst = append(dst, 60<<2, byte(m))
		default:
			dst = append(dst, 61<<2, byte(m), byte(m>>8))
		}
		dst = append(dst, src[:n]...)
		src = src[n:]
	}
	return dst
}

func (p *promProc) write(t *testing.T, ss []series) {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, p.url+"/api/v1/write", bytes.NewReader(snappyLiterals(encodeWriteRequest(ss))))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/x-protobuf")
	req.Header.Set("Content-Encoding", "snappy")
	req.Header.Set("X-Prometheus-Remote-Write-Version", "0.1.0")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var b bytes.Buffer
	_, _ = b.ReadFrom(resp.Body)
	if resp.StatusCode/100 != 2 {
		t.Fatalf("remote write: %s: %s", resp.Status, b.String())
	}
}

// --- the series Istio's stats plugin would have written ---

// istioBuckets are Istio's default istio_request_duration_milliseconds
// buckets.
var istioBuckets = []float64{0.5, 1, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000, 30000, 60000, 300000, 600000, 1800000, 3600000}

// class is one label combination of a workload's requests: every second of
// the window it sees one request per entry of lat (its latency in ms);
// every second outside the window, one per entry of outside.
//
// born > 0: the series does not exist before that second (Istio makes a
// series on its label combination's first request), starts from 0, and
// sees no traffic outside the window.
type class struct {
	code, grpc, proto string
	lat, outside      []float64
	born              int
}

// version is one workload's traffic.
type version struct {
	namespace, service, workload string
	classes                      []class
}

// The timeline, in seconds from the window's start: samples every second
// from -10 to +40; the window is (start, start+33s].
//
// Why the expected numbers are exact: Prometheus' increase() over
// (start, end] takes the first and last samples inside (start+1s and
// start+33s: 32 s apart, 33 samples) and extrapolates to the range's
// bounds. The first sample is 1 s after the start — within 1.1× the
// average spacing (1 s) — so it extrapolates all the way to the start;
// the last sample sits on the end. The zero-point limit does not apply:
// every counter is at least its per-second increment at start+1s (a
// baseline of 100 before the window), so its extrapolated zero lies ≥ 1 s
// before the first sample. So increase = (v(33)−v(1))·33/32, and with
// v(33)−v(1) = 32·r for a counter growing r per second inside the window,
// that is 33·r: exactly the requests made in the window. 33/32 is exact in
// binary, so the floats are too. Samples at or before start and after end
// are left out (the range is left-open; @ end pins its right side).
const (
	windowSeconds = 33
	firstSecond   = -10
	lastSecond    = 40
	baseline      = 100
)

var windowStart = time.Now().Add(-5 * time.Minute).Truncate(time.Second)

func testWindow33() Window {
	return Window{Start: windowStart, End: windowStart.Add(windowSeconds * time.Second)}
}

func (v version) series() []series {
	var out []series
	for _, c := range v.classes {
		labels := map[string]string{
			"reporter":                       "destination",
			"source_workload":                "unknown",
			"destination_workload":           v.workload,
			"destination_workload_namespace": v.namespace,
			"destination_service_name":       v.service,
			"destination_service_namespace":  v.namespace,
			"request_protocol":               c.proto,
			"response_code":                  c.code,
			"grpc_response_status":           c.grpc,
			"response_flags":                 "-",
		}
		if c.grpc == "" {
			delete(labels, "grpc_response_status") // an empty label is no label
		}
		// per second: how many requests at or below each bound
		perSecond := func(lat []float64, le float64) float64 {
			n := 0
			for _, l := range lat {
				if l <= le {
					n++
				}
			}
			return float64(n)
		}
		counter := func(name string, le float64, extra map[string]string) series {
			s := series{labels: map[string]string{"__name__": name}}
			for k, val := range labels {
				s.labels[k] = val
			}
			for k, val := range extra {
				s.labels[k] = val
			}
			value := float64(baseline)
			if c.born > 0 {
				value = 0
			}
			for sec := firstSecond; sec <= lastSecond; sec++ {
				if sec < c.born {
					continue
				}
				if sec > firstSecond {
					if sec >= 1 && sec <= windowSeconds {
						value += perSecond(c.lat, le)
					} else {
						value += perSecond(c.outside, le)
					}
				}
				s.samples = append(s.samples, sample{t: windowStart.Add(time.Duration(sec) * time.Second).UnixMilli(), v: value})
			}
			return s
		}
		out = append(out, counter(MetricRequests, math.Inf(1), nil))
		for _, le := range append(slices.Clone(istioBuckets), math.Inf(1)) {
			out = append(out, counter(MetricDuration, le, map[string]string{"le": formatLe(le)}))
		}
	}
	return out
}

func formatLe(le float64) string {
	if math.IsInf(le, 1) {
		return "+Inf"
	}
	return strconv.FormatFloat(le, 'f', -1, 64)
}

func repeat(v float64, n int) []float64 {
	out := make([]float64, n)
	for i := range out {
		out[i] = v
	}
	return out
}

func concat(xs ...[]float64) []float64 { return slices.Concat(xs...) }

func nearly(a, b float64) bool {
	if math.IsNaN(a) || math.IsNaN(b) {
		return math.IsNaN(a) && math.IsNaN(b)
	}
	return math.Abs(a-b) <= 1e-9*math.Max(1, math.Abs(b))
}

// want is a case's expected outcome; NaN numbers are not checked.
type want struct {
	verdict                string
	reason                 string
	toReq, toFailed, toErr float64
	fromReq, fromErr       float64
	observed               float64
	lat                    [4]float64
	approx                 bool // counts to 1e-9, not ==
}

var caseSeq atomic.Int64

func TestRealPrometheus(t *testing.T) {
	t.Parallel()
	p := sharedPrometheus(t)
	nan := math.NaN()
	grpcOK := func(perSec int, ms float64) class {
		return class{code: "200", grpc: "0", proto: "grpc", lat: repeat(ms, perSec)}
	}
	th := func(a func(*Thresholds)) Thresholds {
		// Through the API type, as the controller builds them.
		t, err := NewThresholds(apiAnalysis("0.01", 50, 100*time.Millisecond))
		if err != nil {
			panic(err)
		}
		if a != nil {
			a(&t)
		}
		return t
	}
	for _, tc := range []struct {
		name     string
		versions []version // namespace and workloads as the target's
		target   Target
		th       Thresholds
		want     want
	}{
		{
			// 19 OK + 1 UNAVAILABLE (HTTP 200, grpc-status 14) a second:
			// 627 + 33 = 660 requests, 33 failed: exactly 0.05.
			name: "gRPC 5% unavailable fails",
			versions: []version{
				{workload: "greeter-v2", classes: []class{grpcOK(19, 20), {code: "200", grpc: "14", proto: "grpc", lat: repeat(20, 1)}}},
				{workload: "greeter-v1", classes: []class{grpcOK(20, 20)}},
			},
			th:   th(nil),
			want: want{verdict: "Fail", reason: "greeter-v2 error rate 5% > 1% (33 of 660 requests failed)", toReq: 660, toFailed: 33, toErr: 0.05, fromReq: 660, fromErr: 0, observed: 50, lat: [4]float64{17.5, 23.5, 24.25, 24.85}},
		},
		{
			// HTTP: 18 × 200 + 2 × 503 a second: 66 of 660, 0.1.
			name: "HTTP 503s fail",
			versions: []version{{workload: "web-v2", classes: []class{
				{code: "200", proto: "http", lat: repeat(20, 18)}, {code: "503", proto: "http", lat: repeat(1, 2)},
			}}},
			th:   th(nil),
			want: want{verdict: "Fail", reason: "web-v2 error rate 10% > 1% (66 of 660 requests failed)", toReq: 660, toFailed: 66, toErr: 0.1, fromReq: nan, fromErr: nan, observed: 100, lat: [4]float64{nan, nan, nan, nan}},
		},
		{
			// A second: 17 OK, 1 × 200/14, 1 × 503/14 (both faults: counted
			// once), 1 × 200/5 NOT_FOUND (not a server fault), 1 × 404
			// (not 5xx): 2 failed of 21 → 66 of 693. Counting the 503/14
			// twice would make it 99.
			name: "503 with grpc-status 14 counts once",
			versions: []version{{workload: "greeter-v2", classes: []class{
				grpcOK(17, 20),
				{code: "200", grpc: "14", proto: "grpc", lat: repeat(1, 1)},
				{code: "503", grpc: "14", proto: "grpc", lat: repeat(1, 1)},
				{code: "200", grpc: "5", proto: "grpc", lat: repeat(1, 1)},
				{code: "404", proto: "http", lat: repeat(1, 1)},
			}}},
			th:   th(nil),
			want: want{verdict: "Fail", reason: "(66 of 693 requests failed)", toReq: 693, toFailed: 66, toErr: 66.0 / 693, fromReq: nan, fromErr: nan, observed: 100, lat: [4]float64{nan, nan, nan, nan}},
		},
		{
			// A second: 8 at 40 ms (bucket (25,50]), 2 at 300 ms ((250,500]):
			// 330 requests, 264 ≤ 50 ms. histogram_quantile interpolates
			// linearly inside the bucket holding rank q·330:
			// p50 = 25+25·165/264 = 40.625; p90 = 250+250·(297−264)/66 = 375;
			// p95 = 250+250·49.5/66 = 437.5; p99 = 250+250·62.7/66 = 487.5.
			name: "p99 above threshold fails",
			versions: []version{{workload: "greeter-v2", classes: []class{
				{code: "200", grpc: "0", proto: "grpc", lat: concat(repeat(40, 8), repeat(300, 2))},
			}}},
			th: th(func(t *Thresholds) {
				t.MaxLatency[P99] = 400 * time.Millisecond
				t.MaxLatency[P50] = 50 * time.Millisecond
			}),
			want: want{verdict: "Fail", reason: "greeter-v2 p99 487.5ms > 400ms", toReq: 330, toFailed: 0, toErr: 0, fromReq: nan, fromErr: nan, observed: 100, lat: [4]float64{40.625, 375, 437.5, 487.5}},
		},
		{
			// 10 a second at 20 ms ((10,25]): p50 = 10+15·0.5 = 17.5,
			// p99 = 10+15·0.99 = 24.85. Failures only before the window and
			// after its end (a 14 class growing 5 a second outside it) count
			// 0; v1 takes 90 a second, so v2's share is exactly 10 %.
			name: "clean passes, failures outside the window ignored",
			versions: []version{
				{workload: "greeter-v2", classes: []class{grpcOK(10, 20), {code: "200", grpc: "14", proto: "grpc", outside: repeat(20, 5)}}},
				{workload: "greeter-v1", classes: []class{grpcOK(90, 20)}},
			},
			th:   th(nil),
			want: want{verdict: "Pass", reason: "greeter-v2: 330 requests, error rate 0% ≤ 1%, p99 24.85ms ≤ 100ms", toReq: 330, toFailed: 0, toErr: 0, fromReq: 2970, fromErr: 0, observed: 10, lat: [4]float64{17.5, 23.5, 24.25, 24.85}},
		},
		{
			// v2's series are born at second 10 (its first requests came
			// when the weight moved): samples 10…33, 24 seconds of traffic.
			// increase() cannot see the start, so it extrapolates half a
			// sample interval before the first sample (the zero point, 1 s
			// back, is farther): 23·r·(23+0.5)/23 = 23.5·r, half a scrape
			// interval short of the 24·r made. Both series lose the same
			// share, so the error rate stays exactly 0.05.
			name: "series born inside the window: counts short by half a scrape, rate exact",
			versions: []version{{workload: "greeter-v2", classes: []class{
				{code: "200", grpc: "0", proto: "grpc", lat: repeat(20, 19), born: 10},
				{code: "200", grpc: "14", proto: "grpc", lat: repeat(20, 1), born: 10},
			}}},
			th:   th(nil),
			want: want{verdict: "Fail", reason: "greeter-v2 error rate 5% > 1% (23.5 of 470 requests failed)", toReq: 470, toFailed: 23.5, toErr: 0.05, fromReq: nan, fromErr: nan, observed: 100, lat: [4]float64{17.5, nan, nan, 24.85}, approx: true},
		},
		{
			name:     "too few requests is inconclusive",
			versions: []version{{workload: "greeter-v2", classes: []class{grpcOK(1, 20)}}},
			th:       th(nil),
			want:     want{verdict: "Inconclusive", reason: "too few requests to greeter-v2: 33 < minRequests 50", toReq: 33, toFailed: 0, toErr: 0, fromReq: nan, fromErr: nan, observed: 100, lat: [4]float64{nan, nan, nan, nan}},
		},
		{
			name:     "no series at all is inconclusive",
			versions: []version{{workload: "other-v2", classes: []class{grpcOK(10, 20)}}},
			target:   Target{ToWorkload: "ghost-v2", FromWorkload: "ghost-v1"},
			th:       th(nil),
			want:     want{verdict: "Inconclusive", reason: "no requests to ghost-v2 recorded in the window", toReq: nan, toFailed: nan, toErr: nan, fromReq: nan, fromErr: nan, observed: nan, lat: [4]float64{nan, nan, nan, nan}},
		},
		{
			// v1: 99 OK + 1 INTERNAL (13) a second: 1 %; v2: 97 + 3: 3 %.
			// Under maxErrorRate 5 %, but 2 points above the baseline.
			name: "baseline: error rate increase fails",
			versions: []version{
				{workload: "greeter-v2", classes: []class{grpcOK(97, 20), {code: "200", grpc: "13", proto: "grpc", lat: repeat(20, 3)}}},
				{workload: "greeter-v1", classes: []class{grpcOK(99, 20), {code: "200", grpc: "13", proto: "grpc", lat: repeat(20, 1)}}},
			},
			th: th(func(t *Thresholds) {
				t.MaxErrorRate = 0.05
				d := 0.01
				t.Baseline = &BaselineThresholds{MaxErrorRateIncrease: &d}
			}),
			want: want{verdict: "Fail", reason: "greeter-v2 error rate 3% is 2% above greeter-v1's 1% (max increase 1%)", toReq: 3300, toFailed: 99, toErr: 0.03, fromReq: 3300, fromErr: 0.01, observed: 50, lat: [4]float64{17.5, nan, nan, 24.85}},
		},
		{
			// v2 at 40 ms ((25,50]: p99 = 25+25·0.99 = 49.75), v1 at 20 ms
			// (24.85): 24.9 ms worse, more than the 20 ms allowed.
			name: "baseline: p99 increase fails",
			versions: []version{
				{workload: "greeter-v2", classes: []class{grpcOK(10, 40)}},
				{workload: "greeter-v1", classes: []class{grpcOK(10, 20)}},
			},
			th: th(func(t *Thresholds) {
				d := 20 * time.Millisecond
				t.Baseline = &BaselineThresholds{MaxP99Increase: &d}
			}),
			want: want{verdict: "Fail", reason: "greeter-v2 p99 49.75ms is 24.9ms above greeter-v1's 24.85ms (max increase 20ms)", toReq: 330, toFailed: 0, toErr: 0, fromReq: 330, fromErr: 0, observed: 50, lat: [4]float64{37.5, nan, nan, 49.75}},
		},
		{
			name: "baseline: within limits passes",
			versions: []version{
				{workload: "greeter-v2", classes: []class{grpcOK(10, 40)}},
				{workload: "greeter-v1", classes: []class{grpcOK(10, 20)}},
			},
			th: th(func(t *Thresholds) {
				d, e := 25*time.Millisecond, 0.0
				t.Baseline = &BaselineThresholds{MaxP99Increase: &d, MaxErrorRateIncrease: &e}
			}),
			want: want{verdict: "Pass", reason: "no worse than greeter-v1 beyond the baseline limits", toReq: 330, toFailed: 0, toErr: 0, fromReq: 330, fromErr: 0, observed: 50, lat: [4]float64{37.5, nan, nan, 49.75}},
		},
		{
			// Quotes, a backslash, a newline and regexp metacharacters in
			// names reach the real parser escaped: the right series come back.
			name: "names needing escapes",
			versions: []version{
				{workload: "greeter.v2", classes: []class{grpcOK(10, 20)}},
				{workload: "greeterXv2", classes: []class{{code: "503", proto: "http", lat: repeat(1, 10)}}}, // "." must not match X
			},
			target: Target{Namespace: "we\"ird\\ns\n.x", Service: `gr"eet\er`, ToWorkload: "greeter.v2"},
			th:     th(nil),
			want:   want{verdict: "Pass", toReq: 330, toFailed: 0, toErr: 0, fromReq: nan, fromErr: nan, observed: 100, lat: [4]float64{17.5, nan, nan, 24.85}},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			// Each run its own namespace: the series of a Prometheus shared
			// by every case and -count run never collide.
			tgt := tc.target
			if tgt.Namespace == "" {
				tgt.Namespace = "case"
			}
			tgt.Namespace += fmt.Sprintf("-%d", caseSeq.Add(1))
			if tgt.Service == "" {
				tgt.Service = "greeter"
			}
			if tgt.ToWorkload == "" {
				tgt.ToWorkload = tc.versions[0].workload
				if len(tc.versions) > 1 {
					tgt.FromWorkload = tc.versions[1].workload
				}
			}
			var ss []series
			for _, v := range tc.versions {
				v.namespace, v.service = tgt.Namespace, tgt.Service
				ss = append(ss, v.series()...)
			}
			p.write(t, ss)
			a := newTestAnalyzer(t, p.url, Config{QueryTimeout: 5 * time.Second})
			r, err := a.Judge(context.Background(), tgt, testWindow33(), tc.th)
			if err != nil {
				t.Fatalf("Judge: %v", err)
			}
			check(t, r, tc.want)
		})
	}
}

func check(t *testing.T, r Result, w want) {
	t.Helper()
	t.Logf("%s: %s", r.Verdict, r.Reason)
	t.Logf("  to   %s: requests %v failed %v errorRate %v p50/90/95/99 %v", r.To.Workload, r.To.Requests, r.To.Failed, r.To.ErrorRate, r.To.Latency)
	if r.From.Workload != "" {
		t.Logf("  from %s: requests %v failed %v errorRate %v p50/90/95/99 %v", r.From.Workload, r.From.Requests, r.From.Failed, r.From.ErrorRate, r.From.Latency)
	}
	t.Logf("  observed %v%%; %s", r.Observed, r.Queries[1])
	if string(r.Verdict) != w.verdict {
		t.Errorf("verdict %s, want %s", r.Verdict, w.verdict)
	}
	if !bytes.Contains([]byte(r.Reason), []byte(w.reason)) {
		t.Errorf("reason %q\nwant  %q", r.Reason, w.reason)
	}
	exact := func(name string, got, want float64) {
		// Counts and rates are exact (see the timeline's comment): ==.
		if w.approx && nearly(got, want) {
			return
		}
		if !(got == want || (math.IsNaN(got) && math.IsNaN(want))) {
			t.Errorf("%s = %v, want exactly %v", name, got, want)
		}
	}
	exact("to.requests", r.To.Requests, w.toReq)
	exact("to.failed", r.To.Failed, w.toFailed)
	exact("to.errorRate", r.To.ErrorRate, w.toErr)
	exact("observed", r.Observed, w.observed)
	if r.From.Workload != "" {
		exact("from.requests", r.From.Requests, w.fromReq)
		exact("from.errorRate", r.From.ErrorRate, w.fromErr)
	}
	for i, l := range w.lat {
		// Quantiles go through q·count in floats (0.99·330 is not exact):
		// equal to 1e-9.
		if !math.IsNaN(l) && !nearly(r.To.Latency[i], l) {
			t.Errorf("to.%s = %v, want %v", quantileNames[i], r.To.Latency[i], l)
		}
	}
}

// TestRealPrometheusStopped: the same window passes while Prometheus runs
// and is Inconclusive (never Pass) once it is stopped.
func TestRealPrometheusStopped(t *testing.T) {
	t.Parallel()
	bin := needPrometheus(t)
	p, err := startPrometheus(bin)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.stop)
	tgt := Target{Namespace: "stopped", Service: "greeter", ToWorkload: "greeter-v2"}
	v := version{namespace: tgt.Namespace, service: tgt.Service, workload: tgt.ToWorkload,
		classes: []class{{code: "200", grpc: "0", proto: "grpc", lat: repeat(20, 10)}}}
	p.write(t, v.series())
	th, err := NewThresholds(apiAnalysis("0.01", 50, 100*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	a := newTestAnalyzer(t, p.url, Config{QueryTimeout: 3 * time.Second})
	r, err := a.Judge(context.Background(), tgt, testWindow33(), th)
	if err != nil || r.Verdict != "Pass" {
		t.Fatalf("running: %s %q, %v; want Pass", r.Verdict, r.Reason, err)
	}
	p.stop()
	r, err = a.Judge(context.Background(), tgt, testWindow33(), th)
	t.Logf("stopped: %s: %s", r.Verdict, r.Reason)
	if r.Verdict != "Inconclusive" || err == nil {
		t.Fatalf("stopped: %s %q, err %v; want Inconclusive with an error", r.Verdict, r.Reason, err)
	}
	if qe, ok := err.(*QueryError); !ok || qe.Kind != KindUnreachable {
		t.Errorf("err %v (%T), want an unreachable QueryError", err, err)
	}
	if !math.IsNaN(r.To.Requests) || !math.IsNaN(r.Observed) {
		t.Errorf("numbers from nowhere: %+v observed %v", r.To, r.Observed)
	}
}
