package release

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/go-logr/logr"
	"github.com/prometheus/client_golang/prometheus"
	networkingv1 "istio.io/client-go/pkg/apis/networking/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	"k8s.io/apimachinery/pkg/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/healthz"
	"sigs.k8s.io/controller-runtime/pkg/metrics"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"

	"github.com/meshready/meshready/analysis"
	"github.com/meshready/meshready/api/v1alpha1"
	"github.com/meshready/meshready/pilotclient"
)

// Options configure the controller process (meshrelease controller).
type Options struct {
	RESTConfig *rest.Config
	// QPS and Burst bound the controller's API requests (client-go's
	// limiter): the seed's lesson is a per-service component that floods a
	// central server.
	QPS   float32
	Burst int

	LeaderElect             bool
	LeaderElectionNamespace string
	MetricsAddr, HealthAddr string // "0" turns one off

	// Pilot lists istiod debug URLs to use as the replicas (tests, and
	// clusters where the controller runs beside istiod); empty: the
	// endpoints of IstiodService, on IstiodPort.
	Pilot         []string
	IstiodService string // namespace/name, default istio-system/istiod
	IstiodPort    int    // default 15014
	// PilotTokenFile is a token istiod accepts (audience istio-ca) for
	// non-loopback debug calls; sent over https only.
	PilotTokenFile string
	PilotTimeout   time.Duration

	PrometheusURL string
	PollInterval  time.Duration // the gate's syncz poll (default 1s)
	Settle        time.Duration // after a window's end before it is read (default 3s)

	Log logr.Logger
}

var (
	apiRequests = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "meshrelease_api_requests_total", Help: "Requests to the Kubernetes API server, by verb.",
	}, []string{"verb"})
	pilotRequests = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "meshrelease_pilot_requests_total", Help: "Requests to istiod's debug endpoints by the propagation gate, by kind (syncz, config_dump).",
	}, []string{"kind"})
)

func init() {
	metrics.Registry.MustRegister(apiRequests, pilotRequests)
}

type countingRT struct{ next http.RoundTripper }

func (c countingRT) RoundTrip(r *http.Request) (*http.Response, error) {
	verb := r.Method
	if r.URL.Query().Get("watch") == "true" {
		verb = "WATCH"
	}
	apiRequests.WithLabelValues(verb).Inc()
	return c.next.RoundTrip(r)
}

// Scheme has every kind the controller reads or writes.
func Scheme() (*runtime.Scheme, error) {
	s := runtime.NewScheme()
	for _, add := range []func(*runtime.Scheme) error{clientgoscheme.AddToScheme, v1alpha1.AddToScheme, networkingv1.AddToScheme} {
		if err := add(s); err != nil {
			return nil, err
		}
	}
	return s, nil
}

// Run runs the controller until ctx ends.
func Run(ctx context.Context, o Options) error {
	if o.PrometheusURL == "" {
		return errors.New("no Prometheus URL (--prometheus): a release is never judged without numbers")
	}
	cfg := rest.CopyConfig(o.RESTConfig)
	cfg.QPS, cfg.Burst = o.QPS, o.Burst
	if cfg.QPS <= 0 {
		cfg.QPS = 20
	}
	if cfg.Burst <= 0 {
		cfg.Burst = 40
	}
	cfg.Wrap(func(rt http.RoundTripper) http.RoundTripper { return countingRT{rt} })
	cfg.UserAgent = "meshrelease-controller"
	scheme, err := Scheme()
	if err != nil {
		return err
	}
	ctrl.SetLogger(o.Log)
	mgr, err := ctrl.NewManager(cfg, ctrl.Options{
		Scheme:                  scheme,
		Logger:                  o.Log,
		LeaderElection:          o.LeaderElect,
		LeaderElectionID:        "meshrelease.meshready.io",
		LeaderElectionNamespace: o.LeaderElectionNamespace,
		// Let a new leader take over quickly after the old one is killed.
		LeaderElectionReleaseOnCancel: true,
		Metrics:                       metricsserver.Options{BindAddress: orDefault(o.MetricsAddr, ":8080")},
		HealthProbeBindAddress:        orDefault(o.HealthAddr, ":8081"),
	})
	if err != nil {
		return fmt.Errorf("starting the manager: %w", err)
	}
	an, err := analysis.New(analysis.Config{URL: o.PrometheusURL})
	if err != nil {
		return fmt.Errorf("--prometheus: %w", err)
	}
	gk := &Gatekeeper{
		PollInterval:   o.PollInterval,
		OnPilotRequest: func(kind string) { pilotRequests.WithLabelValues(kind).Inc() },
	}
	replicas, err := newReplicaSource(mgr.GetClient(), o)
	if err != nil {
		return err
	}
	gk.Replicas = replicas.list
	rec := &Reconciler{Client: mgr.GetClient(), Gates: gk, Judge: an, Log: o.Log, Settle: o.Settle}
	if err := rec.SetupWithManager(mgr); err != nil {
		return err
	}
	if err := mgr.AddHealthzCheck("ping", healthz.Ping); err != nil {
		return err
	}
	if err := mgr.AddReadyzCheck("ping", healthz.Ping); err != nil {
		return err
	}
	return mgr.Start(ctx)
}

