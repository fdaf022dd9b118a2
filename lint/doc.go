// Package lint is the onboarding lint: the rules a service must satisfy
// before the mesh (and a release by meshrelease) treats it right, checked on
// Kubernetes and Istio objects. It knows the objects' API types and the
// agent's conventions (its port, paths and drain defaults); it knows nothing
// of how the objects were obtained: Load reads manifests, and package
// lint/cluster reads a live namespace, both into a Set that Check lints.
//
// Every rule has a stable code (MR1xx), one level, and, where an Istio
// analyzer or Kiali validation covers the same ground, that code too, so a
// finding can be looked up in the tool the team already knows.
package lint
