package envoyadmin

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/meshready/meshready/internal/fixture"
)

func TestParseServerInfoFixtures(t *testing.T) {
	t.Parallel()
	cases := []struct {
		file string
		want ServerInfo
	}{
		{"envoy-1.8.0-server_info-legacy-text.txt", ServerInfo{State: Live,
			Version:            "5d25f466c3410c0dfa735d7d4358beb76b2da507/1.8.0/Clean/RELEASE",
			UptimeCurrentEpoch: 581130 * time.Second, UptimeAllEpochs: 581130 * time.Second}},
		{"envoy-1.18.3-server_info-LIVE-trimmed.json", ServerInfo{State: Live,
			Version: "98c1c9e9a40804b93b074badad1cdf284b47d58b/1.18.3/Clean/RELEASE/BoringSSL"}},
		{"envoy-1.14.1-server_info-LIVE-trimmed.json", ServerInfo{State: Live,
			Version: "222aaacccfff888/1.14.1/Clean/RELEASE/BoringSSL"}},
	}
	if n := len(fixture.Glob(t, "envoy/server_info/*")); n != len(cases) {
		t.Errorf("%d server_info fixtures, %d asserted", n, len(cases))
	}
	for _, tc := range cases {
		t.Run(tc.file, func(t *testing.T) {
			t.Parallel()
			got, err := ParseServerInfo(fixture.Read(t, "envoy/server_info/"+tc.file))
			if err != nil {
				t.Fatal(err)
			}
			if got != tc.want {
				t.Fatalf("got  %+v\nwant %+v", got, tc.want)
			}
		})
	}
}

func TestParseServerInfo(t *testing.T) {
	t.Parallel()
	full := `{
 "version": "abc/1.36.2/Clean/RELEASE/BoringSSL",
 "state": "DRAINING",
 "hot_restart_version": "11.104",
 "command_line_options": {"base_id": "0", "service_node": "sidecar~10.0.0.1~old.default~default.svc.cluster.local",
  "drain_time": "45s", "drain_strategy": "Immediate", "restart_epoch": 0},
 "uptime_current_epoch": "3600.250s",
 "uptime_all_epochs": "7200s",
 "node": {"id": "sidecar~10.0.0.1~app-1.default~default.svc.cluster.local", "cluster": "app.default"}
}`
	cases := []struct {
		name, in string
		want     ServerInfo
		err      error
	}{
		{name: "full v3", in: full, want: ServerInfo{State: Draining, Version: "abc/1.36.2/Clean/RELEASE/BoringSSL",
			NodeID: "sidecar~10.0.0.1~app-1.default~default.svc.cluster.local", UptimeCurrentEpoch: 3600250 * time.Millisecond,
			UptimeAllEpochs: 7200 * time.Second, DrainTime: 45 * time.Second, DrainStrategy: "Immediate"}},
		{name: "service_node fallback", in: `{"state":"PRE_INITIALIZING","command_line_options":{"service_node":"n1"}}`,
			want: ServerInfo{State: PreInitializing, NodeID: "n1"}},
		{name: "numeric state", in: `{"state":3,"version":"v"}`, want: ServerInfo{State: Initializing, Version: "v"}},
		{name: "unknown state", in: `{"state":"HIBERNATING","version":"v"}`, want: ServerInfo{State: StateUnknown, Version: "v"}},
		{name: "bad durations ignored", in: `{"state":"LIVE","uptime_current_epoch":"forever","uptime_all_epochs":"-5s"}`, want: ServerInfo{State: Live}},
		{name: "legacy draining", in: "envoy abc/1.7.0/Clean/RELEASE draining 10 20 1\n", want: ServerInfo{State: Draining, Version: "abc/1.7.0/Clean/RELEASE",
			UptimeCurrentEpoch: 10 * time.Second, UptimeAllEpochs: 20 * time.Second}},
		{name: "legacy short", in: "envoy abc", err: ErrMalformed},
		{name: "truncated json", in: `{"version": "abc/1.18.3", "sta`, err: ErrMalformed},
		{name: "json without state or version", in: `{"foo": 1}`, err: ErrNotAdmin},
		{name: "html", in: "<!DOCTYPE html><html></html>", err: ErrNotAdmin},
		{name: "empty", in: "", err: ErrNotAdmin},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			got, err := ParseServerInfo([]byte(tc.in))
			if tc.err != nil {
				if !errors.Is(err, tc.err) || strings.Contains(err.Error(), "\n") {
					t.Fatalf("err = %v, want %v", err, tc.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got != tc.want {
				t.Fatalf("got  %+v\nwant %+v", got, tc.want)
			}
		})
	}
}
