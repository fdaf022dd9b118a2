package v1alpha1

import (
	"encoding/json"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/yaml"
)

// The committed CRD has exactly the fields of the Go types: a field added,
// renamed or removed without `make generate` fails here (markers are
// `make generate-check`'s).
func TestCRDMatchesTypes(t *testing.T) {
	raw, err := os.ReadFile(filepath.Join("..", "..", "config", "crd", "bases", "meshready.io_releases.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var crd struct {
		Spec struct {
			Versions []struct {
				Name   string `json:"name"`
				Schema struct {
					OpenAPIV3Schema crdSchema `json:"openAPIV3Schema"`
				} `json:"schema"`
			} `json:"versions"`
		} `json:"spec"`
	}
	if err := yaml.Unmarshal(raw, &crd); err != nil {
		t.Fatal(err)
	}
	if len(crd.Spec.Versions) != 1 || crd.Spec.Versions[0].Name != GroupVersion.Version {
		t.Fatalf("CRD versions %+v, want just %s", crd.Spec.Versions, GroupVersion.Version)
	}
	var inCRD []string
	crd.Spec.Versions[0].Schema.OpenAPIV3Schema.paths("", &inCRD)
	var inGo []string
	goPaths(reflect.TypeFor[Release](), "", &inGo)
	slices.Sort(inCRD)
	slices.Sort(inGo)
	for _, p := range inGo {
		if !slices.Contains(inCRD, p) {
			t.Errorf("%s is in the Go types, not in the CRD: run make generate", p)
		}
	}
	for _, p := range inCRD {
		if !slices.Contains(inGo, p) {
			t.Errorf("%s is in the CRD, not in the Go types: run make generate", p)
		}
	}
}

type crdSchema struct {
	Properties map[string]crdSchema `json:"properties"`
	Items      *crdSchema           `json:"items"`
}

func (s crdSchema) paths(prefix string, out *[]string) {
	for name, sub := range s.Properties {
		if prefix == "" && (name == "metadata" || name == "apiVersion" || name == "kind") {
			continue
		}
		p := prefix + "." + name
		*out = append(*out, p)
		sub.paths(p, out)
	}
	if s.Items != nil {
		s.Items.paths(prefix+"[]", out)
	}
}

var leaves = []reflect.Type{reflect.TypeFor[metav1.Time](), reflect.TypeFor[metav1.Duration]()}

func goPaths(t reflect.Type, prefix string, out *[]string) {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	if slices.Contains(leaves, t) {
		return
	}
	switch t.Kind() {
	case reflect.Slice:
		goPaths(t.Elem(), prefix+"[]", out)
	case reflect.Struct:
		for f := range t.Fields() {
			tag := f.Tag.Get("json")
			name, _, _ := strings.Cut(tag, ",")
			if name == "-" || !f.IsExported() {
				continue
			}
			if f.Anonymous && name == "" {
				if f.Type == reflect.TypeFor[metav1.TypeMeta]() {
					continue
				}
				goPaths(f.Type, prefix, out)
				continue
			}
			if prefix == "" && name == "metadata" {
				continue
			}
			p := prefix + "." + name
			*out = append(*out, p)
			goPaths(f.Type, p, out)
		}
	}
}

// A Release built in Go (the CLI's start, the controller's tests) leaves
// unset durations out, so the CRD's defaults apply instead of "0s".
func TestZeroDurationsOmitted(t *testing.T) {
	b, err := json.Marshal(Release{Spec: ReleaseSpec{Service: "s", To: ReleaseTarget{Version: "v2", Image: "i"}}})
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(b), `"0s"`) {
		t.Errorf("zero durations serialized: %s", b)
	}
	b, _ = json.Marshal(ReleaseSpec{Interval: metav1.Duration{Duration: time.Minute}})
	if !strings.Contains(string(b), `"interval":"1m0s"`) {
		t.Errorf("a set interval is lost: %s", b)
	}
}
