package probe

import (
	"context"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/meshready/meshready/envoyadmin"
	"github.com/meshready/meshready/internal/standin"
)

func envoyAgg(t *testing.T, url string, sc *Sidecar) *Aggregator {
	t.Helper()
	admin, err := envoyadmin.New(url, envoyadmin.WithTimeout(500*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	return NewAggregator(EnvoyChecks(admin, sc), AggregatorOptions{Interval: time.Nanosecond, Timeout: time.Second})
}

func outcome(t *testing.T, v *Verdict, name string) Result {
	t.Helper()
	o, ok := v.Outcome(name)
	if !ok {
		t.Fatalf("no %s in verdict", name)
	}
	return o.Result
}

func TestEnvoyChecksOneShot(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name               string
		mutate             func(*standin.EnvoyState)
		live, config       Status
		liveMsg, configMsg string
	}{
		{"live and synced", func(*standin.EnvoyState) {}, Pass, Pass, "LIVE", "config received"},
		{"draining", func(s *standin.EnvoyState) { s.State = 1 }, Fail, Pass, "Envoy is DRAINING, not LIVE", ""},
		{"pre-initializing", func(s *standin.EnvoyState) { s.State = 2 }, Fail, Pass, "PRE_INITIALIZING", ""},
		{"initializing", func(s *standin.EnvoyState) { s.State = 3 }, Fail, Pass, "INITIALIZING", ""},
		{"workers not started", func(s *standin.EnvoyState) { s.WorkersStarted = false }, Fail, Pass, "workers have not started", ""},
		{"no config yet", func(s *standin.EnvoyState) { s.CDSSuccess, s.LDSSuccess = 0, 0 }, Pass, Fail, "", "config not received from Pilot (is Pilot running?): cds updates: 0 successful"},
		{"cds only", func(s *standin.EnvoyState) { s.LDSSuccess = 0 }, Pass, Fail, "", "config not received from Pilot"},
		{"rejected before any success", func(s *standin.EnvoyState) { s.CDSSuccess, s.LDSSuccess, s.CDSRejected = 0, 0, 2 }, Pass, Fail, "", "config received but rejected: cds updates: 0 successful, 2 rejected"},
		{"warming before first success", func(s *standin.EnvoyState) { s.WarmingClusters = 3 }, Pass, Fail, "", "config not fully received: 3 clusters, 0 listeners warming"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			s := standin.LiveSynced()
			tc.mutate(&s)
			e := standin.NewEnvoy(s)
			defer e.Close()
			v := envoyAgg(t, e.URL, NewSidecar(SidecarRequired, "", time.Minute, nil)).Verdict(context.Background())
			live, cfg := outcome(t, v, "envoy.live"), outcome(t, v, "envoy.config")
			if live.Status != tc.live || !strings.Contains(live.Message, tc.liveMsg) {
				t.Errorf("envoy.live = %s %q", live.Status, live.Message)
			}
			if cfg.Status != tc.config || !strings.Contains(cfg.Message, tc.configMsg) {
				t.Errorf("envoy.config = %s %q", cfg.Status, cfg.Message)
			}
			// One /stats read per round; a warming or rejected config adds
			// one /config_dump read to name the culprit (culprits_test.go).
			want := int64(1)
			if strings.Contains(tc.configMsg, "warming") || strings.Contains(tc.configMsg, "rejected") {
				want = 2
			}
			if got := e.Requests(); got != want {
				t.Errorf("one round made %d admin requests, want %d", got, want)
			}
		})
	}
}

// After the first good config, a rejected push or warming resources are
// degraded (still ready) until a good update arrives; a restarted Envoy
// must earn its first config again.
func TestEnvoyConfigAfterFirstSuccess(t *testing.T) {
	t.Parallel()
	e := standin.NewEnvoy(standin.LiveSynced())
	defer e.Close()
	a := envoyAgg(t, e.URL, NewSidecar(SidecarRequired, "", time.Minute, nil))
	step := func(name string, mutate func(*standin.EnvoyState), want Status, msg string) {
		t.Helper()
		e.Set(mutate)
		v := a.Refresh(context.Background())
		r := outcome(t, v, "envoy.config")
		if r.Status != want || !strings.Contains(r.Message, msg) {
			t.Fatalf("%s: envoy.config = %s %q, want %s %q", name, r.Status, r.Message, want, msg)
		}
		if v.Ready != want.OK() {
			t.Fatalf("%s: ready=%v", name, v.Ready)
		}
	}
	step("first good config", func(*standin.EnvoyState) {}, Pass, "config received")
	step("a push rejected", func(s *standin.EnvoyState) { s.CDSRejected = 1 }, Degraded, "rejected after the first good config (cds 1, lds 0")
	step("still no good update", func(*standin.EnvoyState) {}, Degraded, "cds 1")
	step("another rejected", func(s *standin.EnvoyState) { s.LDSRejected = 1 }, Degraded, "cds 1, lds 1")
	step("good update heals cds", func(s *standin.EnvoyState) { s.CDSSuccess = 2 }, Degraded, "cds 0, lds 1")
	step("good update heals lds", func(s *standin.EnvoyState) { s.LDSSuccess = 2 }, Pass, "config received")
	step("warming after first success", func(s *standin.EnvoyState) { s.WarmingListeners = 1 }, Degraded, "0 clusters, 1 listeners warming")
	step("warm again", func(s *standin.EnvoyState) { s.WarmingListeners = 0 }, Pass, "")
	step("sidecar restarted", func(s *standin.EnvoyState) { s.CDSSuccess, s.LDSSuccess, s.CDSRejected, s.LDSRejected = 0, 0, 0, 0 }, Fail, "config not received")
	step("restarted sidecar rejects", func(s *standin.EnvoyState) { s.CDSRejected = 1 }, Fail, "config received but rejected")
	step("restarted sidecar synced", func(s *standin.EnvoyState) { s.CDSSuccess, s.LDSSuccess = 1, 1 }, Pass, "")
}

