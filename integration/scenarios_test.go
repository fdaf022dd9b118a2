package integration

import (
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"
)

// Scenario tests: the real agent binary against Istio's real discovery
// server and the data-plane stand-in, each flag as DESIGN.md has it.

const (
	interval = 100 * time.Millisecond
	// backoffMax is DESIGN.md's cap on the spacing of Pilot calls (errors
	// and not-synced answers): 250ms → 5s, jittered.
	backoffMax = 5 * time.Second
)

func isMeshNotSynced(code int, body string) bool {
	return code == http.StatusServiceUnavailable && strings.Contains(body, "mesh.synced") && strings.Contains(body, "not synced")
}

func is200(code int, _ string) bool { return code == http.StatusOK }

// (a) Before Pilot sees the ACK, /health is 503 naming mesh.synced; once
// the ACK reaches Pilot it turns 200 within one --interval plus the
// backoff the agent is in.
//
// The stand-in applies each push at once (its counters and versions move,
// it turns LIVE) but holds the ACK: Envoy's own view says "config
// received" and only Pilot's view can say "not synced".
func TestFirstSyncGatesReadiness(t *testing.T) {
	needServeFlags(t, "pilot", "pilot-source", "sync-gate", "stale-after", "proxy-id")
	for _, c := range []struct {
		name, source string
		hold         time.Duration // how long the ACK is held after the agent first says "not synced"
		within       time.Duration
	}{
		// Released as soon as the agent says "not synced": the backoff is
		// at its first steps (≤ 500ms).
		{"syncz/prompt", "syncz", 0, interval + 500*time.Millisecond + 300*time.Millisecond},
		{"auto/prompt", "auto", 0, interval + 500*time.Millisecond + 300*time.Millisecond},
		// Held 6s: the not-synced backoff has reached its 5s cap, so the
		// ACK → 200 latency is bounded by the cap, not by --interval.
		{"syncz/held-6s", "syncz", 6 * time.Second, interval + backoffMax + 300*time.Millisecond},
	} {
		t.Run(c.name, func(t *testing.T) {
			p := StartPilot(t, PilotOptions{})
			d := startDataPlane(t, p, DataPlaneOptions{Index: 1, Mode: HoldAcks})
			a := startAgent(t, agentArgs(p, d, "--pilot-source="+c.source, "--sync-gate=startup")...)

			// Never 200 while Pilot has not seen the ACK.
			var saw200 string
			_, body, _, err := a.WaitHealth(20*time.Second, func(code int, body string) bool {
				if code == 200 {
					saw200 = body
				}
				return isMeshNotSynced(code, body)
			})
			if err != nil {
				t.Fatalf("want 503 naming mesh.synced (not synced) while the ACK is held: %v; stand-in %+v", err, d.Snapshot())
			}
			if saw200 != "" {
				t.Errorf("/health said 200 before Pilot saw any ACK")
			}
			s := d.Snapshot()
			if !s.Live() || !s.Types["CDS"].HeldAck || !s.Types["LDS"].HeldAck {
				t.Fatalf("stand-in should be LIVE with CDS and LDS ACKs held: %+v", s)
			}
			t.Logf("held: %s", body)
			if c.hold > 0 {
				deadline := time.Now().Add(c.hold)
				for time.Now().Before(deadline) {
					if code, body, err := a.Health(); err == nil && code == 200 {
						t.Fatalf("200 while the ACK is held: %s", body)
					}
					time.Sleep(50 * time.Millisecond)
				}
			}
			v, _ := a.Verbose()

			released := time.Now()
			d.SetMode(AckAll)
			waitPilotSynced(t, p, d.ProxyID())
			acked := time.Now()
			_, _, at, err := a.WaitHealth(c.within+5*time.Second, is200)
			if err != nil {
				t.Fatalf("never 200 after the ACK: %v", err)
			}
			lat := at.Sub(released)
			t.Logf("ACK released → Pilot synced %s → /health 200 %s (interval %s; budget here %s; DESIGN budget ≤ one --interval)",
				acked.Sub(released).Round(time.Millisecond), lat.Round(time.Millisecond), interval, c.within)
			if lat > c.within {
				t.Errorf("ACK → 200 took %s, over %s", lat.Round(time.Millisecond), c.within)
			}
			v, err = a.Verbose()
			if err != nil {
				t.Fatal(err)
			}
			if v.SyncSource != "syncz" || v.Check("mesh.synced").Status != "pass" {
				t.Errorf("want mesh.synced pass decided by syncz; got %s", v)
			}
		})
	}
}

