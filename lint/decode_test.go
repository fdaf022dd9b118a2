package lint

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"unicode/utf8"
)

const goodDeployment = `apiVersion: apps/v1
kind: Deployment
metadata:
  name: cart-v1
spec:
  selector:
    matchLabels: {app: cart}
  template:
    metadata:
      labels: {app: cart}
    spec:
      containers:
      - name: app
        image: cart
`

// Every way a manifest can fail to read names its file and the line to fix.
func TestDecodeErrorsNameFileAndLine(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name, yaml string
		line       int
		want       string
	}{
		{"unknown field in a container", strings.Replace(goodDeployment, "image: cart", "image: cart\n        imagePullPolicyy: Always", 1), 15,
			`Deployment: unknown field "spec.template.spec.containers[0].imagePullPolicyy"`},
		{"field in the wrong case (the API is case-sensitive)", strings.Replace(goodDeployment, "  selector:", "  Selector:", 1), 6, `unknown field "spec.Selector"`},
		{"wrong type", strings.Replace(goodDeployment, "spec:\n  selector", "spec:\n  replicas: two\n  selector", 1), 6, "cannot unmarshal string"},
		{"duplicated key", strings.Replace(goodDeployment, "  name: cart-v1", "  name: cart-v1\n  name: cart-v2", 1), 5, `duplicate field "name" (first at line 4)`},
		{"YAML syntax, second document", "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: a}\n---\napiVersion: v1\nkind: Service\nmetadata:\n  name: x: y\n", 8, "yaml: line 8"},
		{"tab indentation", "apiVersion: v1\nkind: Service\nmetadata:\n\tname: x\n", 4, "yaml: line 4"},
		{"unknown field in a DestinationRule subset", "apiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata: {name: d}\nspec:\n  host: cart\n  subsets:\n  - name: v1\n    label: {version: v1}\n", 8,
			`DestinationRule: unknown field "spec.subsets[0].label" (Subset has no such field)`},
		{"misspelt VirtualService weight", "apiVersion: networking.istio.io/v1beta1\nkind: VirtualService\nmetadata: {name: v}\nspec:\n  hosts: [cart]\n  http:\n  - route:\n    - destination: {host: cart}\n      wieght: 100\n", 9,
			`unknown field "spec.http[0].route[0].wieght"`},
		{"unknown top-level field of an Istio object", "apiVersion: networking.istio.io/v1alpha3\nkind: VirtualService\nmetadata: {name: v}\nspec: {hosts: [cart]}\nsepc: {}\n", 5, `unknown field "sepc"`},
		{"no name", "apiVersion: v1\nkind: Service\nmetadata:\n  namespace: shop\nspec: {}\n", 3, "metadata.name is missing"},
		{"no kind", "apiVersion: v1\nmetadata: {name: x}\n", 1, "apiVersion and kind are required"},
		{"not an object", "- a\n- b\n", 1, "must be an object"},
		{"unknown field in a List item", "apiVersion: v1\nkind: List\nitems:\n- apiVersion: v1\n  kind: Service\n  metadata: {name: s}\n  spec:\n    portz: []\n", 8, `unknown field "spec.portz"`},
		{"old Deployment: a field apps/v1 has but extensions/v1beta1 has not", strings.Replace(strings.Replace(goodDeployment, "apps/v1", "extensions/v1beta1", 1), "spec:\n  selector", "spec:\n  minReadySeconds: 1\n  revisionHistoryLimitt: 2\n  selector", 1), 7, `unknown field "spec.revisionHistoryLimitt"`},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			var set Set
			errs := Decode("dir/app.yaml", []byte(c.yaml), &set)
			if len(errs) != 1 {
				t.Fatalf("errors %v, want one", errs)
			}
			e := errs[0]
			if e.File != "dir/app.yaml" || e.Line != c.line || !strings.Contains(e.Msg, c.want) {
				t.Errorf("got %q (line %d), want line %d and %q", e.Error(), e.Line, c.line, c.want)
			}
			if strings.ContainsAny(e.Error(), "\n\r") {
				t.Errorf("error is not one line: %q", e.Error())
			}
			if !strings.HasPrefix(e.Error(), "dir/app.yaml:") {
				t.Errorf("error does not start with file:line: %q", e.Error())
			}
		})
	}
}

