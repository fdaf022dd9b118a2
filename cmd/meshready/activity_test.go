package main

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/meshready/meshready/envoyadmin"
	"github.com/meshready/meshready/graceful"
	"github.com/meshready/meshready/probe"
)

// Only a refused connection (Envoy gone) may read as "the sidecar is gone";
// a hung admin, a 5xx or garbage must not, or the drain ends early.
func TestInboundActivityErrors(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name     string
		url      func(t *testing.T) string
		wantGone bool
	}{
		{"connection refused", closedURL, true},
		{"timeout", func(t *testing.T) string {
			s := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { <-r.Context().Done() }))
			t.Cleanup(s.Close)
			return s.URL
		}, false},
		{"HTTP 503", func(t *testing.T) string {
			s := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { http.Error(w, "overloaded", 503) }))
			t.Cleanup(s.Close)
			return s.URL
		}, false},
		{"garbage", func(t *testing.T) string {
			s := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.Write([]byte("<html>hello</html>")) }))
			t.Cleanup(s.Close)
			return s.URL
		}, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			admin, err := envoyadmin.New(tc.url(t), envoyadmin.WithTimeout(200*time.Millisecond))
			if err != nil {
				t.Fatal(err)
			}
			a := &agent{admin: admin, sidecar: probe.NewSidecar(probe.SidecarRequired, "", time.Second, nil)}
			ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
			defer cancel()
			_, err = a.inboundActivity(ctx)
			if err == nil {
				t.Fatal("no error")
			}
			if gone := errors.Is(err, graceful.ErrSidecarGone); gone != tc.wantGone {
				t.Fatalf("ErrSidecarGone=%v, want %v (err %v)", gone, tc.wantGone, err)
			}
		})
	}
}
