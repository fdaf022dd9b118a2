package kubeletstandin

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"syscall"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// resolveFor builds this container's argv and env for the pod as it is now.
func (c *ctr) resolveFor(pod *corev1.Pod, podIP string) (resolved, error) {
	k := c.w.k
	if c.kind == injectedCtr {
		argv, err := k.localArgv(c.spec.Command, defaultPath)
		if err != nil {
			return resolved{}, err
		}
		env := append([]string(nil), c.env...)
		if !hasEnv(env, "PATH") {
			env = append([]string{"PATH=" + defaultPath}, env...)
		}
		return resolved{argv: argv, env: env}, nil
	}
	extra := map[string]string{}
	c.w.mu.Lock()
	for _, m := range c.spec.VolumeMounts {
		if dir, ok := c.w.volumes[m.Name]; ok {
			if name, ok := k.cfg.MountPathEnv[m.MountPath]; ok {
				extra[name] = dir
			}
		}
	}
	c.w.mu.Unlock()
	return k.resolve(pod, &c.spec, podIP, extra)
}

func hasEnv(env []string, name string) bool {
	for _, kv := range env {
		if len(kv) > len(name) && kv[:len(name)+1] == name+"=" {
			return true
		}
	}
	return false
}

// shouldRestart is restartPolicy (sidecars: always; init containers:
// until they succeed, unless Never).
func (c *ctr) shouldRestart(exitCode int) bool {
	policy := c.w.pod.Spec.RestartPolicy
	switch c.kind {
	case injectedCtr, nativeSidecarCtr:
		return true
	case initCtr:
		return exitCode != 0 && policy != corev1.RestartPolicyNever
	}
	switch policy {
	case corev1.RestartPolicyNever:
		return false
	case corev1.RestartPolicyOnFailure:
		return exitCode != 0
	}
	return true
}

// run starts the container and restarts it per policy with the
// kubelet's crash-loop back-off (the first restart at once, then
// RestartBackoff doubling to MaxRestartBackoff; reset after a run longer
// than twice the maximum), until stopRestarts.
func (c *ctr) run() {
	defer close(c.done)
	w, k := c.w, c.w.k
	backoff := time.Duration(0)
	var lastStart, lastExit time.Time
	for attempt := 0; ; {
		if attempt > 0 {
			if lastExit.Sub(lastStart) > 2*k.cfg.MaxRestartBackoff {
				backoff = 0
			}
			delay := backoff
			if backoff == 0 {
				backoff = k.cfg.RestartBackoff
			} else if backoff *= 2; backoff > k.cfg.MaxRestartBackoff {
				backoff = k.cfg.MaxRestartBackoff
			}
			if delay > 0 {
				w.mu.Lock()
				c.last, c.term = c.term, nil
				c.waiting = "CrashLoopBackOff"
				c.waitingMsg = fmt.Sprintf("back-off %v restarting failed container=%s pod=%s_%s(%s)", delay, c.name, w.name, w.ns, w.uid)
				w.mu.Unlock()
				w.markDirty()
				w.event(c.name, "BackOff", nil, "%v", delay)
				select {
				case <-time.After(delay):
				case <-c.stopCh:
					return
				}
			}
		}
		w.mu.Lock()
		pod, ip := w.pod.DeepCopy(), w.ip
		w.mu.Unlock()
		r, err := c.resolveFor(pod, ip)
		if err != nil {
			reason := "RunContainerError"
			var ec errConfig
			var ei errImage
			switch {
			case errors.As(err, &ec):
				reason = "CreateContainerConfigError"
			case errors.As(err, &ei):
				reason = "ErrImagePull"
			}
			w.mu.Lock()
			c.waiting, c.waitingMsg = reason, err.Error()
			w.mu.Unlock()
			w.markDirty()
			w.event(c.name, reason, nil, "%v", err)
			select { // the kubelet retries on its next sync
			case <-time.After(k.cfg.RestartBackoff):
				continue
			case <-c.stopCh:
				return
			}
		}
		w.mu.Lock()
		if c.noRestart {
			w.mu.Unlock()
			return
		}
		c.restarts = attempt
		logPath := filepath.Join(w.dir, "logs", c.name, fmt.Sprintf("%d.log", attempt))
		c.logs = append(c.logs, logPath)
		c.argv, c.env = r.argv, r.env
		if c.term != nil {
			c.last, c.term = c.term, nil
		}
		p, err := startProcess(r.argv, r.env, c.dir, logPath)
		now := metav1.Now()
		if err != nil {
			// The runtime could not start it: StartError, exit code 128.
			c.term = &corev1.ContainerStateTerminated{ExitCode: 128, Reason: "StartError", Message: err.Error(), StartedAt: now, FinishedAt: now}
			c.exitCode = ptrTo(128)
			c.waiting = ""
			restart := c.shouldRestart(128) && !c.noRestart
			w.mu.Unlock()
			w.markDirty()
			w.event(c.name, "StartError", ptrTo(128), "%v", err)
			attempt++
			lastStart, lastExit = now.Time, now.Time
			if !restart {
				return
			}
			continue
		}
		c.proc, c.lastPID = p, p.pid
		c.waiting, c.waitingMsg = "", ""
		c.started = c.spec.StartupProbe == nil
		c.ready = c.started && c.spec.ReadinessProbe == nil && c.kind != initCtr
		c.termAt, c.killAt = time.Time{}, time.Time{}
		w.mu.Unlock()
		w.markDirty()
		w.event(c.name, "Started", nil, "pid %d, restart %d, argv %q, log %s", p.pid, attempt, r.argv, logPath)
		lastStart = p.started

		pctx, pcancel := context.WithCancel(k.ctx)
		if c.spec.Lifecycle != nil && c.spec.Lifecycle.PostStart != nil {
			if ok, msg := w.hook(c, p, c.spec.Lifecycle.PostStart, time.Duration(graceSeconds(pod))*time.Second); !ok {
				w.event(c.name, "FailedPostStartHook", nil, "%s", msg)
				go w.killInstance(c, p, time.Duration(graceSeconds(pod))*time.Second)
			}
		}
		if c.kind != initCtr {
			for _, pr := range []struct {
				kind  string
				probe *corev1.Probe
			}{{"Startup", c.spec.StartupProbe}, {"Readiness", c.spec.ReadinessProbe}, {"Liveness", c.spec.LivenessProbe}} {
				if pr.probe != nil {
					go c.probeLoop(pctx, p, pr.kind, pr.probe)
				}
			}
		}
		<-p.done
		pcancel()
		attempt++
		lastExit = p.finished
		reason := "Completed"
		if p.exitCode != 0 {
			reason = "Error"
		}
		t := &corev1.ContainerStateTerminated{ExitCode: int32(p.exitCode), Reason: reason, StartedAt: metav1.NewTime(p.started),
			FinishedAt: metav1.NewTime(p.finished), ContainerID: containerID(p)}
		w.mu.Lock()
		c.proc = nil
		c.ready, c.started = false, false
		c.term = t
		c.exitCode = ptrTo(p.exitCode)
		restart := c.shouldRestart(p.exitCode) && !c.noRestart
		w.mu.Unlock()
		w.markDirty()
		sig := ""
		if p.signal != "" {
			sig = " (" + p.signal + ")"
		}
		w.event(c.name, "Exited", ptrTo(p.exitCode), "pid %d exit code %d%s after %v", p.pid, p.exitCode, sig, p.finished.Sub(p.started).Round(time.Millisecond))
		if !restart {
			return
		}
	}
}

