package kubeletstandin

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
)

// SidecarName is the injected sidecar's container name, as Istio names it.
const SidecarName = "istio-proxy"

// minGrace is the kubelet's minimum grace after a preStop hook and for a
// pod deleted with grace 0 (minimumGracePeriodInSeconds).
const minGrace = 2 * time.Second

type ctrKind int

const (
	appCtr ctrKind = iota
	initCtr
	nativeSidecarCtr // an init container with restartPolicy Always
	injectedCtr      // the sidecar the stand-in adds (not in the spec)
)

// ctr is one container of a pod across its restarts. Fields after mu-note
// are guarded by the pod worker's mu.
type ctr struct {
	w    *podWorker
	name string
	kind ctrKind
	spec corev1.Container
	dir  string // working directory

	stopOnce sync.Once
	stopCh   chan struct{} // closed: no more (re)starts
	done     chan struct{} // closed: the runner returned

	// guarded by w.mu
	launched   bool
	noRestart  bool
	restarts   int
	proc       *process
	lastPID    int
	argv, env  []string
	waiting    string
	waitingMsg string
	term, last *corev1.ContainerStateTerminated
	ready      bool
	started    bool
	logs       []string
	termAt     time.Time
	killAt     time.Time
	exitCode   *int
}

func (c *ctr) stopRestarts() {
	c.w.mu.Lock()
	c.noRestart = true
	c.w.mu.Unlock()
	c.stopOnce.Do(func() { close(c.stopCh) })
}

// podWorker runs one pod (one UID) from first sight to the end of its delete.
type podWorker struct {
	k        *Kubelet
	uid      types.UID
	ns, name string
	dir      string

	deleteOnce sync.Once
	deleteCh   chan struct{} // closed when the pod is being deleted (or gone)
	dirtyCh    chan struct{}
	writerStop chan struct{}
	writerOnce sync.Once
	writeMu    sync.Mutex
	done       chan struct{}

	mu          sync.Mutex
	pod         *corev1.Pod
	ip          string
	ipReleased  bool
	injected    bool
	sidecarArgv []string
	ctrs        []*ctr // injected sidecar, init containers, app containers: in start order
	volumes     map[string]string
	volumesSet  bool
	initDone    bool
	initFailed  bool
	terminal    corev1.PodPhase
	startTime   *metav1.Time
	deleting    bool
	deadline    time.Time // SIGKILL at
	goneAPI     bool      // removed from the API behind our back: write nothing
	noAPI       bool      // kubelet stopping: write nothing
	finished    bool
	setupMsg    string
	events      []Event
	lastWritten *corev1.PodStatus
}

func newPodWorker(k *Kubelet, pod *corev1.Pod) *podWorker {
	w := &podWorker{
		k: k, uid: pod.UID, ns: pod.Namespace, name: pod.Name,
		dir:      filepath.Join(k.cfg.Dir, "pods", fmt.Sprintf("%s_%s_%s", pod.Namespace, pod.Name, pod.UID)),
		deleteCh: make(chan struct{}), dirtyCh: make(chan struct{}, 1), writerStop: make(chan struct{}), done: make(chan struct{}),
		pod: pod, volumes: map[string]string{},
	}
	mk := func(c corev1.Container, kind ctrKind) *ctr {
		return &ctr{w: w, name: c.Name, kind: kind, spec: c, dir: filepath.Join(w.dir, "containers", c.Name),
			stopCh: make(chan struct{}), done: make(chan struct{})}
	}
	for _, c := range pod.Spec.InitContainers {
		kind := initCtr
		if c.RestartPolicy != nil && *c.RestartPolicy == corev1.ContainerRestartPolicyAlways {
			kind = nativeSidecarCtr
		}
		w.ctrs = append(w.ctrs, mk(c, kind))
	}
	for _, c := range pod.Spec.Containers {
		w.ctrs = append(w.ctrs, mk(c, appCtr))
	}
	if pod.DeletionTimestamp != nil {
		w.startDeleting(pod)
	}
	return w
}

