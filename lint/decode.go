package lint

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"strconv"
	"strings"

	yaml "go.yaml.in/yaml/v3"
	"google.golang.org/protobuf/reflect/protoreflect"
	metaapi "istio.io/api/meta/v1alpha1"
	networking "istio.io/api/networking/v1alpha3"
	istiov1 "istio.io/client-go/pkg/apis/networking/v1"
	istiov1alpha3 "istio.io/client-go/pkg/apis/networking/v1alpha3"
	istiov1beta1 "istio.io/client-go/pkg/apis/networking/v1beta1"
	appsv1 "k8s.io/api/apps/v1"
	appsv1beta1 "k8s.io/api/apps/v1beta1"
	appsv1beta2 "k8s.io/api/apps/v1beta2"
	corev1 "k8s.io/api/core/v1"
	extv1beta1 "k8s.io/api/extensions/v1beta1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	sigsjson "sigs.k8s.io/json"
	sigsyaml "sigs.k8s.io/yaml"

	"github.com/meshready/meshready/internal/oneline"
)

// InputError is a manifest that could not be read: a YAML error, an unknown
// or duplicated field, a wrong type, an object without a name. It names the
// file and line so the fix is one jump away.
type InputError struct {
	File string
	Line int // 0: the file as a whole
	Msg  string
}

func (e *InputError) Error() string {
	if e.Line > 0 {
		return fmt.Sprintf("%s:%d: %s", e.File, e.Line, e.Msg)
	}
	return fmt.Sprintf("%s: %s", e.File, e.Msg)
}

// InputErrors is every InputError of one run, in input order.
type InputErrors []*InputError

func (es InputErrors) Error() string {
	parts := make([]string, len(es))
	for i, e := range es {
		parts[i] = e.Error()
	}
	return strings.Join(parts, "; ")
}

// document is one YAML document of a file and the line it starts on.
type document struct {
	text      []byte
	firstLine int
}

// splitDocuments cuts a YAML stream at its "---" lines as kubectl does (a
// separator line is "---" alone or followed by a comment), keeping each
// document's first line so errors can name lines of the file, not of the
// document.
func splitDocuments(data []byte) []document {
	var docs []document
	start, startLine, line := 0, 1, 1
	for pos := 0; pos <= len(data); {
		end := bytes.IndexByte(data[pos:], '\n')
		next := len(data) + 1
		if end >= 0 {
			end += pos
			next = end + 1
		} else {
			end = len(data)
		}
		text := bytes.TrimRight(data[pos:end], "\r")
		if isSeparator(text) {
			docs = append(docs, document{text: data[start:pos], firstLine: startLine})
			start, startLine = min(next, len(data)), line+1
		}
		pos = next
		line++
	}
	docs = append(docs, document{text: data[start:], firstLine: startLine})
	return docs
}

func isSeparator(line []byte) bool {
	if !bytes.HasPrefix(line, []byte("---")) {
		return false
	}
	rest := bytes.TrimSpace(line[3:])
	return len(rest) == 0 || rest[0] == '#'
}

// Decode reads every object of one file (multi-document YAML or JSON, and
// v1/List) into set, strictly: an unknown or duplicated field is an error,
// as in `kubectl apply --validate=strict`. It returns the errors in file
// order; objects that decoded are in set whatever the others did.
func Decode(file string, data []byte, set *Set) InputErrors {
	var errs InputErrors
	for _, doc := range splitDocuments(data) {
		errs = append(errs, decodeDocument(file, doc, set)...)
	}
	return errs
}

var yamlLineRE = regexp.MustCompile(`line (\d+)`)

// yamlError is a YAML parser's error with its line numbers moved from the
// document to the file.
func yamlError(file string, doc document, err error) *InputError {
	first := 0
	msg := yamlLineRE.ReplaceAllStringFunc(err.Error(), func(m string) string {
		n, _ := strconv.Atoi(m[len("line "):])
		n += doc.firstLine - 1
		if first == 0 {
			first = n
		}
		return "line " + strconv.Itoa(n)
	})
	if first == 0 {
		first = doc.firstLine
	}
	msg = strings.TrimPrefix(msg, "error converting YAML to JSON: ")
	return &InputError{File: file, Line: first, Msg: oneline.Cut(msg, 300)}
}

