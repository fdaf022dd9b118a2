package main

import (
	"context"
	"fmt"
	"io"
	"path/filepath"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/meshready/meshready/api/v1alpha1"
	"github.com/meshready/meshready/integration"
)

// act4 is the release, automated (issue 14): the shop service at v1 under
// steady load from proxyless gRPC callers, `meshrelease controller` as its
// own process, a good v2 promoted step by step and v1 retired, then a v3
// that fails 5 % of its calls rolled back. It returns the exit code: 1 if a
// release did not end as it should (v2 Succeeded, v3 RolledBack); failed
// calls during the good release are printed, each with its time and error.
func act4(ctx context.Context, out io.Writer, mesh *integration.ClusterMesh, dir string) int {
	say(out, "\nAct 4: a release, automated (`meshrelease controller`): shop v1 → v2 step by step, then a bad v3\n\n")
	rm, err := integration.StartReleaseMesh(ctx, mesh, filepath.Join(dir, "release"))
	if err != nil {
		say(out, "  act 4 failed to start: %v\n", err)
		return 1
	}
	defer rm.Close()
	var loads []*integration.Load
	for i := range 2 {
		conn, err := integration.DialShop(fmt.Sprintf("demo-shop-caller-%d", i), time.Minute)
		if err != nil {
			say(out, "  act 4: %v\n", err)
			return 1
		}
		defer conn.Close()
		loads = append(loads, integration.StartLoad(conn, 100))
	}
	calls := func() []integration.Call {
		var all []integration.Call
		for _, l := range loads {
			all = append(all, l.Snapshot().Calls...)
		}
		return all
	}
	say(out, "  shop-v1 (2 pods) serves 200 calls/s from 2 proxyless gRPC callers; the controller's log: %s\n", rm.ControllerLog())
	code := 0
	for _, r := range []struct {
		version string
		args    []string
		want    v1alpha1.Phase
		what    string
	}{
		{"v2", nil, v1alpha1.PhaseSucceeded, "a good v2"},
		{"v3", []string{"-fail-every", "20"}, v1alpha1.PhaseRolledBack, "a v3 that fails every 20th call (5 %)"},
	} {
		say(out, "\n  %s: kubectl apply the shop-%s Deployment, then a Release (steps 20 → 50 → 100, 6 s windows, max error rate 1 %%)\n", r.what, r.version)
		if err := mesh.Deploy(ctx, integration.ShopSpec(r.version, r.args...), 90*time.Second); err != nil {
			say(out, "  act 4: %v\n", err)
			return 1
		}
		start := time.Now()
		rel := &v1alpha1.Release{
			ObjectMeta: metav1.ObjectMeta{Name: "shop-" + r.version, Namespace: "default"},
			Spec: v1alpha1.ReleaseSpec{Service: "shop", To: v1alpha1.ReleaseTarget{Version: r.version, Deployment: "shop-" + r.version},
				Steps: []int32{20, 50, 100}, Interval: metav1.Duration{Duration: 6 * time.Second},
				Analysis: v1alpha1.Analysis{MaxErrorRate: "0.01", MinRequests: 40, FailureLimit: 2, InconclusiveLimit: 2}},
		}
		if err := rm.Client.Create(ctx, rel); err != nil {
			say(out, "  act 4: %v\n", err)
			return 1
		}
		last := ""
		for {
			got, err := rm.Release(ctx, rel.Name)
			if err == nil {
				if m := string(got.Status.Phase) + " " + got.Status.Message; m != last {
					last = m
					say(out, "  %s  %-11s %s\n", time.Now().Format("15:04:05.000"), got.Status.Phase, got.Status.Message)
				}
				if got.Status.Phase.Terminal() {
					rel = got
					break
				}
			}
			if time.Since(start) > 4*time.Minute {
				say(out, "  act 4: the release did not finish in 4 minutes\n")
				return 1
			}
			time.Sleep(200 * time.Millisecond)
		}
		all := calls()
		say(out, "\n    %-5s %-7s %-13s %-9s %-9s %-8s %-10s %-18s\n", "step", "weight", "verdict", "gate", "requests", "errors", "observed", "in callers' calls")
		for _, h := range rel.Status.History {
			gate, share := "-", "-"
			if h.GateWrittenAt != nil && h.GateOpenedAt != nil {
				gate = h.GateOpenedAt.Sub(h.GateWrittenAt.Time).Round(time.Millisecond).String()
			}
			req, errs := "-", "-"
			if h.To != nil {
				req, errs = h.To.Requests, h.To.ErrorRate
			}
			if h.WindowStart != nil && h.WindowEnd != nil {
				s, n := integration.VersionShare(all, r.version, h.WindowStart.Time, h.WindowEnd.Time)
				share = fmt.Sprintf("%.1f%% of %d", s, n)
			}
			say(out, "    %-5d %-7s %-13s %-9s %-9s %-8s %-10s %-18s\n", h.Step+1, fmt.Sprintf("%d%%", h.Weight), h.Verdict, gate, req, errs, h.Observed+"%", share)
		}
		failed := integration.FailedIn(all, start, time.Now())
		say(out, "    calls failed during the release: %d; %s in %s\n", failed, rel.Status.Phase, time.Since(start).Round(time.Second))
		if r.want == v1alpha1.PhaseSucceeded {
			for _, c := range all {
				if c.Code != "OK" && c.At.After(start) {
					say(out, "      failed at %s: %s %s\n", c.At.Format("15:04:05.000"), c.Code, c.Message)
				}
			}
		}
		if rel.Status.Phase != r.want {
			say(out, "  act 4: want %s\n", r.want)
			code = 1
		}
		if r.want == v1alpha1.PhaseSucceeded && failed != 0 {
			// Said loudly, not the demo's verdict: one CI run of this act saw 4
			// of ~6000 calls fail during a good release, cause not yet known
			// (TestReleaseGoodV2 asserts 0 and has passed every run).
			say(out, "    NOTE: %d calls failed during a good release: see the lines above; please report them\n", failed)
		}
	}
	say(out, "\n  each gate: the write until every caller's proxy had ACKed a push carrying it (read from istiod);\n")
	say(out, "  each window starts there, so its numbers are never those of the old weights.\n")
	return code
}
