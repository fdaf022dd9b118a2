package integration

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"os"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/meshready/meshready/internal/localcluster"
)

// TestClusterLoadOnIstiod: N agents (default 200; MESHREADY_LOAD_PODS)
// against the real istiod process, counting every request they make to it.
//
// What is real: istiod (pilot-discovery) and the apiserver it watches; the
// agent processes (`meshready serve`, production defaults: --interval=1s,
// --sync-gate=startup, --pilot-source=auto, the proxy id learned from the
// stand-in's /server_info); each agent's sidecar is an in-process data-plane
// stand-in holding a real ADS stream to istiod (istiod pushes it CDS, EDS,
// LDS, RDS and lists it in /debug/syncz, as for a pod's Envoy).
//
// What stands in: there are no Pods (the kubelet stand-in would need ~N
// pod starts; the agents' load on istiod does not depend on them). The
// pods' endpoints are an EndpointSlice of ours for a selectorless Service
// app in namespace load: every endpoint starts not ready and turns ready on
// its agent's first passing probe (the test probes each agent as the
// kubelet does: GET /health every 1–2 s, 1 s timeout), so istiod pushes EDS
// to every proxy during the wave, as in a real rollout. Flips are written
// in batches every 100 ms (the EndpointSlice controller's batching).
//
// Phases: the wave (agents started over MESHREADY_LOAD_WAVE, default 10s,
// until every one is ready), rest (MESHREADY_LOAD_REST, default 20s), and
// a rollout seen by the running proxies (MESHREADY_LOAD_ROLLOUT, default
// 10s: every endpoint turns not ready and ready again, in 10 steps, so
// istiod pushes EDS to all of them repeatedly). Each agent's --pilot is a
// counting reverse proxy in front of istiod's debug HTTP
// (localcluster.IstiodDebugURL). Under the startup gate there must be no
// request at rest or during the rollout, and no agent may turn unready.
func TestClusterLoadOnIstiod(t *testing.T) {
	if testing.Short() {
		t.Skip("load test: skipped under -short")
	}
	m := needClusterMesh(t)
	needServeFlags(t, "pilot", "pilot-source", "sync-gate")
	n := envInt(t, "MESHREADY_LOAD_PODS", 200)
	wave := envDuration(t, "MESHREADY_LOAD_WAVE", 10*time.Second)
	rest := envDuration(t, "MESHREADY_LOAD_REST", 20*time.Second)
	rollout := envDuration(t, "MESHREADY_LOAD_ROLLOUT", 10*time.Second)
	if n > 250*250 {
		t.Fatalf("MESHREADY_LOAD_PODS=%d: at most %d", n, 250*250)
	}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	defer func() { cancel(); wg.Wait() }()

	const ns = "load"
	if err := m.Cluster.Apply(ctx, `apiVersion: v1
kind: Namespace
metadata: {name: load}
---
apiVersion: v1
kind: Service
metadata: {name: app, namespace: load}
spec:
  ports:
  - {name: http, port: 8080, targetPort: 8080, protocol: TCP}
`); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if _, err := m.Cluster.Kubectl(context.Background(), nil, "delete", "namespace", ns, "--wait=false"); err != nil {
			t.Log(err)
		}
	})
	ip := func(i int) string { return fmt.Sprintf("10.245.%d.%d", i/250, i%250+1) }
	slices := &loadSlice{c: m, ns: ns, name: "app-load", n: n, ip: ip}
	if err := slices.create(ctx); err != nil {
		t.Fatal(err)
	}
	flips := make(chan int, n)
	wg.Add(1)
	go func() { defer wg.Done(); slices.writeFlips(ctx, flips) }()

	counter, err := StartPilotCounter(localcluster.IstiodDebugURL)
	if err != nil {
		t.Fatal(err)
	}
	defer counter.Close()

	type pod struct {
		name           string
		d              *DataPlane
		a              *Agent
		started, ready time.Time
		probes, fails  int
		failsAfter     int // failed probes after every pod was ready
		unreadyAfter   int // of which the agent answered, not 200 (not a timeout)
	}
	pods := make([]*pod, n)
	var mu sync.Mutex
	readyCount := 0
	allReady := make(chan struct{})
	everyoneReady := false
	var afterWhy []string // the first probes that failed after every pod was ready

	probe := func(pd *pod, i int) {
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
			why := ""
			if err != nil {
				why = err.Error()
			} else if !ok {
				b, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
				why = fmt.Sprintf("%d %s", resp.StatusCode, strings.TrimSpace(string(b)))
			}
			if resp != nil {
				resp.Body.Close()
			}
			mu.Lock()
			pd.probes++
			if !ok {
				pd.fails++
				if everyoneReady {
					pd.failsAfter++
					if err == nil {
						pd.unreadyAfter++
					}
					if len(afterWhy) < 5 {
						afterWhy = append(afterWhy, fmt.Sprintf("%s at %s: %s", pd.name, time.Now().Format("15:04:05.000"), why))
					}
				}
			}
			first := ok && pd.ready.IsZero()
			if first {
				pd.ready = time.Now()
				readyCount++
				if readyCount == n {
					everyoneReady = true
					close(allReady)
				}
			}
			mu.Unlock()
			if first {
				flips <- i
			}
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
			}
		}
	}

	istiod := m.Cluster.Pid("istiod")
	pushes := func() float64 { return istiodCounter(localcluster.IstiodMonitorURL+"/metrics", "pilot_xds_pushes") }
	before, cpu0, push0 := counter.Requests(), procCPU(istiod), pushes()
	t0 := time.Now()
	for i := range n {
		if d := time.Until(t0.Add(wave * time.Duration(i) / time.Duration(n))); d > 0 {
			time.Sleep(d)
		}
		pd := &pod{name: fmt.Sprintf("load-%d", i+1), started: time.Now()}
		// Each pod's sidecar admin and agent on a loopback address of its
		// own (all of 127/8 is local), fixed ports: 400 ephemeral ports
		// picked while 400 processes bind would collide.
		lo := fmt.Sprintf("127.2.%d.%d", i/250, i%250+1)
		d, err := StartDataPlane(DataPlaneOptions{Pilot: localcluster.IstiodXDS, Pod: pd.name, Namespace: ns, IP: ip(i),
			Labels: map[string]string{"app": "app", "version": "v1"}, Workload: "app", AdminAddr: lo + ":15000"})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(d.Close)
		pd.d = d
		pd.a = spawnAgentOn(t, lo+":54321", "--envoy-admin="+d.AdminURL(), "--sidecar=required", "--pilot="+counter.URL,
			"--sync-gate=startup", "--pilot-source=auto", "--log-level=warn")
		pd.a.quietOnFail = true
		pods[i] = pd
		wg.Add(1)
		go probe(pd, i)
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
		for _, pd := range pods {
			if pd.ready.IsZero() {
				v, _ := pd.a.Verbose()
				t.Logf("%s not ready: %s\nstand-in: %s\nagent log:\n%s", pd.name, v, pd.d.Snapshot(), tail(pd.a.Log(), 20))
				break
			}
		}
		t.Fatalf("%d of %d agents never ready: %v", len(late), n, late[:min(10, len(late))])
	}
	waveDur := time.Since(t0)
	t.Logf("every agent ready at %s; rest until %s, then the rollout", time.Now().Format("15:04:05.000"), time.Now().Add(rest).Format("15:04:05.000"))
	atWave, bytesWave, cpuWave, pushWave := counter.Requests(), counter.Bytes(), procCPU(istiod), pushes()

	time.Sleep(rest)
	atRest, cpuRest, pushRest := counter.Requests(), procCPU(istiod), pushes()

	// The rollout the running proxies see: every endpoint not ready, then
	// ready again, a tenth of them at a time.
	steps := 10
	r0 := time.Now()
	for s := range steps {
		var idx []int
		for i := s; i < n; i += steps {
			idx = append(idx, i)
		}
		if err := slices.set(ctx, idx, false); err != nil {
			t.Fatal(err)
		}
		time.Sleep(rollout / time.Duration(2*steps))
		if err := slices.set(ctx, idx, true); err != nil {
			t.Fatal(err)
		}
		time.Sleep(rollout / time.Duration(2*steps))
	}
	time.Sleep(2 * time.Second) // the last pushes land, the probes see them
	rolloutDur := time.Since(r0)
	atRollout, cpuRollout, pushRollout := counter.Requests(), procCPU(istiod), pushes()
	cancel()
	wg.Wait()

	waveReqs, restReqs, rollReqs := atWave.Sub(before), atRest.Sub(atWave), atRollout.Sub(atRest)
	var lat []time.Duration
	var probes, fails, failsAfter, unreadyAfter int
	for _, pd := range pods {
		lat = append(lat, pd.ready.Sub(pd.started))
		probes += pd.probes
		fails += pd.fails
		failsAfter += pd.failsAfter
		unreadyAfter += pd.unreadyAfter
	}
	sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
	pct := func(q float64) time.Duration { return lat[int(q*float64(len(lat)-1))].Round(10 * time.Millisecond) }
	scale := 1000 / float64(n)
	waveRate := float64(waveReqs.Total()) / waveDur.Seconds()
	restRate := float64(restReqs.Total()) / rest.Seconds()
	rss, procs := agentRSS(pods, func(pd *pod) *Agent { return pd.a })

	// Stable lines for the README.
	t.Logf("istiod-load: pods=%d agents=processes sidecars=in-process stand-ins (real ADS streams) pods-objects=none wave=%s (starts spread over %s) rest=%s rollout=%s interval=1s gate=startup source=auto kubelet-period=1-2s",
		n, waveDur.Round(100*time.Millisecond), started.Round(100*time.Millisecond), rest, rolloutDur.Round(100*time.Millisecond))
	t.Logf("istiod-load: wave requests=%d (%s) per-pod=%.2f rate=%.2f/s per-1000-pods=%.1f/s body-bytes=%d",
		waveReqs.Total(), waveReqs, float64(waveReqs.Total())/float64(n), waveRate, waveRate*scale, bytesWave)
	t.Logf("istiod-load: rest requests=%d (%s) rate=%.2f/s per-1000-pods=%.2f/s",
		restReqs.Total(), restReqs, restRate, restRate*scale)
	t.Logf("istiod-load: rollout requests=%d (%s); endpoint flips=%d", rollReqs.Total(), rollReqs, 2*n)
	t.Logf("istiod-load: start→ready p50=%s p90=%s p99=%s max=%s; kubelet probes=%d failed=%d (after all ready: %d)",
		pct(0.5), pct(0.9), pct(0.99), lat[len(lat)-1].Round(10*time.Millisecond), probes, fails, failsAfter)
	if istiod != 0 {
		t.Logf("istiod-load: istiod CPU wave=%.1fs rest=%.1fs rollout=%.1fs; xDS pushes (pilot_xds_pushes) wave=%.0f rest=%.0f rollout=%.0f",
			cpuWave-cpu0, cpuRest-cpuWave, cpuRollout-cpuRest, pushWave-push0, pushRest-pushWave, pushRollout-pushRest)
	}
	if procs > 0 {
		t.Logf("istiod-load: agent RSS mean=%.1f MiB over %d processes", float64(rss)/float64(procs)/1024, procs)
	}
	if err := slices.err(); err != nil {
		t.Errorf("endpoint updates failed: %v", err)
	}
	if restReqs.Total() != 0 {
		t.Errorf("istiod got %d requests at rest under --sync-gate=startup (want 0): %s", restReqs.Total(), restReqs)
	}
	if rollReqs.Total() != 0 {
		t.Errorf("istiod got %d requests during the rollout under --sync-gate=startup (want 0): %s", rollReqs.Total(), rollReqs)
	}
	// A probe that times out on this loaded 2-core machine (400 processes
	// and the control plane) is the machine's; an agent that answers not
	// ready once synced is a bug.
	if unreadyAfter != 0 {
		t.Errorf("%d probes answered not ready after every agent was ready (EDS pushes must not make a synced pod unready): %s", unreadyAfter, strings.Join(afterWhy, "; "))
	} else if failsAfter != 0 {
		t.Logf("istiod-load: %d probes after every agent was ready got no answer within 1 s (a loaded machine): %s", failsAfter, strings.Join(afterWhy, "; "))
	}
	if waveReqs.Total() == 0 {
		t.Errorf("no request reached istiod during the wave: the agents did not ask it (is --pilot the counter?)")
	}
}

