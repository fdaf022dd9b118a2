package envoyadmin

import (
	"bytes"
	"strings"
	"testing"
	"time"

	"github.com/meshready/meshready/internal/fixture"
)

func TestFactsFromStats(t *testing.T) {
	t.Parallel()
	parse := func(t *testing.T, name string) Stats {
		t.Helper()
		b := fixture.Read(t, "envoy/stats/"+name)
		var s Stats
		var err error
		if strings.Contains(name, "prometheus") {
			s, err = ParsePrometheusStats(bytes.NewReader(b))
		} else {
			s, err = ParseStats(bytes.NewReader(b))
		}
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	consulSub := Subscription{Present: true, UpdateAttempt: 2, UpdateSuccess: 1,
		VersionHash: 17241709254077376921}
	cases := []struct {
		name  string
		stats func(t *testing.T) Stats
		want  ReadinessFacts
	}{
		{
			name:  "consul-dataplane prometheus",
			stats: func(t *testing.T) Stats { return parse(t, "consul-dataplane-envoy-stats-prometheus.txt") },
			want: ReadinessFacts{State: Live, HasState: true, WorkersStarted: true, HasWorkersStarted: true,
				CDS: withTime(consulSub, 1678856528260), LDS: withTime(consulSub, 1678856528268)},
		},
		{
			// Static bootstrap: no xDS subscriptions at all.
			name:  "static prometheus",
			stats: func(t *testing.T) Stats { return parse(t, "envoy-static-stats-prometheus.txt") },
			want:  ReadinessFacts{State: Live, HasState: true, WorkersStarted: true, HasWorkersStarted: true},
		},
		{
			// An old Envoy: no server.state, no workers_started, no cds/lds.
			name:  "elastic text",
			stats: func(t *testing.T) Stats { return parse(t, "elastic-beats-envoyproxy-serverstats.txt") },
			want:  ReadinessFacts{State: StateUnknown},
		},
		{
			name: "hand-written sidecar",
			stats: func(t *testing.T) Stats {
				s, err := ParseStats(strings.NewReader(readinessBody))
				if err != nil {
					t.Fatal(err)
				}
				return s
			},
			want: ReadinessFacts{State: Live, HasState: true, WorkersStarted: true, HasWorkersStarted: true,
				CDS: Subscription{Present: true, UpdateAttempt: 12, UpdateSuccess: 11, UpdateRejected: 1,
					VersionText: "2026-11-30T19:05:14Z/41", VersionHash: 1529838744384547423, UpdateTime: time.UnixMilli(1764529514123).UTC()},
				LDS: Subscription{Present: true, UpdateAttempt: 9, UpdateSuccess: 8, UpdateFailure: 1,
					VersionText: "2026-11-30T19:05:14Z/41", VersionHash: 1529838744384547423, UpdateTime: time.UnixMilli(1764529514200).UTC()},
				WarmingListeners: 2},
		},
		{
			name: "draining, workers not started, odd state",
			stats: func(*testing.T) Stats {
				return Stats{Values: map[string]uint64{"server.state": 1, "listener_manager.workers_started": 0}}
			},
			want: ReadinessFacts{State: Draining, HasState: true, HasWorkersStarted: true},
		},
		{
			name:  "state out of range",
			stats: func(*testing.T) Stats { return Stats{Values: map[string]uint64{"server.state": 9}} },
			want:  ReadinessFacts{State: StateUnknown, HasState: true},
		},
		{
			name: "only version_text",
			stats: func(*testing.T) Stats {
				return Stats{Text: map[string]string{"listener_manager.lds.version_text": "v1"}}
			},
			want: ReadinessFacts{State: StateUnknown, LDS: Subscription{Present: true, VersionText: "v1"}},
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			if got := FactsFromStats(tc.stats(t)); got != tc.want {
				t.Fatalf("got  %+v\nwant %+v", got, tc.want)
			}
		})
	}
}

func withTime(s Subscription, ms int64) Subscription {
	s.UpdateTime = time.UnixMilli(ms).UTC()
	return s
}

func TestStateString(t *testing.T) {
	t.Parallel()
	for s, want := range map[State]string{Live: "LIVE", Draining: "DRAINING", PreInitializing: "PRE_INITIALIZING",
		Initializing: "INITIALIZING", StateUnknown: "UNKNOWN", State(7): "UNKNOWN"} {
		if s.String() != want {
			t.Errorf("%d.String() = %q, want %q", int(s), s.String(), want)
		}
		if s >= Live && s <= Initializing && ParseState(want) != s {
			t.Errorf("ParseState(%q) = %v", want, ParseState(want))
		}
	}
	if ParseState("live") != Live || ParseState("draining") != Draining || ParseState("bogus") != StateUnknown {
		t.Error("ParseState of pre-1.9 words")
	}
}