func orDefault(s, d string) string {
	if s == "" {
		return d
	}
	return s
}

// replicaSource lists istiod replicas: the static --pilot URLs, or the
// ready endpoints of the istiod Service (from the informer cache), one
// pilotclient per address, kept while the address stays.
type replicaSource struct {
	reader  client.Reader
	o       Options
	ns, svc string

	mu      sync.Mutex
	clients map[string]*pilotclient.Client
}

func newReplicaSource(reader client.Reader, o Options) (*replicaSource, error) {
	rs := &replicaSource{reader: reader, o: o, clients: map[string]*pilotclient.Client{}}
	ref := orDefault(o.IstiodService, "istio-system/istiod")
	ns, svc, ok := strings.Cut(ref, "/")
	if !ok || ns == "" || svc == "" {
		return nil, fmt.Errorf("--istiod-service %q: want namespace/name", ref)
	}
	rs.ns, rs.svc = ns, svc
	for _, u := range o.Pilot {
		if _, err := rs.client(u); err != nil {
			return nil, fmt.Errorf("--pilot %q: %w", u, err)
		}
	}
	return rs, nil
}

func (rs *replicaSource) client(u string) (*pilotclient.Client, error) {
	rs.mu.Lock()
	defer rs.mu.Unlock()
	if c := rs.clients[u]; c != nil {
		return c, nil
	}
	opts := []pilotclient.Option{pilotclient.WithMaxBody(256 << 20), pilotclient.WithUserAgent("meshrelease-gate")}
	if rs.o.PilotTimeout > 0 {
		opts = append(opts, pilotclient.WithTimeout(rs.o.PilotTimeout))
	} else {
		opts = append(opts, pilotclient.WithTimeout(10*time.Second))
	}
	if rs.o.PilotTokenFile != "" {
		opts = append(opts, pilotclient.WithToken(rs.o.PilotTokenFile))
	}
	c, err := pilotclient.New(u, opts...)
	if err != nil {
		return nil, err
	}
	rs.clients[u] = c
	return c, nil
}

func (rs *replicaSource) list(ctx context.Context) ([]Replica, error) {
	var urls []string
	if len(rs.o.Pilot) > 0 {
		urls = rs.o.Pilot
	} else {
		var slices discoveryv1.EndpointSliceList
		if err := rs.reader.List(ctx, &slices, client.InNamespace(rs.ns), client.MatchingLabels{discoveryv1.LabelServiceName: rs.svc}); err != nil {
			return nil, fmt.Errorf("EndpointSlices of %s/%s: %w", rs.ns, rs.svc, err)
		}
		port := rs.o.IstiodPort
		if port == 0 {
			port = 15014
		}
		scheme := "http"
		if rs.o.PilotTokenFile != "" {
			scheme = "https"
		}
		seen := map[string]bool{}
		for _, sl := range slices.Items {
			for _, ep := range sl.Endpoints {
				if ep.Conditions.Ready != nil && !*ep.Conditions.Ready {
					continue
				}
				for _, a := range ep.Addresses {
					u := fmt.Sprintf("%s://%s:%d", scheme, a, port)
					if strings.Contains(a, ":") {
						u = fmt.Sprintf("%s://[%s]:%d", scheme, a, port)
					}
					if !seen[u] {
						seen[u] = true
						urls = append(urls, u)
					}
				}
			}
		}
		sort.Strings(urls)
	}
	out := make([]Replica, 0, len(urls))
	for _, u := range urls {
		c, err := rs.client(u)
		if err != nil {
			return nil, err
		}
		out = append(out, Replica{Name: c.Address(), API: c})
	}
	return out, nil
}
