package v1alpha1

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// Release moves a service's traffic from the version that holds 100 % of
// its VirtualService route today ("from") to spec.to.version, step by step:
// each step's numbers are read from Prometheus only once every caller's
// proxy holds the step's weights (the propagation gate), and the release
// rolls back on bad numbers. DESIGN.md, "Part two".
//
// +kubebuilder:object:root=true
// +kubebuilder:subresource:status
// +kubebuilder:resource:shortName=rel;rels,categories=meshready
// +kubebuilder:printcolumn:name="Service",type=string,JSONPath=`.spec.service`
// +kubebuilder:printcolumn:name="To",type=string,JSONPath=`.spec.to.version`
// +kubebuilder:printcolumn:name="Phase",type=string,JSONPath=`.status.phase`
// +kubebuilder:printcolumn:name="Step",type=string,JSONPath=`.status.stepLabel`
// +kubebuilder:printcolumn:name="Weight",type=integer,JSONPath=`.status.weights.desired`
// +kubebuilder:printcolumn:name="Synced",type=string,JSONPath=`.status.weights.synced`
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`
type Release struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	Spec   ReleaseSpec   `json:"spec"`
	Status ReleaseStatus `json:"status,omitempty"`
}

// ReleaseList is a list of Releases.
//
// +kubebuilder:object:root=true
type ReleaseList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []Release `json:"items"`
}

// ReleaseSpec is what the user asks for. The CLI's pause, resume, promote
// and abort are edits of paused, promote and abort; everything the
// controller knows lives in status.
type ReleaseSpec struct {
	// Service is the Kubernetes Service (in the Release's namespace) whose
	// host the VirtualService routes; its selector's app label names the
	// app.
	// +kubebuilder:validation:MinLength=1
	Service string `json:"service"`

	// To is the version the release moves traffic to.
	To ReleaseTarget `json:"to"`

	// VirtualService and DestinationRule name the Istio objects to edit.
	// Empty: the one in the namespace whose host is the Service (exactly
	// one must match).
	// +optional
	VirtualService string `json:"virtualService,omitempty"`
	// +optional
	DestinationRule string `json:"destinationRule,omitempty"`

	// Steps are the weights (percent of traffic to To) in order; the last
	// must be 100.
	// +kubebuilder:default={10,25,50,100}
	// +kubebuilder:validation:MinItems=1
	// +kubebuilder:validation:MaxItems=20
	// +kubebuilder:validation:items:Minimum=1
	// +kubebuilder:validation:items:Maximum=100
	// +kubebuilder:validation:XValidation:rule="self[size(self)-1] == 100",message="the last step must be 100"
	// +kubebuilder:validation:XValidation:rule="self.isSorted() && self.all(s, self.exists_one(t, t == s))",message="the steps must increase"
	// +optional
	Steps []int32 `json:"steps,omitempty"`

	// Interval is one analysis window, measured from the moment the gate
	// opened.
	// +kubebuilder:default="1m"
	// +kubebuilder:validation:XValidation:rule="duration(self) > duration('0s')",message="must be a positive duration such as 30s, 1m or 1m30s"
	// +optional
	Interval metav1.Duration `json:"interval,omitempty,omitzero"`

	// ProgressDeadline bounds the wait for To's pods to be Ready.
	// +kubebuilder:default="10m"
	// +kubebuilder:validation:XValidation:rule="duration(self) > duration('0s')",message="must be a positive duration such as 30s, 1m or 1m30s"
	// +optional
	ProgressDeadline metav1.Duration `json:"progressDeadline,omitempty,omitzero"`

	// +kubebuilder:default={}
	// +optional
	Analysis Analysis `json:"analysis,omitempty"`

	// +kubebuilder:default={}
	// +optional
	Propagation Propagation `json:"propagation,omitempty"`

	// +optional
	Retire Retire `json:"retire,omitempty"`

	// Paused holds the release at its current step (no weight moves, no
	// window counts) until set back to false.
	// +optional
	Paused bool `json:"paused,omitempty"`

	// Promote skips the analysis of the step named (status.step): the next
	// step starts once the gate of this one has opened. Full jumps to 100 %
	// and retires. The controller clears nothing: the value names a step, so
	// the edit is idempotent.
	// +optional
	Promote *Promote `json:"promote,omitempty"`

	// Abort rolls the release back (weights to 100 % from, To scaled to 0).
	// +optional
	Abort bool `json:"abort,omitempty"`
}

// ReleaseTarget names the version to release and where its pods come from:
// Image clones from's Deployment as <app>-<version> with that image;
// Deployment adopts one the user made. Exactly one of the two.
//
// +kubebuilder:validation:XValidation:rule="has(self.image) != has(self.deployment)",message="exactly one of spec.to.image and spec.to.deployment must be set"
// +kubebuilder:validation:XValidation:rule="!has(self.container) || has(self.image)",message="spec.to.container goes with spec.to.image only"
type ReleaseTarget struct {
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:Pattern=`^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$`
	Version string `json:"version"`
	// Image is the image To's pods run (a Deployment <app>-<version> is
	// cloned from From's).
	// +kubebuilder:validation:MinLength=1
	// +optional
	Image string `json:"image,omitempty"`
	// Container is the container whose image Image replaces (default: the
	// first).
	// +optional
	Container string `json:"container,omitempty"`
	// Deployment names a Deployment the user made for To (adopted, not
	// cloned).
	// +kubebuilder:validation:MinLength=1
	// +optional
	Deployment string `json:"deployment,omitempty"`
}

// Analysis is what a window must show to pass. Rates are fractions written
// as decimal strings ("0.01" is 1 %): CRDs keep floats out of the API.
type Analysis struct {
	// MaxErrorRate: failed / all requests to To in the window.
	// +kubebuilder:default="0.01"
	// +kubebuilder:validation:Pattern=`^(0|1)?(\.[0-9]+)?$`
	// +optional
	MaxErrorRate string `json:"maxErrorRate,omitempty"`
	// MaxLatency per quantile (milliseconds as a duration: "250ms").
	// +optional
	MaxLatency Latency `json:"maxLatency,omitempty"`
	// Baseline: To may be no worse than From by more than these (unset: no
	// comparison).
	// +optional
	Baseline *Baseline `json:"baseline,omitempty"`
	// MinRequests to To in a window; fewer ⇒ inconclusive.
	// +kubebuilder:default=50
	// +kubebuilder:validation:Minimum=1
	// +optional
	MinRequests int32 `json:"minRequests,omitempty"`
	// FailureLimit failed windows roll the release back.
	// +kubebuilder:default=2
	// +kubebuilder:validation:Minimum=1
	// +optional
	FailureLimit int32 `json:"failureLimit,omitempty"`
	// InconclusiveLimit inconclusive windows in a row pause the release.
	// +kubebuilder:default=3
	// +kubebuilder:validation:Minimum=1
	// +optional
	InconclusiveLimit int32 `json:"inconclusiveLimit,omitempty"`
	// GRPCFailureCodes are the grpc-status codes counted as failures
	// (default: the server-fault set 2, 4, 12, 13, 14, 15).
	// +optional
	GRPCFailureCodes []int32 `json:"grpcFailureCodes,omitempty"`
}

// Latency thresholds; a nil quantile is not checked.
type Latency struct {
	// +optional
	P50 *metav1.Duration `json:"p50,omitempty"`
	// +optional
	P90 *metav1.Duration `json:"p90,omitempty"`
	// +optional
	P95 *metav1.Duration `json:"p95,omitempty"`
	// +optional
	P99 *metav1.Duration `json:"p99,omitempty"`
}

// Baseline compares To with From over the same window.
type Baseline struct {
	// MaxErrorRateIncrease: To's error rate minus From's ("0.005").
	// +kubebuilder:validation:Pattern=`^(0|1)?(\.[0-9]+)?$`
	// +optional
	MaxErrorRateIncrease string `json:"maxErrorRateIncrease,omitempty"`
	// MaxP99Increase: To's p99 minus From's.
	// +optional
	MaxP99Increase *metav1.Duration `json:"maxP99Increase,omitempty"`
}

// Propagation bounds the gate.
type Propagation struct {
	// Timeout: a proxy that has not ACKed by then pauses the release and
	// is named in status.
	// +kubebuilder:default="2m"
	// +kubebuilder:validation:XValidation:rule="duration(self) > duration('0s')",message="must be a positive duration such as 30s, 1m or 1m30s"
	// +optional
	Timeout metav1.Duration `json:"timeout,omitempty,omitzero"`
}

// Retire says what happens to From after 100 % To.
type Retire struct {
	// Skip keeps From's route entry, subset and Deployment (the release
	// ends Succeeded at 100 % To without retiring).
	// +optional
	Skip bool `json:"skip,omitempty"`
}

// Promote is a person's decision to move on without (more) analysis.
type Promote struct {
	// Step is the status.step this promotion is for (set by the CLI from
	// the status it read): promoting twice does not skip two steps.
	// +optional
	Step *int32 `json:"step,omitempty"`
	// Full: straight to 100 % To, then retire.
	// +optional
	Full bool `json:"full,omitempty"`
}

// Phase is where a release is.
// +kubebuilder:validation:Enum=Pending;Deploying;Progressing;Paused;RollingBack;RolledBack;Retiring;Succeeded;Failed
type Phase string

const (
	PhasePending     Phase = "Pending"     // accepted, preconditions not yet checked
	PhaseDeploying   Phase = "Deploying"   // To's Deployment made or adopted, waiting for Ready pods
	PhaseProgressing Phase = "Progressing" // subset added, steps under way
	PhasePaused      Phase = "Paused"      // waiting for a person (spec.paused, inconclusive limit, a proxy that does not ACK)
	PhaseRollingBack Phase = "RollingBack" // weights going back to 100 % From
	PhaseRolledBack  Phase = "RolledBack"  // terminal: From holds 100 %, To scaled to 0
	PhaseRetiring    Phase = "Retiring"    // 100 % To; From's route, subset, Deployment going
	PhaseSucceeded   Phase = "Succeeded"   // terminal
	PhaseFailed      Phase = "Failed"      // terminal: could not proceed or roll back (message says why)
)

// Terminal reports whether nothing more will happen to the release.
func (p Phase) Terminal() bool {
	return p == PhaseRolledBack || p == PhaseSucceeded || p == PhaseFailed
}

// ReleaseStatus is the controller's only memory: a restarted controller
// resumes from it alone.
type ReleaseStatus struct {
	// +optional
	ObservedGeneration int64 `json:"observedGeneration,omitempty"`
	// +optional
	Phase Phase `json:"phase,omitempty"`
	// Message says, in one line, what the release waits for or why it
	// stopped.
	// +optional
	Message string `json:"message,omitempty"`

	// From is the version that held 100 % when the release started.
	// +optional
	From string `json:"from,omitempty"`
	// App is the Service selector's app label value.
	// +optional
	App string `json:"app,omitempty"`
	// +optional
	FromDeployment string `json:"fromDeployment,omitempty"`
	// +optional
	ToDeployment string `json:"toDeployment,omitempty"`
	// +optional
	VirtualService string `json:"virtualService,omitempty"`
	// +optional
	DestinationRule string `json:"destinationRule,omitempty"`
	// Host is the Service's FQDN, the host the gate waits on.
	// +optional
	Host string `json:"host,omitempty"`

	// Stage is the action within the phase the controller is at; with Step
	// it is where a restarted controller picks up.
	// +optional
	Stage Stage `json:"stage,omitempty"`
	// StageStartedAt is when the controller entered Stage (the progress
	// deadline and the propagation timeout count from it).
	// +optional
	StageStartedAt *metav1.Time `json:"stageStartedAt,omitempty"`
	// Step is the index into spec.steps being worked on (-1: none yet).
	// +optional
	Step int32 `json:"step"`
	// StepLabel is "2/4 (25%)", for the printer column.
	// +optional
	StepLabel string `json:"stepLabel,omitempty"`

	// +optional
	Weights Weights `json:"weights,omitempty"`

	// Gate is the last propagation gate: the write it waits on, and once
	// every proxy holds it, OpenedAt (nil: no write yet).
	// +optional
	Gate *GateStatus `json:"gate,omitempty"`

	// WindowStart is when the current analysis window began (the gate's
	// opening). Gate and window times are MicroTime: a window must not
	// start a second early, before every caller held its weights.
	// +optional
	WindowStart *metav1.MicroTime `json:"windowStart,omitempty"`
	// Failures and Inconclusive count this step's windows.
	// +optional
	Failures int32 `json:"failures,omitempty"`
	// +optional
	Inconclusive int32 `json:"inconclusive,omitempty"`

	// History has one row per window (and per gate that paused), oldest
	// first.
	// +optional
	History []HistoryRow `json:"history,omitempty"`

	// +optional
	// +listType=map
	// +listMapKey=type
	Conditions []metav1.Condition `json:"conditions,omitempty"`
}

// Stage is the controller's position inside a phase.
type Stage string

const (
	StagePreconditions Stage = "Preconditions"
	StageDeploy        Stage = "Deploy"        // make or adopt To's Deployment, wait Ready
	StageSubset        Stage = "Subset"        // add To's subset, gate
	StageWeights       Stage = "Weights"       // write the step's weights, gate
	StageAnalysis      Stage = "Analysis"      // the window is running
	StageRollbackRoute Stage = "RollbackRoute" // weights to 100 % From, gate
	StageScaleDown     Stage = "ScaleDown"     // To's Deployment to 0
	StageRetireRoute   Stage = "RetireRoute"   // From out of the route, gate
	StageRetireSubset  Stage = "RetireSubset"  // From's subset out, gate
	StageRetireDeploy  Stage = "RetireDeploy"  // delete From's Deployment
	StageDone          Stage = "Done"
)

// Weights are the four views of the current step's weight to To, in
// percent.
type Weights struct {
	// Desired is the step's weight.
	// +optional
	Desired int32 `json:"desired"`
	// Applied is read back from the VirtualService.
	// +optional
	Applied int32 `json:"applied"`
	// Synced is "n/m": proxies that ACKed the write holding the weight, of
	// those Pilot pushes this host's config to.
	// +optional
	Synced string `json:"synced,omitempty"`
	// Observed is To's share of the last window's requests, in percent
	// ("24.8"), from Prometheus.
	// +optional
	Observed string `json:"observed,omitempty"`
}

// GateStatus is one propagation gate: a write the controller made and what
// the proxies have ACKed of it.
type GateStatus struct {
	// Object is "VirtualService/ns/name" or "DestinationRule/ns/name".
	Object string `json:"object"`
	// ResourceVersion is the object's after the write.
	ResourceVersion string `json:"resourceVersion"`
	// WrittenAt is when the write returned.
	WrittenAt metav1.MicroTime `json:"writtenAt"`
	// OpenedAt is set once every proxy holds the write.
	// +optional
	OpenedAt *metav1.MicroTime `json:"openedAt,omitempty"`
	// Synced is "n/m" at the last poll.
	// +optional
	Synced string `json:"synced,omitempty"`
	// Waiting names proxies not yet holding the write (at most 10).
	// +optional
	Waiting []ProxyWait `json:"waiting,omitempty"`
}

// ProxyWait is one proxy the gate waits for.
type ProxyWait struct {
	Proxy string `json:"proxy"` // pod.namespace, as Pilot names it
	// +optional
	Istiod string `json:"istiod,omitempty"` // the replica it is connected to
	// +optional
	Type string `json:"type,omitempty"` // RDS, CDS, ...
	// +optional
	Since *metav1.Time `json:"since,omitempty"`
}

// Verdict is a window's outcome.
// +kubebuilder:validation:Enum=Pass;Fail;Inconclusive;Promoted;GateTimeout
type Verdict string

const (
	VerdictPass         Verdict = "Pass"
	VerdictFail         Verdict = "Fail"
	VerdictInconclusive Verdict = "Inconclusive"
	VerdictPromoted     Verdict = "Promoted"    // a person skipped the window
	VerdictGateTimeout  Verdict = "GateTimeout" // a proxy did not ACK in time
)

// HistoryRow is one analysis window (or one gate that timed out) with every
// number it was judged on, so a rollback explains itself.
type HistoryRow struct {
	Step   int32 `json:"step"`
	Weight int32 `json:"weight"`
	// GateWrittenAt → GateOpenedAt is the propagation delay of the step's
	// write.
	// +optional
	GateWrittenAt *metav1.MicroTime `json:"gateWrittenAt,omitempty"`
	// +optional
	GateOpenedAt *metav1.MicroTime `json:"gateOpenedAt,omitempty"`
	// +optional
	WindowStart *metav1.MicroTime `json:"windowStart,omitempty"`
	// +optional
	WindowEnd *metav1.MicroTime `json:"windowEnd,omitempty"`
	Verdict   Verdict           `json:"verdict"`
	// Reason is the one line that decided the verdict.
	// +optional
	Reason string `json:"reason,omitempty"`
	// To and From are the window's numbers for each version.
	// +optional
	To *WindowNumbers `json:"to,omitempty"`
	// +optional
	From *WindowNumbers `json:"from,omitempty"`
	// Observed is To's share of requests in the window, percent.
	// +optional
	Observed string `json:"observed,omitempty"`
	// Queries are the PromQL expressions evaluated, at WindowEnd.
	// +optional
	Queries []string `json:"queries,omitempty"`
}

// WindowNumbers are one version's numbers over a window. Decimal strings:
// CRDs keep floats out of the API; "" means no data.
type WindowNumbers struct {
	Requests  string `json:"requests"`
	Failed    string `json:"failed"`
	ErrorRate string `json:"errorRate"`
	// Latency quantiles in milliseconds.
	// +optional
	P50 string `json:"p50,omitempty"`
	// +optional
	P90 string `json:"p90,omitempty"`
	// +optional
	P95 string `json:"p95,omitempty"`
	// +optional
	P99 string `json:"p99,omitempty"`
}