// Old apiVersions are decoded in their own schema: rollbackTo exists in
// extensions/v1beta1 (and is accepted there), not in apps/v1.
func TestOldDeploymentInItsOwnSchema(t *testing.T) {
	t.Parallel()
	withRollback := strings.Replace(goodDeployment, "spec:\n  selector", "spec:\n  rollbackTo: {revision: 1}\n  selector", 1)
	var old Set
	if errs := Decode("a.yaml", []byte(strings.Replace(withRollback, "apps/v1", "extensions/v1beta1", 1)), &old); len(errs) != 0 || len(old.Deployments) != 1 {
		t.Fatalf("extensions/v1beta1 with rollbackTo: %v", errs)
	}
	if d := old.Deployments[0]; d.Obj.APIVersion != "extensions/v1beta1" || d.PodLabels()["app"] != "cart" || d.Spec.Template.Spec.Containers[0].Image != "cart" {
		t.Errorf("read as %+v", d.Obj)
	}
	var cur Set
	if errs := Decode("a.yaml", []byte(withRollback), &cur); len(errs) != 1 || !strings.Contains(errs[0].Msg, "rollbackTo") {
		t.Errorf("apps/v1 with rollbackTo: %v, want an unknown field", errs)
	}
}

// Several documents, Lists, comments, empty documents and kinds no rule
// looks at (counted), in one stream.
func TestDecodeStream(t *testing.T) {
	t.Parallel()
	stream := `# leading comment, then an empty document
---
--- # a separator with a comment
apiVersion: v1
kind: ConfigMap
metadata: {name: a}
---
apiVersion: v1
kind: List
items:
- apiVersion: v1
  kind: Service
  metadata: {name: s1, namespace: shop}
  spec: {ports: [{name: http, port: 80}]}
- apiVersion: v1
  kind: ConfigMap
  metadata: {name: b}
- apiVersion: networking.istio.io/v1alpha3
  kind: DestinationRule
  metadata: {name: d}
  spec: {host: s1, subsets: [{name: v1, labels: {version: v1}}]}
---
apiVersion: v1
kind: ServiceList
items:
- apiVersion: v1
  kind: Service
  metadata: {name: s2}
  spec: {ports: [{name: http, port: 80}]}
---
` + goodDeployment + `...
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: v}
spec: {hosts: [s1]}
`
	var set Set
	if errs := Decode("s.yaml", []byte(stream), &set); len(errs) != 0 {
		t.Fatal(errs)
	}
	if len(set.Services) != 2 || len(set.Deployments) != 1 || len(set.DestinationRules) != 1 || len(set.VirtualServices) != 1 {
		t.Fatalf("services %d deployments %d DRs %d VSs %d", len(set.Services), len(set.Deployments), len(set.DestinationRules), len(set.VirtualServices))
	}
	if set.Ignored["v1/ConfigMap"] != 2 || len(set.Ignored) != 1 {
		t.Errorf("ignored %v, want v1/ConfigMap ×2", set.Ignored)
	}
	lines := strings.Split(stream, "\n")
	for _, o := range []Object{set.Services[0].Obj, set.Services[1].Obj, set.DestinationRules[0].Obj, set.Deployments[0].Obj, set.VirtualServices[0].Obj} {
		if o.Line < 1 || !strings.Contains(lines[o.Line-1], "apiVersion") {
			t.Errorf("%s: line %d is not the object's first line", o, o.Line)
		}
	}
	if s := set.Services[1].Obj; s.Namespace != DefaultNamespace || s.Ref() != "Service/default/s2" {
		t.Errorf("a manifest without namespace: %s", s.Ref())
	}
	if got := set.DestinationRules[0].Spec.GetSubsets()[0].GetLabels()["version"]; got != "v1" {
		t.Errorf("DestinationRule spec not decoded: %q", got)
	}
}

// YAML 1.1 as kubectl reads it: an unquoted yes is a boolean, so a label
// value yes is a type error, as the API server would say.
func TestDecodeReadsYAMLAsKubectl(t *testing.T) {
	t.Parallel()
	var set Set
	errs := Decode("a.yaml", []byte(strings.Replace(goodDeployment, "labels: {app: cart}", "labels: {app: cart, canary: yes}", 1)), &set)
	if len(errs) != 1 || !strings.Contains(errs[0].Msg, "cannot unmarshal bool") {
		t.Errorf("errors %v", errs)
	}
}