func decodeDocument(file string, doc document, set *Set) InputErrors {
	// The node tree gives lines (yaml v3); the JSON the API types decode
	// from comes from sigs.k8s.io/yaml, kubectl's own YAML reading (YAML
	// 1.1: yes/no are booleans there), so values mean what they mean to
	// the cluster.
	var node yaml.Node
	if err := yaml.Unmarshal(doc.text, &node); err != nil {
		return InputErrors{yamlError(file, doc, err)}
	}
	root := resolve(&node)
	if root == nil || root.Kind == 0 || root.Kind == yaml.DocumentNode || (root.Kind == yaml.ScalarNode && root.Tag == "!!null") {
		return nil // empty: only comments, or a trailing "---"
	}
	if errs := checkNodes(file, root, doc.firstLine-1); len(errs) > 0 {
		return errs
	}
	if root.Kind != yaml.MappingNode {
		return InputErrors{{File: file, Line: root.Line, Msg: "a document must be an object with apiVersion and kind"}}
	}
	raw, err := sigsyaml.YAMLToJSON(doc.text)
	if err != nil {
		return InputErrors{yamlError(file, doc, err)}
	}
	return decodeObject(file, raw, root, set)
}

// checkNodes moves every node's line by delta (document lines → file
// lines) and reports duplicated keys: the YAML reader kubectl uses keeps the
// last one silently, so the JSON decoder never sees them, yet a duplicated
// key is almost always a merge gone wrong (two "ports:", two "labels:").
func checkNodes(file string, n *yaml.Node, delta int) InputErrors {
	var errs InputErrors
	seen := map[*yaml.Node]bool{}
	var walk func(*yaml.Node)
	walk = func(n *yaml.Node) {
		if n == nil || seen[n] {
			return
		}
		seen[n] = true
		n.Line += delta
		for _, c := range n.Content {
			walk(c)
		}
		if n.Kind == yaml.MappingNode {
			first := map[string]int{}
			for i := 0; i+1 < len(n.Content); i += 2 {
				k := n.Content[i]
				if k.Kind != yaml.ScalarNode || k.Value == "<<" {
					continue
				}
				if line, dup := first[k.Value]; dup {
					errs = append(errs, &InputError{File: file, Line: k.Line, Msg: fmt.Sprintf("duplicate field %q (first at line %d): the reader keeps only the last one", k.Value, line)})
					continue
				}
				first[k.Value] = k.Line
			}
		}
	}
	walk(n)
	return errs
}

type typeAndItems struct {
	APIVersion string            `json:"apiVersion"`
	Kind       string            `json:"kind"`
	Items      []json.RawMessage `json:"items"`
}

