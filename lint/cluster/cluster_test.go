package cluster

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"k8s.io/client-go/rest"

	"github.com/meshready/meshready/lint"
)

// fakeAPIServer answers the lists Read makes from a set of objects, and
// records every request, so the tests can hold Read to "one GET per kind,
// no watch".
type fakeAPIServer struct {
	t       *testing.T
	lists   map[string][]any // path → items
	missing map[string]bool  // path → 404 (a group the cluster does not serve)
	hang    bool             // never answer (until the request is cancelled)

	mu       sync.Mutex
	requests []string // "GET /path?query"
}

func (f *fakeAPIServer) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	f.requests = append(f.requests, r.Method+" "+r.URL.RequestURI())
	f.mu.Unlock()
	if f.hang {
		<-r.Context().Done()
		return
	}
	if f.missing[r.URL.Path] {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusNotFound)
		_, _ = w.Write([]byte(`{"kind":"Status","apiVersion":"v1","status":"Failure","reason":"NotFound","code":404,"message":"the server could not find the requested resource"}`))
		return
	}
	items, ok := f.lists[r.URL.Path]
	if !ok {
		f.t.Errorf("unexpected request %s %s", r.Method, r.URL)
		http.NotFound(w, r)
		return
	}
	if items == nil {
		items = []any{}
	}
	// The list's kind and group version as the API server names them:
	// /apis/GROUP/VERSION/namespaces/NS/RESOURCE (core: /api/v1/...).
	parts := strings.Split(strings.Trim(r.URL.Path, "/"), "/")
	groupVersion := strings.Join(parts[1:len(parts)-3], "/")
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(map[string]any{"kind": listKinds[parts[len(parts)-1]], "apiVersion": groupVersion, "metadata": map[string]any{"resourceVersion": "1"}, "items": items})
}

func (f *fakeAPIServer) seen() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.requests)
}

var listKinds = map[string]string{
	"services": "ServiceList", "pods": "PodList", "deployments": "DeploymentList",
	"destinationrules": "DestinationRuleList", "virtualservices": "VirtualServiceList",
}

const (
	pathServices    = "/api/v1/namespaces/shop/services"
	pathPods        = "/api/v1/namespaces/shop/pods"
	pathDeployments = "/apis/apps/v1/namespaces/shop/deployments"
	pathDRv1        = "/apis/networking.istio.io/v1/namespaces/shop/destinationrules"
	pathVSv1        = "/apis/networking.istio.io/v1/namespaces/shop/virtualservices"
	pathDRv1beta1   = "/apis/networking.istio.io/v1beta1/namespaces/shop/destinationrules"
	pathVSv1beta1   = "/apis/networking.istio.io/v1beta1/namespaces/shop/virtualservices"
)

// serveSnapshot is a fake API server holding the objects of a testdata
// snapshot (the lint's own decoder reads it), Istio's under istioVersion.
func serveSnapshot(t *testing.T, file, istioVersion string) *fakeAPIServer {
	t.Helper()
	set, err := lint.Load([]string{file}, nil)
	if err != nil {
		t.Fatal(err)
	}
	f := &fakeAPIServer{t: t, lists: map[string][]any{}, missing: map[string]bool{}}
	for _, s := range set.Services {
		f.lists[pathServices] = append(f.lists[pathServices], s.Service)
	}
	for _, d := range set.Deployments {
		f.lists[pathDeployments] = append(f.lists[pathDeployments], d.Deployment)
	}
	for _, p := range set.Pods {
		f.lists[pathPods] = append(f.lists[pathPods], p)
	}
	istio := "/apis/networking.istio.io/" + istioVersion + "/namespaces/shop/"
	f.lists[istio+"destinationrules"] = []any{}
	f.lists[istio+"virtualservices"] = []any{}
	for _, dr := range set.DestinationRules {
		f.lists[istio+"destinationrules"] = append(f.lists[istio+"destinationrules"], map[string]any{"metadata": dr.Meta, "spec": dr.Spec})
	}
	for _, vs := range set.VirtualServices {
		f.lists[istio+"virtualservices"] = append(f.lists[istio+"virtualservices"], map[string]any{"metadata": vs.Meta, "spec": vs.Spec})
	}
	for _, p := range []string{pathServices, pathPods, pathDeployments} {
		if _, ok := f.lists[p]; !ok {
			f.lists[p] = []any{}
		}
	}
	return f
}

func start(t *testing.T, h http.Handler) *rest.Config {
	t.Helper()
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	return &rest.Config{Host: srv.URL}
}

func snapshot(code, which string) string {
	return filepath.Join("..", "testdata", "rules", code, which+".yaml")
}

