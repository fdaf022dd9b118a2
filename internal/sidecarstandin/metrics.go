package sidecarstandin

import (
	"bytes"
	"net"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/common/expfmt"
)

// Istio's standard metrics, as its stats filter writes them on the
// inbound side (reporter="destination") for every request the inbound
// listener forwards, failures the stand-in makes itself included: names,
// label names and order, label values and the duration buckets follow
// https://istio.io/latest/docs/reference/config/metrics/ and the stats
// filter's defaults. They appear on the admin API's /stats/prometheus
// after Envoy's own stats, and on the prometheus listener (ServeStats,
// Envoy's :15090/stats/prometheus), as in Envoy.

// DurationBuckets are Istio's default buckets for
// istio_request_duration_milliseconds.
var DurationBuckets = []float64{0.5, 1, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000, 30000, 60000, 300000, 600000, 1800000, 3600000}

// istioLabels are the labels of istio_requests_total and
// istio_request_duration_milliseconds, in Istio's order.
var istioLabels = []string{
	"reporter",
	"source_workload", "source_canonical_service", "source_canonical_revision", "source_workload_namespace",
	"source_principal", "source_app", "source_version", "source_cluster",
	"destination_workload", "destination_workload_namespace", "destination_principal",
	"destination_app", "destination_version",
	"destination_service", "destination_canonical_service", "destination_canonical_revision",
	"destination_service_name", "destination_service_namespace", "destination_cluster",
	"request_protocol", "response_code", "grpc_response_status", "response_flags",
	"connection_security_policy",
}

type istioMetrics struct {
	reg      *prometheus.Registry
	requests *prometheus.CounterVec
	duration *prometheus.HistogramVec
}

func newIstioMetrics() *istioMetrics {
	m := &istioMetrics{
		reg: prometheus.NewRegistry(),
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "istio_requests_total",
			Help: "Requests handled by this proxy (sidecar stand-in, inbound).",
		}, istioLabels),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "istio_request_duration_milliseconds",
			Help:    "Duration of requests handled by this proxy (sidecar stand-in, inbound).",
			Buckets: DurationBuckets,
		}, istioLabels),
	}
	m.reg.MustRegister(m.requests, m.duration)
	return m
}

// exposition renders the families whose names match re (nil: all) in
// Prometheus' text format 0.0.4.
func (m *istioMetrics) exposition(re *regexp.Regexp) []byte {
	fams, err := m.reg.Gather()
	if err != nil {
		return nil
	}
	var b bytes.Buffer
	enc := expfmt.NewEncoder(&b, expfmt.NewFormat(expfmt.TypeTextPlain))
	for _, f := range fams {
		if re != nil && !re.MatchString(f.GetName()) {
			continue
		}
		_ = enc.Encode(f)
	}
	return b.Bytes()
}

// Request is one request as the inbound listener saw it, for the metrics.
type request struct {
	port      int // the inbound listener's port: inbound|PORT||
	authority string
	grpc      bool
	code      int    // HTTP status sent downstream (0: none, the caller went away)
	grpcCode  string // grpc-status, "" when not gRPC or none arrived
	flags     string // Envoy's response flags, "-" for none
	took      time.Duration
}

func (d *DataPlane) record(r request) {
	d.mu.Lock()
	svcs := d.subs[TypeCDS].resources[inboundCluster(r.port)].svcs
	d.mu.Unlock()
	// Without Pilot's service metadata Istio's filter falls back to the
	// request's host.
	svc := Service{Host: r.authority, Name: r.authority, Namespace: "unknown"}
	if len(svcs) > 0 {
		svc = svcs[0]
	}
	proto := "http"
	if r.grpc {
		proto = "grpc"
	}
	unknown := "unknown"
	l := d.o.Labels
	values := []string{
		"destination",
		// No peer metadata arrives (plaintext, no metadata exchange): the
		// source is unknown, as Istio reports it then.
		unknown, unknown, unknown, unknown,
		unknown, unknown, unknown, unknown,
		d.o.Workload, d.o.Namespace, unknown,
		orUnknown(l["app"]), orUnknown(l["version"]),
		svc.Host, canonicalService(l, d.o.Workload), canonicalRevision(l),
		svc.Name, svc.Namespace, d.o.ClusterID,
		proto, strconv.Itoa(r.code), r.grpcCode, r.flags,
		"none", // plaintext: no mTLS
	}
	d.metrics.requests.WithLabelValues(values...).Inc()
	d.metrics.duration.WithLabelValues(values...).Observe(float64(r.took) / float64(time.Millisecond))
}

