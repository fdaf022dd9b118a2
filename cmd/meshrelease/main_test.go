package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"

	"github.com/meshready/meshready/lint"
)

func rules(code, which string) string {
	return filepath.Join("..", "..", "lint", "testdata", "rules", code, which+".yaml")
}

type result struct {
	code           int
	stdout, stderr string
}

func runCLI(stdin string, args ...string) result {
	var out, errOut bytes.Buffer
	code := run(args, strings.NewReader(stdin), &out, &errOut)
	return result{code, out.String(), errOut.String()}
}

func TestExitCodes(t *testing.T) {
	t.Parallel()
	broken := filepath.Join(t.TempDir(), "broken.yaml")
	if err := os.WriteFile(broken, []byte("apiVersion: v1\nkind: Service\nmetadata: {name: s}\nspec:\n  portz: []\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name   string
		args   []string
		code   int
		stderr string // substring; "" wants stderr empty
	}{
		{"clean manifests", []string{"lint", "-f", rules("MR101", "good")}, exitOK, ""},
		{"an error finding", []string{"lint", "-f", rules("MR101", "bad")}, exitFindings, ""},
		{"only a warning", []string{"lint", "-f", rules("MR103", "bad")}, exitOK, ""},
		{"only info", []string{"lint", "-f", rules("MR141", "bad")}, exitOK, ""},
		{"the repo's examples", []string{"lint", "-f", filepath.Join("..", "..", "images", "k8s")}, exitOK, ""},
		{"unknown field: file and line", []string{"lint", "-f", broken}, exitBadInput, broken + `:5: Service: unknown field "spec.portz"`},
		{"an object given twice", []string{"lint", "-f", rules("MR101", "good"), "-f", rules("MR103", "good")}, exitBadInput, "Service/shop/cart is given twice (first at " + rules("MR101", "good") + ":"},
		{"missing file", []string{"lint", "-f", "/nonexistent/x.yaml"}, exitBadInput, "/nonexistent/x.yaml: stat"},
		{"nothing to lint", []string{"lint"}, exitBadInput, "give manifests with -f"},
		{"both modes", []string{"lint", "-f", "x", "--namespace", "shop"}, exitBadInput, "exclusive"},
		{"kubeconfig without namespace", []string{"lint", "-f", "x", "--kubeconfig", "k"}, exitBadInput, "only apply with --namespace"},
		{"bad output", []string{"lint", "-f", "x", "-o", "yaml"}, exitBadInput, "--output"},
		{"bad duration", []string{"lint", "-f", "x", "--drain-max", "0s"}, exitBadInput, "--drain-max=0s"},
		{"namespace outside a pod, no kubeconfig", []string{"lint", "--namespace", "shop"}, exitBadInput, "in-cluster config"},
		{"unknown command", []string{"deploy"}, exitBadInput, "unexpected argument deploy"},
		{"version", []string{"version"}, exitOK, ""},
		{"rules", []string{"lint", "--rules"}, exitOK, ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			r := runCLI("", c.args...)
			if r.code != c.code {
				t.Errorf("exit %d, want %d\nstdout: %s\nstderr: %s", r.code, c.code, r.stdout, r.stderr)
			}
			if c.stderr == "" && r.stderr != "" || !strings.Contains(r.stderr, c.stderr) {
				t.Errorf("stderr %q, want %q", r.stderr, c.stderr)
			}
			for _, l := range strings.Split(strings.TrimSpace(r.stderr), "\n") {
				if l != "" && !strings.HasPrefix(l, "meshrelease: ") {
					t.Errorf("stderr line %q: every error is one line starting meshrelease:", l)
				}
			}
		})
	}
}

func TestStdinAndEnv(t *testing.T) {
	bad, err := os.ReadFile(rules("MR121", "bad"))
	if err != nil {
		t.Fatal(err)
	}
	t.Setenv("MESHRELEASE_OUTPUT", "json")
	r := runCLI(string(bad), "lint", "-f", "-")
	var doc lint.JSONReport
	if err := json.Unmarshal([]byte(r.stdout), &doc); err != nil || r.code != exitFindings {
		t.Fatalf("exit %d, JSON %v: %s %s", r.code, err, r.stdout, r.stderr)
	}
	if len(doc.Findings) != 1 || doc.Findings[0].File != lint.StdinName || doc.Findings[0].Code != "MR121" {
		t.Errorf("findings %+v", doc.Findings)
	}
}

