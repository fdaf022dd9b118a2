package lint

import (
	"fmt"
	"sort"
	"strings"
	"time"
)

// Rule is one onboarding rule. Its code never changes meaning: a retired
// rule's code is not reused.
type Rule struct {
	Code  string
	Level Level
	// PeerCodes: the Istio analyzer or Kiali codes for the same ground.
	PeerCodes []string
	// Title says what the rule wants, for `lint --rules` and the README.
	Title string
	// ClusterOnly rules need what only a live namespace knows (running
	// pods); ManifestsOnly rules look at what only a file has (the
	// apiVersion it was written in: the API server converts live objects).
	ClusterOnly, ManifestsOnly bool
	check                      func(*Set, Options, emitter)
}

// Rules is every rule, in code order.
var Rules = []Rule{
	{Code: "MR101", Level: Error, PeerCodes: []string{"IST0118", "KIA0601"}, Title: "Service port named <protocol>[-suffix] (grpc, grpc-web, http, http2, https, mongo, mysql, redis, tcp, tls, udp) or with appProtocol", check: checkPortNames},
	{Code: "MR102", Level: Warning, Title: "Service selector without version (one Service spans the versions a release shifts between)", check: checkSelectorVersion},
	{Code: "MR103", Level: Warning, Title: "Service selector matches a Deployment's pod labels", check: checkServiceSelectsDeployment},
	{Code: "MR104", Level: Error, Title: "Service targetPort declared as a containerPort of the Deployments it selects", check: checkTargetPorts},
	{Code: "MR110", Level: Error, Title: "pod template labels app and version", check: checkPodLabels},
	{Code: "MR111", Level: Warning, Title: "Deployment labels app and version", check: checkDeploymentLabels},
	{Code: "MR120", Level: Error, Title: "readinessProbe httpGet :54321/health (meshready)", check: checkReadiness},
	{Code: "MR121", Level: Error, Title: "livenessProbe on /health/live, not /health (a Pilot outage would restart every pod)", check: checkLiveness},
	{Code: "MR122", Level: Error, Title: "terminationGracePeriodSeconds ≥ the agent's drain-max + grace", check: checkTerminationGrace},
	{Code: "MR123", Level: Error, Title: "MESHREADY_* environment values the agent accepts", check: checkAgentEnv},
	{Code: "MR124", Level: Error, Title: "no command: on the agent's container (it replaces the ENTRYPOINT meshready run --; use args)", check: checkCommand},
	{Code: "MR125", Level: Warning, Title: "MESHREADY_TERMINATION_GRACE equal to terminationGracePeriodSeconds", check: checkTerminationGraceEnv},
	{Code: "MR130", Level: Warning, PeerCodes: []string{"IST0173"}, Title: "DestinationRule subset selects a Deployment's pods", check: checkSubsetsSelectDeployments},
	{Code: "MR131", Level: Error, PeerCodes: []string{"IST0101", "KIA1107"}, Title: "VirtualService routes only to subsets its host's DestinationRule defines", check: checkRouteSubsetsDefined},
	{Code: "MR132", Level: Warning, PeerCodes: []string{"IST0101"}, Title: "a DestinationRule for every host a VirtualService routes to by subset", check: checkRouteHostHasDestinationRule},
	{Code: "MR133", Level: Error, PeerCodes: []string{"IST0173"}, Title: "a subset that receives traffic selects a running pod", ClusterOnly: true, check: checkRoutedSubsetsHavePods},
	{Code: "MR140", Level: Error, Title: "Deployment apiVersion apps/v1 (extensions/v1beta1, apps/v1beta1 and apps/v1beta2 are no longer served)", ManifestsOnly: true, check: checkDeploymentAPIVersion},
	{Code: "MR141", Level: Info, Title: "Istio networking objects on networking.istio.io/v1", ManifestsOnly: true, check: checkIstioAPIVersion},
}

// Options are what the rules cannot read from the objects.
type Options struct {
	// DrainMax and Grace are the agent's values for a container that sets
	// no MESHREADY_DRAIN_MAX / MESHREADY_GRACE: the agent's defaults, or a
	// base image's ENV.
	DrainMax, Grace time.Duration
}

// Agent defaults (cmd/meshready's --drain-max and --grace; a test reads
// them from there).
const (
	AgentDrainMax = 20 * time.Second
	AgentGrace    = 10 * time.Second
)

// DefaultOptions are the agent's own defaults.
func DefaultOptions() Options { return Options{DrainMax: AgentDrainMax, Grace: AgentGrace} }

// emitter records a finding of the running rule on object o at field.
type emitter func(o Object, field, format string, args ...any)

// Check runs every rule on the set.
func Check(s *Set, opts Options) *Report {
	r := &Report{Objects: s.Objects(), Ignored: s.Ignored}
	for _, rule := range Rules {
		if rule.ClusterOnly && !s.PodsKnown {
			continue
		}
		rule.check(s, opts, func(o Object, field, format string, args ...any) {
			peers := rule.PeerCodes
			if peers == nil {
				peers = []string{} // JSON: [], never null
			}
			f := Finding{
				Level: rule.Level, Code: rule.Code, PeerCodes: peers,
				Object: o.Ref(), Kind: o.Kind, NS: o.Namespace, Name: o.Name,
				Field: field, Message: fmt.Sprintf(format, args...),
			}
			if o.File != "" {
				f.File, f.Line = o.File, o.LineOf(field)
			}
			r.Findings = append(r.Findings, f)
		})
	}
	sortFindings(r.Findings)
	return r
}

// selects is Kubernetes' equality selector: every pair of sel is in labels.
// An empty selector selects nothing (a Service without one has no endpoints
// of its own).
func selects(sel, labels map[string]string) bool {
	if len(sel) == 0 {
		return false
	}
	for k, v := range sel {
		if got, ok := labels[k]; !ok || got != v {
			return false
		}
	}
	return true
}

// labelString is a selector as people write it: app=orders,version=v1.
func labelString(m map[string]string) string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	parts := make([]string, len(keys))
	for i, k := range keys {
		parts[i] = k + "=" + m[k]
	}
	return strings.Join(parts, ",")
}

func (s *Set) deploymentsIn(ns string) []*Deployment {
	var out []*Deployment
	for _, d := range s.Deployments {
		if d.Obj.Namespace == ns {
			out = append(out, d)
		}
	}
	return out
}

func (s *Set) service(name, ns string) *Service {
	for _, svc := range s.Services {
		if svc.Obj.Name == name && svc.Obj.Namespace == ns {
			return svc
		}
	}
	return nil
}
