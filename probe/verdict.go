package probe

import (
	"encoding/json"
	"time"

	"github.com/meshready/meshready/internal/oneline"
)

// Verdict is the outcome of one round of checks. Its one-line body is built
// once per round, so serving it costs no formatting.
type Verdict struct {
	At       time.Time
	Ready    bool
	Draining bool
	// Reason is "<check>: <message>" of the first failing check, "" when ready.
	Reason   string
	Outcomes []Outcome

	code int
	body []byte
	// drainingTwin is this verdict as seen once Drain was called; built with
	// the verdict so a draining pod's probes allocate nothing either.
	drainingTwin *Verdict
}

// maxReasonLen keeps the default body one short line: kubelet keeps 10 KiB of
// it in events, logs keep less, and a reason longer than this is noise there.
const maxReasonLen = 300

var (
	bodyOK       = []byte("ok\n")
	bodyDraining = []byte("draining\n")
)

func newVerdict(at time.Time, outcomes []Outcome) *Verdict {
	v := &Verdict{At: at, Ready: true, Outcomes: outcomes, code: 200, body: bodyOK}
	for _, o := range outcomes {
		if !o.Result.Status.OK() {
			v.Ready = false
			v.Reason = oneLine(o.Name+": "+o.Result.Message, maxReasonLen)
			v.code = 503
			v.body = []byte("not ready: " + v.Reason + "\n")
			break
		}
	}
	v.drainingTwin = &Verdict{At: at, Draining: true, Reason: "draining", Outcomes: outcomes, code: 503, body: bodyDraining}
	v.drainingTwin.drainingTwin = v.drainingTwin
	return v
}

// pendingVerdict stands in before the first round has finished.
func pendingVerdict(at time.Time) *Verdict {
	return newVerdict(at, []Outcome{{Name: "agent", CheckedAt: at, Result: failf("first checks still running")}})
}

func (v *Verdict) draining() *Verdict { return v.drainingTwin }

// Code is the HTTP status /health answers with.
func (v *Verdict) Code() int { return v.code }

// Body is the one-line body /health answers with. Callers must not modify it.
func (v *Verdict) Body() []byte { return v.body }

// Status is "ready", "not ready" or "draining".
func (v *Verdict) Status() string {
	switch {
	case v.Draining:
		return "draining"
	case v.Ready:
		return "ready"
	default:
		return "not ready"
	}
}

// Outcome returns the outcome of the named check.
func (v *Verdict) Outcome(name string) (Outcome, bool) {
	for _, o := range v.Outcomes {
		if o.Name == name {
			return o, true
		}
	}
	return Outcome{}, false
}

// VerboseCheck is one check in the verbose JSON body.
type VerboseCheck struct {
	Name       string  `json:"name"`
	Status     Status  `json:"status"`
	Message    string  `json:"message"`
	Warning    string  `json:"warning,omitempty"`
	DurationMS float64 `json:"duration_ms"`
	CheckedAt  string  `json:"checked_at"`
}

// VerboseBody is the JSON body of ?verbose=1 and `meshready check --output=json`.
type VerboseBody struct {
	Status     string         `json:"status"`
	Reason     string         `json:"reason,omitempty"`
	Checks     []VerboseCheck `json:"checks"`
	SyncSource string         `json:"sync_source,omitempty"`
}

// Verbose returns the verdict in its verbose form.
func (v *Verdict) Verbose() VerboseBody {
	b := VerboseBody{Status: v.Status(), Reason: v.Reason, Checks: make([]VerboseCheck, 0, len(v.Outcomes))}
	for _, o := range v.Outcomes {
		b.Checks = append(b.Checks, VerboseCheck{
			Name:       o.Name,
			Status:     o.Result.Status,
			Message:    o.Result.Message,
			Warning:    o.Result.Warning,
			DurationMS: float64(o.Duration.Microseconds()) / 1000,
			CheckedAt:  o.CheckedAt.UTC().Format(time.RFC3339Nano),
		})
		if o.Result.Source != "" && b.SyncSource == "" {
			b.SyncSource = o.Result.Source
		}
	}
	return b
}

// VerboseJSON is Verbose marshalled, newline-terminated.
func (v *Verdict) VerboseJSON() []byte {
	b, _ := json.Marshal(v.Verbose())
	return append(b, '\n')
}

// oneLine flattens s to a single line of at most n runes.
func oneLine(s string, n int) string { return oneline.Cut(s, n) }