func orUnknown(s string) string {
	if s == "" {
		return "unknown"
	}
	return s
}

// canonicalService and canonicalRevision follow Istio's defaults for the
// canonical service labels.
func canonicalService(l map[string]string, workload string) string {
	for _, k := range []string{"service.istio.io/canonical-name", "app.kubernetes.io/name", "app"} {
		if v := l[k]; v != "" {
			return v
		}
	}
	return orUnknown(workload)
}

func canonicalRevision(l map[string]string) string {
	for _, k := range []string{"service.istio.io/canonical-revision", "app.kubernetes.io/version", "version"} {
		if v := l[k]; v != "" {
			return v
		}
	}
	return "latest"
}

// ServeStats opens Envoy's prometheus listener at addr (Istio: :15090):
// /stats/prometheus, the same exposition as the admin API's, Envoy's stats
// and Istio's standard metrics. It is bound at once, as Envoy's bootstrap
// listener is, before any config arrives.
func (d *DataPlane) ServeStats(addr string) error {
	l, err := net.Listen("tcp", addr)
	if err != nil {
		return err
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/stats/prometheus", d.servePrometheus)
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	d.mu.Lock()
	if d.closed {
		d.mu.Unlock()
		_ = l.Close()
		return net.ErrClosed
	}
	d.traffic = append(d.traffic, srv)
	d.mu.Unlock()
	d.o.Logf("prometheus listener on %s (/stats/prometheus)", l.Addr())
	go func() { _ = srv.Serve(l) }()
	return nil
}

// ServeAgent opens what Istio's pilot-agent serves on its status port
// (:15020) and Envoy's health listener forwards from :15021, at addr:
// GET /stats/prometheus (Istio's merged metrics: here the same exposition
// as ServeStats; no app metrics are merged), GET /healthz/ready (200 while
// LIVE, else 503, the sidecar container's readiness probe), and POST
// /quitquitquit (stops the stand-in, as the agent stops Envoy). Bound at
// once.
func (d *DataPlane) ServeAgent(addr string) error {
	l, err := net.Listen("tcp", addr)
	if err != nil {
		return err
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /stats/prometheus", d.servePrometheus)
	mux.HandleFunc("GET /healthz/ready", func(w http.ResponseWriter, r *http.Request) {
		d.mu.Lock()
		s := d.effectiveStateLocked()
		d.mu.Unlock()
		if s != 0 {
			http.Error(w, "Envoy proxy is NOT ready: server.state: "+stateName(s), http.StatusServiceUnavailable)
			return
		}
		w.WriteHeader(http.StatusOK)
	})
	mux.HandleFunc("POST /quitquitquit", func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusOK)
		go func() {
			time.Sleep(50 * time.Millisecond) // let the answer go out
			d.o.Logf("POST /quitquitquit on %s", addr)
			d.Close()
		}()
	})
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	d.mu.Lock()
	if d.closed {
		d.mu.Unlock()
		_ = l.Close()
		return net.ErrClosed
	}
	d.traffic = append(d.traffic, srv)
	d.mu.Unlock()
	d.o.Logf("agent listener on %s (/stats/prometheus, /healthz/ready, /quitquitquit)", l.Addr())
	go func() { _ = srv.Serve(l) }()
	return nil
}

// contentTypePrometheus is what the exposition is served as: text format
// 0.0.4, which every Prometheus scrapes.
var contentTypePrometheus = string(expfmt.NewFormat(expfmt.TypeTextPlain))

func isGRPC(r *http.Request) bool {
	return strings.HasPrefix(r.Header.Get("Content-Type"), "application/grpc")
}
