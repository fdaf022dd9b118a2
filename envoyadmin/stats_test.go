package envoyadmin

import (
	"bytes"
	"errors"
	"strings"
	"testing"

	"github.com/meshready/meshready/internal/fixture"
)

func TestParseStatsElasticFixture(t *testing.T) {
	t.Parallel()
	s, err := ParseStats(bytes.NewReader(fixture.Read(t, "envoy/stats/elastic-beats-envoyproxy-serverstats.txt")))
	if err != nil {
		t.Fatal(err)
	}
	if len(s.Values) != 41 || len(s.Text) != 0 || s.Skipped != 0 {
		t.Fatalf("got %d values, %d text, %d skipped; want 41, 0, 0", len(s.Values), len(s.Text), s.Skipped)
	}
	for name, want := range map[string]uint64{
		"cluster_manager.warming_clusters":         0,
		"listener_manager.total_listeners_warming": 0,
		"listener_manager.listener_create_success": 4,
		"server.live":                           1,
		"server.version":                        16364036,
		"server.uptime":                         5025,
		"server.days_until_first_cert_expiring": 2147483647,
		"filesystem.flushed_by_timer":           389,
		"http2.tx_reset":                        0,
	} {
		if got, ok := s.Value(name); !ok || got != want {
			t.Errorf("%s = %d (present %v), want %d", name, got, ok, want)
		}
	}
	if _, ok := s.Value("server.state"); ok {
		t.Error("server.state present; the old Envoy behind this fixture has none")
	}
}

func TestParsePrometheusStatsFixtures(t *testing.T) {
	t.Parallel()
	const consulLabels = `local_cluster="mynginx",consul_source_service="mynginx",consul_source_namespace="default",consul_source_partition="default",consul_source_datacenter="consul-sandbox-cluster-0159c9d3"`
	cases := []struct {
		file    string
		values  map[string]uint64
		absent  []string
		minKeys int
	}{
		{
			file: "consul-dataplane-envoy-stats-prometheus.txt",
			values: map[string]uint64{
				"server.state":                             0,
				"server.live":                              1,
				"listener_manager.workers_started":         1,
				"cluster_manager.cds.update_attempt":       2,
				"cluster_manager.cds.update_success":       1,
				"cluster_manager.cds.update_failure":       0,
				"cluster_manager.cds.update_rejected":      0,
				"cluster_manager.cds.version":              17241709254077376921,
				"cluster_manager.cds.update_time":          1678856528260,
				"listener_manager.lds.update_attempt":      2,
				"listener_manager.lds.update_success":      1,
				"listener_manager.lds.update_rejected":     0,
				"listener_manager.lds.version":             17241709254077376921,
				"listener_manager.lds.update_time":         1678856528268,
				"cluster_manager.warming_clusters":         0,
				"listener_manager.total_listeners_warming": 0,
				"control_plane.connected_state":            1,
				// The series under its own name and labels.
				"envoy_cluster_manager_cds_update_success{" + consulLabels + "}":                              1,
				"envoy_tcp_downstream_cx_total{" + consulLabels + `,envoy_tcp_prefix="public_listener"}`:      6507,
				"envoy_http_downstream_cx_total{" + consulLabels + `,envoy_http_conn_manager_prefix="admin"}`: 3,
				"consul_dataplane_consul_connected":                                                           1,
			},
			// Histogram and summary series are skipped.
			absent:  []string{"envoy_cluster_manager_cds_update_duration_count{" + consulLabels + "}", `consul_dataplane_connect_duration_count`},
			minKeys: 500,
		},
		{
			file: "envoy-static-stats-prometheus.txt",
			values: map[string]uint64{
				"server.state":                             0,
				"server.live":                              1,
				"listener_manager.workers_started":         1,
				"cluster_manager.warming_clusters":         0,
				"listener_manager.total_listeners_warming": 0,
				"envoy_server_state":                       0, // `{}` is stored as the bare name
				"envoy_server_uptime":                      6225,
				"envoy_server_version":                     9993205,
				`envoy_listener_downstream_cx_total{envoy_listener_address="0.0.0.0_10000"}`: 0,
				`envoy_http_downstream_rq_active{envoy_http_conn_manager_prefix="admin"}`:    1,
			},
			absent:  []string{"cluster_manager.cds.update_success", "listener_manager.lds.update_success", "control_plane.connected_state", "envoy_server_state{}"},
			minKeys: 250,
		},
	}
	for _, tc := range cases {
		t.Run(tc.file, func(t *testing.T) {
			t.Parallel()
			s, err := ParsePrometheusStats(bytes.NewReader(fixture.Read(t, "envoy/stats/"+tc.file)))
			if err != nil {
				t.Fatal(err)
			}
			if s.Skipped != 0 {
				t.Errorf("Skipped = %d, want 0", s.Skipped)
			}
			if len(s.Values) < tc.minKeys {
				t.Errorf("only %d values", len(s.Values))
			}
			for k, want := range tc.values {
				if got, ok := s.Values[k]; !ok || got != want {
					t.Errorf("%s = %d (present %v), want %d", k, got, ok, want)
				}
			}
			for _, k := range tc.absent {
				if _, ok := s.Values[k]; ok {
					t.Errorf("%s present, want absent", k)
				}
			}
		})
	}
}

