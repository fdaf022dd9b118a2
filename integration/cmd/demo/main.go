// Command demo is `make demo`: a local mesh on this machine — Istio's real
// discovery server, greeter pods made of a data-plane stand-in and the app
// (alone, or under `meshready run`), proxyless gRPC callers — that narrates
// one pod's life under meshready, then rolls three pods under steady load
// the naive way and meshready's way, and prints what the callers saw.
//
// Run it from the integration directory (make demo does): it builds the
// agent from the repository root and the greeter from this module.
package main

import (
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/meshready/meshready/integration"
)

func main() {
	lag := flag.Duration("lag", time.Second, "Kubernetes → istiod endpoint delay for the rolling restarts (0: this machine's floor)")
	rate := flag.Int("rate", 200, "calls per second during the rolling restarts")
	linger := flag.Duration("linger", 0, "keep act 1's pod up this long once ready, to curl its agent")
	verbose := flag.Bool("v", false, "show every process's output")
	flag.Parse()
	os.Exit(run(*lag, *rate, *linger, *verbose))
}

func run(lag time.Duration, rate int, linger time.Duration, verbose bool) int {
	out := os.Stdout
	failer := &integration.ProcessFailer{}
	defer failer.Close()
	// Ctrl-C: stop the pods and Pilot, then exit.
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, os.Interrupt, syscall.SIGTERM)
	go func() {
		<-sig
		fmt.Fprintln(out, "\ninterrupted: stopping the local mesh")
		failer.Close()
		os.Exit(130)
	}()

	say(out, "meshready demo: a local mesh on this machine\n")
	t0 := time.Now()
	dir, err := os.MkdirTemp("", "meshready-demo-")
	if err != nil {
		fmt.Fprintln(os.Stderr, "demo:", err)
		return 1
	}
	failer.Cleanup(func() { _ = os.RemoveAll(dir) })
	agent, greeter, err := integration.BuildBinaries(".", dir)
	if err != nil {
		fmt.Fprintln(os.Stderr, "demo: build failed (run it from the integration directory: make demo):", err)
		return 1
	}
	say(out, "  built meshready and the greeter app in %s\n", time.Since(t0).Round(100*time.Millisecond))

	pilot := integration.StartPilot(failer, integration.PilotOptions{ExtraKubeObjects: integration.GreeterKubeObjects})
	say(out, "  Pilot: Istio's real discovery server (in process, fake Kubernetes client): ADS %s, debug %s\n", pilot.XDSAddr(), pilot.DebugURL())
	say(out, "  sidecars: data-plane stand-ins of ours (real xDS clients of that Pilot, Envoy's admin formats); not Envoy\n")
	say(out, "  callers: proxyless gRPC (grpc-go's own xDS client), routed by the EDS Pilot pushes\n\n")

	mesh := integration.NewLocalMesh(integration.MeshOptions{Pilot: pilot, Agent: agent, Greeter: greeter, Out: out, Verbose: verbose})
	failer.Cleanup(mesh.Close)

	if err := act1(out, mesh, pilot, linger); err != nil {
		say(out, "\nact 1 failed: %v\n", err)
		return 1
	}
	if err := startupRace(out, mesh); err != nil {
		say(out, "\nact 2 failed: %v\n", err)
		return 1
	}
	lagMesh := integration.NewLocalMesh(integration.MeshOptions{Pilot: pilot, Agent: agent, Greeter: greeter, Out: out, Verbose: verbose, EndpointLag: lag})
	failer.Cleanup(lagMesh.Close)
	code := act2(out, lagMesh, pilot, lag, rate)
	say(out, "\ndemo finished in %s\n", time.Since(t0).Round(100*time.Millisecond))
	say(out, "more: README.md \"The local mesh\" (the table with and without endpoint lag: cd integration && go test -v -run 'TestRollingRestart$' .)\n")
	return code
}

func say(w io.Writer, format string, args ...any) { fmt.Fprintf(w, format, args...) }

