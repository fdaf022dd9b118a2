package main

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/meshready/meshready/internal/standin"
)

// measureHostile is the hostile scenario: n connections that never finish a
// request, from the prober's own address (as with Istio's probe rewrite,
// where the kubelet's probe and every peer through Envoy's inbound path
// arrive from 127.0.0.6), each reconnecting 100ms after the agent sheds it;
// meanwhile a kubelet-like probe every 100ms.
func measureHostile(bin string, n, probes int) error {
	envoy := standin.NewEnvoy(standin.LiveSynced())
	defer envoy.Close()
	addr, cmd, err := startAgent(bin, envoy)
	if err != nil {
		return err
	}
	defer func() { cmd.Process.Kill(); cmd.Wait() }()
	url := "http://" + addr + "/health"
	if err := waitReady(&http.Client{Timeout: 2 * time.Second}, url); err != nil {
		return err
	}

	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	kinds := []string{"slowloris", "silent", "idle"}
	for i := range n {
		wg.Add(1)
		go func() { defer wg.Done(); hostileConn(ctx, addr, kinds[i%len(kinds)], i) }()
	}
	time.Sleep(time.Second) // let them pile up
	rss, _ := rssKiB(cmd.Process.Pid)

	lat := make([]time.Duration, 0, probes)
	var failures []string
	for range probes {
		d, err := kubeletProbe(url)
		if err != nil {
			failures = append(failures, fmt.Sprintf("after %s: %v", d.Round(time.Millisecond), err))
			d = time.Second
		}
		lat = append(lat, d)
		time.Sleep(100 * time.Millisecond)
	}
	cancel()
	wg.Wait()
	shed, refused := guardCounters(addr)

	slices.Sort(lat)
	pct := func(p float64) time.Duration { return lat[min(len(lat)-1, int(p*float64(len(lat))))] }
	fmt.Printf("hostile       %d connections (slowloris, silent, idle keep-alive; reconnecting when shed), %d kubelet-like probes (new connection, 1s timeout)\n", n, probes)
	fmt.Printf("probe latency p50 %s  p99 %s  max %s; %d failed\n", pct(.5).Round(10*time.Microsecond), pct(.99).Round(10*time.Microsecond), lat[len(lat)-1].Round(10*time.Microsecond), len(failures))
	fmt.Printf("agent         %s connections shed, %s refused; RSS under attack %.1f MiB\n", shed, refused, float64(rss)/1024)
	for _, f := range failures {
		fmt.Println("  failed probe", f)
	}
	return nil
}

func hostileConn(ctx context.Context, addr, kind string, i int) {
	d := net.Dialer{Timeout: time.Second}
	for ctx.Err() == nil {
		c, err := d.DialContext(ctx, "tcp", addr)
		if err == nil {
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
				io.Copy(io.Discard, c)
			case "idle":
				io.WriteString(c, "GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
				io.Copy(io.Discard, c)
			}
			stop()
			c.Close()
		}
		select {
		case <-ctx.Done():
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// kubeletProbe probes as the kubelet does: a new connection, no keep-alive,
// a 1s timeout.
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

// guardCounters reads the agent's shedding counters from /metrics.
func guardCounters(addr string) (shed, refused string) {
	shed, refused = "?", "?"
	resp, err := (&http.Client{Timeout: 2 * time.Second}).Get("http://" + addr + "/metrics")
	if err != nil {
		return
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "meshready_http_conns_shed_total "); ok {
			shed = v
		}
		if v, ok := strings.CutPrefix(line, "meshready_http_conns_refused_total "); ok {
			refused = v
		}
	}
	return
}
