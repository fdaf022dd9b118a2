// Command healthload measures the built agent the way the README's
// Performance section reports it: it starts bin/meshready serve against a
// stand-in Envoy admin API, reads its idle RSS, drives /health at a fixed
// rate over loopback and reports latency percentiles and RSS under load.
// Then the hostile scenario: a few hundred connections that never finish a
// request (slowloris dripping header bytes, silent connects, idle
// keep-alives, reconnecting when shed) while a kubelet-like prober (a new
// connection per probe, 1s timeout) probes; it reports the probe's latency,
// the slowest first.
//
//	go run ./internal/healthload -bin bin/meshready -rate 5000 -duration 10s -pin
//	go run ./internal/healthload -bin bin/meshready -rate 0 -hostile 300 -probes 100
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/meshready/meshready/internal/standin"
)

func main() {
	bin := flag.String("bin", "bin/meshready", "the agent binary to measure")
	rate := flag.Int("rate", 5000, "requests per second")
	duration := flag.Duration("duration", 10*time.Second, "how long to drive load")
	conns := flag.Int("conns", 32, "client connections (keep-alive)")
	hostileN := flag.Int("hostile", 300, "hostile connections in the hostile scenario (a third each slowloris, silent, idle keep-alive); 0 skips it")
	probes := flag.Int("probes", 100, "kubelet-like probes in the hostile scenario, one every 100ms")
	pin := flag.Bool("pin", false, "run the agent on CPU 0 and this load generator on CPU 1 (one core each), so neither steals the other's time")
	flag.Parse()
	if *pin && os.Getenv("HEALTHLOAD_PINNED") == "" {
		// Affinity must hold for every thread the Go runtime starts, so
		// re-run under taskset from the start rather than pin one thread.
		self, _ := os.Executable()
		c := exec.Command("taskset", append([]string{"-c", "1", self}, os.Args[1:]...)...)
		c.Env = append(os.Environ(), "HEALTHLOAD_PINNED=1", "GOMAXPROCS=1")
		c.Stdout, c.Stderr = os.Stdout, os.Stderr
		if err := c.Run(); err != nil {
			fmt.Fprintln(os.Stderr, "healthload: -pin (needs taskset, util-linux):", err)
			os.Exit(1)
		}
		return
	}
	pinAgent = *pin
	if *rate > 0 {
		if err := measure(*bin, *rate, *duration, *conns); err != nil {
			fmt.Fprintln(os.Stderr, "healthload:", err)
			os.Exit(1)
		}
	}
	if *hostileN > 0 {
		if err := measureHostile(*bin, *hostileN, *probes); err != nil {
			fmt.Fprintln(os.Stderr, "healthload:", err)
			os.Exit(1)
		}
	}
}

// pinAgent runs the agent under taskset on CPU 0 (-pin).
var pinAgent bool

// startAgent runs `bin serve` against envoy on a free loopback port.
func startAgent(bin string, envoy *standin.Envoy) (addr string, cmd *exec.Cmd, err error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", nil, err
	}
	addr = ln.Addr().String()
	ln.Close()
	args := []string{"serve", "--listen=" + addr, "--envoy-admin=" + envoy.URL, "--sidecar=required", "--log-level=warn"}
	cmd = exec.Command(bin, args...)
	if pinAgent {
		cmd = exec.Command("taskset", append([]string{"-c", "0", bin}, args...)...)
	}
	cmd.Stderr = os.Stderr
	return addr, cmd, cmd.Start()
}

func measure(bin string, rate int, duration time.Duration, conns int) error {
	envoy := standin.NewEnvoy(standin.LiveSynced())
	defer envoy.Close()
	addr, cmd, err := startAgent(bin, envoy)
	if err != nil {
		return err
	}
	defer func() { cmd.Process.Kill(); cmd.Wait() }()

	url := "http://" + addr + "/health"
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: conns, MaxConnsPerHost: conns}, Timeout: 2 * time.Second}
	if err := waitReady(client, url); err != nil {
		return err
	}
	time.Sleep(2 * time.Second) // let the runtime settle before reading idle RSS
	idle, _ := rssKiB(cmd.Process.Pid)

	total := int(float64(rate) * duration.Seconds())
	lat := make([]time.Duration, total)
	var failed, non200 int
	var mu sync.Mutex
	var peak int
	ctx, cancel := context.WithCancel(context.Background())
	go func() { // sample RSS under load
		for ctx.Err() == nil {
			if r, err := rssKiB(cmd.Process.Pid); err == nil {
				mu.Lock()
				peak = max(peak, r)
				mu.Unlock()
			}
			time.Sleep(100 * time.Millisecond)
		}
	}()
	jobs := make(chan int, conns*4)
	var wg sync.WaitGroup
	for range conns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range jobs {
				start := time.Now()
				resp, err := client.Get(url)
				if err != nil {
					mu.Lock()
					failed++
					mu.Unlock()
					lat[i] = -1
					continue
				}
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				lat[i] = time.Since(start)
				if resp.StatusCode != 200 {
					mu.Lock()
					non200++
					mu.Unlock()
				}
			}
		}()
	}
	// Open-loop pacing: request i is due at start + i/rate, whether or not
	// earlier ones have answered.
	start := time.Now()
	interval := time.Second / time.Duration(rate)
	for i := range total {
		if d := time.Until(start.Add(time.Duration(i) * interval)); d > 0 {
			time.Sleep(d)
		}
		jobs <- i
	}
	close(jobs)
	wg.Wait()
	elapsed := time.Since(start)
	cancel()

	ok := make([]time.Duration, 0, total)
	for _, d := range lat {
		if d >= 0 {
			ok = append(ok, d)
		}
	}
	slices.Sort(ok)
	pct := func(p float64) time.Duration {
		if len(ok) == 0 {
			return 0
		}
		return ok[min(len(ok)-1, int(p*float64(len(ok))))]
	}
	fmt.Printf("requests      %d in %s (%.0f req/s achieved), %d failed, %d not 200\n", total, elapsed.Round(time.Millisecond), float64(total)/elapsed.Seconds(), failed, non200)
	fmt.Printf("latency       p50 %s  p90 %s  p99 %s  max %s\n", pct(.50), pct(.90), pct(.99), pct(1))
	fmt.Printf("rss           idle %.1f MiB, peak under load %.1f MiB\n", float64(idle)/1024, float64(peak)/1024)
	fmt.Printf("envoy admin   %d requests during the run (verdict cached per --interval)\n", envoy.Requests())
	return nil
}

func waitReady(c *http.Client, url string) error {
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		resp, err := c.Get(url)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				return nil
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	return fmt.Errorf("%s never answered 200", url)
}

func rssKiB(pid int) (int, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	for _, line := range strings.Split(string(b), "\n") {
		if rest, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			return strconv.Atoi(strings.TrimSuffix(strings.TrimSpace(rest), " kB"))
		}
	}
	return 0, fmt.Errorf("no VmRSS for pid %d", pid)
}
