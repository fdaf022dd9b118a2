package probe

import (
	"context"
	"strings"
	"testing"

	"github.com/meshready/meshready/internal/fixture"
	"github.com/meshready/meshready/internal/standin"
)

// rejectedListenerDump is a v3 dump where Envoy rejected a new listener
// (never active) and holds an active cluster whose last update it rejected.
const rejectedListenerDump = `{"configs":[
 {"@type":"type.googleapis.com/envoy.admin.v3.ClustersConfigDump","version_info":"2026-11-30T19:05:14Z/1",
  "dynamic_active_clusters":[{"version_info":"2026-11-30T19:05:14Z/1","cluster":{"@type":"type.googleapis.com/envoy.config.cluster.v3.Cluster","name":"outbound|80||x.default.svc.cluster.local"},
   "error_state":{"details":"cluster outbound|80||x.default.svc.cluster.local: bad TLS context: no such secret"}}]},
 {"@type":"type.googleapis.com/envoy.admin.v3.ListenersConfigDump",
  "dynamic_listeners":[{"name":"0.0.0.0_8080","error_state":{"details":"error adding listener '0.0.0.0:8080': duplicate filter chain match"}}]}
]}`

// Not ready names the culprit on Envoy's side: the warming secret, cluster
// or listener, and Envoy's own rejection detail, read from its /config_dump
// (before: only the counts, "0 clusters, 1 listeners warming").
func TestEnvoyConfigNamesTheCulprit(t *testing.T) {
	t.Parallel()
	warmingSecrets := string(fixture.Read(t, "envoy/config_dump/istio-sidecar-secrets-warming-config_dump.json"))
	cases := []struct {
		name   string
		set    func(*standin.EnvoyState)
		status Status
		msg    []string
	}{
		{"warming secret (real dump)", func(s *standin.EnvoyState) { s.WarmingListeners = 1; s.ConfigDump = warmingSecrets },
			Fail, []string{`config not fully received: warming secret "configmap://some/thing" (0 clusters, 1 listeners warming)`}},
		{"rejected before the first good config", func(s *standin.EnvoyState) {
			s.CDSSuccess, s.LDSSuccess, s.LDSRejected = 1, 0, 2
			s.ConfigDump = rejectedListenerDump
		}, Fail, []string{"config received but rejected: ", `Envoy says: cluster "outbound|80||x.default.svc.cluster.local" rejected: cluster outbound|80||x.default.svc.cluster.local: bad TLS context`,
			`listener "0.0.0.0_8080" rejected: error adding listener '0.0.0.0:8080': duplicate filter chain match`}},
		{"no dump to read: the counts still say it", func(s *standin.EnvoyState) { s.WarmingClusters = 2 },
			Fail, []string{"config not fully received: 2 clusters, 0 listeners warming"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			s := standin.LiveSynced()
			tc.set(&s)
			e := standin.NewEnvoy(s)
			defer e.Close()
			r := outcome(t, envoyAgg(t, e.URL, NewSidecar(SidecarRequired, "", 0, nil)).Refresh(context.Background()), "envoy.config")
			if r.Status != tc.status {
				t.Fatalf("status %s, want %s (%q)", r.Status, tc.status, r.Message)
			}
			for _, m := range tc.msg {
				if !strings.Contains(r.Message, m) {
					t.Errorf("message %q lacks %q", r.Message, m)
				}
			}
		})
	}
}

// After the first good config, a later warming resource is degraded, and
// named too; the dump is not re-read every round while nothing changes.
func TestEnvoyConfigCulpritAfterFirstGoodIsDegradedAndCached(t *testing.T) {
	t.Parallel()
	e := standin.NewEnvoy(standin.LiveSynced())
	defer e.Close()
	agg := envoyAgg(t, e.URL, NewSidecar(SidecarRequired, "", 0, nil))
	if r := outcome(t, agg.Refresh(context.Background()), "envoy.config"); r.Status != Pass {
		t.Fatalf("first: %+v", r)
	}
	e.Set(func(s *standin.EnvoyState) {
		s.WarmingListeners = 1
		s.ConfigDump = string(fixture.Read(t, "envoy/config_dump/istio-sidecar-secrets-warming-config_dump.json"))
	})
	before := e.Requests()
	for range 5 {
		r := outcome(t, agg.Refresh(context.Background()), "envoy.config")
		if r.Status != Degraded || !strings.Contains(r.Message, `warming secret "configmap://some/thing"`) {
			t.Fatalf("after first good: %s %q", r.Status, r.Message)
		}
	}
	// 5 rounds: 5 reads of /stats, one of /config_dump.
	if n := e.Requests() - before; n != 6 {
		t.Errorf("%d admin requests for 5 rounds, want 6 (the dump read once)", n)
	}
}