// (a, DESIGN's budget) Envoy ACK → /health 200 within one --interval, in
// the usual order of things: the first config is applied and acked at
// once (the stand-in sat on Pilot's responses until then, so the agent has
// been asking and backing off). Envoy's counters move with the ACK, which
// is the agent's cue to ask Pilot again without waiting out its backoff.
func TestFirstSyncLatency(t *testing.T) {
	needServeFlags(t, "pilot", "pilot-source", "sync-gate", "stale-after", "proxy-id")
	for _, source := range []string{"syncz", "configdump"} {
		t.Run(source, func(t *testing.T) {
			p := StartPilot(t, PilotOptions{})
			d := startDataPlane(t, p, DataPlaneOptions{Index: 1, Mode: Freeze})
			a := startAgent(t, agentArgs(p, d, "--pilot-source="+source)...)
			// Probe as kubelet would for 3s: the agent has asked and backed off.
			for end := time.Now().Add(3 * time.Second); time.Now().Before(end); time.Sleep(interval) {
				if code, body, _ := a.Health(); code == 200 {
					t.Fatalf("200 before any config: %s", body)
				}
			}
			d.SetMode(AckAll)
			waitPilotSynced(t, p, d.ProxyID())
			acked := time.Now() // Pilot has every ACK by now (polled every 10ms)
			_, _, at, err := a.WaitHealth(backoffMax+2*time.Second, is200)
			if err != nil {
				t.Fatal(err)
			}
			lat := at.Sub(acked)
			t.Logf("%s: ACK at Pilot → /health 200 in %s (DESIGN budget: one --interval = %s)", source, lat.Round(time.Millisecond), interval)
			if lat > interval+150*time.Millisecond {
				t.Errorf("ACK → 200 took %s: over one --interval (%s) + 150ms slack", lat.Round(time.Millisecond), interval)
			}
		})
	}
}