func containerID(p *process) string { return fmt.Sprintf("standin://%d", p.pid) }

// killInstance is a liveness/startup (or postStart) kill: SIGTERM, SIGKILL
// after grace; the runner then restarts per restartPolicy.
func (w *podWorker) killInstance(c *ctr, p *process, grace time.Duration) {
	w.signal(c, p, syscall.SIGTERM)
	select {
	case <-p.done:
		return
	case <-time.After(grace):
	}
	w.signal(c, p, syscall.SIGKILL)
}

// probeLoop runs one probe of one container instance as the kubelet's
// prober worker does: first after initialDelaySeconds, then every
// periodSeconds; a result counts once it repeats successThreshold /
// failureThreshold times; readiness starts as failure, liveness as
// success; startup gates the other two; liveness and startup stop when
// the pod is being deleted, readiness goes on.
func (c *ctr) probeLoop(ctx context.Context, p *process, kind string, probe *corev1.Probe) {
	w := c.w
	t := timingsOf(probe)
	select {
	case <-ctx.Done():
		return
	case <-time.After(t.initialDelay):
	}
	tick := time.NewTicker(t.period)
	defer tick.Stop()
	var last *bool
	run := 0
	for {
		w.mu.Lock()
		deleting, started := w.deleting, c.started
		pr := &prober{pod: w.pod.DeepCopy(), container: &c.spec, podIP: w.ip, env: c.env, dir: c.dir, kubelet: w.k}
		w.mu.Unlock()
		if deleting && kind != "Readiness" {
			return
		}
		if kind == "Startup" && started {
			return
		}
		if kind == "Startup" || started {
			ok, msg := pr.run(ctx, probeHandlerOf(probe), t.timeout)
			if ctx.Err() != nil {
				return
			}
			if last != nil && *last == ok {
				run++
			} else {
				last, run = &ok, 1
			}
			if !ok {
				w.event(c.name, "Unhealthy", nil, "%s probe failed: %s", kind, msg)
			}
			if (ok && run >= t.success) || (!ok && run >= t.failure) {
				if c.probeResult(p, kind, probe, ok) {
					return
				}
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
	}
}

// probeResult applies a decided result; true ends the probe loop.
func (c *ctr) probeResult(p *process, kind string, probe *corev1.Probe, ok bool) bool {
	w := c.w
	w.mu.Lock()
	if c.proc != p {
		w.mu.Unlock()
		return true
	}
	changed := false
	switch kind {
	case "Readiness":
		changed = c.ready != ok
		c.ready = ok
	case "Startup":
		if ok {
			changed = !c.started
			c.started = true
			if c.spec.ReadinessProbe == nil {
				c.ready = true
			}
		}
	}
	grace := time.Duration(graceSeconds(w.pod)) * time.Second
	w.mu.Unlock()
	if changed {
		w.markDirty()
	}
	if kind == "Startup" && ok {
		return true
	}
	if !ok && kind != "Readiness" {
		if probe.TerminationGracePeriodSeconds != nil {
			grace = time.Duration(*probe.TerminationGracePeriodSeconds) * time.Second
		}
		w.event(c.name, "Killing", nil, "Container %s failed %s probe, will be restarted", c.name, kind)
		go w.killInstance(c, p, grace)
		return true
	}
	return false
}
