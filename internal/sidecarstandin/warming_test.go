package sidecarstandin_test

import (
	"context"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/meshready/meshready/internal/sidecarstandin"
	"github.com/meshready/meshready/internal/sidecarstandin/adstest"
)

// TestEDSClusterWarming: as Envoy's cluster manager (Istio's EDS
// initial_fetch_timeout is 0), the stand-in is not LIVE — and opens no
// listener — until every EDS cluster has its own ClusterLoadAssignment,
// even an empty one; a first EDS response that names only some clusters
// leaves the rest warming.
func TestEDSClusterWarming(t *testing.T) {
	for _, tc := range []struct {
		name     string
		assigned []string
		live     bool
	}{
		{"every cluster assigned", []string{"outbound|7070||a", "outbound|7070||b"}, true},
		{"one cluster missing", []string{"outbound|7070||a"}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var cla []proto.Message
			for _, n := range tc.assigned {
				cla = append(cla, adstest.Endpoints(n)) // no endpoints: still an assignment
			}
			ads, err := adstest.Start("v1", map[string][]proto.Message{
				sidecarstandin.TypeCDS: {adstest.EDSCluster("outbound|7070||a"), adstest.EDSCluster("outbound|7070||b")},
				sidecarstandin.TypeEDS: cla,
				sidecarstandin.TypeLDS: {adstest.Listener("virtualOutbound")},
			})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(ads.Stop)
			d, err := sidecarstandin.Start(sidecarstandin.Options{Pilot: ads.Addr, AdminAddr: "127.0.0.1:0", Logf: t.Logf})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(d.Close)
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
			defer cancel()
			s, err := d.WaitFor(ctx, func(s sidecarstandin.Snapshot) bool {
				return s.Live() || (s.Types["EDS"].Responses > 0 && !tc.live)
			})
			if err != nil {
				t.Fatalf("%v: %s", err, s)
			}
			if !tc.live {
				time.Sleep(300 * time.Millisecond) // nothing more will come
				s = d.Snapshot()
			}
			if s.Live() != tc.live {
				t.Errorf("LIVE=%v, want %v: %s", s.Live(), tc.live, s)
			}
			if lds := s.Types["LDS"].Subscribed; lds != tc.live {
				t.Errorf("LDS subscribed=%v, want %v (Envoy asks for listeners once clusters are initialised)", lds, tc.live)
			}
		})
	}
}