// (b) A push the stand-in never acks shows STALE in `meshready sync`; with
// --sync-gate=always --stale-after=1s the pod turns unready once the push
// has been unacked longer than 1s, and ready again when it is acked; with
// the default startup gate the pod stays ready (Pilot is not asked after
// the first sync).
func TestStalePush(t *testing.T) {
	needServeFlags(t, "pilot", "pilot-source", "sync-gate", "stale-after", "proxy-id")
	p := StartPilot(t, PilotOptions{})
	d := startDataPlane(t, p, DataPlaneOptions{Index: 1})
	always := startAgent(t, agentArgs(p, d, "--pilot-source=syncz", "--sync-gate=always", "--stale-after=1s")...)
	startup := startAgent(t, agentArgs(p, d, "--sync-gate=startup")...)
	for _, a := range []*Agent{always, startup} {
		if _, _, _, err := a.WaitHealth(20*time.Second, is200); err != nil {
			t.Fatalf("%s: %v", a.Args, err)
		}
	}
	before := d.Snapshot()

	d.SetMode(Freeze)
	if _, err := p.Bump(); err != nil {
		t.Fatal(err)
	}
	s, err := d.WaitFor(waitCtx(t, 10*time.Second), func(s Snapshot) bool { return s.Types["CDS"].Unacked && s.Types["LDS"].Unacked })
	if err != nil {
		t.Fatal(err)
	}
	pushed := time.Now() // the push has arrived (and Pilot recorded it sent) by now
	newVersion := s.Types["LDS"].ReceivedVersion

	rep := runSync(t, agentArgs(p, d, "--pilot-source=syncz")...)
	t.Logf("meshready sync: exit %d %s", rep.Exit, strings.TrimSpace(rep.Raw))
	if rep.Exit != 1 || rep.Synced {
		t.Errorf("meshready sync: want exit 1 (not synced), got %d", rep.Exit)
	}
	for _, typ := range []string{"CDS", "LDS"} {
		row, ok := rep.Row(typ)
		switch {
		case !ok:
			t.Errorf("meshready sync: no %s row", typ)
		case row.State != "STALE":
			t.Errorf("meshready sync %s: STATE %q, want STALE", typ, row.State)
		case !strings.HasPrefix(row.PilotSent, newVersion) || strings.HasPrefix(row.PilotAcked, newVersion):
			t.Errorf("meshready sync %s: PILOT SENT %q ACKED %q; want sent %s, acked older", typ, row.PilotSent, row.PilotAcked, newVersion)
		case row.EnvoyVersion != before.Types[typ].Accepted:
			t.Errorf("meshready sync %s: ENVOY VERSION %q, want the stand-in's %q", typ, row.EnvoyVersion, before.Types[typ].Accepted)
		case row.Source != "syncz":
			t.Errorf("meshready sync %s: SOURCE %q", typ, row.Source)
		}
	}

	// --sync-gate=always --stale-after=1s: 503 after 1s stale, not before.
	_, body, at, err := always.WaitHealth(1*time.Second+backoffMax+2*time.Second, func(code int, body string) bool { return code == 503 })
	if err != nil {
		t.Fatalf("--sync-gate=always: never 503 while the push stays unacked: %v", err)
	}
	stale := at.Sub(pushed)
	t.Logf("--sync-gate=always --stale-after=1s: 503 %s after the push arrived: %s", stale.Round(time.Millisecond), body)
	if stale < time.Second-200*time.Millisecond {
		t.Errorf("503 after %s: before --stale-after=1s", stale)
	}
	if !strings.Contains(body, "mesh.synced") {
		t.Errorf("503 reason should name mesh.synced: %q", body)
	}
	// The startup gate does not look again.
	if code, body, err := startup.Health(); err != nil || code != 200 {
		t.Errorf("--sync-gate=startup: want 200 while a later push is unacked, got %d %q %v", code, body, err)
	}

	// Acked at last: ready again.
	d.SetMode(AckAll)
	released := time.Now()
	if _, _, at, err := always.WaitHealth(backoffMax+interval+2*time.Second, is200); err != nil {
		t.Errorf("--sync-gate=always: not ready again after the ACK: %v", err)
	} else {
		t.Logf("--sync-gate=always: 200 again %s after the ACK", at.Sub(released).Round(time.Millisecond))
	}
}

