package localcluster

import (
	"context"
	"net"
	"os"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

func TestMain(m *testing.M) {
	EnterNetns()
	os.Exit(m.Run())
}

// need skips the test when the binaries are not built — loudly, and only
// outside CI: with MESHREADY_REQUIRE_CLUSTER=1 (.ci/run sets it) a missing
// binary fails the test.
func need(t *testing.T, o Options) {
	t.Helper()
	if m := Missing(o); m != "" {
		if os.Getenv("MESHREADY_REQUIRE_CLUSTER") != "" {
			t.Fatal(m)
		}
		t.Skip("SKIPPED, real control plane not built: " + m)
	}
}

// runDir is the cluster's directory for one test: removed when the test
// passes, kept (and named) when it fails, so the components' logs survive.
func runDir(t *testing.T) string {
	t.Helper()
	d, err := os.MkdirTemp("", "meshready-"+t.Name()+"-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("kept for the logs: %s", d)
			return
		}
		_ = os.RemoveAll(d)
	})
	return d
}

func TestPodCIDRIsLocal(t *testing.T) {
	t.Parallel()
	ln, err := net.Listen("tcp", "10.244.7.9:0")
	if err != nil {
		t.Fatalf("a pod address does not bind inside the namespace: %v", err)
	}
	defer ln.Close()
	c, err := net.DialTimeout("tcp", ln.Addr().String(), time.Second)
	if err != nil {
		t.Fatalf("a pod address does not answer: %v", err)
	}
	c.Close()
}

func TestAPIServerOnly(t *testing.T) {
	o := Options{Dir: runDir(t), Logf: t.Logf}
	need(t, o)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	c, err := Start(ctx, o)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Stop()
	v, err := c.Client.Discovery().ServerVersion()
	if err != nil {
		t.Fatalf("%v\n%s", err, c.Describe())
	}
	if !strings.HasPrefix(v.GitVersion, "v1.36") {
		t.Errorf("apiserver version %q, want v1.36.x (is the build stamped?)", v.GitVersion)
	}
	out, err := c.Kubectl(ctx, nil, "version", "-o", "yaml")
	if err != nil || !strings.Contains(out, "v1.36") {
		t.Errorf("kubectl version: %v\n%s", err, out)
	}
}

func TestWholeControlPlane(t *testing.T) {
	o := Options{Dir: runDir(t), Controllers: true, Istio: true, Prometheus: true, Logf: t.Logf}
	need(t, o)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	start := time.Now()
	c, err := Start(ctx, o)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Stop()
	t.Logf("whole control plane ready in %v", time.Since(start).Round(10*time.Millisecond))

	// The controller-manager's serviceaccount controller makes "default" in a new namespace.
	if _, err := c.Kubectl(ctx, nil, "create", "namespace", "probe"); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		if _, err := c.Client.CoreV1().ServiceAccounts("probe").Get(ctx, "default", metav1.GetOptions{}); err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no default ServiceAccount after 30 s: the controller-manager is not working\n%s", c.Describe())
		}
		time.Sleep(200 * time.Millisecond)
	}
	// Istio's CRDs are served.
	if out, err := c.Kubectl(ctx, nil, "get", "virtualservices.networking.istio.io", "-A"); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	// istiod answers syncz on loopback, as the agents here ask it; on its
	// pod address it wants a token (401), as a real istiod does.
	if err := get(ctx, insecureHealth, IstiodDebugURL+"/debug/syncz", "["); err != nil {
		t.Fatalf("istiod syncz: %v\n%s", err, c.Describe())
	}
	if err := get(ctx, insecureHealth, IstiodMonitorURL+"/debug/syncz", "["); err == nil || !strings.Contains(err.Error(), "401") {
		t.Errorf("istiod's :15014 on its pod address answered syncz without a token (%v): its authentication is off?", err)
	}
	// Restart is bounded and istiod comes back.
	if err := c.RestartIstiod(ctx, 100*time.Millisecond); err != nil {
		t.Fatalf("restart istiod: %v\n%s", err, c.Describe())
	}
	stop := time.Now()
	c.Stop()
	t.Logf("stopped in %v", time.Since(stop).Round(10*time.Millisecond))
	for _, addr := range []string{"127.0.0.1:6443", "127.0.0.1:2379", IstiodXDS, "127.0.0.1:9090"} {
		if conn, err := net.DialTimeout("tcp", addr, 200*time.Millisecond); err == nil {
			conn.Close()
			t.Errorf("%s still answers after Stop", addr)
		}
	}
}