func (w *podWorker) key() string { return w.ns + "/" + w.name }

func (w *podWorker) logf(format string, args ...any) {
	w.k.logf("pod %s: "+format, append([]any{w.key()}, args...)...)
}

func (w *podWorker) event(container, what string, exitCode *int, format string, args ...any) {
	e := Event{At: time.Now(), Container: container, What: what, ExitCode: exitCode, Message: fmt.Sprintf(format, args...)}
	w.mu.Lock()
	w.events = append(w.events, e)
	w.mu.Unlock()
	if container != "" {
		w.logf("%s %s %s", container, what, e.Message)
	} else {
		w.logf("%s %s", what, e.Message)
	}
}

func (w *podWorker) markDirty() {
	select {
	case w.dirtyCh <- struct{}{}:
	default:
	}
}

// changed takes a newer Pod from the informer.
func (w *podWorker) changed(pod *corev1.Pod) {
	w.mu.Lock()
	if newerRV(pod.ResourceVersion, w.pod.ResourceVersion) {
		w.pod = pod
		if w.volumesSet {
			w.writeDownwardLocked()
		}
	}
	w.mu.Unlock()
	if pod.DeletionTimestamp != nil {
		w.startDeleting(pod)
	}
}

// startDeleting marks the pod terminating; a shorter grace on a later
// delete moves the SIGKILL deadline closer, never further.
func (w *podWorker) startDeleting(pod *corev1.Pod) {
	grace := 30 * time.Second
	if pod.DeletionGracePeriodSeconds != nil {
		grace = time.Duration(*pod.DeletionGracePeriodSeconds) * time.Second
	}
	if grace < minGrace {
		grace = minGrace // the kubelet's floor for a grace-0 delete it carries out
	}
	dl := time.Now().Add(grace)
	w.mu.Lock()
	if !w.deleting || dl.Before(w.deadline) {
		w.deadline = dl
	}
	w.deleting = true
	w.mu.Unlock()
	w.deleteOnce.Do(func() { close(w.deleteCh) })
}

// gone: the pod left the API without the stand-in finishing its delete
// (force delete): end its processes, write nothing.
func (w *podWorker) gone() {
	w.mu.Lock()
	finished := w.finished
	w.goneAPI = true
	w.mu.Unlock()
	if finished {
		return
	}
	p := w.snapshotPod()
	zero := int64(0)
	p.DeletionGracePeriodSeconds = &zero
	w.startDeleting(p)
}

func (w *podWorker) snapshotPod() *corev1.Pod {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.pod.DeepCopy()
}

func (w *podWorker) stopped() bool {
	select {
	case <-w.k.ctx.Done():
		return true
	default:
		return false
	}
}

// wait returns true when ch closes, false on deletion or kubelet stop.
func (w *podWorker) waitOr(ch <-chan struct{}) bool {
	select {
	case <-ch:
		return true
	case <-w.deleteCh:
		return false
	case <-w.k.ctx.Done():
		return false
	}
}

func (w *podWorker) run() {
	defer w.k.wg.Done()
	defer close(w.done)
	w.k.wg.Add(1)
	go w.statusWriter()
	w.logf("bound to %s (uid %s)", w.k.cfg.NodeName, w.uid)
	w.mu.Lock()
	deleting := w.deleting
	w.mu.Unlock()
	if !deleting && w.setup() {
		w.startContainers()
	} else {
		w.closeUnlaunched()
	}
	appsDone := make(chan struct{})
	go func() {
		for _, c := range w.ctrs {
			if c.kind == appCtr {
				<-c.done
			}
		}
		close(appsDone)
	}()
	select {
	case <-w.k.ctx.Done():
		return // Stop: shutdown ends the processes
	case <-w.deleteCh:
	case <-appsDone:
		// Every app container is done for good (restartPolicy Never /
		// OnFailure): the pod is terminal; its sidecars stop, its IP is freed.
		w.mu.Lock()
		if !w.deleting {
			w.terminal = w.phaseLocked(true)
		}
		phase := w.terminal
		w.mu.Unlock()
		w.logf("all containers ended: pod %s", phase)
		w.stopSidecars()
		w.releaseIP()
		w.markDirty()
		select {
		case <-w.k.ctx.Done():
			return
		case <-w.deleteCh:
		}
	}
	w.terminate()
}