// act1 narrates one pod: starting → held → synced → ready → SIGTERM →
// draining → app stopped, from its agent's /health as kubelet sees it.
func act1(out io.Writer, mesh *integration.LocalMesh, pilot *integration.Pilot, linger time.Duration) error {
	say(out, "Act 1: one pod's life under `meshready run`\n")
	say(out, "  its sidecar is slow: it sits on Pilot's config for 2 s (an Envoy waiting for its certificate)\n")
	pod, err := mesh.StartPod(integration.PodSpec{Name: "greeter-1", Mode: integration.MeshReady, SidecarSlow: 2 * time.Second,
		OnLine: func(l string) {
			if what := storyLine(l); what != "" {
				mesh.Logf("%-10s %s", "greeter-1", what)
			}
		}})
	if err != nil {
		return err
	}
	say(out, "  agent: %s/health   %s/health?verbose=1   %s/metrics   (curl them while the demo runs)\n\n", pod.AgentURL(), pod.AgentURL(), pod.AgentURL())
	watch := watchHealth(out, mesh, pod)
	if err := pod.WaitReady(30 * time.Second); err != nil {
		return fmt.Errorf("%v\n%s", err, pod.Output())
	}
	conn, err := integration.DialGreeter(pilot.XDSAddr(), "caller-act1", 20*time.Second)
	if err != nil {
		return err
	}
	defer conn.Close()
	load := integration.StartLoad(conn, 50)
	time.Sleep(2 * time.Second)
	mesh.Logf("%-10s callers: %s", "", load.Snapshot())
	if linger > 0 {
		mesh.Logf("lingering %s: curl %s/health?verbose=1", linger, pod.AgentURL())
		time.Sleep(linger)
	}
	// Something must answer once greeter-1 stops taking traffic.
	next, err := mesh.StartPod(integration.PodSpec{Name: "greeter-2", Mode: integration.MeshReady})
	if err != nil {
		return err
	}
	if err := next.WaitReady(30 * time.Second); err != nil {
		return err
	}
	mesh.Logf("%-10s kubectl delete pod: endpoint terminating, SIGTERM to meshready", pod.Spec.Name)
	pod.Delete()
	<-pod.Exited()
	<-watch
	res := load.Stop()
	mesh.Logf("%-10s app stopped: exit %d, %s after SIGTERM", pod.Spec.Name, pod.ExitCode(), pod.StoppedAfter().Round(time.Millisecond))
	if last := lastAnswer(res, pod.Spec.Name); !last.IsZero() {
		mesh.Logf("%-10s its last call was answered %s after the delete: that is how long callers took to stop routing to it",
			pod.Spec.Name, last.Sub(pod.DeletedAt()).Round(time.Millisecond))
	}
	say(out, "\n  callers during act 1: %s\n\n", res)
	next.Delete()
	<-next.Exited()
	if res.Failed != 0 {
		return fmt.Errorf("%d calls failed: %v", res.Failed, res.Samples)
	}
	return nil
}

func lastAnswer(r integration.LoadResult, pod string) time.Time {
	var last time.Time
	for _, c := range r.Calls {
		if c.Pod == pod && c.At.Add(c.Took).After(last) {
			last = c.At.Add(c.Took)
		}
	}
	return last
}

