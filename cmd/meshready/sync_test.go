package main

import (
	"path/filepath"
	"strings"
	"testing"

	"github.com/meshready/meshready/internal/standin"
)

func TestSyncCommand(t *testing.T) {
	t.Parallel()
	synced := standin.NewEnvoy(standin.LiveSynced())
	t.Cleanup(synced.Close)
	missingToken := filepath.Join(t.TempDir(), "istio-token")
	cases := []struct {
		name    string
		args    []string
		code    int
		out     []string
		notOut  []string
		lines   int // exact stdout lines when > 0
		stderrs []string
	}{
		{"local, synced", []string{"--envoy-admin=" + synced.URL, "--sidecar=required"},
			0, []string{"TYPE", "CDS", "SYNCED", "synced: SYNCED CDS, LDS (source local)"}, nil, 0, nil},
		// Before: "SYNCED (source local)", exit 0, and no word of the token.
		{"grpcs without a token: Pilot not asked, exit 1", []string{"--envoy-admin=" + synced.URL, "--sidecar=required", "--pilot=grpcs://127.0.0.1:1", "--pilot-token=" + missingToken, "--proxy-id=app-1.default"},
			1, []string{"not synced: Pilot was not asked: ", "cannot read token file " + missingToken}, nil, 0,
			[]string{"level=WARN", "Pilot not asked: no usable token"}},
		// Before: an empty table and "not synced: " with the skip message.
		{"no sidecar: one line", []string{"--envoy-admin=" + closedURL(t), "--sidecar=none"},
			1, []string{"no proxy to compare: --sidecar=none"}, []string{"TYPE"}, 1, nil},
		// Before: "types": null.
		{"json never null", []string{"--envoy-admin=" + closedURL(t), "--sidecar=none", "--output=json"},
			1, []string{`"types":[]`}, []string{"null"}, 1, nil},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			code, out, stderr := runCLI(append([]string{"sync"}, tc.args...)...)
			if code != tc.code {
				t.Fatalf("exit %d, want %d\n%s\n%s", code, tc.code, out, stderr)
			}
			for _, w := range tc.out {
				if !strings.Contains(out, w) {
					t.Errorf("output lacks %q:\n%s", w, out)
				}
			}
			for _, w := range tc.notOut {
				if strings.Contains(out, w) {
					t.Errorf("output has %q:\n%s", w, out)
				}
			}
			if strings.Contains(out, "not synced: not synced") {
				t.Errorf("doubled wording:\n%s", out)
			}
			if tc.lines > 0 && strings.Count(out, "\n") != tc.lines {
				t.Errorf("%d lines, want %d:\n%s", strings.Count(out, "\n"), tc.lines, out)
			}
			for _, w := range tc.stderrs {
				if strings.Count(stderr, w) != 1 {
					t.Errorf("stderr has %q %d times, want once:\n%s", w, strings.Count(stderr, w), stderr)
				}
			}
		})
	}
}