// setup is the sandbox: IP, injection decision and patch, Downward API
// files. False when the pod cannot start (the reason is in its status).
func (w *podWorker) setup() bool {
	if err := os.MkdirAll(w.dir, 0o755); err != nil {
		w.fail("FailedCreatePodSandBox", err.Error())
		return false
	}
	for _, c := range w.ctrs {
		_ = os.MkdirAll(c.dir, 0o755)
		_ = os.MkdirAll(filepath.Join(w.dir, "logs", c.name), 0o755)
	}
	pod := w.snapshotPod()
	ip := ""
	if pod.Status.PodIP != "" && w.k.ipam.reserve(pod.Status.PodIP) {
		ip = pod.Status.PodIP // a stand-in restarted: the pod keeps its address
	} else {
		var err error
		if ip, err = w.k.ipam.allocate(); err != nil {
			w.fail("FailedCreatePodSandBox", err.Error())
			return false
		}
	}
	now := metav1.Now()
	w.mu.Lock()
	w.ip = ip
	if pod.Status.StartTime != nil {
		w.startTime = pod.Status.StartTime
	} else {
		w.startTime = &now
	}
	w.mu.Unlock()
	w.event("", "SandboxReady", nil, "pod IP %s", ip)

	if w.k.cfg.Sidecar != nil {
		inject, err := w.injectionWanted(pod)
		for err != nil {
			w.logf("injection: %v (retrying)", err)
			select {
			case <-time.After(time.Second):
			case <-w.deleteCh:
				return false
			case <-w.k.ctx.Done():
				return false
			}
			inject, err = w.injectionWanted(pod)
		}
		if inject {
			for err := w.injectAnnotations(); err != nil; err = w.injectAnnotations() {
				w.logf("injection patch: %v (retrying)", err)
				select {
				case <-time.After(time.Second):
				case <-w.deleteCh:
					return false
				case <-w.k.ctx.Done():
					return false
				}
			}
			w.mu.Lock()
			podNow := w.pod.DeepCopy()
			w.mu.Unlock()
			argv, env := w.k.cfg.Sidecar(podNow, ip)
			if len(argv) == 0 {
				w.fail("FailedInjection", "Config.Sidecar gave no argv")
				return false
			}
			sc := &ctr{w: w, name: SidecarName, kind: injectedCtr, dir: filepath.Join(w.dir, "containers", SidecarName),
				stopCh: make(chan struct{}), done: make(chan struct{}),
				spec: corev1.Container{Name: SidecarName, Image: "(kubelet stand-in sidecar)", Command: argv}}
			_ = os.MkdirAll(sc.dir, 0o755)
			_ = os.MkdirAll(filepath.Join(w.dir, "logs", SidecarName), 0o755)
			w.mu.Lock()
			w.injected = true
			w.sidecarArgv = argv
			sc.env = env
			w.ctrs = append([]*ctr{sc}, w.ctrs...)
			w.mu.Unlock()
			w.event(SidecarName, "Injected", nil, "%q", argv)
		}
	}
	w.mu.Lock()
	w.prepareVolumesLocked()
	w.writeDownwardLocked()
	w.volumesSet = true
	w.mu.Unlock()
	w.markDirty()
	return true
}

func (w *podWorker) fail(reason, msg string) {
	w.mu.Lock()
	w.setupMsg = reason + ": " + msg
	w.mu.Unlock()
	w.event("", reason, nil, "%s", msg)
	w.markDirty()
}

