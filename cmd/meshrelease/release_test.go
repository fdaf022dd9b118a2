package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/alecthomas/kong"
	appsv1 "k8s.io/api/apps/v1"

	"github.com/meshready/meshready/api/v1alpha1"
	"github.com/meshready/meshready/internal/localcluster"
)

// The release verbs and the install manifests run against a real
// kube-apiserver (etcd + kube-apiserver from `make cluster-bins`), one for
// the package, in a private network namespace: the process enters it only
// when the binaries are there, so the other tests run anywhere.
func TestMain(m *testing.M) {
	if localcluster.Missing(localcluster.Options{}) == "" {
		localcluster.EnterNetns()
	}
	code := m.Run()
	shared.stop()
	os.Exit(code)
}

var shared struct {
	once sync.Once
	c    *localcluster.Cluster
	err  error
	stop func()
}

func init() { shared.stop = func() {} }

// apiCluster is the package's control plane with config/default applied and
// the Release CRD Established (started by the first test that needs it).
func apiCluster(t *testing.T) *localcluster.Cluster {
	t.Helper()
	o := localcluster.Options{}
	if m := localcluster.Missing(o); m != "" {
		if os.Getenv("MESHREADY_REQUIRE_CLUSTER") != "" {
			t.Fatal(m)
		}
		t.Skip("SKIPPED, no real kube-apiserver to test against: " + m)
	}
	shared.once.Do(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
		defer cancel()
		c, err := localcluster.Start(ctx, localcluster.Options{Logf: t.Logf})
		if err != nil {
			shared.err = err
			return
		}
		shared.c, shared.stop = c, c.Stop
		// Istio's CRDs, for the RBAC checks on its kinds.
		crds := filepath.Join(localcluster.BinDir(), "istio-crds.yaml")
		if _, err := os.Stat(crds); err != nil {
			crds = filepath.Join("..", "..", "lint", "cluster", "testdata", "istio-networking-crds.yaml")
		}
		if _, err := c.Kubectl(ctx, nil, "apply", "--server-side", "-f", crds); err != nil {
			shared.err = err
			return
		}
		if out, err := c.Kubectl(ctx, nil, "apply", "-k", filepath.Join("..", "..", "config", "default")); err != nil {
			shared.err = err
			return
		} else {
			t.Logf("kubectl apply -k config/default:\n%s", out)
		}
		if _, err := c.Kubectl(ctx, nil, "wait", "--for=condition=Established", "--timeout=60s", "crd/releases.meshready.io", "crd/virtualservices.networking.istio.io", "crd/destinationrules.networking.istio.io"); err != nil {
			shared.err = err
			return
		}
		// No controller-manager: namespaces are made by hand.
		shared.err = c.Apply(ctx, "apiVersion: v1\nkind: Namespace\nmetadata: {name: shop}\n")
	})
	if shared.err != nil {
		t.Fatal(shared.err)
	}
	return shared.c
}

func kubectl(t *testing.T, c *localcluster.Cluster, stdin string, args ...string) (string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var in *strings.Reader
	if stdin != "" {
		in = strings.NewReader(stdin)
		return c.Kubectl(ctx, in, args...)
	}
	return c.Kubectl(ctx, nil, args...)
}

func getRelease(t *testing.T, c *localcluster.Cluster, ns, name string) *v1alpha1.Release {
	t.Helper()
	out, err := kubectl(t, c, "", "get", "release.meshready.io", "-n", ns, name, "-o", "json")
	if err != nil {
		t.Fatal(err)
	}
	var r v1alpha1.Release
	if err := json.Unmarshal([]byte(out), &r); err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	return &r
}

// setStatus writes the status subresource as the controller would.
func setStatus(t *testing.T, c *localcluster.Cluster, ns, name, status string) {
	t.Helper()
	if _, err := kubectl(t, c, "", "patch", "release.meshready.io", "-n", ns, name, "--subresource=status", "--type=merge", "-p", `{"status":`+status+`}`); err != nil {
		t.Fatal(err)
	}
}