// loadSlice is the load test's EndpointSlice: one endpoint per agent.
type loadSlice struct {
	c        *ClusterMesh
	ns, name string
	n        int
	ip       func(int) string

	mu    sync.Mutex
	ready []bool
	errs  []string
}

func (s *loadSlice) object() *discoveryv1.EndpointSlice {
	port, proto, pname := int32(8080), corev1.ProtocolTCP, "http"
	es := &discoveryv1.EndpointSlice{
		ObjectMeta: metav1.ObjectMeta{Name: s.name, Namespace: s.ns, Labels: map[string]string{
			discoveryv1.LabelServiceName: "app", discoveryv1.LabelManagedBy: "meshready-load-test"}},
		AddressType: discoveryv1.AddressTypeIPv4,
		Ports:       []discoveryv1.EndpointPort{{Name: &pname, Port: &port, Protocol: &proto}},
	}
	for i := range s.n {
		r := s.ready[i]
		serving, terminating := r, false
		es.Endpoints = append(es.Endpoints, discoveryv1.Endpoint{Addresses: []string{s.ip(i)},
			Conditions: discoveryv1.EndpointConditions{Ready: &r, Serving: &serving, Terminating: &terminating}})
	}
	return es
}

func (s *loadSlice) create(ctx context.Context) error {
	s.ready = make([]bool, s.n)
	_, err := s.c.Cluster.Client.DiscoveryV1().EndpointSlices(s.ns).Create(ctx, s.object(), metav1.CreateOptions{})
	return err
}