func decodeObject(file string, raw []byte, node *yaml.Node, set *Set) InputErrors {
	var tm typeAndItems
	if err := json.Unmarshal(raw, &tm); err != nil {
		return InputErrors{{File: file, Line: node.Line, Msg: "apiVersion, kind or items has the wrong type: " + oneline.Cut(err.Error(), 200)}}
	}
	if tm.APIVersion == "" || tm.Kind == "" {
		return InputErrors{{File: file, Line: node.Line, Msg: "not a Kubernetes object: apiVersion and kind are required"}}
	}
	if tm.Kind == "List" || (strings.HasSuffix(tm.Kind, "List") && tm.Items != nil) {
		var errs InputErrors
		items, _ := mapValue(node, "items")
		for i, item := range tm.Items {
			itemNode := node
			if items != nil && items.Kind == yaml.SequenceNode && i < len(items.Content) {
				itemNode = resolve(items.Content[i])
			}
			errs = append(errs, decodeObject(file, item, itemNode, set)...)
		}
		return errs
	}
	d := objectDecoder{file: file, raw: raw, node: node, apiVersion: tm.APIVersion, kind: tm.Kind}
	switch tm.APIVersion + "/" + tm.Kind {
	case "v1/Service":
		var s corev1.Service
		if d.strict(&s) && d.named(s.ObjectMeta) {
			set.Services = append(set.Services, &Service{Obj: d.object(s.ObjectMeta), Service: s})
		}
	case "v1/Pod":
		// A cluster snapshot's pods: only the cluster rules read them,
		// and only when the set says the pods are all known.
		var p corev1.Pod
		if d.strict(&p) && d.named(p.ObjectMeta) {
			if p.Namespace == "" {
				p.Namespace = DefaultNamespace
			}
			set.Pods = append(set.Pods, &p)
		}
	case "apps/v1/Deployment":
		var dep appsv1.Deployment
		if d.strict(&dep) && d.named(dep.ObjectMeta) {
			set.Deployments = append(set.Deployments, &Deployment{Obj: d.object(dep.ObjectMeta), Deployment: dep})
		}
	case "extensions/v1beta1/Deployment":
		d.oldDeployment(&extv1beta1.Deployment{}, set)
	case "apps/v1beta1/Deployment":
		d.oldDeployment(&appsv1beta1.Deployment{}, set)
	case "apps/v1beta2/Deployment":
		d.oldDeployment(&appsv1beta2.Deployment{}, set)
	case "networking.istio.io/v1/DestinationRule":
		var dr istiov1.DestinationRule
		d.destinationRule(&dr, &dr.ObjectMeta, &dr.Spec, set)
	case "networking.istio.io/v1beta1/DestinationRule":
		var dr istiov1beta1.DestinationRule
		d.destinationRule(&dr, &dr.ObjectMeta, &dr.Spec, set)
	case "networking.istio.io/v1alpha3/DestinationRule":
		var dr istiov1alpha3.DestinationRule
		d.destinationRule(&dr, &dr.ObjectMeta, &dr.Spec, set)
	case "networking.istio.io/v1/VirtualService":
		var vs istiov1.VirtualService
		d.virtualService(&vs, &vs.ObjectMeta, &vs.Spec, set)
	case "networking.istio.io/v1beta1/VirtualService":
		var vs istiov1beta1.VirtualService
		d.virtualService(&vs, &vs.ObjectMeta, &vs.Spec, set)
	case "networking.istio.io/v1alpha3/VirtualService":
		var vs istiov1alpha3.VirtualService
		d.virtualService(&vs, &vs.ObjectMeta, &vs.Spec, set)
	default:
		set.ignore(tm.APIVersion, tm.Kind)
	}
	return d.errs
}

// objectDecoder decodes one object and collects its errors.
type objectDecoder struct {
	file, apiVersion, kind string
	raw                    []byte
	node                   *yaml.Node
	errs                   InputErrors
}

func (d *objectDecoder) fail(path, msg string) {
	line := d.node.Line
	if path != "" {
		if l := lineIn(d.node, path); l > 0 {
			line = l
		}
	}
	d.errs = append(d.errs, &InputError{File: d.file, Line: line, Msg: d.kind + ": " + oneline.Cut(msg, 300)})
}

// goFieldRE finds the field path in encoding/json's type errors ("Go struct
// field Deployment.spec.replicas of type int32").
var goFieldRE = regexp.MustCompile(`Go struct field [^ .]+\.([^ ]+) of type`)

// strict decodes the object as the API server does with strict field
// validation: case-sensitive names, no unknown and no duplicated fields.
// It reports every strict error and returns whether the object is usable.
func (d *objectDecoder) strict(into any) bool {
	strictErrs, err := sigsjson.UnmarshalStrict(d.raw, into)
	if err != nil {
		path := ""
		if m := goFieldRE.FindStringSubmatch(err.Error()); m != nil {
			path = m[1]
		}
		d.fail(path, err.Error())
		return false
	}
	for _, se := range strictErrs {
		path := ""
		var fe sigsjson.FieldError
		if errors.As(se, &fe) {
			path = fe.FieldPath()
		}
		d.fail(path, se.Error())
	}
	return len(strictErrs) == 0
}

func (d *objectDecoder) named(meta metav1.ObjectMeta) bool {
	if meta.Name == "" {
		d.fail("metadata", "metadata.name is missing: every object needs a name")
		return false
	}
	return true
}

func (d *objectDecoder) object(meta metav1.ObjectMeta) Object {
	ns := meta.Namespace
	if ns == "" {
		ns = DefaultNamespace
	}
	return Object{
		Kind: d.kind, APIVersion: d.apiVersion, Namespace: ns, Name: meta.Name,
		File: d.file, Line: d.node.Line, node: d.node,
	}
}

