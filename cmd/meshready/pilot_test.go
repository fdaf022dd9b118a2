package main

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/meshready/meshready/probe"
)

// The :15004 agent-proxy attempt is its own source label (before: counted
// as source="syncz", as if Pilot's own syncz had been asked).
func TestAgentProxyRequestsHaveTheirOwnSource(t *testing.T) {
	t.Parallel()
	f := &AgentFlags{EnvoyAdmin: "http://127.0.0.1:15000", PilotFlags: PilotFlags{PilotSource: "auto", SyncGate: "startup"}}
	m := probe.NewMetrics("v", "c")
	mo, err := f.PilotFlags.meshOptions(f, m, 200*time.Millisecond)
	if err != nil || mo.AgentPilot == nil {
		t.Fatalf("%v %+v", err, mo)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	mo.AgentPilot.Syncz(ctx, "app-1.default") // nothing on :15004 here, or something: either way one request
	mfs, err := m.Registry.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, mf := range mfs {
		if mf.GetName() != "meshready_pilot_requests_total" {
			continue
		}
		for _, mm := range mf.GetMetric() {
			for _, l := range mm.GetLabel() {
				if l.GetName() == "source" {
					got = append(got, l.GetValue())
				}
			}
		}
	}
	if strings.Join(got, ",") != "agent" {
		t.Fatalf("pilot_requests_total sources %v, want [agent]", got)
	}
}