// set writes the endpoints idx ready or not, in one update.
func (s *loadSlice) set(ctx context.Context, idx []int, ready bool) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, i := range idx {
		s.ready[i] = ready
	}
	api := s.c.Cluster.Client.DiscoveryV1().EndpointSlices(s.ns)
	for attempt := 0; ; attempt++ {
		cur, err := api.Get(ctx, s.name, metav1.GetOptions{})
		if err != nil {
			return err
		}
		next := s.object()
		next.ResourceVersion = cur.ResourceVersion
		if _, err = api.Update(ctx, next, metav1.UpdateOptions{}); err == nil || !apierrors.IsConflict(err) || attempt > 5 {
			return err
		}
	}
}

// writeFlips turns endpoints ready as their indexes arrive, every 100 ms at most.
func (s *loadSlice) writeFlips(ctx context.Context, flips <-chan int) {
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	var pending []int
	for {
		select {
		case <-ctx.Done():
			return
		case i := <-flips:
			pending = append(pending, i)
		case <-tick.C:
			if len(pending) == 0 {
				continue
			}
			if err := s.set(ctx, pending, true); err != nil && ctx.Err() == nil {
				s.mu.Lock()
				s.errs = append(s.errs, err.Error())
				s.mu.Unlock()
			}
			pending = nil
		}
	}
}