func TestParseStatsLines(t *testing.T) {
	t.Parallel()
	in := strings.Join([]string{
		"cluster_manager.cds.update_success: 42",
		"cluster_manager.cds.version_text: \"2026-11-30T19:05:14Z/1\"",
		// Envoy does not escape quotes in text readouts: take first to last quote.
		`weird.readout: "abc 123 ~!@#$%^&*()-_=+;:'",<.>/?"`,
		`colon.readout: "a: b: c"`,
		`empty.readout: ""`,
		"listener.[__]_15006.downstream_cx_active: 3",
		"listener.[::]_15006.downstream_cx_total: 18446744073709551615",
		"cluster.xds-grpc.upstream_cx_length_ms: P0(nan,1) P25(nan,1.025) P50(nan,1.05) P100(nan,2.1)",
		"http.inbound_0.0.0.0_8080.downstream_rq_time: No recorded values",
		"cluster.x.upstream_rq_time: B0.5(0,0) B1(0,0) B5(1,1)",
		"trailing.cr: 7\r",
		"",
		"   ",
		"not a stat line",
		"bad.value: 12abc",
		"too.big: 18446744073709551616",
		"negative: -1",
		"unterminated.readout: \"abc",
		": 5",
		"space name: 5",
	}, "\n")
	s, err := ParseStats(strings.NewReader(in))
	if err != nil {
		t.Fatal(err)
	}
	wantValues := map[string]uint64{
		"cluster_manager.cds.update_success":       42,
		"listener.[__]_15006.downstream_cx_active": 3,
		"listener.[::]_15006.downstream_cx_total":  18446744073709551615,
		"trailing.cr": 7,
	}
	wantText := map[string]string{
		"cluster_manager.cds.version_text": "2026-11-30T19:05:14Z/1",
		"weird.readout":                    `abc 123 ~!@#$%^&*()-_=+;:'",<.>/?`,
		"colon.readout":                    "a: b: c",
		"empty.readout":                    "",
	}
	if len(s.Values) != len(wantValues) || len(s.Text) != len(wantText) {
		t.Errorf("values %v text %v", s.Values, s.Text)
	}
	for k, v := range wantValues {
		if s.Values[k] != v {
			t.Errorf("%s = %d, want %d", k, s.Values[k], v)
		}
	}
	for k, v := range wantText {
		if got, ok := s.Text[k]; !ok || got != v {
			t.Errorf("%s = %q, want %q", k, got, v)
		}
	}
	if s.Skipped != 7 {
		t.Errorf("Skipped = %d, want 7", s.Skipped)
	}
}

func TestParseStatsBodies(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name, in  string
		wantErr   bool
		values    int
		skipped   int
		errSubstr string
	}{
		{name: "empty body", in: ""},
		{name: "only newlines", in: "\n\n\r\n"},
		{name: "histograms only", in: "a.b: No recorded values\nc: P0(nan,0) P100(nan,0)\n"},
		{name: "one good among garbage", in: "garbage\nserver.state: 0\nmore garbage\n", values: 1, skipped: 2},
		{name: "garbage only", in: "hello world\nthis is not envoy\n", wantErr: true, skipped: 2, errSubstr: `not Envoy's admin API: no Envoy stats in the answer (2 lines did not parse, first "hello world")`},
		{name: "json", in: `{"stats":[{"name":"server.state","value":0}]}`, wantErr: true, skipped: 1},
		{name: "huge line", in: strings.Repeat("x", maxStatLine+10), wantErr: true, errSubstr: "longer than"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			s, err := ParseStats(strings.NewReader(tc.in))
			if (err != nil) != tc.wantErr {
				t.Fatalf("err = %v, wantErr %v", err, tc.wantErr)
			}
			if err != nil {
				if !errors.Is(err, ErrNotAdmin) || !strings.Contains(err.Error(), tc.errSubstr) {
					t.Errorf("err = %q, want ErrNotAdmin containing %q", err, tc.errSubstr)
				}
			}
			if len(s.Values) != tc.values || s.Skipped != tc.skipped {
				t.Errorf("values %d skipped %d, want %d %d", len(s.Values), s.Skipped, tc.values, tc.skipped)
			}
		})
	}
}