// The whole path of --namespace: lists from the API server, the rules, and
// the finding only the cluster can give.
func TestReadLintsTheLiveNamespace(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name, file, istio string
		missing           []string
		wantMR133         bool
		wantRequests      []string
	}{
		{"v2 pods not running", snapshot("MR133", "bad"), "v1", nil, true,
			[]string{pathServices, pathDeployments, pathPods, pathDRv1, pathVSv1}},
		{"v2 pod running", snapshot("MR133", "good"), "v1", nil, false,
			[]string{pathServices, pathDeployments, pathPods, pathDRv1, pathVSv1}},
		{"Istio before 1.22 (no v1)", snapshot("MR133", "bad"), "v1beta1", []string{pathDRv1}, true,
			[]string{pathServices, pathDeployments, pathPods, pathDRv1, pathDRv1beta1, pathVSv1beta1}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			f := serveSnapshot(t, c.file, c.istio)
			for _, m := range c.missing {
				f.missing[m] = true
			}
			set, err := Read(context.Background(), start(t, f), "shop", 5*time.Second)
			if err != nil {
				t.Fatal(err)
			}
			if len(set.Services) != 1 || len(set.Deployments) != 2 || len(set.DestinationRules) != 1 || len(set.VirtualServices) != 1 || len(set.Pods) != 3 || !set.PodsKnown {
				t.Fatalf("read %d services, %d deployments, %d DRs, %d VSs, %d pods (known %v)", len(set.Services), len(set.Deployments), len(set.DestinationRules), len(set.VirtualServices), len(set.Pods), set.PodsKnown)
			}
			if got := set.DestinationRules[0].Spec.GetSubsets(); len(got) != 2 || got[1].GetLabels()["version"] != "v2" {
				t.Errorf("DestinationRule spec not read: %v", got)
			}
			r := lint.Check(set, lint.DefaultOptions())
			if got := slices.Contains(r.Codes(), "MR133"); got != c.wantMR133 {
				t.Errorf("MR133 found=%v, want %v: %v", got, c.wantMR133, r.Findings)
			}
			for _, fd := range r.Findings {
				if fd.File != "" || fd.Line != 0 || fd.NS != "shop" {
					t.Errorf("a live object's finding has no file, and its namespace: %+v", fd)
				}
			}
			var paths []string
			for _, req := range f.seen() {
				method, uri, _ := strings.Cut(req, " ")
				path, query, _ := strings.Cut(uri, "?")
				if method != http.MethodGet || strings.Contains(query, "watch") {
					t.Errorf("request %s: want GET without watch", req)
				}
				paths = append(paths, path)
			}
			if !slices.Equal(paths, c.wantRequests) {
				t.Errorf("requests:\n%s\nwant one list per kind:\n%s", strings.Join(paths, "\n"), strings.Join(c.wantRequests, "\n"))
			}
		})
	}
}

// A cluster without Istio's CRDs has no DestinationRules: not an error.
func TestReadWithoutIstio(t *testing.T) {
	t.Parallel()
	f := serveSnapshot(t, snapshot("MR101", "good"), "v1")
	f.missing[pathDRv1], f.missing[pathDRv1beta1] = true, true
	set, err := Read(context.Background(), start(t, f), "shop", 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if len(set.Services) != 1 || len(set.DestinationRules) != 0 {
		t.Errorf("services %d, destination rules %d", len(set.Services), len(set.DestinationRules))
	}
}

// An API server that does not answer costs one --timeout, not forever.
func TestReadHasADeadline(t *testing.T) {
	t.Parallel()
	f := &fakeAPIServer{t: t, hang: true}
	t0 := time.Now()
	_, err := Read(context.Background(), start(t, f), "shop", 300*time.Millisecond)
	took := time.Since(t0)
	if err == nil || !strings.Contains(err.Error(), "list services in namespace shop") {
		t.Fatalf("err = %v, want the services list to fail naming itself", err)
	}
	if took > 5*time.Second {
		t.Errorf("Read took %v with a 300ms deadline", took)
	}
	if n := len(f.seen()); n != 1 {
		t.Errorf("%d requests after the first timed out, want 1 (no retry loop)", n)
	}
}

// A refusal (RBAC) names the list and the namespace.
func TestReadForbidden(t *testing.T) {
	t.Parallel()
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusForbidden)
		_, _ = w.Write([]byte(`{"kind":"Status","apiVersion":"v1","status":"Failure","reason":"Forbidden","code":403,"message":"services is forbidden: User \"ci\" cannot list resource \"services\" in the namespace \"shop\""}`))
	})
	_, err := Read(context.Background(), start(t, h), "shop", time.Second)
	if err == nil || !strings.Contains(err.Error(), "forbidden") || !strings.Contains(err.Error(), "list services in namespace shop") {
		t.Errorf("err = %v", err)
	}
}

func TestClientConfigBoundsTheClient(t *testing.T) {
	t.Parallel()
	in := &rest.Config{Host: "https://example.invalid", QPS: 1000, Burst: 2000}
	got := clientConfig(in, 7*time.Second)
	if got.QPS != QPS || got.Burst != Burst || got.Timeout != 7*time.Second {
		t.Errorf("QPS %v burst %d timeout %v", got.QPS, got.Burst, got.Timeout)
	}
	if in.QPS != 1000 {
		t.Error("the caller's config was changed")
	}
}

func TestRESTConfig(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	kc := filepath.Join(dir, "kubeconfig")
	writeFile(t, kc, `apiVersion: v1
kind: Config
clusters:
- name: a
  cluster: {server: "https://a.example:6443"}
- name: b
  cluster: {server: "https://b.example:6443"}
users:
- name: u
  user: {token: secret}
contexts:
- name: ca
  context: {cluster: a, user: u}
- name: cb
  context: {cluster: b, user: u}
current-context: ca
`)
	for _, c := range []struct{ context, want string }{{"", "https://a.example:6443"}, {"cb", "https://b.example:6443"}} {
		cfg, err := RESTConfig(kc, c.context)
		if err != nil || cfg.Host != c.want {
			t.Errorf("context %q: host %v, err %v; want %s", c.context, cfg, err, c.want)
		}
	}
	if _, err := RESTConfig(filepath.Join(dir, "nope"), ""); err == nil || !strings.Contains(err.Error(), "--kubeconfig=") {
		t.Errorf("a missing kubeconfig: err = %v", err)
	}
}

func writeFile(t *testing.T, path, text string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
}
