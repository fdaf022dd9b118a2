package envoyadmin

import (
	"bytes"
	"os"
	"strings"
	"testing"

	"github.com/meshready/meshready/internal/fixture"
)

// Seeds are the real fixtures plus the hand-written edge cases; the fuzzers
// only demand that no input panics and that results stay self-consistent.
//
// The fixtures run to 360 KB, and the fuzzer minimises every new input for
// up to a minute by default, so a 20 s run spends itself minimising one big
// input. Run with a short minimisation, e.g.
//
//	go test -run='^$' -fuzz=FuzzParseStats -fuzztime=20s -fuzzminimizetime=2s ./envoyadmin/
//
// Each fixture's first 2 KiB is added as well, giving the mutator small
// starting points that still look like Envoy.
func addFixtures(f *testing.F, patterns ...string) {
	for _, p := range patterns {
		for _, path := range fixture.Glob(f, p) {
			b, err := os.ReadFile(path)
			if err != nil {
				f.Fatal(err)
			}
			f.Add(b)
			if len(b) > 2048 {
				f.Add(b[:2048])
			}
		}
	}
}

func FuzzParseStats(f *testing.F) {
	addFixtures(f, "envoy/stats/*")
	f.Add([]byte(readinessBody))
	f.Add([]byte(istioStats))
	f.Add([]byte("a: \"\"\"\nb: \"\nc: P0(\nd: 18446744073709551615\ne: 18446744073709551616\n: \n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		s, err := ParseStats(bytes.NewReader(b))
		if s.Skipped < 0 || s.Values == nil || s.Text == nil {
			t.Fatalf("inconsistent %+v", s)
		}
		if err == nil {
			_ = FactsFromStats(s)
			_ = InboundActivityFromStats(s, []int{54321})
		} else if strings.ContainsAny(err.Error(), "\n\r") {
			t.Fatalf("multi-line error %q", err)
		}
	})
}

func FuzzParsePrometheusStats(f *testing.F) {
	addFixtures(f, "envoy/stats/*prometheus*")
	f.Add([]byte("# TYPE x histogram\nx_bucket{le=\"+Inf\"} 1\nx_sum 1.5\nenvoy_server_state{a=\"\\\"}\"} 1e3\n"))
	f.Add([]byte(`envoy_cluster_manager_cds_version_text{text_value="a\\"} 0` + "\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		s, err := ParsePrometheusStats(bytes.NewReader(b))
		if s.Skipped < 0 || s.Values == nil || s.Text == nil {
			t.Fatalf("inconsistent %+v", s)
		}
		if err == nil {
			_ = FactsFromStats(s)
		} else if strings.ContainsAny(err.Error(), "\n\r") {
			t.Fatalf("multi-line error %q", err)
		}
	})
}

func FuzzParseServerInfo(f *testing.F) {
	addFixtures(f, "envoy/server_info/*")
	f.Add([]byte(`{"state":2,"uptime_current_epoch":"99999999999999999999s","command_line_options":{"drain_time":"1e9s"}}`))
	f.Add([]byte("envoy x live -5 99999999999999999999 0"))
	f.Fuzz(func(t *testing.T, b []byte) {
		si, err := ParseServerInfo(b)
		if err != nil {
			if strings.ContainsAny(err.Error(), "\n\r") {
				t.Fatalf("multi-line error %q", err)
			}
			return
		}
		if si.UptimeCurrentEpoch < 0 || si.UptimeAllEpochs < 0 || si.DrainTime < 0 {
			t.Fatalf("negative duration %+v", si)
		}
		_ = si.State.String()
	})
}

func FuzzParseConfigDump(f *testing.F) {
	addFixtures(f, "envoy/config_dump/*.json", "envoy/clusters/*.json")
	f.Add([]byte(`{"configs":[{"@type":"type.googleapis.com/envoy.admin.v3.ListenersConfigDump.DynamicListener","name":"l","warming_state":{"version_info":"1"},"error_state":{"details":"x"}}]}`))
	f.Add([]byte(`{"configs":[{"dynamic_active_clusters":null,"@type":"type.googleapis.com/envoy.admin.v2alpha.ClustersConfigDump"}]}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		d, err := ParseConfigDump(bytes.NewReader(b))
		if err != nil {
			if strings.ContainsAny(err.Error(), "\n\r") {
				t.Fatalf("multi-line error %q", err)
			}
			return
		}
		seen := map[string]bool{}
		for _, td := range d.Types {
			if td.Kind == "" || !strings.HasPrefix(td.TypeURL, "type.googleapis.com/") || seen[td.Kind] {
				t.Fatalf("bad type dump %+v", td)
			}
			seen[td.Kind] = true
			if got, ok := d.Type(td.Kind); !ok || got.Kind != td.Kind {
				t.Fatalf("Type(%q) lookup failed", td.Kind)
			}
		}
	})
}