// injectionWanted decides as Istio's injector does with the default
// policy (enabled): the namespace has istio-injection=enabled, the pod
// is not hostNetwork, not in kube-system/kube-public, and its
// sidecar.istio.io/inject label (which wins) or annotation is absent or
// one of y, yes, true, on.
func (w *podWorker) injectionWanted(pod *corev1.Pod) (bool, error) {
	if pod.Spec.HostNetwork || pod.Namespace == metav1.NamespaceSystem || pod.Namespace == metav1.NamespacePublic {
		return false, nil
	}
	ctx, cancel := context.WithTimeout(w.k.ctx, 10*time.Second)
	defer cancel()
	ns, err := w.k.cfg.Client.CoreV1().Namespaces().Get(ctx, pod.Namespace, metav1.GetOptions{})
	if err != nil {
		return false, err
	}
	if ns.Labels["istio-injection"] != "enabled" {
		return false, nil
	}
	v, ok := pod.Annotations["sidecar.istio.io/inject"]
	if l, lok := pod.Labels["sidecar.istio.io/inject"]; lok {
		v, ok = l, true
	}
	if !ok {
		return true, nil
	}
	switch strings.ToLower(v) {
	case "", "y", "yes", "true", "on":
		return true, nil
	}
	return false, nil
}

// InjectionStatus is the sidecar.istio.io/status value Istio's injector writes.
const InjectionStatus = `{"initContainers":["istio-init"],"containers":["istio-proxy"],"volumes":["workload-socket","credential-socket","workload-certs","istio-envoy","istio-data","istio-podinfo","istio-token","istiod-ca-cert"],"imagePullSecrets":null,"revision":"default"}`

// injectAnnotations patches what the injector would have set at admission.
func (w *podWorker) injectAnnotations() error {
	patch, _ := json.Marshal(map[string]any{"metadata": map[string]any{"annotations": map[string]string{
		"sidecar.istio.io/status": InjectionStatus,
		"prometheus.io/scrape":    "true",
		"prometheus.io/port":      "15090",
		"prometheus.io/path":      "/stats/prometheus",
	}}})
	ctx, cancel := context.WithTimeout(w.k.ctx, 10*time.Second)
	defer cancel()
	p, err := w.k.cfg.Client.CoreV1().Pods(w.ns).Patch(ctx, w.name, types.MergePatchType, patch, metav1.PatchOptions{})
	if err != nil {
		return err
	}
	w.mu.Lock()
	if p.UID == w.uid {
		w.pod = p
	}
	w.mu.Unlock()
	return nil
}

// startContainers: the injected sidecar first, then init containers in
// order (each to success; native sidecars until started), then every app
// container at once.
func (w *podWorker) startContainers() {
	defer w.closeUnlaunched()
	w.mu.Lock()
	ctrs := append([]*ctr(nil), w.ctrs...)
	w.mu.Unlock()
	for _, c := range ctrs {
		switch c.kind {
		case injectedCtr:
			w.goRun(c)
			if !w.waitStarted(c) {
				return
			}
		case initCtr:
			w.goRun(c)
			if !w.waitOr(c.done) {
				return
			}
			w.mu.Lock()
			failed := c.term == nil || c.term.ExitCode != 0
			if failed {
				w.initFailed = true
			}
			w.mu.Unlock()
			if failed {
				w.markDirty()
				return
			}
		case nativeSidecarCtr:
			w.goRun(c)
			if !w.waitStarted(c) {
				return
			}
		}
	}
	w.mu.Lock()
	w.initDone = true
	w.mu.Unlock()
	w.markDirty()
	for _, c := range ctrs {
		if c.kind == appCtr {
			w.goRun(c)
		}
	}
}

