package sidecarstandin_test

import (
	"context"
	"fmt"
	"io"
	"maps"
	"math"
	"net"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/emptypb"

	"github.com/meshready/meshready/envoyadmin"
	"github.com/meshready/meshready/internal/sidecarstandin"
	"github.com/meshready/meshready/internal/sidecarstandin/adstest"
)

func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

func listen(t *testing.T) (net.Listener, int) {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	return l, l.Addr().(*net.TCPAddr).Port
}

func addr(port int) string { return net.JoinHostPort("127.0.0.1", strconv.Itoa(port)) }

// waitDial waits until addr accepts connections (listeners open once LIVE).
func waitDial(t *testing.T, a string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		c, err := net.DialTimeout("tcp", a, 200*time.Millisecond)
		if err == nil {
			c.Close()
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s never opened: %v", a, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

type mesh struct {
	d                                 *sidecarstandin.DataPlane
	ads                               *adstest.Server
	httpIn, grpcIn, deadIn, statsAddr string
}

// startMesh runs a stand-in against a tiny ADS server, in front of an
// HTTP app, a gRPC app and a port where no app listens.
func startMesh(t *testing.T) mesh {
	t.Helper()
	httpIn, grpcIn, deadIn, deadApp := freePort(t), freePort(t), freePort(t), freePort(t)
	httpL, httpApp := listen(t)
	hs := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/ok":
			if r.Host != addr(httpIn) {
				http.Error(w, "Host "+r.Host+", want the caller's "+addr(httpIn), http.StatusBadRequest)
				return
			}
			fmt.Fprintln(w, "ok")
		case "/slow":
			time.Sleep(30 * time.Millisecond)
			fmt.Fprintln(w, "slow")
		default:
			http.NotFound(w, r)
		}
	})}
	go func() { _ = hs.Serve(httpL) }()
	t.Cleanup(func() { _ = hs.Close() })

	grpcL, grpcApp := listen(t)
	gs := grpc.NewServer(grpc.UnknownServiceHandler(func(any, grpc.ServerStream) error {
		return status.Error(codes.Unavailable, "the app is not taking calls")
	}))
	healthpb.RegisterHealthServer(gs, health.NewServer())
	go func() { _ = gs.Serve(grpcL) }()
	t.Cleanup(gs.Stop)

	ads, err := adstest.Start("2026-12-02T08:00:00Z/1", map[string][]proto.Message{
		sidecarstandin.TypeCDS: {
			adstest.InboundCluster(httpIn, adstest.Service{Host: "web.shop.svc.cluster.local", Name: "web", Namespace: "shop"}),
			adstest.InboundCluster(grpcIn, adstest.Service{Host: "greeter.shop.svc.cluster.local", Name: "greeter", Namespace: "shop"}),
			// deadIn: no inbound cluster, so no service metadata.
		},
		sidecarstandin.TypeLDS: {adstest.Listener("virtualInbound")},
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(ads.Stop)
	d, err := sidecarstandin.Start(sidecarstandin.Options{
		Pilot:     ads.Addr,
		NodeID:    "sidecar~127.0.0.1~greeter-v2-6d8f7c9b5d-x7k2p.shop~shop.svc.cluster.local",
		Labels:    map[string]string{"app": "greeter", "version": "v2"},
		Workload:  "greeter-v2",
		AdminAddr: "127.0.0.1:0",
		Logf:      t.Logf,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(d.Close)
	m := mesh{d: d, ads: ads, httpIn: addr(httpIn), grpcIn: addr(grpcIn), deadIn: addr(deadIn), statsAddr: addr(freePort(t))}
	for in, app := range map[string]int{m.httpIn: httpApp, m.grpcIn: grpcApp, m.deadIn: deadApp} {
		if err := d.ServeInbound(in, addr(app)); err != nil {
			t.Fatal(err)
		}
	}
	if err := d.ServeStats(m.statsAddr); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := d.WaitFor(ctx, func(s sidecarstandin.Snapshot) bool { return s.Live() }); err != nil {
		t.Fatal(err)
	}
	for _, a := range []string{m.httpIn, m.grpcIn, m.deadIn} {
		waitDial(t, a)
	}
	return m
}

func get(t *testing.T, url string) (int, string) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func scrape(t *testing.T, url string) map[string]*dto.MetricFamily {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, "text/plain; version=0.0.4") {
		t.Errorf("Content-Type %q: want Prometheus text format 0.0.4", ct)
	}
	p := expfmt.NewTextParser(model.LegacyValidation)
	fams, err := p.TextToMetricFamilies(resp.Body)
	if err != nil {
		t.Fatalf("the exposition does not parse: %v", err)
	}
	return fams
}

func labelsOf(m *dto.Metric) map[string]string {
	out := map[string]string{}
	for _, l := range m.GetLabel() {
		out[l.GetName()] = l.GetValue()
	}
	return out
}

// series finds the one metric of fam whose labels include want.
func series(t *testing.T, fam *dto.MetricFamily, want map[string]string) *dto.Metric {
	t.Helper()
	var found []*dto.Metric
	for _, m := range fam.GetMetric() {
		l := labelsOf(m)
		ok := true
		for k, v := range want {
			if l[k] != v {
				ok = false
			}
		}
		if ok {
			found = append(found, m)
		}
	}
	if len(found) != 1 {
		var all []string
		for _, m := range fam.GetMetric() {
			all = append(all, fmt.Sprint(labelsOf(m)))
		}
		t.Fatalf("%s: %d series with %v, want 1; have:\n%s", fam.GetName(), len(found), want, strings.Join(all, "\n"))
	}
	return found[0]
}

// The labels every series carries, whatever the request: Istio's
// destination-side view of this workload, and an unknown source (no peer
// metadata arrives over plaintext).
var workloadLabels = map[string]string{
	"reporter":                       "destination",
	"source_workload":                "unknown",
	"source_canonical_service":       "unknown",
	"source_canonical_revision":      "unknown",
	"source_workload_namespace":      "unknown",
	"source_principal":               "unknown",
	"source_app":                     "unknown",
	"source_version":                 "unknown",
	"source_cluster":                 "unknown",
	"destination_workload":           "greeter-v2",
	"destination_workload_namespace": "shop",
	"destination_principal":          "unknown",
	"destination_app":                "greeter",
	"destination_version":            "v2",
	"destination_canonical_service":  "greeter",
	"destination_canonical_revision": "v2",
	"destination_cluster":            "Kubernetes",
	"connection_security_policy":     "none",
}

func with(extra map[string]string) map[string]string {
	m := maps.Clone(workloadLabels)
	maps.Copy(m, extra)
	return m
}

func TestIstioStandardMetrics(t *testing.T) {
	m := startMesh(t)

	for range 3 {
		if code, body := get(t, "http://"+m.httpIn+"/ok"); code != 200 || body != "ok\n" {
			t.Fatalf("GET /ok through the stand-in: %d %q", code, body)
		}
	}
	if code, _ := get(t, "http://"+m.httpIn+"/slow"); code != 200 {
		t.Fatalf("GET /slow: %d", code)
	}
	if code, _ := get(t, "http://"+m.httpIn+"/missing"); code != 404 {
		t.Fatalf("GET /missing: %d", code)
	}
	// No app behind the port: Envoy's 503 with UF.
	code, body := get(t, "http://"+m.deadIn+"/")
	if code != 503 || !strings.HasPrefix(body, "upstream connect error or disconnect/reset before headers. reset reason: connection failure") {
		t.Fatalf("GET with no app: %d %q; want Envoy's 503", code, body)
	}

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	conn, err := grpc.NewClient(m.grpcIn, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	for range 2 {
		r, err := healthpb.NewHealthClient(conn).Check(ctx, &healthpb.HealthCheckRequest{})
		if err != nil || r.GetStatus() != healthpb.HealthCheckResponse_SERVING {
			t.Fatalf("gRPC health through the stand-in: %v %v", r, err)
		}
	}
	err = conn.Invoke(ctx, "/demo.Greeter/Hello", &emptypb.Empty{}, &emptypb.Empty{})
	if status.Code(err) != codes.Unavailable {
		t.Fatalf("a call the app fails with UNAVAILABLE: %v", err)
	}
	dead, err := grpc.NewClient(m.deadIn, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer dead.Close()
	_, err = healthpb.NewHealthClient(dead).Check(ctx, &healthpb.HealthCheckRequest{})
	if st := status.Convert(err); st.Code() != codes.Unavailable || !strings.Contains(st.Message(), "upstream connect error") {
		t.Fatalf("gRPC with no app: %v; want UNAVAILABLE with Envoy's message", err)
	}

	// A request is counted when its stream ends, which the caller may see
	// a moment before the stand-in's handler returns.
	waitCounted(t, "http://"+m.statsAddr+"/stats/prometheus", 10)
	for _, url := range []string{"http://" + m.statsAddr + "/stats/prometheus", m.d.AdminURL() + "/stats/prometheus"} {
		t.Run(url, func(t *testing.T) {
			fams := scrape(t, url)
			req, dur := fams["istio_requests_total"], fams["istio_request_duration_milliseconds"]
			if req.GetType() != dto.MetricType_COUNTER || dur.GetType() != dto.MetricType_HISTOGRAM {
				t.Fatalf("istio_requests_total %v, istio_request_duration_milliseconds %v: want counter and histogram", req.GetType(), dur.GetType())
			}
			httpSvc := map[string]string{"destination_service": "web.shop.svc.cluster.local", "destination_service_name": "web", "destination_service_namespace": "shop"}
			grpcSvc := map[string]string{"destination_service": "greeter.shop.svc.cluster.local", "destination_service_name": "greeter", "destination_service_namespace": "shop"}
			// No inbound cluster metadata: Istio's filter falls back to the host.
			deadSvc := map[string]string{"destination_service": m.deadIn, "destination_service_name": m.deadIn, "destination_service_namespace": "unknown"}
			cases := []struct {
				labels map[string]string
				count  uint64
			}{
				{with(merge(httpSvc, map[string]string{"request_protocol": "http", "response_code": "200", "grpc_response_status": "", "response_flags": "-"})), 4},
				{with(merge(httpSvc, map[string]string{"request_protocol": "http", "response_code": "404", "grpc_response_status": "", "response_flags": "-"})), 1},
				{with(merge(deadSvc, map[string]string{"request_protocol": "http", "response_code": "503", "grpc_response_status": "", "response_flags": "UF"})), 1},
				{with(merge(grpcSvc, map[string]string{"request_protocol": "grpc", "response_code": "200", "grpc_response_status": "0", "response_flags": "-"})), 2},
				{with(merge(grpcSvc, map[string]string{"request_protocol": "grpc", "response_code": "200", "grpc_response_status": "14", "response_flags": "-"})), 1},
				{with(merge(deadSvc, map[string]string{"request_protocol": "grpc", "response_code": "200", "grpc_response_status": "14", "response_flags": "UF"})), 1},
			}
			if n := len(req.GetMetric()); n != len(cases) {
				t.Errorf("istio_requests_total has %d series, want %d", n, len(cases))
			}
			for _, c := range cases {
				s := series(t, req, c.labels)
				if got := labelsOf(s); !maps.Equal(got, c.labels) {
					t.Errorf("labels %v\nwant   %v", got, c.labels)
				}
				if v := s.GetCounter().GetValue(); v != float64(c.count) {
					t.Errorf("istio_requests_total{%s %s %s %s} = %v, want %d", c.labels["request_protocol"], c.labels["response_code"], c.labels["grpc_response_status"], c.labels["response_flags"], v, c.count)
				}
				h := series(t, dur, c.labels).GetHistogram()
				if h.GetSampleCount() != c.count {
					t.Errorf("duration count %d, want %d", h.GetSampleCount(), c.count)
				}
				var bounds []float64
				for _, b := range h.GetBucket() {
					bounds = append(bounds, b.GetUpperBound())
				}
				if want := append(slices.Clone(sidecarstandin.DurationBuckets), math.Inf(1)); !slices.Equal(bounds, want) {
					t.Errorf("buckets %v, want Istio's %v", bounds, want)
				}
			}
			// The slow request (30 ms) is above the 25 ms bucket; the other
			// three successes are not all there.
			h := series(t, dur, with(merge(httpSvc, map[string]string{"response_code": "200"}))).GetHistogram()
			if h.GetSampleSum() < 30 {
				t.Errorf("duration sum %v ms, want ≥ 30 (the /slow request)", h.GetSampleSum())
			}
			for _, b := range h.GetBucket() {
				if b.GetUpperBound() == 25 && b.GetCumulativeCount() > 3 {
					t.Errorf("le=25 holds %d requests; the 30 ms one should not be there", b.GetCumulativeCount())
				}
			}
			// Envoy's own stats are there too: each inbound port's HTTP
			// connection manager counted its requests.
			perPort := map[string]float64{}
			for _, s := range fams["envoy_http_downstream_rq_total"].GetMetric() {
				perPort[labelsOf(s)["http_conn_manager_prefix"]] = s.GetCounter().GetValue()
			}
			want := map[string]float64{"inbound_0.0.0.0_" + port(m.httpIn): 5, "inbound_0.0.0.0_" + port(m.grpcIn): 3, "inbound_0.0.0.0_" + port(m.deadIn): 2}
			if !maps.Equal(perPort, want) {
				t.Errorf("envoy_http_downstream_rq_total by HCM %v, want %v", perPort, want)
			}
		})
	}
}

// The agent's own parser reads the admin exposition with the Istio
// families in it (as an Istio agent's merged :15020 would serve them).
func TestAgentParsesExposition(t *testing.T) {
	m := startMesh(t)
	get(t, "http://"+m.httpIn+"/ok")
	waitCounted(t, m.d.AdminURL()+"/stats/prometheus", 1)
	resp, err := http.Get(m.d.AdminURL() + "/stats/prometheus?text_readouts")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	st, err := envoyadmin.ParsePrometheusStats(resp.Body)
	if err != nil || st.Skipped != 0 {
		t.Fatalf("ParsePrometheusStats: %v, %d lines skipped", err, st.Skipped)
	}
	if f := envoyadmin.FactsFromStats(st); f.State != envoyadmin.Live || f.CDS.VersionText != "2026-12-02T08:00:00Z/1" {
		t.Errorf("facts %+v", f)
	}
	n := 0
	for k, v := range st.Values {
		if strings.HasPrefix(k, "istio_requests_total{") {
			n += int(v)
		}
	}
	if n != 1 {
		t.Errorf("istio_requests_total as the agent reads it: %d, want 1", n)
	}
}

// waitCounted waits until istio_requests_total at url sums to n.
func waitCounted(t *testing.T, url string, n float64) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		var sum float64
		for _, s := range scrape(t, url)["istio_requests_total"].GetMetric() {
			sum += s.GetCounter().GetValue()
		}
		if sum == n {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("istio_requests_total sums to %v, want %v", sum, n)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func port(hostport string) string {
	_, p, _ := net.SplitHostPort(hostport)
	return p
}

func merge(a, b map[string]string) map[string]string {
	m := maps.Clone(a)
	maps.Copy(m, b)
	return m
}
