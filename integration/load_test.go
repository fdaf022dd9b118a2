package integration

import (
	"bufio"
	"context"
	"fmt"
	"math/rand/v2"
	"net/http"
	"os"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// TestLoadOnPilot: a rollout of N pods (default 200; MESHREADY_LOAD_PODS)
// against the real discovery server. Each pod is a data-plane stand-in and
// a real agent process (`meshready serve`, production defaults: --interval=1s,
// --sync-gate=startup, --pilot-source=auto, proxy id learned from the
// stand-in's /server_info), started over the wave (default 10s;
// MESHREADY_LOAD_WAVE) and probed as the kubelet does (GET /health every
// 1–2s, 1s timeout). When a pod's probe first passes, its endpoint turns
// ready in the app EndpointSlice, so Pilot pushes EDS to every sidecar
// during the wave, as in a real rollout (MESHREADY_LOAD_ENDPOINTS=static:
// all ready from the start, no EDS pushes). Then a rest period (default 20s;
// MESHREADY_LOAD_REST) with the kubelet still probing.
//
// Counted: every request that reaches Pilot's debug HTTP server and its
// xDS debug types. Under the startup gate there must be none at rest.
func TestLoadOnPilot(t *testing.T) {
	if testing.Short() {
		t.Skip("load test: skipped under -short")
	}
	needServeFlags(t, "pilot", "pilot-source", "sync-gate")
	n := envInt(t, "MESHREADY_LOAD_PODS", 200)
	wave := envDuration(t, "MESHREADY_LOAD_WAVE", 10*time.Second)
	rest := envDuration(t, "MESHREADY_LOAD_REST", 20*time.Second)
	// MESHREADY_LOAD_ENDPOINTS=static keeps every endpoint ready from the
	// start: no EDS pushes during the wave (to tell their cost apart).
	churn := os.Getenv("MESHREADY_LOAD_ENDPOINTS") != "static"

	p := StartPilot(t, PilotOptions{Pods: n, EndpointsNotReady: churn})

	type pod struct {
		name           string
		d              *DataPlane
		a              *Agent
		started, ready time.Time
		probes, fails  int
	}
	pods := make([]*pod, n)
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	defer func() { cancel(); wg.Wait() }()
	var mu sync.Mutex
	readyCount := 0
	allReady := make(chan struct{})
	var endpointErrs []string

	probe := func(pd *pod) {
		defer wg.Done()
		hc := &http.Client{Timeout: time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
		period := time.Second + rand.N(time.Second)
		select { // the first probe lands somewhere in the first period
		case <-ctx.Done():
			return
		case <-time.After(rand.N(period)):
		}
		tick := time.NewTicker(period)
		defer tick.Stop()
		for {
			resp, err := hc.Get(pd.a.URL + "/health")
			ok := err == nil && resp.StatusCode == 200
			if resp != nil {
				resp.Body.Close()
			}
			mu.Lock()
			pd.probes++
			if !ok {
				pd.fails++
			}
			first := ok && pd.ready.IsZero()
			if first {
				pd.ready = time.Now()
				readyCount++
				if readyCount == n {
					close(allReady)
				}
			}
			mu.Unlock()
			if first && churn {
				if err := p.SetEndpointReady(ctx, pd.name, true); err != nil && ctx.Err() == nil {
					mu.Lock()
					endpointErrs = append(endpointErrs, err.Error())
					mu.Unlock()
				}
			}
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
			}
		}
	}

	before, bytesBefore := p.DebugRequests(), p.DebugBytes()
	t0 := time.Now()
	for i := range n {
		if d := time.Until(t0.Add(wave * time.Duration(i) / time.Duration(n))); d > 0 {
			time.Sleep(d)
		}
		pd := &pod{name: fmt.Sprintf("app-%d", i+1), started: time.Now()}
		pd.d = startDataPlane(t, p, DataPlaneOptions{Index: i + 1})
		pd.a = spawnAgent(t, "--envoy-admin="+pd.d.AdminURL(), "--sidecar=required", "--pilot="+p.DebugURL(),
			"--sync-gate=startup", "--pilot-source=auto", "--log-level=warn")
		pd.a.quietOnFail = true
		pods[i] = pd
		wg.Add(1)
		go probe(pd)
	}
	started := time.Since(t0)

	select {
	case <-allReady:
	case <-time.After(wave + 90*time.Second):
		mu.Lock()
		var late []string
		for _, pd := range pods {
			if pd.ready.IsZero() {
				late = append(late, pd.name)
			}
		}
		mu.Unlock()
		v, _ := pods[0].a.Verbose()
		for _, pd := range pods {
			if pd.ready.IsZero() {
				v, _ = pd.a.Verbose()
				t.Logf("%s not ready: %s\nagent log:\n%s", pd.name, v, tail(pd.a.Log(), 20))
				break
			}
		}
		t.Fatalf("%d of %d pods never ready: %v", len(late), n, late)
	}
	waveEnd := time.Now()
	waveDur := waveEnd.Sub(t0)
	atWaveEnd, bytesWave := p.DebugRequests(), p.DebugBytes()

	time.Sleep(rest)
	atRestEnd := p.DebugRequests()
	cancel()
	wg.Wait()

	waveReqs, restReqs := atWaveEnd.Sub(before), atRestEnd.Sub(atWaveEnd)
	var lat []time.Duration
	var probes, fails int
	for _, pd := range pods {
		lat = append(lat, pd.ready.Sub(pd.started))
		probes += pd.probes
		fails += pd.fails
	}
	sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
	pct := func(q float64) time.Duration { return lat[int(q*float64(len(lat)-1))].Round(10 * time.Millisecond) }
	scale := 1000 / float64(n)
	waveRate := float64(waveReqs.Total()) / waveDur.Seconds()
	restRate := float64(restReqs.Total()) / rest.Seconds()
	rss, procs := agentRSS(pods, func(pd *pod) *Agent { return pd.a })

	// Stable lines for the README.
	endpoints := "flip-ready-on-first-probe"
	if !churn {
		endpoints = "static"
	}
	t.Logf("pilot-load: pods=%d agents=processes wave=%s (starts spread over %s) rest=%s interval=1s gate=startup source=auto kubelet-period=1-2s endpoints=%s",
		n, waveDur.Round(100*time.Millisecond), started.Round(100*time.Millisecond), rest, endpoints)
	t.Logf("pilot-load: wave requests=%d (%s) per-pod=%.2f rate=%.2f/s per-1000-pods=%.1f/s body-bytes=%d",
		waveReqs.Total(), waveReqs, float64(waveReqs.Total())/float64(n), waveRate, waveRate*scale, bytesWave-bytesBefore)
	t.Logf("pilot-load: rest requests=%d (%s) rate=%.2f/s per-1000-pods=%.2f/s",
		restReqs.Total(), restReqs, restRate, restRate*scale)
	t.Logf("pilot-load: start→ready p50=%s p90=%s p99=%s max=%s; kubelet probes=%d failed=%d",
		pct(0.5), pct(0.9), pct(0.99), lat[len(lat)-1].Round(10*time.Millisecond), probes, fails)
	if procs > 0 {
		t.Logf("pilot-load: agent RSS mean=%.1f MiB over %d processes", float64(rss)/float64(procs)/1024, procs)
	}
	if len(endpointErrs) > 0 {
		t.Errorf("endpoint updates failed: %v", endpointErrs[:min(3, len(endpointErrs))])
	}
	if restReqs.Total() != 0 {
		t.Errorf("Pilot got %d requests at rest under --sync-gate=startup (want 0): %s", restReqs.Total(), restReqs)
	}
}

// agentRSS sums VmRSS (KiB) of the agent processes still running.
func agentRSS[P any](pods []P, agent func(P) *Agent) (kib int64, procs int) {
	for _, pd := range pods {
		a := agent(pd)
		if a == nil || a.cmd.Process == nil {
			continue
		}
		f, err := os.Open(fmt.Sprintf("/proc/%d/status", a.cmd.Process.Pid))
		if err != nil {
			continue
		}
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			if v, ok := strings.CutPrefix(sc.Text(), "VmRSS:"); ok {
				if k, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64); err == nil {
					kib += k
					procs++
				}
			}
		}
		f.Close()
	}
	return kib, procs
}

func envInt(t *testing.T, name string, def int) int {
	if v := os.Getenv(name); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n <= 0 {
			t.Fatalf("%s=%q: want a positive integer", name, v)
		}
		return n
	}
	return def
}

func envDuration(t *testing.T, name string, def time.Duration) time.Duration {
	if v := os.Getenv(name); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil || d <= 0 {
			t.Fatalf("%s=%q: want a positive duration", name, v)
		}
		return d
	}
	return def
}