// watchHealth polls the agent's /health every 50 ms, as a fast kubelet
// would, and narrates each change; the channel closes when the pod's main
// process has exited.
func watchHealth(out io.Writer, mesh *integration.LocalMesh, pod *integration.Pod) <-chan struct{} {
	done := make(chan struct{})
	hc := &http.Client{Timeout: time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	go func() {
		defer close(done)
		prev, answered := "", false
		for {
			select {
			case <-pod.Exited():
				return
			case <-time.After(50 * time.Millisecond):
			}
			now := "starting: agent not answering yet"
			if answered {
				now = "agent no longer answering: the pod is stopping"
			}
			if resp, err := hc.Get(pod.AgentURL() + "/health"); err == nil {
				answered = true
				b, _ := io.ReadAll(io.LimitReader(resp.Body, 1024))
				_ = resp.Body.Close()
				now = fmt.Sprintf("/health %d  %s", resp.StatusCode, phase(resp.StatusCode, strings.TrimSpace(string(b))))
			}
			if now != prev {
				mesh.Logf("%-10s %s", pod.Spec.Name, now)
				prev = now
			}
		}
	}()
	return done
}

// storyLine picks the agent's and the app's log lines that tell the
// lifecycle, without their time and level.
func storyLine(l string) string {
	for _, key := range []string{
		`msg="holding CMD`, `msg="mesh synced"`, `msg="sidecar ready"`, `msg="CMD started"`,
		`msg="SIGTERM: draining`, `msg="drain ended"`, `msg="SIGTERM sent`, `msg="CMD exited"`,
	} {
		if i := strings.Index(l, key); i >= 0 {
			return "agent: " + strings.Replace(l[i+len(`msg=`):], `"`, "", 2)
		}
	}
	for _, key := range []string{"serving on", "graceful stop", "stopped", "first outbound call"} {
		if i := strings.Index(l, ": "+key); i >= 0 {
			return "app:   " + l[i+2:]
		}
	}
	return ""
}

// phase names the lifecycle step a /health answer shows.
func phase(code int, body string) string {
	switch {
	case code == http.StatusOK:
		return "ready: " + body
	case strings.Contains(body, "draining"):
		return "draining: " + body + " (the app still serves what reaches it)"
	case strings.Contains(body, "app:"):
		return "synced, app started, not ready yet: " + body
	default:
		return "held (app not started): " + body
	}
}

// startupRace is the first race: an app whose first line calls another
// service through its sidecar, started before the sidecar can route.
func startupRace(out io.Writer, mesh *integration.LocalMesh) error {
	say(out, "Act 2: the start-up race: an app whose first line calls the greeter through its sidecar\n")
	say(out, "  (the caller's sidecar sits on its config for 1.5 s)\n\n")
	backend, err := mesh.StartPod(integration.PodSpec{Name: "greeter-3", Mode: integration.Naive})
	if err != nil {
		return err
	}
	defer backend.Kill()
	if err := backend.WaitReady(30 * time.Second); err != nil {
		return err
	}
	for _, mode := range []integration.Mode{integration.Naive, integration.MeshReady} {
		name := "caller-" + mode.String()
		var pod *integration.Pod
		pod, err = mesh.StartPod(integration.PodSpec{
			Name: name, Mode: mode, NotInService: true, CallAtBoot: true, SidecarSlow: 1500 * time.Millisecond,
			OnLine: func(l string) {
				if strings.Contains(l, "first outbound call") || strings.Contains(l, `msg="sidecar ready"`) {
					mesh.Logf("%-16s %s", name, storyLine(l))
				}
			},
		})
		if err != nil {
			return err
		}
		deadline := time.After(15 * time.Second)
		for !strings.Contains(pod.Output(), "first outbound call") {
			select {
			case <-deadline:
				pod.Kill()
				return fmt.Errorf("%s made no first call\n%s", name, pod.Output())
			case <-time.After(50 * time.Millisecond):
			}
		}
		time.Sleep(100 * time.Millisecond)
		pod.Kill()
		if mode == integration.MeshReady && !strings.Contains(pod.Output(), "first outbound call to "+pod.OutboundAddr()+" succeeded") {
			return fmt.Errorf("%s: the first call failed under meshready run\n%s", name, pod.Output())
		}
	}
	say(out, "\n")
	return nil
}

// act2 rolls three pods under steady load, naive then meshready, and
// prints the callers' failed requests side by side.
func act2(out io.Writer, mesh *integration.LocalMesh, pilot *integration.Pilot, lag time.Duration, rate int) int {
	say(out, "Act 3: rolling restart of 3 pods under %d calls/s, naive then `meshready run`\n", rate)
	say(out, "  endpoint lag %s: Kubernetes → istiod delay before Pilot pushes an endpoint change (-lag; 0 is this machine's floor)\n", lag)
	type row struct {
		mode integration.Mode
		res  integration.LoadResult
		rep  integration.RolloutReport
	}
	var rows []row
	for _, mode := range []integration.Mode{integration.Naive, integration.MeshReady} {
		say(out, "\n  -- %s --\n", mode)
		spec := func(v string) func(i int) integration.PodSpec {
			return func(i int) integration.PodSpec {
				return integration.PodSpec{Name: fmt.Sprintf("%s-%s-%d", mode, v, i+1), Mode: mode}
			}
		}
		var old []*integration.Pod
		for i := range 3 {
			p, err := mesh.StartPod(spec("v1")(i))
			if err != nil {
				say(out, "  %v\n", err)
				return 1
			}
			old = append(old, p)
		}
		for _, p := range old {
			if err := p.WaitReady(30 * time.Second); err != nil {
				say(out, "  %v\n", err)
				return 1
			}
		}
		conn, err := integration.DialGreeter(pilot.XDSAddr(), "caller-"+mode.String(), 20*time.Second)
		if err != nil {
			say(out, "  %v\n", err)
			return 1
		}
		load := integration.StartLoad(conn, rate)
		time.Sleep(time.Second)
		rep, fresh := mesh.Rollout(old, spec("v2"), 20*time.Second, integration.RolloutHooks{})
		time.Sleep(time.Second)
		res := load.Stop()
		_ = conn.Close()
		mesh.Logf("callers: %s", res)
		if len(res.Samples) > 0 {
			mesh.Logf("  e.g. %s", firstLine(res.Samples[0]))
		}
		for _, p := range fresh {
			p.Kill()
		}
		rows = append(rows, row{mode, res, rep})
	}
	say(out, "\n  %-28s %8s %8s %9s %9s %10s\n", "rolling restart", "calls", "failed", "p99", "max", "took")
	for _, r := range rows {
		name := "naive (SIGTERM at once)"
		if r.mode == integration.MeshReady {
			name = "meshready run (drain)"
		}
		say(out, "  %-28s %8d %8d %9s %9s %10s\n", name, r.res.Total, r.res.Failed,
			r.res.P99.Round(100*time.Microsecond), r.res.Max.Round(time.Millisecond), r.rep.Took.Round(100*time.Millisecond))
	}
	if rows[1].res.Failed != 0 {
		say(out, "\n  meshready lost %d calls: that is a bug (make integration runs this as TestRollingRestart)\n", rows[1].res.Failed)
		return 1
	}
	return 0
}

func firstLine(s string) string {
	if i := strings.IndexByte(s, '\n'); i >= 0 {
		return s[:i]
	}
	return s
}
