package cluster

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/meshready/meshready/internal/localcluster"
	"github.com/meshready/meshready/lint"
)

// The real control plane (etcd + kube-apiserver from `make cluster-bins`)
// runs in a private network namespace; the process enters it only when the
// binaries are there, so the other tests run anywhere.
func TestMain(m *testing.M) {
	if localcluster.Missing(localcluster.Options{}) == "" {
		localcluster.EnterNetns()
	}
	os.Exit(m.Run())
}

// Against a real kube-apiserver: the objects of the MR133 snapshot are
// created (pods stay Pending: no scheduler, no kubelet; the test writes pod
// status as a kubelet would), then `lint --namespace` reads them with
// client-go and the cluster-only rule answers both ways.
func TestReadFromRealAPIServer(t *testing.T) {
	o := localcluster.Options{Dir: t.TempDir(), Logf: t.Logf}
	if m := localcluster.Missing(o); m != "" {
		if os.Getenv("MESHREADY_REQUIRE_CLUSTER") != "" {
			t.Fatal(m)
		}
		t.Skip("SKIPPED, no real kube-apiserver to test against: " + m)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	c, err := localcluster.Start(ctx, o)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Stop()
	fail := func(format string, args ...any) {
		t.Helper()
		t.Fatalf(format+"\n%s", append(args, c.Describe())...)
	}

	crds := filepath.Join(localcluster.BinDir(), "istio-crds.yaml")
	if _, err := os.Stat(crds); err != nil {
		crds = filepath.Join("testdata", "istio-networking-crds.yaml")
		t.Logf("Istio's CRDs not built (%v): using the minimal ones in %s", err, crds)
	}
	if _, err := c.Kubectl(ctx, nil, "apply", "--server-side", "-f", crds); err != nil {
		fail("%v", err)
	}
	if _, err := c.Kubectl(ctx, nil, "wait", "--for=condition=Established", "--timeout=60s", "crd/destinationrules.networking.istio.io", "crd/virtualservices.networking.istio.io"); err != nil {
		fail("%v", err)
	}
	// No controller-manager: the namespace's default ServiceAccount, which
	// pod admission wants, is made by hand.
	if err := c.Apply(ctx, "apiVersion: v1\nkind: Namespace\nmetadata: {name: shop}\n---\napiVersion: v1\nkind: ServiceAccount\nmetadata: {name: default, namespace: shop}\n"); err != nil {
		fail("%v", err)
	}
	snap, err := os.ReadFile(snapshot("MR133", "bad"))
	if err != nil {
		t.Fatal(err)
	}
	// deletionTimestamp is the API server's to set, not a manifest's.
	if err := c.Apply(ctx, strings.ReplaceAll(string(snap), `deletionTimestamp: "2026-12-02T08:00:00Z"`, "")); err != nil {
		fail("%v", err)
	}
	setPhase := func(prefix string, phase corev1.PodPhase) {
		t.Helper()
		pods, err := c.Client.CoreV1().Pods("shop").List(ctx, metav1.ListOptions{})
		if err != nil {
			fail("%v", err)
		}
		for i := range pods.Items {
			p := &pods.Items[i]
			if strings.HasPrefix(p.Name, prefix) {
				p.Status.Phase = phase
				if _, err := c.Client.CoreV1().Pods("shop").UpdateStatus(ctx, p, metav1.UpdateOptions{}); err != nil {
					fail("pod %s status: %v", p.Name, err)
				}
			}
		}
	}
	lintNamespace := func() *lint.Report {
		t.Helper()
		cfg, err := RESTConfig(c.Kubeconfig, "")
		if err != nil {
			t.Fatal(err)
		}
		set, err := Read(ctx, cfg, "shop", 10*time.Second)
		if err != nil {
			fail("%v", err)
		}
		if len(set.Services) != 1 || len(set.Deployments) != 2 || len(set.DestinationRules) != 1 || len(set.VirtualServices) != 1 || len(set.Pods) != 3 {
			fail("read %d services, %d deployments, %d DRs, %d VSs, %d pods", len(set.Services), len(set.Deployments), len(set.DestinationRules), len(set.VirtualServices), len(set.Pods))
		}
		return lint.Check(set, lint.DefaultOptions())
	}

	setPhase("cart-v1-", corev1.PodRunning)
	r := lintNamespace()
	if !slices.Equal(r.Codes(), []string{"MR133"}) {
		t.Errorf("v2 pods Pending: codes %v, want MR133 only: %+v", r.Codes(), r.Findings)
	}
	setPhase("cart-v2-5c8b-fghij", corev1.PodRunning)
	if r := lintNamespace(); len(r.Findings) != 0 {
		t.Errorf("a v2 pod Running: want no finding, got %+v", r.Findings)
	}
}