func TestLoadPaths(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	write := func(name, text string) {
		if err := os.MkdirAll(filepath.Dir(filepath.Join(dir, name)), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, name), []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("a.yaml", goodDeployment)
	write("sub/b.yml", strings.Replace(goodDeployment, "cart-v1", "cart-v2", 1))
	write("sub/c.json", `{"apiVersion":"v1","kind":"Service","metadata":{"name":"cart"},"spec":{"ports":[{"name":"http","port":80}]}}`)
	write("README.md", "not a manifest: skipped in a directory")
	set, err := Load([]string{dir, "-"}, strings.NewReader(strings.Replace(goodDeployment, "cart-v1", "cart-v3", 1)))
	if err != nil {
		t.Fatal(err)
	}
	if len(set.Deployments) != 3 || len(set.Services) != 1 {
		t.Fatalf("deployments %d services %d", len(set.Deployments), len(set.Services))
	}
	if set.Deployments[2].Obj.File != StdinName {
		t.Errorf("stdin's object says file %q", set.Deployments[2].Obj.File)
	}
	_, err = Load([]string{filepath.Join(dir, "nope.yaml"), filepath.Join(dir, "README.md")}, nil)
	ie, ok := err.(InputErrors)
	if !ok || len(ie) != 2 || !strings.Contains(ie[0].Error(), "nope.yaml") || ie[1].File != filepath.Join(dir, "README.md") {
		t.Errorf("missing file and a file that is not a manifest: %v", err)
	}
	empty := t.TempDir()
	if _, err := Load([]string{empty}, nil); err == nil || !strings.Contains(err.Error(), "no .yaml") {
		t.Errorf("empty directory: %v", err)
	}
	big := bytes.Repeat([]byte("# x\n"), maxManifestBytes/4+1)
	if _, err := Load([]string{"-"}, bytes.NewReader(big)); err == nil || !strings.Contains(err.Error(), "not a manifest") {
		t.Errorf("a huge input: %v", err)
	}
}

func TestSplitDocuments(t *testing.T) {
	t.Parallel()
	cases := []struct {
		in         string
		firstLines []int
	}{
		{"a: 1\n", []int{1}},
		{"a: 1\n---\nb: 2\n", []int{1, 3}},
		{"---\na: 1\n", []int{1, 2}},
		{"a: 1\r\n---\r\nb: 2\r\n", []int{1, 3}},
		{"a: |\n  ---not a separator\n---x\n", []int{1}},
		{"a: 1\n--- # c\n\n\nb: 2", []int{1, 3}},
		{"a: 1\n---", []int{1, 3}},
	}
	for _, c := range cases {
		var got []int
		for _, d := range splitDocuments([]byte(c.in)) {
			got = append(got, d.firstLine)
		}
		if !equalInts(got, c.firstLines) {
			t.Errorf("%q: first lines %v, want %v", c.in, got, c.firstLines)
		}
	}
}

func equalInts(a, b []int) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// FuzzDecode: any input is read without a panic; every error names the file
// with a line inside it (or none), on one line; every object has a line in
// the file and a name; and linting what was read does not panic either.
func FuzzDecode(f *testing.F) {
	seeds, _ := filepath.Glob(filepath.Join("testdata", "*", "*", "*.yaml"))
	more, _ := filepath.Glob(filepath.Join("testdata", "*", "*.yaml"))
	for _, p := range append(seeds, more...) {
		if b, err := os.ReadFile(p); err == nil {
			f.Add(b)
		}
	}
	f.Add([]byte(goodDeployment))
	f.Add([]byte("a: &x [*x]\n"))
	f.Add([]byte("apiVersion: v1\nkind: List\nitems: [{apiVersion: v1, kind: List, items: []}]\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		var set Set
		errs := Decode("f.yaml", data, &set)
		lines := bytes.Count(data, []byte("\n")) + 2
		for _, e := range errs {
			if e.File != "f.yaml" || e.Line < 0 || e.Line > lines {
				t.Fatalf("error %q: line %d of %d", e.Error(), e.Line, lines)
			}
			if strings.ContainsAny(e.Msg, "\n\r") || !utf8.ValidString(e.Msg) {
				t.Fatalf("error not one clean line: %q", e.Msg)
			}
		}
		objs := []Object{}
		for _, s := range set.Services {
			objs = append(objs, s.Obj)
		}
		for _, d := range set.Deployments {
			objs = append(objs, d.Obj)
		}
		for _, d := range set.DestinationRules {
			objs = append(objs, d.Obj)
		}
		for _, v := range set.VirtualServices {
			objs = append(objs, v.Obj)
		}
		for _, o := range objs {
			if o.Name == "" || o.Line < 1 || o.Line > lines {
				t.Fatalf("object %s: line %d of %d", o, o.Line, lines)
			}
		}
		set.PodsKnown = true
		r := Check(&set, DefaultOptions())
		for _, fd := range r.Findings {
			if fd.Line < 1 || fd.Line > lines {
				t.Fatalf("finding %+v: line outside the file", fd)
			}
		}
	})
}
