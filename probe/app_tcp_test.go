package probe

import (
	"context"
	"net"
	"strings"
	"testing"
	"time"
)

func TestAppTCP(t *testing.T) {
	t.Parallel()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			c.Close()
		}
	}()
	closed := "tcp://" + closedAddr(t)
	cases := []struct {
		name, raw string
		want      Status
		msg       string
	}{
		{"open port", "tcp://" + ln.Addr().String(), Pass, "connected"},
		{"closed port", closed, Fail, closed + ": connection refused"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			r, err := AppCheck(mustTarget(t, tc.raw), AppOptions{})(ctx)
			if err != nil || r.Status != tc.want || r.Message != tc.msg {
				t.Errorf("got %+v, %v; want %s %q", r, err, tc.want, tc.msg)
			}
		})
	}
}

func TestAppTCPDeadline(t *testing.T) {
	t.Parallel()
	t.Run("expired", func(t *testing.T) {
		t.Parallel()
		ctx, cancel := context.WithTimeout(context.Background(), -time.Second)
		defer cancel()
		raw := "tcp://" + closedAddr(t)
		r, err := AppCheck(mustTarget(t, raw), AppOptions{})(ctx)
		if err != nil || r.Status != Fail || r.Message != raw+": timed out" {
			t.Errorf("got %+v, %v", r, err)
		}
	})
	t.Run("unroutable", func(t *testing.T) {
		t.Parallel()
		// TEST-NET-1: SYNs go nowhere, or a firewall answers at once; either
		// way a Fail within the deadline.
		const raw, deadline = "tcp://192.0.2.1:9", 200 * time.Millisecond
		ctx, cancel := context.WithTimeout(context.Background(), deadline)
		defer cancel()
		start := time.Now()
		r, err := AppCheck(mustTarget(t, raw), AppOptions{})(ctx)
		if el := time.Since(start); el > deadline+300*time.Millisecond {
			t.Errorf("returned after %v", el)
		}
		if err != nil || r.Status != Fail || !strings.HasPrefix(r.Message, raw+": ") {
			t.Errorf("got %+v, %v", r, err)
		}
	})
}
