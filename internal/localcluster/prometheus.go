package localcluster

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
)

// Prometheus discovers pods through the apiserver and scrapes those that
// carry Istio's prometheus.io/* annotations (what Istio's injector sets and
// Istio's sample Prometheus config keeps), as a real mesh's Prometheus does.
const promConfig = `global:
  scrape_interval: %[1]s
  scrape_timeout: %[1]s
  evaluation_interval: %[1]s
scrape_configs:
- job_name: kubernetes-pods
  kubernetes_sd_configs:
  - role: pod
    api_server: %[2]s
    tls_config: {ca_file: %[3]s, cert_file: %[4]s, key_file: %[5]s}
  relabel_configs:
  - source_labels: [__meta_kubernetes_pod_annotation_prometheus_io_scrape]
    action: keep
    regex: "true"
  - source_labels: [__meta_kubernetes_pod_annotation_prometheus_io_path]
    action: replace
    target_label: __metrics_path__
    regex: (.+)
  - source_labels: [__address__, __meta_kubernetes_pod_annotation_prometheus_io_port]
    action: replace
    regex: ([^:]+)(?::\d+)?;(\d+)
    replacement: $1:$2
    target_label: __address__
  - source_labels: [__meta_kubernetes_namespace]
    target_label: namespace
  - source_labels: [__meta_kubernetes_pod_name]
    target_label: pod
`

func (c *Cluster) startPrometheus(ctx context.Context) error {
	cfg := filepath.Join(c.Dir, "prometheus.yml")
	body := fmt.Sprintf(promConfig, c.o.ScrapeInterval, APIServerURL, c.pki.CAFile, c.pki.PromUser.Cert, c.pki.PromUser.Key)
	if err := os.WriteFile(cfg, []byte(body), 0o644); err != nil {
		return err
	}
	p, err := c.run("prometheus", c.bin("prometheus"), []string{
		"--config.file=" + cfg, "--storage.tsdb.path=" + filepath.Join(c.Dir, "prometheus"),
		"--web.listen-address=127.0.0.1:9090", "--log.level=warn",
	}, nil)
	if err != nil {
		return err
	}
	return p.waitUntil(ctx, "ready", func(ctx context.Context) error {
		return get(ctx, http.DefaultClient, PrometheusURL+"/-/ready", "")
	})
}