// The JSON schema is a contract: these names are what CI scripts read.
func TestJSONSchema(t *testing.T) {
	t.Parallel()
	r := runCLI("", "lint", "-o", "json", "-f", rules("MR120", "bad"), "-f", filepath.Join("..", "..", "lint", "testdata", "2018"))
	var doc map[string]any
	if err := json.Unmarshal([]byte(r.stdout), &doc); err != nil {
		t.Fatalf("%v: %s", err, r.stdout)
	}
	if doc["schema_version"] != float64(1) {
		t.Errorf("schema_version %v", doc["schema_version"])
	}
	findings, _ := doc["findings"].([]any)
	if len(findings) == 0 {
		t.Fatalf("no findings: %s", r.stdout)
	}
	errorsSeen := 0
	for _, f := range findings {
		m := f.(map[string]any)
		for _, k := range []string{"level", "code", "object", "kind", "namespace", "name", "field", "message", "file", "line"} {
			if _, ok := m[k]; !ok {
				t.Errorf("finding without %q: %v", k, m)
			}
		}
		if m["object"] != m["kind"].(string)+"/"+m["namespace"].(string)+"/"+m["name"].(string) {
			t.Errorf("object %v is not kind/namespace/name", m["object"])
		}
		if m["level"] == "error" {
			errorsSeen++
		}
	}
	sum := doc["summary"].(map[string]any)
	for _, k := range []string{"errors", "warnings", "infos", "objects", "ignored"} {
		if _, ok := sum[k]; !ok {
			t.Errorf("summary without %q", k)
		}
	}
	if sum["errors"] != float64(errorsSeen) || errorsSeen == 0 || r.code != exitFindings {
		t.Errorf("summary errors %v, findings at error %d, exit %d", sum["errors"], errorsSeen, r.code)
	}
	clean := runCLI("", "lint", "-o", "json", "-f", rules("MR101", "good"))
	if !strings.Contains(clean.stdout, `"findings": []`) || !strings.Contains(clean.stdout, `"ignored": {}`) {
		t.Errorf("a clean run has empty lists, not null: %s", clean.stdout)
	}
}

// The table: a header, one line per finding, errors before warnings before
// info, then the summary.
func TestTable(t *testing.T) {
	t.Parallel()
	r := runCLI("", "lint", "-f", filepath.Join("..", "..", "lint", "testdata", "2018"), "-f", rules("MR104", "bad"))
	lines := strings.Split(strings.TrimRight(r.stdout, "\n"), "\n")
	if !strings.HasPrefix(lines[0], "LEVEL") || !strings.Contains(lines[0], "CODE") || !strings.Contains(lines[0], "MESSAGE") {
		t.Fatalf("header %q", lines[0])
	}
	rank := map[string]int{"error": 0, "warning": 1, "info": 2}
	last, n := -1, 0
	for _, l := range lines[1 : len(lines)-1] {
		level := strings.Fields(l)[0]
		if rank[level] < last {
			t.Errorf("%q out of order", l)
		}
		last = rank[level]
		n++
	}
	if n != 8 { // 2018: MR120, MR121, MR140, MR111, MR141 ×2; MR104 ×2
		t.Errorf("%d finding lines, want 8:\n%s", n, r.stdout)
	}
	if !strings.HasPrefix(lines[len(lines)-1], "5 errors, 1 warning, 2 info;") {
		t.Errorf("summary %q", lines[len(lines)-1])
	}
	if !strings.Contains(r.stdout, "[IST0118 KIA0601]") && !strings.Contains(runCLI("", "lint", "-f", rules("MR101", "bad")).stdout, "[IST0118 KIA0601]") {
		t.Error("the table does not name the Istio/Kiali codes")
	}
}