// (c) A rejected push: the reason names the rejected type.
func TestRejectedPush(t *testing.T) {
	needServeFlags(t, "pilot", "pilot-source", "sync-gate", "stale-after", "proxy-id")
	for _, typ := range []string{"CDS", "LDS"} {
		// The first push of typ is rejected: Envoy carries on starting (a
		// rejected initial config does not block init), so envoy.live
		// passes and the reason is about the rejection.
		t.Run("first/"+typ, func(t *testing.T) {
			other := map[string]string{"CDS": "LDS", "LDS": "CDS"}[typ]
			p := StartPilot(t, PilotOptions{})
			d := startDataPlane(t, p, DataPlaneOptions{Index: 1})
			d.NackNext(map[string]string{"CDS": TypeCDS, "LDS": TypeLDS}[typ], "stand-in rejects the first "+typ)
			a := startAgent(t, agentArgs(p, d)...)
			_, body, _, err := a.WaitHealth(20*time.Second, func(code int, body string) bool {
				return code == 503 && namesRejected(body, typ)
			})
			if err != nil {
				t.Fatalf("want 503 whose reason names %s rejected: %v", typ, err)
			}
			t.Logf("/health: %s", body)
			if namesRejected(body, other) {
				t.Errorf("the reason also names %s rejected: %q", other, body)
			}
			v, _ := a.Verbose()
			if m := v.Check("mesh.synced"); m.Status != "fail" || !namesRejected(m.Message, typ) {
				t.Errorf("mesh.synced should fail naming %s rejected: %+v", typ, m)
			}
			rep := runSync(t, agentArgs(p, d)...)
			if row, _ := rep.Row(typ); row.State != "ERROR" || rep.Exit != 1 {
				t.Errorf("meshready sync: %s row %+v exit %d; want ERROR, exit 1 (%s)", typ, row, rep.Exit, rep.Raw)
			}
			if row, _ := rep.Row(other); row.State != "SYNCED" {
				t.Errorf("meshready sync: %s row %+v; want SYNCED", other, row)
			}
		})
	}

	// A push rejected after the first sync, under --sync-gate=always: the
	// verbose body and `sync` name the type; the pod stays ready (DESIGN:
	// a bad push that every proxy NACKs must not take the fleet out of
	// service).
	t.Run("later/LDS/always", func(t *testing.T) {
		p := StartPilot(t, PilotOptions{})
		d := startDataPlane(t, p, DataPlaneOptions{Index: 1})
		a := startAgent(t, agentArgs(p, d, "--sync-gate=always", "--stale-after=1s")...)
		if _, _, _, err := a.WaitHealth(20*time.Second, is200); err != nil {
			t.Fatal(err)
		}
		d.NackNext(TypeLDS, "stand-in rejects this listener push")
		if _, err := p.Bump(); err != nil {
			t.Fatal(err)
		}
		if _, err := d.WaitFor(waitCtx(t, 10*time.Second), func(s Snapshot) bool { return s.Types["LDS"].Rejections == 1 }); err != nil {
			t.Fatal(err)
		}
		v, err := a.WaitVerbose(backoffMax+2*time.Second, func(v Verbose) bool { return namesRejected(v.Check("mesh.synced").Message, "LDS") })
		if err != nil {
			t.Fatalf("mesh.synced never named LDS rejected: %v", err)
		}
		t.Logf("verbose after the NACK: %s", v)
		if v.Check("mesh.synced").Status != "degraded" || v.Check("envoy.config").Status != "degraded" {
			t.Errorf("want mesh.synced and envoy.config degraded after a rejected push: %s", v)
		}
		// Stays ready well past --stale-after.
		deadline := time.Now().Add(3 * time.Second)
		for time.Now().Before(deadline) {
			if code, body, err := a.Health(); err != nil || code != 200 {
				t.Fatalf("a push rejected after the first sync took the pod out: %d %q %v", code, body, err)
			}
			time.Sleep(50 * time.Millisecond)
		}
		rep := runSync(t, agentArgs(p, d)...)
		if row, _ := rep.Row("LDS"); row.State != "ERROR" {
			t.Errorf("meshready sync: LDS row %+v; want ERROR (%s)", row, rep.Raw)
		}
	})
}

