package lint

import (
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	yaml "go.yaml.in/yaml/v3"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// loadFile lints one testdata file; an input error fails the test.
func loadFile(t *testing.T, path string, podsKnown bool) *Report {
	t.Helper()
	set, err := Load([]string{path}, nil)
	if err != nil {
		t.Fatalf("%s does not load: %v", path, err)
	}
	set.PodsKnown = podsKnown
	return Check(set, DefaultOptions())
}

// Every rule has testdata/rules/<code>/bad.yaml, which breaks that rule and
// no other, and good.yaml, which breaks nothing (and so keeps that rule).
func TestEveryRuleBothWays(t *testing.T) {
	t.Parallel()
	for _, rule := range Rules {
		t.Run(rule.Code, func(t *testing.T) {
			t.Parallel()
			dir := filepath.Join("testdata", "rules", rule.Code)
			bad := loadFile(t, filepath.Join(dir, "bad.yaml"), rule.ClusterOnly)
			if got := bad.Codes(); !slices.Equal(got, []string{rule.Code}) {
				t.Errorf("bad.yaml: codes %v, want only %s:\n%s", got, rule.Code, tableOf(t, bad))
			}
			for _, f := range bad.Findings {
				if f.Level != rule.Level || !slices.Equal(f.PeerCodes, rule.PeerCodes) {
					t.Errorf("finding %+v: want level %s and peer codes %v", f, rule.Level, rule.PeerCodes)
				}
				if f.Object != f.Kind+"/"+f.NS+"/"+f.Name || f.Name == "" || f.NS == "" || f.Field == "" || len(f.Message) < 40 {
					t.Errorf("finding %+v: want object Kind/namespace/name, a field and a message that says the fix", f)
				}
				if f.File == "" || f.Line <= 0 {
					t.Errorf("finding %+v: want the file and line of the field", f)
				}
			}
			if good := loadFile(t, filepath.Join(dir, "good.yaml"), rule.ClusterOnly); len(good.Findings) > 0 {
				t.Errorf("good.yaml has findings:\n%s", tableOf(t, good))
			}
		})
	}
}

// A finding's line is its field's line when the field is written: the line
// holds the field's last key.
func TestFindingLineIsTheField(t *testing.T) {
	t.Parallel()
	keyRE := regexp.MustCompile(`([A-Za-z]+)(\[\d+\])*$`)
	checked := 0
	for _, rule := range Rules {
		path := filepath.Join("testdata", "rules", rule.Code, "bad.yaml")
		lines := strings.Split(readFile(t, path), "\n")
		set, err := Load([]string{path}, nil)
		if err != nil {
			t.Fatal(err)
		}
		set.PodsKnown = rule.ClusterOnly
		for _, f := range Check(set, DefaultOptions()).Findings {
			obj := objectByRef(set, f.Object)
			if obj == nil || f.Line < obj.Line || f.Line > len(lines) {
				t.Errorf("%s: finding %+v: line outside its object", path, f)
				continue
			}
			if _, whole := fieldLine(resolveObjectNode(t, obj), f.Field); !whole {
				continue // not written: the line is its nearest written parent's
			}
			key := keyRE.FindStringSubmatch(f.Field)[1]
			if text := lines[f.Line-1]; !strings.Contains(text, key+":") {
				t.Errorf("%s:%d: %q is not field %s (%s)", path, f.Line, text, f.Field, f.Code)
			}
			checked++
		}
	}
	if checked < len(Rules)/2 {
		t.Errorf("only %d findings had their field written: the test checks little", checked)
	}
}

func objectByRef(s *Set, ref string) *Object {
	var objs []*Object
	for _, o := range s.Services {
		objs = append(objs, &o.Obj)
	}
	for _, o := range s.Deployments {
		objs = append(objs, &o.Obj)
	}
	for _, o := range s.DestinationRules {
		objs = append(objs, &o.Obj)
	}
	for _, o := range s.VirtualServices {
		objs = append(objs, &o.Obj)
	}
	for _, o := range objs {
		if o.Ref() == ref {
			return o
		}
	}
	return nil
}

func resolveObjectNode(t *testing.T, o *Object) *yaml.Node {
	t.Helper()
	if o.node == nil {
		t.Fatalf("%s has no node", o)
	}
	return o.node
}

// The 2018-era manifest of the issue: extensions/v1beta1, app/version labels,
// only a livenessProbe on :54321/health, no readinessProbe, Istio v1alpha3.
// Each finding it deserves, on the object it is about.
func TestManifestFrom2018(t *testing.T) {
	t.Parallel()
	r := loadFile(t, filepath.Join("testdata", "2018", "reviews.yaml"), false)
	want := []string{
		"MR111 Deployment/default/reviews-v1 metadata.labels",                                             // the Deployment itself has no labels
		"MR120 Deployment/default/reviews-v1 spec.template.spec.containers[0].readinessProbe",             // no readiness probe
		"MR121 Deployment/default/reviews-v1 spec.template.spec.containers[0].livenessProbe.httpGet.path", // liveness on /health
		"MR140 Deployment/default/reviews-v1 apiVersion",                                                  // extensions/v1beta1
		"MR141 DestinationRule/default/reviews apiVersion",                                                // v1alpha3
		"MR141 VirtualService/default/reviews apiVersion",
	}
	var got []string
	for _, f := range r.Findings {
		got = append(got, f.Code+" "+f.Object+" "+f.Field)
	}
	slices.Sort(got)
	if !slices.Equal(got, want) {
		t.Errorf("findings:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	for _, f := range r.Findings {
		if f.Code == "MR140" && !strings.Contains(f.Message, "{app: reviews, version: v1}") {
			t.Errorf("MR140 should give the selector to add (the old API's default): %s", f.Message)
		}
	}
}

// The repo's own examples are what a team copies: they must be clean.
func TestImagesK8sExamplesPass(t *testing.T) {
	t.Parallel()
	r := loadFile(t, filepath.Join("..", "images", "k8s"), false)
	if len(r.Findings) > 0 || r.Objects < 2 {
		t.Errorf("images/k8s: %d objects, findings:\n%s", r.Objects, tableOf(t, r))
	}
}

func TestRuleTable(t *testing.T) {
	t.Parallel()
	codeRE := regexp.MustCompile(`^MR1\d\d$`)
	peerRE := regexp.MustCompile(`^(IST|KIA)\d{4}$`)
	seen := map[string]bool{}
	readme := readFile(t, filepath.Join("..", "README.md"))
	for i, r := range Rules {
		if !codeRE.MatchString(r.Code) || seen[r.Code] || r.Title == "" || r.check == nil {
			t.Errorf("rule %d %q: want a unique MR1xx code, a title and a check", i, r.Code)
		}
		if i > 0 && Rules[i-1].Code >= r.Code {
			t.Errorf("rules out of code order at %s", r.Code)
		}
		seen[r.Code] = true
		for _, p := range r.PeerCodes {
			if !peerRE.MatchString(p) {
				t.Errorf("%s: peer code %q", r.Code, p)
			}
		}
		if !strings.Contains(readme, "`"+r.Code+"`") {
			t.Errorf("README.md's \"Onboarding a service\" does not list %s", r.Code)
		}
	}
}

// MR133's logic beyond the testdata: what counts as a running pod and as
// traffic.
func TestRoutedSubsetPods(t *testing.T) {
	t.Parallel()
	base := filepath.Join("testdata", "rules", "MR133", "good.yaml")
	cases := []struct {
		name  string
		edit  func(s *Set)
		finds bool
	}{
		{"v2 pod running", func(*Set) {}, false},
		{"pods not known (manifests)", func(s *Set) { s.PodsKnown = false; s.Pods = nil }, false},
		{"v2 pod failed", func(s *Set) { setPhase(s, "v2", "Failed") }, true},
		{"v2 pod in another namespace", func(s *Set) { movePods(s, "v2", "other") }, true},
		{"v2 pod without the Service's app label", func(s *Set) { relabel(s, "v2", "app", "cart-canary") }, true},
		{"v2 pod failed, weight 0", func(s *Set) { setPhase(s, "v2", "Failed"); s.VirtualServices[0].Spec.Http[0].Route[1].Weight = 0 }, false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			set, err := Load([]string{base}, nil)
			if err != nil {
				t.Fatal(err)
			}
			set.PodsKnown = true
			c.edit(set)
			r := Check(set, DefaultOptions())
			if got := slices.Contains(r.Codes(), "MR133"); got != c.finds {
				t.Errorf("MR133 found=%v, want %v:\n%s", got, c.finds, tableOf(t, r))
			}
		})
	}
}

// MR103 live: a Service whose pods come from no Deployment (a StatefulSet's)
// is not "selecting nothing" once the pods are known.
func TestServiceOverOtherPodsLive(t *testing.T) {
	t.Parallel()
	for _, live := range []bool{false, true} {
		set, err := Load([]string{filepath.Join("testdata", "rules", "MR103", "bad.yaml")}, nil)
		if err != nil {
			t.Fatal(err)
		}
		set.PodsKnown = live
		set.Pods = []*corev1.Pod{{ObjectMeta: metav1.ObjectMeta{Name: "carts-0", Namespace: "shop", Labels: map[string]string{"app": "carts"}}}}
		if got := slices.Contains(Check(set, DefaultOptions()).Codes(), "MR103"); got == live {
			t.Errorf("pods known %v: MR103 found %v", live, got)
		}
	}
}

func podsOf(s *Set, version string, do func(i int)) {
	for i, p := range s.Pods {
		if p.Labels["version"] == version {
			do(i)
		}
	}
}

func setPhase(s *Set, version, phase string) {
	podsOf(s, version, func(i int) { s.Pods[i].Status.Phase = corePhase(phase) })
}

func movePods(s *Set, version, ns string) {
	podsOf(s, version, func(i int) { s.Pods[i].Namespace = ns })
}

func relabel(s *Set, version, k, v string) {
	podsOf(s, version, func(i int) { s.Pods[i].Labels[k] = v })
}

func readFile(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func tableOf(t *testing.T, r *Report) string {
	t.Helper()
	var b strings.Builder
	if err := WriteTable(&b, r); err != nil {
		t.Fatal(err)
	}
	return b.String()
}

func corePhase(p string) corev1.PodPhase { return corev1.PodPhase(p) }