// envoy.live is re-read every round: Envoy that dies or drains after being
// ready turns the pod unready (Istio's agent latches its first success).
func TestEnvoyLiveIsNotLatched(t *testing.T) {
	t.Parallel()
	e := standin.NewEnvoy(standin.LiveSynced())
	a := envoyAgg(t, e.URL, NewSidecar(SidecarRequired, "", time.Minute, nil))
	if v := a.Refresh(context.Background()); !v.Ready {
		t.Fatalf("not ready: %s", v.Reason)
	}
	e.Set(func(s *standin.EnvoyState) { s.State = 1 })
	if v := a.Refresh(context.Background()); v.Ready || !strings.Contains(v.Reason, "DRAINING") {
		t.Fatalf("draining Envoy still ready: %q", v.Reason)
	}
	e.Close()
	v := a.Refresh(context.Background())
	if v.Ready || !strings.Contains(v.Reason, "envoy.live") || !strings.Contains(v.Reason, "refused") {
		t.Fatalf("dead Envoy: %q", v.Reason)
	}
}

func closedURL(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return "http://" + addr
}

func writeAnnotations(t *testing.T, content string) string {
	t.Helper()
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "annotations"), []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	return dir
}

func TestSidecarDetection(t *testing.T) {
	t.Parallel()
	injected := writeAnnotations(t, "kubectl.kubernetes.io/restartedAt=\"x\"\nsidecar.istio.io/status=\"{\\\"initContainers\\\":[\\\"istio-init\\\"]}\"\n")
	plain := writeAnnotations(t, "prometheus.io/scrape=\"true\"\n")
	missing := filepath.Join(t.TempDir(), "nope")
	cases := []struct {
		name     string
		mode     SidecarMode
		podinfo  string
		timeout  time.Duration
		envoyUp  bool
		status   Status
		msg      string
		requests bool // whether the admin API may be called at all
	}{
		{"none skips without calling Envoy", SidecarNone, missing, time.Minute, true, Skip, "--sidecar=none", false},
		{"annotation says injected, Envoy down", SidecarAuto, injected, time.Minute, false, Fail, "refused", true},
		{"annotation says injected, Envoy up", SidecarAuto, injected, time.Minute, true, Pass, "LIVE", true},
		{"annotations without istio status", SidecarAuto, plain, time.Minute, true, Skip, "has no sidecar.istio.io/status", false},
		{"no annotations, admin answers", SidecarAuto, missing, time.Minute, true, Pass, "LIVE", true},
		{"no annotations, admin silent, still waiting", SidecarAuto, missing, time.Minute, false, Fail, "waiting for the sidecar", true},
		{"no annotations, admin silent past start timeout", SidecarAuto, missing, time.Nanosecond, false, Skip, "no sidecar: Envoy's admin port did not answer within", true},
		{"required and down", SidecarRequired, plain, time.Nanosecond, false, Fail, "refused", true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			e := standin.NewEnvoy(standin.LiveSynced())
			defer e.Close()
			url := e.URL
			if !tc.envoyUp {
				url = closedURL(t)
			}
			sc := NewSidecar(tc.mode, tc.podinfo, tc.timeout, nil)
			time.Sleep(time.Millisecond)
			v := envoyAgg(t, url, sc).Verdict(context.Background())
			r := outcome(t, v, "envoy.live")
			if r.Status != tc.status || !strings.Contains(r.Message, tc.msg) {
				t.Fatalf("envoy.live = %s %q, want %s %q", r.Status, r.Message, tc.status, tc.msg)
			}
			if !tc.requests && e.Requests() != 0 {
				t.Fatalf("Envoy's admin was called %d times", e.Requests())
			}
		})
	}
}

// Once the admin port answered, a later outage is a broken sidecar, not a
// pod without one.
func TestSidecarOnceSeenStaysRequired(t *testing.T) {
	t.Parallel()
	e := standin.NewEnvoy(standin.LiveSynced())
	sc := NewSidecar(SidecarAuto, filepath.Join(t.TempDir(), "none"), time.Nanosecond, nil)
	a := envoyAgg(t, e.URL, sc)
	if v := a.Refresh(context.Background()); !v.Ready {
		t.Fatal(v.Reason)
	}
	e.Close()
	time.Sleep(time.Millisecond)
	if v := a.Refresh(context.Background()); v.Ready {
		t.Fatal("Envoy gone after detection, still ready")
	}
	if present, decided, _ := sc.State(); !present || !decided {
		t.Fatalf("present=%v decided=%v", present, decided)
	}
}
