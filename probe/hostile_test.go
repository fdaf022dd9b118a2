package probe

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"sync"
	"testing"
	"time"
)

// hostile opens n connections to addr that never finish a request the way
// kind says, and keeps them open until ctx ends:
//
//	slowloris  drips one header byte every 50ms, forever
//	silent     connects and sends nothing
//	idle       completes one request, then holds the keep-alive open
func hostile(ctx context.Context, t testing.TB, addr, kind string, n int) *sync.WaitGroup {
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			d := net.Dialer{Timeout: time.Second}
			for ctx.Err() == nil {
				c, err := d.DialContext(ctx, "tcp", addr)
				if err != nil {
					time.Sleep(10 * time.Millisecond)
					continue
				}
				stop := context.AfterFunc(ctx, func() { c.Close() })
				switch kind {
				case "slowloris":
					hdr := fmt.Sprintf("GET /health HTTP/1.1\r\nHost: x\r\nX-Slow-%d: ", i)
					for j := 0; ctx.Err() == nil; j++ {
						if _, err := c.Write([]byte{hdr[j%len(hdr)]}); err != nil {
							break
						}
						time.Sleep(50 * time.Millisecond)
					}
				case "silent":
					io.Copy(io.Discard, c) // until the server closes it
				case "idle":
					io.WriteString(c, "GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
					io.Copy(io.Discard, c)
				}
				stop()
				c.Close()
				// Reconnect once shed, as slowloris tools do (slowhttptest
				// opens its connections at a rate); no pause at all would be
				// a connect flood, which costs CPU on a 2-core machine, not
				// connection slots.
				select {
				case <-ctx.Done():
				case <-time.After(100 * time.Millisecond):
				}
			}
		}()
	}
	return &wg
}

// kubeletProbe is one probe as the kubelet sends it: a new connection, no
// keep-alive, a 1s timeout. It returns how long the answer took.
func kubeletProbe(url string) (time.Duration, error) {
	c := &http.Client{Timeout: time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	start := time.Now()
	resp, err := c.Get(url)
	if err != nil {
		return time.Since(start), err
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 {
		return time.Since(start), fmt.Errorf("HTTP %d", resp.StatusCode)
	}
	return time.Since(start), nil
}

// A few hundred hostile connections on the pod network — slowloris, silent,
// idle keep-alives — must not delay the kubelet's probe: every probe gets
// its answer well inside its 1s timeout. (With the former 64-connection cap
// and a 2s header timeout, probes waited 1–5s in the backlog.)
func TestProbeNotStarvedByHostileConnections(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name  string
		kinds map[string]int
	}{
		{"300 slowloris", map[string]int{"slowloris": 300}},
		{"300 silent", map[string]int{"silent": 300}},
		{"300 idle keep-alives", map[string]int{"idle": 300}},
		{"mixed 100 each", map[string]int{"slowloris": 100, "silent": 100, "idle": 100}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			ln, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithCancel(context.Background())
			done := make(chan error, 1)
			go func() { done <- ServeListener(ctx, ln, ServerOptions{Ready: readyAgg(passf(""))}) }()
			hctx, stopHostile := context.WithCancel(ctx)
			var groups []*sync.WaitGroup
			for kind, n := range tc.kinds {
				groups = append(groups, hostile(hctx, t, ln.Addr().String(), kind, n))
			}
			defer func() {
				stopHostile()
				for _, g := range groups {
					g.Wait()
				}
				cancel()
				if err := <-done; err != nil {
					t.Errorf("serve: %v", err)
				}
			}()
			time.Sleep(500 * time.Millisecond) // let the hostile connections pile up
			var worst time.Duration
			for i := range 20 {
				d, err := kubeletProbe("http://" + ln.Addr().String() + "/health")
				if err != nil {
					t.Fatalf("probe %d after %s: %v", i, d.Round(time.Millisecond), err)
				}
				worst = max(worst, d)
				time.Sleep(20 * time.Millisecond)
			}
			// Well inside the kubelet's 1s, with room for a loaded 2-core machine
			// under -race (the old server: every probe timed out at 1s).
			if worst > 600*time.Millisecond {
				t.Fatalf("slowest of 20 probes took %s (want well inside 1s)", worst.Round(time.Millisecond))
			}
			t.Logf("slowest of 20 probes: %s", worst.Round(time.Millisecond))
		})
	}
}
