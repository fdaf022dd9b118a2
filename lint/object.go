package lint

import (
	"fmt"

	yaml "go.yaml.in/yaml/v3"

	networking "istio.io/api/networking/v1alpha3"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// DefaultNamespace is the namespace of a manifest that names none: where
// `kubectl apply` without -n puts it.
const DefaultNamespace = "default"

// Object is what every linted object has: who it is and where it came from.
type Object struct {
	Kind       string
	APIVersion string // as written (a Deployment on extensions/v1beta1 keeps it)
	Namespace  string
	Name       string
	File       string // "" for live objects
	Line       int    // the object's first line in File; 0 when unknown
	// node is the object in its file's YAML, for field lines; nil for
	// live objects.
	node *yaml.Node
}

// Ref is the object as findings name it: Kind/namespace/name.
func (o Object) Ref() string { return o.Kind + "/" + o.Namespace + "/" + o.Name }

// LineOf is the line of field path in the object's file: the deepest part
// of the path that exists, else the object's first line.
func (o Object) LineOf(path string) int {
	if o.node != nil {
		if l := lineIn(o.node, path); l > 0 {
			return l
		}
	}
	return o.Line
}

// Service is a core/v1 Service.
type Service struct {
	Obj Object
	corev1.Service
}

// Deployment is an apps/v1 Deployment; one written in an older apiVersion
// (extensions/v1beta1, apps/v1beta1, apps/v1beta2) was decoded strictly in
// that version and is read here in apps/v1's shape (Obj.APIVersion keeps the
// original).
type Deployment struct {
	Obj Object
	appsv1.Deployment
}

// PodLabels are the labels its pods get (the pod template's).
func (d *Deployment) PodLabels() map[string]string { return d.Spec.Template.Labels }

// DestinationRule is a networking.istio.io DestinationRule of any served
// version (v1, v1beta1 and v1alpha3 share one spec).
type DestinationRule struct {
	Obj  Object
	Meta metav1.ObjectMeta
	Spec *networking.DestinationRule
}

// VirtualService is a networking.istio.io VirtualService of any served version.
type VirtualService struct {
	Obj  Object
	Meta metav1.ObjectMeta
	Spec *networking.VirtualService
}

// Set is everything one lint run looks at.
type Set struct {
	Services         []*Service
	Deployments      []*Deployment
	DestinationRules []*DestinationRule
	VirtualServices  []*VirtualService
	// Pods are the live pods (cluster mode only); PodsKnown says they were
	// read, so "no running pod" means none and not "not looked".
	Pods      []*corev1.Pod
	PodsKnown bool
	// Ignored counts objects of kinds no rule looks at, by "apiVersion/Kind".
	Ignored map[string]int
}

// Objects is how many objects the rules looked at.
func (s *Set) Objects() int {
	return len(s.Services) + len(s.Deployments) + len(s.DestinationRules) + len(s.VirtualServices)
}

func (s *Set) ignore(apiVersion, kind string) {
	if s.Ignored == nil {
		s.Ignored = map[string]int{}
	}
	s.Ignored[apiVersion+"/"+kind]++
}

// Add puts live objects in the set (cluster mode): their identity comes from
// their metadata, and they have no file.
func (s *Set) AddService(svc *corev1.Service) {
	s.Services = append(s.Services, &Service{Obj: liveObject("Service", "v1", svc.ObjectMeta), Service: *svc})
}

// AddDeployment puts a live Deployment in the set.
func (s *Set) AddDeployment(d *appsv1.Deployment) {
	s.Deployments = append(s.Deployments, &Deployment{Obj: liveObject("Deployment", "apps/v1", d.ObjectMeta), Deployment: *d})
}

// AddDestinationRule puts a live DestinationRule in the set.
func (s *Set) AddDestinationRule(apiVersion string, meta metav1.ObjectMeta, spec *networking.DestinationRule) {
	s.DestinationRules = append(s.DestinationRules, &DestinationRule{Obj: liveObject("DestinationRule", apiVersion, meta), Meta: meta, Spec: spec})
}

// AddVirtualService puts a live VirtualService in the set.
func (s *Set) AddVirtualService(apiVersion string, meta metav1.ObjectMeta, spec *networking.VirtualService) {
	s.VirtualServices = append(s.VirtualServices, &VirtualService{Obj: liveObject("VirtualService", apiVersion, meta), Meta: meta, Spec: spec})
}

func liveObject(kind, apiVersion string, meta metav1.ObjectMeta) Object {
	ns := meta.Namespace
	if ns == "" {
		ns = DefaultNamespace
	}
	return Object{Kind: kind, APIVersion: apiVersion, Namespace: ns, Name: meta.Name}
}

// String is for test failures.
func (o Object) String() string {
	if o.File == "" {
		return o.Ref()
	}
	return fmt.Sprintf("%s (%s:%d)", o.Ref(), o.File, o.Line)
}