func TestParsePrometheusStatsLines(t *testing.T) {
	t.Parallel()
	in := strings.Join([]string{
		"# HELP envoy_server_state Current server state",
		"# TYPE envoy_server_state gauge",
		`envoy_server_state{pod="a b}"} 2`,
		"# TYPE envoy_cluster_manager_cds_update_time gauge",
		"envoy_cluster_manager_cds_update_time 1.678856528260e+12",
		`envoy_cluster_manager_cds_version_text{text_value="2026-11-30T19:05:14Z/\"1\""} 0`,
		`envoy_listener_manager_lds_version_text{text_value="v\\7"} 0`,
		"# TYPE envoy_x_seconds histogram",
		`envoy_x_seconds_bucket{le="0.5"} 3`,
		"envoy_x_seconds_sum 34.5",
		"envoy_x_seconds_count 3",
		"app_temperature -4",
		"app_ratio 0.25",
		"app_nan NaN",
		"app_with_ts 5 1700000000000",
		"bad line",
		`unclosed{a="b" 1`,
		"missing_value",
		"9starts_with_digit 1",
		"too many fields 1 2",
	}, "\n")
	s, err := ParsePrometheusStats(strings.NewReader(in))
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]uint64{
		`envoy_server_state{pod="a b}"}`:        2,
		"server.state":                          2,
		"envoy_cluster_manager_cds_update_time": 1678856528260,
		"cluster_manager.cds.update_time":       1678856528260,
		"app_with_ts":                           5,
	}
	if len(s.Values) != len(want) {
		t.Errorf("values = %v", s.Values)
	}
	for k, v := range want {
		if got, ok := s.Values[k]; !ok || got != v {
			t.Errorf("%s = %d (present %v), want %d", k, got, ok, v)
		}
	}
	if got := s.Text["cluster_manager.cds.version_text"]; got != `2026-11-30T19:05:14Z/"1"` {
		t.Errorf("cds version_text = %q", got)
	}
	if got := s.Text["listener_manager.lds.version_text"]; got != `v\7` {
		t.Errorf("lds version_text = %q", got)
	}
	if s.Skipped != 5 {
		t.Errorf("Skipped = %d, want 5", s.Skipped)
	}
	f := FactsFromStats(s)
	if !f.HasState || f.State != PreInitializing || f.CDS.VersionText != `2026-11-30T19:05:14Z/"1"` || !f.CDS.Present {
		t.Errorf("facts %+v", f)
	}

	if _, err := ParsePrometheusStats(strings.NewReader("<html>\n<body>\n")); !errors.Is(err, ErrNotAdmin) {
		t.Errorf("html: err = %v, want ErrNotAdmin", err)
	}
	if s, err := ParsePrometheusStats(strings.NewReader("")); err != nil || len(s.Values) != 0 {
		t.Errorf("empty: %v %v", s, err)
	}
}

// readinessBody is what ReadinessFacts' filtered /stats returns from a
// current sidecar.
const readinessBody = `cluster_manager.cds.update_attempt: 12
cluster_manager.cds.update_failure: 0
cluster_manager.cds.update_rejected: 1
cluster_manager.cds.update_success: 11
cluster_manager.cds.update_time: 1764529514123
cluster_manager.cds.version: 1529838744384547423
cluster_manager.warming_clusters: 0
listener_manager.lds.update_attempt: 9
listener_manager.lds.update_failure: 1
listener_manager.lds.update_rejected: 0
listener_manager.lds.update_success: 8
listener_manager.lds.update_time: 1764529514200
listener_manager.lds.version: 1529838744384547423
listener_manager.total_listeners_warming: 2
listener_manager.workers_started: 1
server.state: 0
cluster_manager.cds.version_text: "2026-11-30T19:05:14Z/41"
listener_manager.lds.version_text: "2026-11-30T19:05:14Z/41"
`

func BenchmarkParseStats(b *testing.B) {
	b.ReportAllocs()
	b.SetBytes(int64(len(readinessBody)))
	for b.Loop() {
		if _, err := ParseStats(strings.NewReader(readinessBody)); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkFactsFromStats(b *testing.B) {
	s, err := ParseStats(strings.NewReader(readinessBody))
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		_ = FactsFromStats(s)
	}
}
