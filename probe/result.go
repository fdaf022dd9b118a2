// Package probe turns facts about Envoy, Pilot and the app into one readiness
// verdict and serves it to the kubelet.
package probe

import (
	"context"
	"time"
)

// Status is the outcome of one check.
type Status string

const (
	// Pass: the check's condition holds.
	Pass Status = "pass"
	// Fail: the check's condition does not hold; the pod is not ready.
	Fail Status = "fail"
	// Degraded: something is wrong but readiness must not depend on it
	// (a rejected push after the first good config; Pilot gone after the
	// first sync). Counts as ready; shown in the verbose body and metrics.
	Degraded Status = "degraded"
	// Skip: the check does not apply here (no sidecar, no app endpoint).
	Skip Status = "skip"
)

// OK reports whether the status lets the pod be ready.
func (s Status) OK() bool { return s != Fail }

// Result is what one check found. A target that answers "no" is a Result with
// Status Fail; the error return of a CheckFunc is for "could not probe".
type Result struct {
	Status  Status
	Message string
	// Warning is set when the check passed but something deserves a look
	// (kubelet's "Warning" result: e.g. a redirect to another host).
	Warning string
	// Source names what decided, where more than one could have (mesh.synced:
	// xds, syncz, configdump or local).
	Source string
}

// CheckFunc is the one shape every check has.
type CheckFunc func(ctx context.Context) (Result, error)

// Check is a named CheckFunc.
type Check struct {
	Name string
	Run  CheckFunc
}

// Outcome is a Result as the aggregator recorded it.
type Outcome struct {
	Name      string
	Result    Result
	Duration  time.Duration
	CheckedAt time.Time
}

func passf(msg string) Result { return Result{Status: Pass, Message: msg} }
func failf(msg string) Result { return Result{Status: Fail, Message: msg} }