// waitStarted waits for a sidecar to be started (its process running and
// its startup probe, if any, passed), as the kubelet does before it
// starts the next container; false on delete, stop, or a runner that ended.
func (w *podWorker) waitStarted(c *ctr) bool {
	for {
		w.mu.Lock()
		started := c.started
		w.mu.Unlock()
		if started {
			return true
		}
		select {
		case <-c.done:
			return false
		case <-w.deleteCh:
			return false
		case <-w.k.ctx.Done():
			return false
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// closeUnlaunched marks every container whose runner never started (init
// failed, deleted before it started) as done, so nothing waits for it.
func (w *podWorker) closeUnlaunched() {
	w.mu.Lock()
	defer w.mu.Unlock()
	for _, c := range w.ctrs {
		if !c.launched {
			c.launched = true
			c.noRestart = true
			c.stopOnce.Do(func() { close(c.stopCh) })
			close(c.done)
		}
	}
}

func (w *podWorker) goRun(c *ctr) {
	w.mu.Lock()
	if c.launched {
		w.mu.Unlock()
		return
	}
	c.launched = true
	w.mu.Unlock()
	w.k.wg.Add(1)
	go func() { defer w.k.wg.Done(); c.run() }()
}

func (w *podWorker) releaseIP() {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.ip != "" && !w.ipReleased {
		w.ipReleased = true
		w.k.ipam.release(w.ip)
	}
}

// stopContainer ends one container's current process for good: preStop
// hook (if asked and present), SIGTERM to its process group, SIGKILL at
// the deadline (dl() is read again while waiting: a shorter grace on a
// second delete applies).
func (w *podWorker) stopContainer(c *ctr, preStop bool, dl func() time.Time) {
	c.stopRestarts()
	w.mu.Lock()
	p := c.proc
	w.mu.Unlock()
	if p == nil {
		return
	}
	if preStop && c.spec.Lifecycle != nil && c.spec.Lifecycle.PreStop != nil {
		t0 := time.Now()
		timeout := time.Until(dl())
		if timeout > 0 {
			ok, msg := w.hook(c, p, c.spec.Lifecycle.PreStop, timeout)
			if !ok {
				w.event(c.name, "FailedPreStopHook", nil, "%s", msg)
			} else {
				w.event(c.name, "PreStop", nil, "hook done in %v", time.Since(t0).Round(time.Millisecond))
			}
		}
		if floor := time.Now().Add(minGrace); dl().Before(floor) {
			orig := dl
			dl = func() time.Time {
				if d := orig(); d.After(floor) {
					return d
				}
				return floor
			}
		}
	}
	w.signal(c, p, syscall.SIGTERM)
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case <-p.done:
			return
		case <-tick.C:
		}
		if !time.Now().Before(dl()) {
			break
		}
	}
	w.signal(c, p, syscall.SIGKILL)
	select {
	case <-p.done:
	case <-time.After(5 * time.Second):
		w.logf("%s: pid %d still there 5 s after SIGKILL", c.name, p.pid)
	}
}

func (w *podWorker) signal(c *ctr, p *process, sig syscall.Signal) {
	if p.exited() {
		return
	}
	w.mu.Lock()
	if sig == syscall.SIGKILL {
		c.killAt = time.Now()
	} else {
		c.termAt = time.Now()
	}
	w.mu.Unlock()
	p.kill(sig)
	w.event(c.name, unixSignalName(sig), nil, "pid %d (process group)", p.pid)
}

func (w *podWorker) hook(c *ctr, p *process, h *corev1.LifecycleHandler, timeout time.Duration) (bool, string) {
	w.mu.Lock()
	pr := &prober{pod: w.pod.DeepCopy(), container: &c.spec, podIP: w.ip, env: c.env, dir: c.dir, kubelet: w.k}
	w.mu.Unlock()
	return pr.run(w.k.ctx, lifecycleHandlerOf(h), timeout)
}

func (w *podWorker) deadlineFn() func() time.Time {
	return func() time.Time {
		w.mu.Lock()
		defer w.mu.Unlock()
		return w.deadline
	}
}

// stopSidecars ends the injected sidecar and native sidecars, after the
// app containers (native sidecar order), with at least minGrace.
func (w *podWorker) stopSidecars() {
	var wg sync.WaitGroup
	for _, c := range w.ctrs {
		if c.kind != injectedCtr && c.kind != nativeSidecarCtr {
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			floor := time.Now().Add(minGrace)
			dl := w.deadlineFn()
			// A pod that ended by itself gives its sidecars the pod's grace.
			ownEnd := time.Now().Add(time.Duration(graceSeconds(w.snapshotPod())) * time.Second)
			w.stopContainer(c, c.kind == nativeSidecarCtr, func() time.Time {
				w.mu.Lock()
				deleting := w.deleting
				w.mu.Unlock()
				d := dl()
				if !deleting {
					d = ownEnd
				}
				if d.Before(floor) {
					return floor
				}
				return d
			})
			<-c.done
		}()
	}
	wg.Wait()
}

func graceSeconds(p *corev1.Pod) int64 {
	if p.Spec.TerminationGracePeriodSeconds != nil {
		return *p.Spec.TerminationGracePeriodSeconds
	}
	return 30
}

// terminate is a graceful delete: every app (and init) container's
// process group gets its preStop hook then SIGTERM at once; once they
// have exited the sidecars get SIGTERM; SIGKILL at the deadline; then the
// final status and the Delete (grace 0, UID precondition).
func (w *podWorker) terminate() {
	w.mu.Lock()
	left := time.Until(w.deadline).Round(time.Millisecond)
	w.mu.Unlock()
	w.event("", "Killing", nil, "pod deleted: stopping containers, grace %v", left)
	for _, c := range w.ctrs {
		if c.kind == appCtr || c.kind == initCtr {
			c.stopRestarts()
		}
	}
	var wg sync.WaitGroup
	for _, c := range w.ctrs {
		if c.kind != appCtr && c.kind != initCtr {
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			w.stopContainer(c, true, w.deadlineFn())
			w.waitRunner(c)
		}()
	}
	wg.Wait()
	w.stopSidecars()
	if w.stopped() {
		return
	}
	w.mu.Lock()
	w.terminal = w.phaseLocked(true)
	phase := w.terminal
	skip := w.goneAPI || w.noAPI
	w.mu.Unlock()
	if !skip {
		w.writeStatus(w.k.ctx)
	}
	w.writerOnce.Do(func() { close(w.writerStop) })
	if !skip {
		w.k.finishDelete(w.snapshotPod())
	}
	w.releaseIP()
	w.mu.Lock()
	w.finished = true
	w.mu.Unlock()
	w.event("", "Deleted", nil, "pod %s", phase)
	w.k.forget(w, true)
}

// waitRunner waits for a container's runner to end (bounded: it ends
// once its process has).
func (w *podWorker) waitRunner(c *ctr) {
	select {
	case <-c.done:
	case <-time.After(10 * time.Second):
		w.logf("%s: runner did not end 10 s after its process", c.name)
	}
}

// finishDelete is the kubelet's last word on a pod: grace 0, UID precondition.
func (k *Kubelet) finishDelete(pod *corev1.Pod) {
	zero := int64(0)
	uid := pod.UID
	for i := 0; i < 5; i++ {
		ctx, cancel := context.WithTimeout(k.ctx, 10*time.Second)
		err := k.cfg.Client.CoreV1().Pods(pod.Namespace).Delete(ctx, pod.Name, metav1.DeleteOptions{
			GracePeriodSeconds: &zero, Preconditions: &metav1.Preconditions{UID: &uid}})
		cancel()
		if err == nil || apierrors.IsNotFound(err) || apierrors.IsConflict(err) {
			return
		}
		if k.ctx.Err() != nil {
			return
		}
		k.logf("pod %s/%s: finish delete: %v (retrying)", pod.Namespace, pod.Name, err)
		time.Sleep(500 * time.Millisecond)
	}
}

// shutdown is Stop's part for one pod: SIGTERM to every process at once,
// SIGKILL at the deadline, nothing written to the API.
func (w *podWorker) shutdown(deadline time.Time) {
	w.mu.Lock()
	w.noAPI = true
	ctrs := append([]*ctr(nil), w.ctrs...)
	w.mu.Unlock()
	var wg sync.WaitGroup
	for _, c := range ctrs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			w.stopContainer(c, false, func() time.Time { return deadline })
		}()
	}
	wg.Wait()
	w.releaseIP()
}