// (d) Pilot stopped after the first sync: the pod stays ready, and under
// the startup gate the agent makes no further Pilot calls at all (counted
// where they would land: Pilot's debug server, and the agent's own
// meshready_pilot_requests_total, which also counts refused attempts).
func TestPilotGoneAfterSync(t *testing.T) {
	needServeFlags(t, "pilot", "pilot-source", "sync-gate", "stale-after", "proxy-id")
	t.Run("startup", func(t *testing.T) {
		p := StartPilot(t, PilotOptions{})
		d := startDataPlane(t, p, DataPlaneOptions{Index: 1})
		a := startAgent(t, agentArgs(p, d, "--sync-gate=startup")...)
		if _, _, _, err := a.WaitHealth(20*time.Second, is200); err != nil {
			t.Fatal(err)
		}
		time.Sleep(500 * time.Millisecond)
		atSync, agentAtSync := p.DebugRequests(), mustMetric(t, a)
		t.Logf("requests to Pilot up to the first sync: %s", atSync)

		p.Stop()
		if _, err := d.WaitFor(waitCtx(t, 5*time.Second), func(s Snapshot) bool { return !s.Connected }); err != nil {
			t.Fatal(err)
		}
		deadline := time.Now().Add(3 * time.Second)
		for time.Now().Before(deadline) {
			if code, body, err := a.Health(); err != nil || code != 200 {
				t.Fatalf("Pilot stopped after the first sync made the pod unready: %d %q %v", code, body, err)
			}
			time.Sleep(50 * time.Millisecond)
		}
		v, err := a.Verbose()
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("verbose while Pilot is down: %s", v)
		if st := v.Check("mesh.synced").Status; v.Status != "ready" || (st != "pass" && st != "degraded") {
			t.Errorf("want ready, mesh.synced pass or degraded: %s", v)
		}

		if err := p.Start(); err != nil {
			t.Fatal(err)
		}
		waitPilotSynced(t, p, d.ProxyID())
		// Probed as the kubelet would (the agent refreshes when probed).
		if bad := probeFor(a, 2*time.Second); bad != "" {
			t.Errorf("after Pilot came back: %s", bad)
		}
		if n := p.DebugRequests().Sub(atSync); n.Total() != 0 {
			t.Errorf("the agent called Pilot after the first sync under --sync-gate=startup: %s", n)
		}
		if n := mustMetric(t, a) - agentAtSync; n != 0 {
			t.Errorf("the agent's meshready_pilot_requests_total rose by %v after the first sync", n)
		}
	})

	// Under --sync-gate=always the agent keeps asking, spaced by its
	// backoff while Pilot is away, and says degraded, not unready.
	t.Run("always", func(t *testing.T) {
		p := StartPilot(t, PilotOptions{})
		d := startDataPlane(t, p, DataPlaneOptions{Index: 1})
		a := startAgent(t, agentArgs(p, d, "--sync-gate=always", "--stale-after=1s")...)
		if _, _, _, err := a.WaitHealth(20*time.Second, is200); err != nil {
			t.Fatal(err)
		}
		p.Stop()
		stopped, attemptsAtStop := time.Now(), mustMetric(t, a)
		v, err := a.WaitVerbose(backoffMax+2*time.Second, func(v Verbose) bool { return v.Check("mesh.synced").Status == "degraded" })
		if err != nil {
			t.Errorf("mesh.synced never said degraded with Pilot down: %v", err)
		} else {
			t.Logf("verbose while Pilot is down: %s", v)
		}
		deadline := stopped.Add(8 * time.Second)
		for time.Now().Before(deadline) {
			if code, body, err := a.Health(); err != nil || code != 200 {
				t.Fatalf("Pilot down after the first sync made the pod unready under --sync-gate=always: %d %q %v", code, body, err)
			}
			time.Sleep(50 * time.Millisecond)
		}
		attempts := mustMetric(t, a) - attemptsAtStop
		down := time.Since(stopped)
		t.Logf("attempts on a stopped Pilot in %s: %v (at --interval without backoff: %d)", down.Round(time.Second), attempts, int(down/interval))
		// Backoff 250ms doubling to 5s with equal jitter: ≤ ~8 attempts in 8s.
		if attempts > 12 {
			t.Errorf("%v attempts in %s on a stopped Pilot: not backing off", attempts, down.Round(time.Second))
		}
		if err := p.Start(); err != nil {
			t.Fatal(err)
		}
		if _, err := a.WaitVerbose(backoffMax+2*time.Second, func(v Verbose) bool { return v.Check("mesh.synced").Status == "pass" }); err != nil {
			t.Errorf("mesh.synced did not pass again once Pilot was back: %v", err)
		}
	})
}

// probeFor probes /health every --interval for d and describes the first
// answer that was not 200 ("" if all were).
func probeFor(a *Agent, d time.Duration) string {
	for end := time.Now().Add(d); time.Now().Before(end); time.Sleep(interval) {
		if code, body, err := a.Health(); err != nil || code != 200 {
			return fmt.Sprintf("/health %d %q %v", code, body, err)
		}
	}
	return ""
}