// The install manifests on a real API server: the CRD is Established, its
// defaults and CEL rules hold (the API server's own messages), the printer
// columns print, and the controller's ServiceAccount may do what it needs
// and nothing else.
func TestInstallManifests(t *testing.T) {
	c := apiCluster(t)
	good := "apiVersion: meshready.io/v1alpha1\nkind: Release\nmetadata: {name: web-v2, namespace: shop}\nspec: {service: web, to: {version: v2, image: web:2}}\n"
	if out, err := kubectl(t, c, good, "create", "-f", "-"); err != nil {
		t.Fatalf("a valid Release refused: %v", err)
	} else {
		t.Logf("%s", out)
	}
	r := getRelease(t, c, "shop", "web-v2")
	if fmt.Sprint(r.Spec.Steps) != "[10 25 50 100]" || r.Spec.Interval.Duration != time.Minute || r.Spec.ProgressDeadline.Duration != 10*time.Minute ||
		r.Spec.Propagation.Timeout.Duration != 2*time.Minute || r.Spec.Analysis.MaxErrorRate != "0.01" || r.Spec.Analysis.MinRequests != 50 ||
		r.Spec.Analysis.FailureLimit != 2 || r.Spec.Analysis.InconclusiveLimit != 3 {
		t.Errorf("defaults not filled: %+v", r.Spec)
	}

	for _, tc := range []struct {
		name, spec, want string
	}{
		{"last step not 100", `{service: web, to: {version: v2, image: web:2}, steps: [10, 50]}`, "spec.steps: Invalid value: the last step must be 100"},
		{"steps not increasing", `{service: web, to: {version: v2, image: web:2}, steps: [50, 25, 100]}`, "spec.steps: Invalid value: the steps must increase"},
		{"steps repeated", `{service: web, to: {version: v2, image: web:2}, steps: [50, 50, 100]}`, "the steps must increase"},
		{"image and deployment", `{service: web, to: {version: v2, image: web:2, deployment: web-v2}}`, "exactly one of spec.to.image and spec.to.deployment must be set"},
		{"neither image nor deployment", `{service: web, to: {version: v2}}`, "exactly one of spec.to.image and spec.to.deployment must be set"},
		{"no version", `{service: web, to: {image: web:2}}`, `spec.to.version: Required value`},
		{"bad version", `{service: web, to: {version: V2!, image: web:2}}`, `spec.to.version: Invalid value`},
		{"no service", `{to: {version: v2, image: web:2}}`, `spec.service: Required value`},
		{"container without image", `{service: web, to: {version: v2, deployment: web-v2, container: app}}`, "spec.to.container goes with spec.to.image only"},
		{"zero interval", `{service: web, to: {version: v2, image: web:2}, interval: 0s}`, "must be a positive duration"},
		{"step over 100", `{service: web, to: {version: v2, image: web:2}, steps: [50, 150]}`, "should be less than or equal to 100"},
		{"paused not a bool", `{service: web, to: {version: v2, image: web:2}, paused: "yes"}`, `spec.paused: Invalid value`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			doc := "apiVersion: meshready.io/v1alpha1\nkind: Release\nmetadata: {name: bad, namespace: shop}\nspec: " + tc.spec + "\n"
			out, err := kubectl(t, c, doc, "create", "-f", "-")
			if err == nil {
				_, _ = kubectl(t, c, "", "delete", "release.meshready.io", "-n", "shop", "bad")
				t.Fatalf("accepted: %s", out)
			}
			if !strings.Contains(out, tc.want) {
				t.Errorf("rejected without %q:\n%s", tc.want, out)
			}
			t.Logf("%s", strings.TrimSpace(out))
		})
	}

	setStatus(t, c, "shop", "web-v2", `{"phase":"Progressing","step":1,"stepLabel":"2/4 (25%)","weights":{"desired":25,"applied":25,"synced":"3/4"}}`)
	out, err := kubectl(t, c, "", "get", "rel", "-n", "shop", "web-v2")
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("kubectl get rel:\n%s", out)
	if !regexp.MustCompile(`(?m)^NAME\s+SERVICE\s+TO\s+PHASE\s+STEP\s+WEIGHT\s+SYNCED\s+AGE\n` +
		`web-v2\s+web\s+v2\s+Progressing\s+2/4 \(25%\)\s+25\s+3/4\s+\d+s\n$`).MatchString(out) {
		t.Errorf("printer columns:\n%s", out)
	}

	// The Deployment runs a command line meshrelease accepts, its probes on
	// the port of --health-addr.
	out, err = kubectl(t, c, "", "get", "deployment", "-n", "meshready-system", "meshrelease-controller", "-o", "json")
	if err != nil {
		t.Fatal(err)
	}
	var dep appsv1.Deployment
	if err := json.Unmarshal([]byte(out), &dep); err != nil {
		t.Fatal(err)
	}
	ctr := dep.Spec.Template.Spec.Containers[0]
	args := strings.Split(strings.ReplaceAll(strings.Join(ctr.Args, "\x00"), "$(POD_NAMESPACE)", "meshready-system"), "\x00")
	var cli CLI
	parser, err := kong.New(&cli, kong.Name("meshrelease"), kong.DefaultEnvars("MESHRELEASE"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := parser.Parse(args); err != nil {
		t.Errorf("the Deployment's args %q: %v", args, err)
	}
	if !cli.Controller.LeaderElect || cli.Controller.LeaderNS != "meshready-system" || cli.Controller.HealthAddr != ":8081" ||
		ctr.ReadinessProbe.HTTPGet.Path != "/readyz" || ctr.LivenessProbe.HTTPGet.Path != "/healthz" ||
		ctr.Ports[1].Name != ctr.ReadinessProbe.HTTPGet.Port.StrVal || ctr.Ports[1].ContainerPort != 8081 ||
		dep.Spec.Template.Spec.ServiceAccountName != "meshrelease" || ctr.Resources.Requests.Cpu().IsZero() {
		t.Errorf("the controller's Deployment: %+v %+v", cli.Controller, ctr)
	}

	sa := "--as=system:serviceaccount:meshready-system:meshrelease"
	for _, tc := range []struct {
		verb, resource, ns string
		allowed            bool
	}{
		{"watch", "releases.meshready.io", "shop", true},
		{"patch", "releases.meshready.io/status", "shop", true},
		{"update", "releases.meshready.io", "", true},
		{"create", "deployments.apps", "shop", true},
		{"delete", "deployments.apps", "shop", true},
		{"patch", "deployments.apps", "shop", true},
		{"list", "replicasets.apps", "shop", true},
		{"watch", "pods", "shop", true},
		{"get", "services", "istio-system", true},
		{"list", "endpointslices.discovery.k8s.io", "istio-system", true},
		{"patch", "virtualservices.networking.istio.io", "shop", true},
		{"update", "destinationrules.networking.istio.io", "shop", true},
		{"create", "events", "shop", true},
		{"create", "leases.coordination.k8s.io", "meshready-system", true},
		{"update", "leases.coordination.k8s.io", "meshready-system", true},

		{"get", "secrets", "shop", false},
		{"list", "secrets", "meshready-system", false},
		{"delete", "pods", "shop", false},
		{"create", "pods", "shop", false},
		{"delete", "releases.meshready.io", "shop", false},
		{"create", "releases.meshready.io", "shop", false},
		{"create", "virtualservices.networking.istio.io", "shop", false},
		{"delete", "destinationrules.networking.istio.io", "shop", false},
		{"patch", "services", "shop", false},
		{"create", "leases.coordination.k8s.io", "shop", false},
		{"update", "clusterroles.rbac.authorization.k8s.io", "", false},
		{"create", "pods/exec", "shop", false},
		{"get", "configmaps", "shop", false},
	} {
		args := []string{"auth", "can-i", sa, tc.verb, tc.resource}
		if tc.ns != "" {
			args = append(args, "-n", tc.ns)
		} else {
			args = append(args, "--all-namespaces")
		}
		out, err := kubectl(t, c, "", args...)
		lines := strings.Split(strings.TrimSpace(out), "\n")
		got := lines[len(lines)-1] == "yes"
		if got != tc.allowed || (err != nil && tc.allowed) {
			t.Errorf("can-i %s %s -n %q: %q (%v), want allowed=%v", tc.verb, tc.resource, tc.ns, strings.TrimSpace(out), err, tc.allowed)
		}
	}
	if _, err := kubectl(t, c, "", "delete", "release.meshready.io", "-n", "shop", "web-v2"); err != nil {
		t.Error(err)
	}
}