// The agent's binary must not link what meshrelease needs: k8s.io and
// istio.io would more than double it (DESIGN.md: bin/meshready ≤ 16 MiB).
func TestAgentLinksNoKubernetesOrIstio(t *testing.T) {
	t.Parallel()
	gobin := filepath.Join(runtime.GOROOT(), "bin", "go")
	if _, err := os.Stat(gobin); err != nil {
		t.Skipf("SKIPPED: no go tool at %s to list the agent's dependencies", gobin)
	}
	out, err := exec.Command(gobin, "list", "-deps", "../meshready").CombinedOutput()
	if err != nil {
		t.Fatalf("go list: %v\n%s", err, out)
	}
	var bad []string
	for _, p := range strings.Fields(string(out)) {
		if strings.HasPrefix(p, "k8s.io/") || strings.HasPrefix(p, "istio.io/") || strings.HasPrefix(p, "sigs.k8s.io/") {
			bad = append(bad, p)
		}
	}
	if len(bad) > 0 {
		t.Errorf("cmd/meshready links %d Kubernetes/Istio packages, e.g. %v", len(bad), bad[:min(5, len(bad))])
	}
	if !strings.Contains(string(out), "github.com/alecthomas/kong") {
		t.Errorf("go list -deps looks wrong (no kong):\n%.500s", out)
	}
}

// --namespace through the command line: kubeconfig, one list per kind, the
// rules, the exit code; an API server that refuses is exit 2.
func TestLintNamespace(t *testing.T) {
	t.Parallel()
	service := `{"metadata":{"name":"cart","namespace":"shop"},"spec":{"selector":{"app":"cart"},"ports":[{"name":"web","port":80}]}}`
	var mu sync.Mutex
	var paths []string
	// TLS: clientcmd sends a kubeconfig's credentials over TLS only.
	api := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		paths = append(paths, r.URL.Path)
		mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		if r.Header.Get("Authorization") != "Bearer t0ken" {
			w.WriteHeader(http.StatusUnauthorized)
			_, _ = w.Write([]byte(`{"kind":"Status","apiVersion":"v1","status":"Failure","reason":"Unauthorized","code":401,"message":"Unauthorized"}`))
			return
		}
		parts := strings.Split(strings.Trim(r.URL.Path, "/"), "/")
		resource := parts[len(parts)-1]
		items := "[]"
		if resource == "services" {
			items = "[" + service + "]"
		}
		kind := map[string]string{"services": "ServiceList", "deployments": "DeploymentList", "pods": "PodList", "destinationrules": "DestinationRuleList", "virtualservices": "VirtualServiceList"}[resource]
		fmt.Fprintf(w, `{"kind":%q,"apiVersion":%q,"metadata":{},"items":%s}`, kind, strings.Join(parts[1:len(parts)-3], "/"), items)
	}))
	defer api.Close()
	dir := t.TempDir()
	kubeconfig := func(name, token string) string {
		p := filepath.Join(dir, name)
		text := fmt.Sprintf("apiVersion: v1\nkind: Config\nclusters: [{name: c, cluster: {server: %q, insecure-skip-tls-verify: true}}]\nusers: [{name: u, user: {token: %s}}]\ncontexts: [{name: x, context: {cluster: c, user: u}}]\ncurrent-context: x\n", api.URL, token)
		if err := os.WriteFile(p, []byte(text), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	r := runCLI("", "lint", "-n", "shop", "--kubeconfig", kubeconfig("good", "t0ken"), "-o", "json")
	var doc lint.JSONReport
	if err := json.Unmarshal([]byte(r.stdout), &doc); err != nil || r.code != exitFindings {
		t.Fatalf("exit %d (%v): %s %s", r.code, err, r.stdout, r.stderr)
	}
	if len(doc.Findings) != 1 || doc.Findings[0].Object != "Service/shop/cart" || doc.Findings[0].Code != "MR101" || doc.Findings[0].File != "" {
		t.Errorf("findings %+v", doc.Findings)
	}
	mu.Lock()
	if len(paths) != 5 {
		t.Errorf("%d requests, want one list per kind: %v", len(paths), paths)
	}
	mu.Unlock()
	r = runCLI("", "lint", "-n", "shop", "--kubeconfig", kubeconfig("bad", "wrong"))
	if r.code != exitBadInput || !strings.Contains(r.stderr, "list services in namespace shop") || strings.Contains(r.stderr, "t0ken") {
		t.Errorf("refused: exit %d, stderr %q", r.code, r.stderr)
	}
}