func mustMetric(t *testing.T, a *Agent) float64 {
	t.Helper()
	v, err := a.PilotRequestsMetric()
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// (e) A source that refuses (403, as istiod answers /debug/syncz to a pod
// outside its namespace under ENABLE_DEBUG_ENDPOINT_AUTH) hands over to the
// next, and the verbose body says which source decided.
func TestSourceFallThrough(t *testing.T) {
	needServeFlags(t, "pilot", "pilot-source", "sync-gate", "stale-after", "proxy-id")
	for _, c := range []struct {
		name      string
		forbidden []string
		want      string
	}{
		{"syncz-403→configdump", []string{"/debug/syncz"}, "configdump"},
		{"syncz+configdump-403→local", []string{"/debug/syncz", "/debug/config_dump"}, "local"},
	} {
		t.Run(c.name, func(t *testing.T) {
			p := StartPilot(t, PilotOptions{})
			for _, path := range c.forbidden {
				p.ForceStatus(path, http.StatusForbidden)
			}
			d := startDataPlane(t, p, DataPlaneOptions{Index: 1})
			a := startAgent(t, agentArgs(p, d, "--pilot-source=auto")...)
			if _, _, _, err := a.WaitHealth(20*time.Second, is200); err != nil {
				t.Fatal(err)
			}
			v, err := a.Verbose()
			if err != nil {
				t.Fatal(err)
			}
			if v.SyncSource != c.want {
				t.Errorf("sync_source %q, want %q: %s", v.SyncSource, c.want, v)
			}
			got := p.DebugRequests()
			t.Logf("requests to Pilot: %s; verbose: %s", got, v)
			for _, path := range c.forbidden {
				if n := got["http "+path]; n < 1 || n > 2 {
					t.Errorf("%s answered 403 %d times: want it tried once, then left", path, n)
				}
			}
			// Once synced, nothing more (startup gate), however often probed.
			if bad := probeFor(a, time.Second); bad != "" {
				t.Error(bad)
			}
			if n := p.DebugRequests().Sub(got); n.Total() != 0 {
				t.Errorf("requests after the first sync: %s", n)
			}
		})
	}
}

// The xDS source against the real istio.io/debug/syncz generator: with
// ENABLE_DEBUG_ENDPOINT_AUTH (istiod's default) a plaintext stream is
// refused as Unauthenticated and the next source (local, for a grpc://
// address) decides; with it off, xds decides.
func TestXDSSource(t *testing.T) {
	needServeFlags(t, "pilot", "pilot-source", "sync-gate", "stale-after", "proxy-id")
	for _, c := range []struct {
		name        string
		disableAuth bool
		want        string
	}{
		{"auth-on→local", false, "local"},
		{"auth-off→xds", true, "xds"},
	} {
		t.Run(c.name, func(t *testing.T) {
			p := StartPilot(t, PilotOptions{DisableDebugEndpointAuth: c.disableAuth})
			d := startDataPlane(t, p, DataPlaneOptions{Index: 1, Mode: HoldAcks})
			args := []string{"--envoy-admin=" + d.AdminURL(), "--sidecar=required", "--pilot=" + p.GRPCURL(),
				"--proxy-id=" + d.ProxyID(), "--interval=100ms", "--pilot-source=auto"}
			a := startAgent(t, args...)
			if c.want == "xds" {
				// Pilot's xDS syncz sees the held ACKs: not synced.
				if _, _, _, err := a.WaitHealth(20*time.Second, isMeshNotSynced); err != nil {
					t.Fatalf("xds source: want 503 mesh.synced not synced while ACKs are held: %v", err)
				}
			}
			d.SetMode(AckAll)
			if _, _, _, err := a.WaitHealth(20*time.Second, is200); err != nil {
				t.Fatal(err)
			}
			v, _ := a.Verbose()
			if v.SyncSource != c.want {
				t.Errorf("sync_source %q, want %q: %s", v.SyncSource, c.want, v)
			}
			t.Logf("xDS debug requests: %s; verbose: %s", p.DebugRequests(), v)
			if n := p.DebugRequests()["xds istio.io/debug/syncz"]; n < 1 {
				t.Errorf("no istio.io/debug/syncz request reached Pilot")
			}
		})
	}
}

// The configdump source against Pilot's own /debug/config_dump handler
// (which regenerates the proxy's config on every call): Pilot's version per
// type against the stand-in's accepted versions.
func TestConfigDumpSource(t *testing.T) {
	needServeFlags(t, "pilot", "pilot-source", "sync-gate", "stale-after", "proxy-id")
	p := StartPilot(t, PilotOptions{})
	d := startDataPlane(t, p, DataPlaneOptions{Index: 1})
	args := agentArgs(p, d, "--pilot-source=configdump", "--sync-gate=always", "--stale-after=1s")
	a := startAgent(t, args...)
	if _, _, _, err := a.WaitHealth(20*time.Second, is200); err != nil {
		t.Fatal(err)
	}
	if v, _ := a.Verbose(); v.SyncSource != "configdump" {
		t.Errorf("sync_source %q, want configdump: %s", v.SyncSource, v)
	}
	before := d.Snapshot()

	d.SetMode(Freeze)
	if _, err := p.Bump(); err != nil {
		t.Fatal(err)
	}
	if _, err := d.WaitFor(waitCtx(t, 10*time.Second), func(s Snapshot) bool { return s.Types["CDS"].Unacked && s.Types["LDS"].Unacked }); err != nil {
		t.Fatal(err)
	}
	pushed := time.Now()
	rep := runSync(t, args...)
	t.Logf("meshready sync: exit %d %s", rep.Exit, strings.TrimSpace(rep.Raw))
	for _, typ := range []string{"CDS", "LDS"} {
		row, ok := rep.Row(typ)
		if !ok || row.State != "STALE" || row.PilotSent != p.PushVersion() || row.EnvoyVersion != before.Types[typ].Accepted || row.Source != "configdump" {
			t.Errorf("meshready sync %s: %+v; want STALE, PILOT SENT %s, ENVOY VERSION %s, SOURCE configdump", typ, row, p.PushVersion(), before.Types[typ].Accepted)
		}
	}
	if rep.Exit != 1 {
		t.Errorf("meshready sync exit %d, want 1", rep.Exit)
	}
	_, body, at, err := a.WaitHealth(1*time.Second+backoffMax+3*time.Second, func(code int, _ string) bool { return code == 503 })
	if err != nil {
		t.Fatalf("configdump, --sync-gate=always: never 503 while the push stays unapplied: %v", err)
	}
	t.Logf("503 %s after the push: %s", at.Sub(pushed).Round(time.Millisecond), body)
	d.SetMode(AckAll)
	if _, _, _, err := a.WaitHealth(backoffMax+interval+3*time.Second, is200); err != nil {
		t.Errorf("not ready again once the push was applied: %v", err)
	}
	t.Logf("requests to Pilot: %s", p.DebugRequests())
}

// A slow Pilot before the first sync: each call times out (--timeout), the
// pod stays unready saying so, the calls are spaced by the backoff, and
// once Pilot answers again the pod turns ready.
func TestPilotSlowBeforeSync(t *testing.T) {
	needServeFlags(t, "pilot", "pilot-source", "sync-gate", "stale-after", "proxy-id")
	p := StartPilot(t, PilotOptions{})
	p.Hang()
	d := startDataPlane(t, p, DataPlaneOptions{Index: 1})
	a := startAgent(t, agentArgs(p, d, "--pilot-source=syncz")...)
	start := time.Now()
	_, body, _, err := a.WaitHealth(10*time.Second, func(code int, body string) bool { return code == 503 && strings.Contains(body, "mesh.synced") })
	if err != nil {
		t.Fatalf("want 503 naming mesh.synced while Pilot hangs: %v", err)
	}
	t.Logf("while Pilot hangs: %s", body)
	// Keep probing (the agent refreshes when probed, as kubelet does it
	// every period): every round would ask Pilot without the backoff.
	for time.Since(start) < 8*time.Second {
		if code, body, _ := a.Health(); code == 200 {
			t.Fatalf("ready before Pilot ever answered: %s", body)
		}
		time.Sleep(interval)
	}
	calls := p.DebugRequests()["http /debug/syncz"]
	t.Logf("syncz calls reaching a hung Pilot in 8s: %d (at --interval without backoff: %d)", calls, int(8*time.Second/interval))
	if calls > 10 {
		t.Errorf("%d calls in 8s to a Pilot that never answers: not backing off", calls)
	}
	p.Unhang()
	if _, _, _, err := a.WaitHealth(backoffMax+interval+3*time.Second, is200); err != nil {
		t.Errorf("not ready once Pilot answers again: %v", err)
	}
}