// oldDeployment decodes a Deployment strictly in the old apiVersion it was
// written in (so its own fields are checked, e.g. rollbackTo), then reads it
// in apps/v1's shape for the rules: the fields the rules look at are the
// same in every version.
func (d *objectDecoder) oldDeployment(old any, set *Set) {
	if !d.strict(old) {
		return
	}
	var dep appsv1.Deployment
	if err := sigsjson.UnmarshalCaseSensitivePreserveInts(d.raw, &dep); err != nil {
		d.fail("", err.Error())
		return
	}
	if d.named(dep.ObjectMeta) {
		set.Deployments = append(set.Deployments, &Deployment{Obj: d.object(dep.ObjectMeta), Deployment: dep})
	}
}

// istioSpec checks an Istio object's spec and status for unknown fields.
// istio.io/api's JSON decoding allows unknown fields (so does the API
// server's CRD schema pruning, silently): a misspelled "subsets" would be
// dropped without a word, which is the very mistake a lint exists for.
func (d *objectDecoder) istioSpec(spec protoreflect.MessageDescriptor) {
	if n, _ := mapValue(d.node, "spec"); n != nil {
		walkProto(n, spec, "spec", d.fail)
	}
	if n, _ := mapValue(d.node, "status"); n != nil {
		walkProto(n, (&metaapi.IstioStatus{}).ProtoReflect().Descriptor(), "status", d.fail)
	}
}

func (d *objectDecoder) destinationRule(into any, meta *metav1.ObjectMeta, spec *networking.DestinationRule, set *Set) {
	ok := d.strict(into)
	d.istioSpec(spec.ProtoReflect().Descriptor())
	if ok && len(d.errs) == 0 && d.named(*meta) {
		set.DestinationRules = append(set.DestinationRules, &DestinationRule{Obj: d.object(*meta), Meta: *meta, Spec: spec})
	}
}

func (d *objectDecoder) virtualService(into any, meta *metav1.ObjectMeta, spec *networking.VirtualService, set *Set) {
	ok := d.strict(into)
	d.istioSpec(spec.ProtoReflect().Descriptor())
	if ok && len(d.errs) == 0 && d.named(*meta) {
		set.VirtualServices = append(set.VirtualServices, &VirtualService{Obj: d.object(*meta), Meta: *meta, Spec: spec})
	}
}

// walkProto reports every key under node that is not a field of md (by its
// JSON or proto name, as protobuf's JSON mapping accepts both), recursing
// into messages, lists and maps of messages. Values of the well-known types
// (google.protobuf.*: Duration, Struct, wrappers…) are left to the decoder.
func walkProto(node *yaml.Node, md protoreflect.MessageDescriptor, path string, fail func(path, msg string)) {
	walkProtoDepth(node, md, path, fail, 0)
}

// maxSpecDepth bounds the walk: Istio's messages nest a dozen deep at most,
// and an alias pointing back at its own parent must not recurse forever.
const maxSpecDepth = 64

func walkProtoDepth(node *yaml.Node, md protoreflect.MessageDescriptor, path string, fail func(path, msg string), depth int) {
	node = resolve(node)
	if node == nil || node.Kind != yaml.MappingNode || strings.HasPrefix(string(md.FullName()), "google.protobuf.") {
		return
	}
	if depth > maxSpecDepth {
		fail(path, "nested deeper than any Istio object (an alias pointing back at its parent?)")
		return
	}
	for i := 0; i+1 < len(node.Content); i += 2 {
		key := node.Content[i].Value
		if key == "<<" {
			continue
		}
		here := path + "." + key
		fd := md.Fields().ByJSONName(key)
		if fd == nil {
			fd = md.Fields().ByName(protoreflect.Name(key))
		}
		if fd == nil {
			fail(here, fmt.Sprintf("unknown field %q (%s has no such field)", here, md.Name()))
			continue
		}
		val := resolve(node.Content[i+1])
		switch {
		case fd.IsMap():
			if fd.MapValue().Kind() == protoreflect.MessageKind && val.Kind == yaml.MappingNode {
				for j := 0; j+1 < len(val.Content); j += 2 {
					walkProtoDepth(val.Content[j+1], fd.MapValue().Message(), here+"."+val.Content[j].Value, fail, depth+1)
				}
			}
		case fd.IsList():
			if fd.Kind() == protoreflect.MessageKind && val.Kind == yaml.SequenceNode {
				for j, item := range val.Content {
					walkProtoDepth(item, fd.Message(), fmt.Sprintf("%s[%d]", here, j), fail, depth+1)
				}
			}
		case fd.Kind() == protoreflect.MessageKind:
			walkProtoDepth(val, fd.Message(), here, fail, depth+1)
		}
	}
}
