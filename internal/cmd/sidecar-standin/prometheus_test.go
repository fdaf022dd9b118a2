package main

import (
	"encoding/json"
	"fmt"
	"math"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"syscall"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/meshready/meshready/internal/sidecarstandin"
	"github.com/meshready/meshready/internal/sidecarstandin/adstest"
)

// A real Prometheus (Debian's, when installed) scrapes the stand-in's
// :15090/stats/prometheus and answers the release analysis' kind of
// queries from it: requests by code and flags, and a latency quantile.
func TestPrometheusScrapes(t *testing.T) {
	prom, err := exec.LookPath("prometheus")
	if err != nil || testing.Short() {
		t.Skip("no prometheus on PATH (Debian: apt-get install prometheus), or -short")
	}
	inPort, deadIn, appPort, deadApp, adminPort, statsPort, promPort := freePort(t), freePort(t), freePort(t), freePort(t), freePort(t), freePort(t), freePort(t)
	app := &http.Server{Addr: fmt.Sprintf("127.0.0.1:%d", appPort), Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintln(w, "hello")
	})}
	go func() { _ = app.ListenAndServe() }()
	t.Cleanup(func() { _ = app.Close() })
	ads, err := adstest.Start("v1", map[string][]proto.Message{
		sidecarstandin.TypeCDS: {adstest.InboundCluster(inPort, adstest.Service{Host: "web.shop.svc.cluster.local", Name: "web", Namespace: "shop"})},
		sidecarstandin.TypeLDS: {adstest.Listener("virtualInbound")},
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(ads.Stop)
	sc := exec.Command(bin, "--pilot", ads.Addr, "--ip", "127.0.0.1", "--pod", "web-v3-58dd8b6b7-bq4zr", "--namespace", "shop",
		"--label", "app=web", "--label", "version=v3", "--admin-port", strconv.Itoa(adminPort), "--stats-port", strconv.Itoa(statsPort),
		"--agent-port", "0", "--health-port", "0",
		"--inbound", fmt.Sprintf("%d=%d", inPort, appPort), "--inbound", fmt.Sprintf("%d=%d", deadIn, deadApp))
	if err := sc.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = sc.Process.Kill(); _ = sc.Wait() })

	dir := t.TempDir()
	cfg := filepath.Join(dir, "prometheus.yml")
	if err := os.WriteFile(cfg, []byte(fmt.Sprintf(`global:
  scrape_interval: 1s
scrape_configs:
- job_name: sidecar
  metrics_path: /stats/prometheus
  static_configs:
  - targets: ["127.0.0.1:%d"]
`, statsPort)), 0o644); err != nil {
		t.Fatal(err)
	}
	pc := exec.Command(prom, "--config.file="+cfg, "--storage.tsdb.path="+filepath.Join(dir, "data"),
		fmt.Sprintf("--web.listen-address=127.0.0.1:%d", promPort), "--log.level=warn")
	pc.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := pc.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = pc.Process.Kill(); _ = pc.Wait() })

	admin := fmt.Sprintf("http://127.0.0.1:%d", adminPort)
	waitFor(t, "the stand-in LIVE", 10*time.Second, func() bool { return status(admin+"/ready") == 200 })
	waitFor(t, "the inbound listener", 5*time.Second, func() bool { return status(fmt.Sprintf("http://127.0.0.1:%d/", inPort)) == 200 })
	for range 4 {
		if code := status(fmt.Sprintf("http://127.0.0.1:%d/", inPort)); code != 200 {
			t.Fatalf("through the stand-in: %d", code)
		}
	}
	if code := status(fmt.Sprintf("http://127.0.0.1:%d/", deadIn)); code != 503 {
		t.Fatalf("no app: %d, want 503", code)
	}

	query := func(q string) []sample {
		resp, err := http.Get(fmt.Sprintf("http://127.0.0.1:%d/api/v1/query?query=%s", promPort, url.QueryEscape(q)))
		if err != nil {
			return nil
		}
		defer resp.Body.Close()
		var r struct {
			Data struct {
				Result []sample `json:"result"`
			} `json:"data"`
		}
		_ = json.NewDecoder(resp.Body).Decode(&r)
		return r.Data.Result
	}
	byCode := `sum by (response_code, response_flags) (istio_requests_total{reporter="destination",destination_workload="web-v3",destination_workload_namespace="shop"})`
	var got map[string]float64
	waitFor(t, "Prometheus to hold the requests: "+byCode, 30*time.Second, func() bool {
		got = map[string]float64{}
		for _, s := range query(byCode) {
			got[s.Metric["response_code"]+" "+s.Metric["response_flags"]] = s.value()
		}
		return got["200 -"] == 5 && got["503 UF"] == 1
	})
	if len(got) != 2 {
		t.Errorf("series by code: %v", got)
	}
	p99 := query(`histogram_quantile(0.99, sum by (le) (istio_request_duration_milliseconds_bucket{destination_service="web.shop.svc.cluster.local"}))`)
	if len(p99) != 1 || math.IsNaN(p99[0].value()) || p99[0].value() <= 0 || p99[0].value() > 250 {
		t.Fatalf("p99 from the duration buckets: %+v, want a few ms", p99)
	}
	t.Logf("Prometheus: %v; p99 %.2f ms", got, p99[0].value())
}

type sample struct {
	Metric map[string]string `json:"metric"`
	Value  [2]any            `json:"value"`
}

func (s sample) value() float64 {
	v, _ := s.Value[1].(string)
	f, err := strconv.ParseFloat(v, 64)
	if err != nil {
		return math.NaN()
	}
	return f
}
