package envoyadmin

import (
	"strings"
	"testing"
)

// istioStats is an Istio-like /stats excerpt: a sidecar with app ports 8080
// and 9090, the agent's probe port 54321 captured inbound, IPv4 and IPv6
// virtualInbound, per-worker copies and the sidecar's own listeners.
const istioStats = `listener.0.0.0.0_15006.downstream_cx_active: 3
listener.0.0.0.0_15006.downstream_cx_total: 100
listener.0.0.0.0_15006.worker_0.downstream_cx_active: 2
listener.0.0.0.0_15006.worker_1.downstream_cx_active: 1
listener.0.0.0.0_15006.worker_0.downstream_cx_total: 60
listener.0.0.0.0_15006.worker_1.downstream_cx_total: 40
listener.[__]_15006.downstream_cx_active: 1
listener.[__]_15006.downstream_cx_total: 7
listener.[__]_15006.worker_0.downstream_cx_active: 1
listener.0.0.0.0_15006.http.inbound_0.0.0.0_8080.downstream_rq_completed: 50
listener.0.0.0.0_15001.downstream_cx_active: 9
listener.0.0.0.0_15001.downstream_cx_total: 900
listener.0.0.0.0_15090.downstream_cx_active: 1
listener.0.0.0.0_15021.downstream_cx_active: 1
listener.0.0.0.0_54321.downstream_cx_active: 1
listener.10.96.0.10_8080.downstream_cx_active: 5
listener.admin.downstream_cx_active: 2
listener.admin.main_thread.downstream_cx_active: 2
listener.envoy_internal_connect_originate_15006.downstream_cx_active: 4
http.inbound_0.0.0.0_8080.downstream_cx_active: 3
http.inbound_0.0.0.0_8080.downstream_cx_total: 90
http.inbound_0.0.0.0_8080.downstream_rq_active: 2
http.inbound_0.0.0.0_8080.downstream_rq_total: 40
http.inbound_0.0.0.0_9090.downstream_rq_active: 1
http.inbound_0.0.0.0_9090.downstream_rq_total: 10
http.inbound_0.0.0.0_54321.downstream_rq_active: 1
http.inbound_0.0.0.0_54321.downstream_rq_total: 500
http.inbound_0.0.0.0_15021.downstream_rq_active: 1
http.InboundPassthroughClusterIpv4.downstream_rq_active: 1
http.InboundPassthroughClusterIpv4.downstream_rq_total: 5
http.outbound_0.0.0.0_80.downstream_rq_active: 7
http.outbound_0.0.0.0_80.downstream_rq_total: 70
http.admin.downstream_rq_active: 1
http.admin.downstream_rq_total: 1000
http.stats.downstream_rq_active: 1
http.agent.downstream_rq_active: 1
cluster.inbound|8080||.upstream_rq_active: 3
http.inbound_0.0.0.0_8080.downstream_rq_time: P0(nan,1) P25(nan,2) P100(nan,9)
server.state: 0
`

func TestInboundActivityFromStats(t *testing.T) {
	t.Parallel()
	parse := func(t *testing.T, in string) Stats {
		t.Helper()
		s, err := ParseStats(strings.NewReader(in))
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	cases := []struct {
		name    string
		in      string
		exclude []int
		want    Activity
	}{
		{
			name: "istio sidecar", in: istioStats, exclude: []int{54321},
			want: Activity{
				ActiveConnections: 3 + 1, TotalConnections: 100 + 7, // virtualInbound v4 + v6, no worker copies
				ActiveRequests: 2 + 1 + 1, TotalRequests: 40 + 10 + 5, // 8080, 9090, passthrough; not 54321/15021/outbound/admin
				Series:               2 + 2 + 3 + 3,
				HasActiveConnections: true, HasTotalConnections: true, HasActiveRequests: true, HasTotalRequests: true,
			},
		},
		{
			name: "probe port not excluded", in: istioStats,
			want: Activity{
				ActiveConnections: 4, TotalConnections: 107, ActiveRequests: 5, TotalRequests: 555, Series: 12,
				HasActiveConnections: true, HasTotalConnections: true, HasActiveRequests: true, HasTotalRequests: true,
			},
		},
		{
			// Istio's default stats matcher keeps only *downstream_cx_active.
			name: "default istio inclusion list",
			in: "listener.0.0.0.0_15006.downstream_cx_active: 2\nlistener.0.0.0.0_15006.worker_0.downstream_cx_active: 2\n" +
				"http.inbound_0.0.0.0_8080.downstream_cx_active: 2\nlistener.admin.downstream_cx_active: 1\n",
			want: Activity{ActiveConnections: 2, Series: 1, HasActiveConnections: true},
		},
		{
			name: "no virtualInbound listener stats: HCMs stand in",
			in: "http.inbound_0.0.0.0_8080.downstream_cx_active: 2\nhttp.inbound_0.0.0.0_8080.downstream_cx_total: 9\n" +
				"http.inbound_10.1.2.3_9090.downstream_cx_active: 1\n",
			want: Activity{ActiveConnections: 3, TotalConnections: 9, Series: 3, HasActiveConnections: true, HasTotalConnections: true},
		},
		{
			name: "nothing inbound",
			in:   "listener.admin.downstream_cx_active: 1\nhttp.outbound_0.0.0.0_80.downstream_rq_active: 3\nserver.state: 0\n",
			want: Activity{},
		},
		{name: "empty", in: "", want: Activity{}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			if got := InboundActivityFromStats(parse(t, tc.in), tc.exclude); got != tc.want {
				t.Fatalf("got  %+v\nwant %+v", got, tc.want)
			}
		})
	}
}

func TestActivityFilterSelectsInbound(t *testing.T) {
	t.Parallel()
	// Envoy applies the filter with RE2 (older ones: std::regex); Go's
	// regexp agrees on this syntax. The filtered answer must give the same
	// Activity as the full one.
	re := mustRegexp(t, activityFilter)
	var kept []string
	for _, line := range strings.Split(strings.TrimSpace(istioStats), "\n") {
		name, _, _ := strings.Cut(line, ": ")
		if re.MatchString(name) {
			kept = append(kept, line)
		}
	}
	full, _ := ParseStats(strings.NewReader(istioStats))
	filtered, _ := ParseStats(strings.NewReader(strings.Join(kept, "\n")))
	want := InboundActivityFromStats(full, []int{54321})
	if got := InboundActivityFromStats(filtered, []int{54321}); got != want {
		t.Fatalf("filtered %+v, full %+v", got, want)
	}
	for _, l := range kept {
		if strings.Contains(l, "worker_") || strings.Contains(l, "admin") || strings.Contains(l, "outbound") {
			t.Errorf("filter keeps %q", l)
		}
	}
}