func (s *loadSlice) err() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.errs) == 0 {
		return nil
	}
	return fmt.Errorf("%d failed, e.g. %s", len(s.errs), s.errs[0])
}

// procCPU is a process's user+system CPU seconds (0 if unreadable).
func procCPU(pid int) float64 {
	if pid == 0 {
		return 0
	}
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	s := string(b)
	// Fields after the command name, which is in parentheses.
	f := strings.Fields(s[strings.LastIndexByte(s, ')')+1:])
	if len(f) < 13 {
		return 0
	}
	ut, _ := strconv.ParseFloat(f[11], 64)
	st, _ := strconv.ParseFloat(f[12], 64)
	return (ut + st) / 100 // USER_HZ
}

// istiodCounter sums a counter's series in istiod's /metrics (0 if unreadable).
func istiodCounter(url, name string) float64 {
	hc := &http.Client{Timeout: 2 * time.Second}
	resp, err := hc.Get(url)
	if err != nil {
		return 0
	}
	defer resp.Body.Close()
	var sum float64
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64*1024), 1024*1024)
	for sc.Scan() {
		l := sc.Text()
		if !strings.HasPrefix(l, name+"{") && !strings.HasPrefix(l, name+" ") {
			continue
		}
		if i := strings.LastIndexByte(l, ' '); i > 0 {
			if v, err := strconv.ParseFloat(l[i+1:], 64); err == nil {
				sum += v
			}
		}
	}
	return sum
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
