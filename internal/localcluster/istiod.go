package localcluster

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"time"
)

// istiod's objects: its namespace, and a Service whose EndpointSlice lists
// IstiodIP, as the endpoints of istiod's pods would (callers of syncz, such
// as the release controller's propagation gate, find the replicas there).
const istiodObjects = `apiVersion: v1
kind: Namespace
metadata:
  name: istio-system
---
apiVersion: v1
kind: Service
metadata:
  name: istiod
  namespace: istio-system
  labels: {app: istiod, istio: pilot}
spec:
  clusterIP: None
  ports:
  - {name: grpc-xds, port: 15010, targetPort: 15010}
  - {name: https-dns, port: 15012, targetPort: 15012}
  - {name: http-monitoring, port: 15014, targetPort: 15014}
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: istiod-localcluster
  namespace: istio-system
  labels:
    kubernetes.io/service-name: istiod
    endpointslice.kubernetes.io/managed-by: localcluster.meshready.io
addressType: IPv4
ports:
- {name: grpc-xds, port: 15010, protocol: TCP}
- {name: https-dns, port: 15012, protocol: TCP}
- {name: http-monitoring, port: 15014, protocol: TCP}
endpoints:
- addresses: ["` + IstiodIP + `"]
  conditions: {ready: true}
`

func (c *Cluster) writeIstiodConfig(ctx context.Context) (kubeconfig, mesh string, err error) {
	if err := c.Apply(ctx, istiodObjects); err != nil {
		return "", "", err
	}
	if kubeconfig, err = c.componentKubeconfig("istiod", c.pki.Istiod); err != nil {
		return "", "", err
	}
	mesh = filepath.Join(c.Dir, "mesh.yaml")
	err = os.WriteFile(mesh, []byte(fmt.Sprintf(`rootNamespace: istio-system
trustDomain: cluster.local
defaultConfig:
  discoveryAddress: %s:15012
`, IstiodIP)), 0o644)
	return kubeconfig, mesh, err
}

// StartIstiod starts (or restarts, after StopIstiod) the real istiod and
// waits for its /ready.
//
// ENABLE_DEBUG_ENDPOINT_AUTH=false turns off istiod's namespace-based
// authorisation of debug calls (which proxies a caller may ask about); the
// authentication of non-loopback callers stays (see IstiodDebugURL).
func (c *Cluster) StartIstiod(ctx context.Context) error {
	kc, mesh, err := c.writeIstiodConfig(ctx)
	if err != nil {
		return err
	}
	env := append([]string{
		"POD_NAMESPACE=" + IstioNamespace, "POD_NAME=istiod-localcluster-0", "REVISION=default",
		"ENABLE_DEBUG_ENDPOINT_AUTH=false",
		"PILOT_ENABLE_XDS_CACHE=true",
	}, c.o.IstiodEnv...)
	p, err := c.run("istiod", c.bin("pilot-discovery"), []string{
		"discovery", "--kubeconfig=" + kc, "--meshConfig=" + mesh,
		"--networksConfig=" + filepath.Join(c.Dir, "meshNetworks.yaml"),
		"--httpAddr=127.0.0.1:8080", "--httpsAddr=" + IstiodIP + ":15017",
		"--grpcAddr=" + IstiodXDS, "--secureGRPCAddr=" + IstiodIP + ":15012",
		"--monitoringAddr=" + IstiodIP + ":15014", "--ctrlz_port=9876",
		"--log_output_level=default:info",
	}, env)
	if err != nil {
		return err
	}
	return p.waitUntil(ctx, "ready", func(ctx context.Context) error {
		return get(ctx, http.DefaultClient, IstiodReadyURL, "")
	})
}

// StopIstiod stops istiod (bounded), e.g. to show an outage mid-rollout.
func (c *Cluster) StopIstiod() { c.proc("istiod").stop() }

// RestartIstiod stops istiod, leaves it down for `down`, and starts it again.
func (c *Cluster) RestartIstiod(ctx context.Context, down time.Duration) error {
	c.StopIstiod()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-time.After(down):
	}
	return c.StartIstiod(ctx)
}
