package kubeletstandin

import (
	"context"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	apiequality "k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// phaseLocked is the kubelet's getPhase over the app containers; podIsTerminal
// (the pod's processes are all gone for good) turns "all stopped" into
// Succeeded or Failed whatever the restartPolicy. A terminal phase sticks.
func (w *podWorker) phaseLocked(podIsTerminal bool) corev1.PodPhase {
	if w.terminal != "" {
		return w.terminal
	}
	if w.initFailed {
		if w.pod.Spec.RestartPolicy == corev1.RestartPolicyNever || podIsTerminal {
			return corev1.PodFailed
		}
		return corev1.PodPending
	}
	if !w.initDone && !podIsTerminal {
		return corev1.PodPending
	}
	var running, waiting, stopped, succeeded int
	for _, c := range w.ctrs {
		if c.kind != appCtr {
			continue
		}
		switch {
		case c.proc != nil:
			running++
		case c.term != nil:
			stopped++
			if c.term.ExitCode == 0 {
				succeeded++
			}
		case c.last != nil:
			stopped++ // waiting to restart
		default:
			waiting++
		}
	}
	switch {
	case waiting > 0 && !podIsTerminal:
		return corev1.PodPending
	case running > 0 && !podIsTerminal:
		return corev1.PodRunning
	case stopped > 0 || podIsTerminal:
		if podIsTerminal {
			if stopped == succeeded && waiting == 0 && running == 0 && stopped > 0 {
				return corev1.PodSucceeded
			}
			return corev1.PodFailed
		}
		switch w.pod.Spec.RestartPolicy {
		case corev1.RestartPolicyAlways:
			return corev1.PodRunning
		case corev1.RestartPolicyNever:
			if stopped == succeeded {
				return corev1.PodSucceeded
			}
			return corev1.PodFailed
		default:
			if stopped == succeeded {
				return corev1.PodSucceeded
			}
			return corev1.PodRunning
		}
	}
	return corev1.PodPending
}

func (c *ctr) statusLocked() corev1.ContainerStatus {
	s := corev1.ContainerStatus{
		Name:         c.name,
		Image:        c.spec.Image,
		ImageID:      "kubeletstandin://" + c.spec.Image,
		RestartCount: int32(c.restarts),
		Ready:        c.ready,
		Started:      ptrTo(c.started),
	}
	switch {
	case c.proc != nil:
		s.State.Running = &corev1.ContainerStateRunning{StartedAt: metav1.NewTime(c.proc.started)}
		s.ContainerID = containerID(c.proc)
	case c.waiting != "":
		s.State.Waiting = &corev1.ContainerStateWaiting{Reason: c.waiting, Message: c.waitingMsg}
	case c.term != nil:
		t := *c.term
		s.State.Terminated = &t
		s.ContainerID = t.ContainerID
	default:
		reason := "ContainerCreating"
		if c.kind == appCtr && !c.w.initDone {
			reason = "PodInitializing"
		}
		s.State.Waiting = &corev1.ContainerStateWaiting{Reason: reason}
	}
	if c.last != nil {
		t := *c.last
		s.LastTerminationState.Terminated = &t
	}
	if c.kind == initCtr {
		s.Ready = c.term != nil && c.term.ExitCode == 0
		s.Started = ptrTo(c.proc != nil)
	}
	return s
}

// generateLocked is the status the kubelet would write now (conditions
// without transition times; mergeStatus keeps or sets those).
func (w *podWorker) generateLocked() corev1.PodStatus {
	st := corev1.PodStatus{Phase: w.phaseLocked(false), StartTime: w.startTime}
	if w.ip != "" {
		st.PodIP = w.ip
		st.PodIPs = []corev1.PodIP{{IP: w.ip}}
	}
	st.HostIP = w.k.cfg.NodeIP
	st.HostIPs = []corev1.HostIP{{IP: w.k.cfg.NodeIP}}
	if w.setupMsg != "" {
		st.Message = w.setupMsg
	}
	var unready []string
	var apps []corev1.ContainerStatus
	var inits []corev1.ContainerStatus
	for _, c := range w.ctrs {
		switch c.kind {
		case injectedCtr:
			continue
		case appCtr:
			s := c.statusLocked()
			if !s.Ready {
				unready = append(unready, c.name)
			}
			apps = append(apps, s)
		default:
			inits = append(inits, c.statusLocked())
		}
	}
	sort.Slice(apps, func(i, j int) bool { return apps[i].Name < apps[j].Name })
	st.ContainerStatuses, st.InitContainerStatuses = apps, inits
	terminal := st.Phase == corev1.PodSucceeded || st.Phase == corev1.PodFailed
	cond := func(t corev1.PodConditionType, ok bool, reason, msg string) corev1.PodCondition {
		c := corev1.PodCondition{Type: t, Status: corev1.ConditionFalse, Reason: reason, Message: msg}
		if ok {
			c.Status, c.Reason, c.Message = corev1.ConditionTrue, "", ""
		}
		return c
	}
	containersReady := len(unready) == 0 && !terminal
	crReason, crMsg := "ContainersNotReady", fmt.Sprintf("containers with unready status: [%s]", strings.Join(unready, " "))
	if terminal {
		crReason, crMsg = "PodCompleted", ""
	}
	ready := containersReady
	readyReason, readyMsg := crReason, crMsg
	if ready {
		var gates []string
		for _, g := range w.pod.Spec.ReadinessGates {
			ok := false
			for _, pc := range w.pod.Status.Conditions {
				if pc.Type == g.ConditionType && pc.Status == corev1.ConditionTrue {
					ok = true
				}
			}
			if !ok {
				gates = append(gates, string(g.ConditionType))
			}
		}
		if len(gates) > 0 {
			ready, readyReason, readyMsg = false, "ReadinessGatesNotReady", fmt.Sprintf("corresponding condition of pod readiness gate %q does not exist.", gates)
		}
	}
	var initUnready []string
	for _, c := range w.ctrs {
		if c.kind == initCtr && (c.term == nil || c.term.ExitCode != 0) {
			initUnready = append(initUnready, c.name)
		}
	}
	initialized := w.initDone || len(initUnready) == 0
	st.Conditions = []corev1.PodCondition{
		cond(corev1.PodReadyToStartContainers, w.ip != "" && !w.ipReleased, "", ""),
		cond(corev1.PodInitialized, initialized, "ContainersNotInitialized", fmt.Sprintf("containers with incomplete status: [%s]", strings.Join(initUnready, " "))),
		cond(corev1.PodReady, ready, readyReason, readyMsg),
		cond(corev1.ContainersReady, containersReady, crReason, crMsg),
		cond(corev1.PodScheduled, true, "", ""),
	}
	return st
}

// kubeletConditions are the ones the kubelet owns (it keeps the others).
var kubeletConditions = map[corev1.PodConditionType]bool{
	corev1.PodReadyToStartContainers: true, corev1.PodInitialized: true, corev1.PodReady: true, corev1.ContainersReady: true,
}

// mergeStatus lays the generated status over the API's: the kubelet's
// fields and conditions replaced, transition times kept while a
// condition's status does not change, other conditions (the scheduler's,
// readiness gates') kept, qosClass and the rest untouched.
func mergeStatus(old corev1.PodStatus, gen corev1.PodStatus) corev1.PodStatus {
	out := *old.DeepCopy()
	out.Phase, out.Message = gen.Phase, gen.Message
	out.PodIP, out.PodIPs, out.HostIP, out.HostIPs = gen.PodIP, gen.PodIPs, gen.HostIP, gen.HostIPs
	if out.StartTime == nil {
		out.StartTime = gen.StartTime
	}
	out.ContainerStatuses, out.InitContainerStatuses = gen.ContainerStatuses, gen.InitContainerStatuses
	now := metav1.Now()
	prev := map[corev1.PodConditionType]corev1.PodCondition{}
	for _, c := range old.Conditions {
		prev[c.Type] = c
	}
	var conds []corev1.PodCondition
	for _, c := range old.Conditions {
		if !kubeletConditions[c.Type] && c.Type != corev1.PodScheduled {
			conds = append(conds, c)
		}
	}
	for _, c := range gen.Conditions {
		if c.Type == corev1.PodScheduled {
			if p, ok := prev[c.Type]; ok {
				c = p // the scheduler's
			} else {
				c.LastTransitionTime = now
			}
			conds = append(conds, c)
			continue
		}
		if p, ok := prev[c.Type]; ok && p.Status == c.Status {
			c.LastTransitionTime = p.LastTransitionTime
		} else {
			c.LastTransitionTime = now
		}
		conds = append(conds, c)
	}
	out.Conditions = conds
	return out
}

func (w *podWorker) statusWriter() {
	defer w.k.wg.Done()
	for {
		select {
		case <-w.k.ctx.Done():
			return
		case <-w.writerStop:
			return
		case <-w.dirtyCh:
		}
		w.writeStatus(w.k.ctx)
	}
}

// writeStatus writes the generated status if it changed, retrying on
// conflicts with a fresh read.
func (w *podWorker) writeStatus(ctx context.Context) {
	w.writeMu.Lock()
	defer w.writeMu.Unlock()
	w.mu.Lock()
	if w.goneAPI || w.noAPI || w.finished {
		w.mu.Unlock()
		return
	}
	gen := w.generateLocked()
	if w.lastWritten != nil && apiequality.Semantic.DeepEqual(*w.lastWritten, gen) {
		w.mu.Unlock()
		return
	}
	base := w.pod.DeepCopy()
	w.mu.Unlock()
	pods := w.k.cfg.Client.CoreV1().Pods(w.ns)
	for attempt := 0; ; attempt++ {
		cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		if attempt > 0 {
			fresh, err := pods.Get(cctx, w.name, metav1.GetOptions{})
			if err != nil {
				cancel()
				if !apierrors.IsNotFound(err) && ctx.Err() == nil {
					w.logf("status: get: %v", err)
				}
				return
			}
			if fresh.UID != w.uid {
				cancel()
				return
			}
			base = fresh
		}
		upd := base.DeepCopy()
		upd.Status = mergeStatus(base.Status, gen)
		got, err := pods.UpdateStatus(cctx, upd, metav1.UpdateOptions{})
		cancel()
		if err == nil {
			w.mu.Lock()
			w.lastWritten = &gen
			if newerRV(got.ResourceVersion, w.pod.ResourceVersion) {
				w.pod = got
			}
			w.mu.Unlock()
			if got.DeletionTimestamp != nil {
				w.startDeleting(got)
			}
			return
		}
		if apierrors.IsNotFound(err) || ctx.Err() != nil {
			return
		}
		if !apierrors.IsConflict(err) || attempt >= 20 {
			w.logf("status: %v", err)
			if attempt >= 20 {
				return
			}
			time.Sleep(200 * time.Millisecond)
		}
	}
}

// newerRV: a is a later resourceVersion than b (they are etcd revisions;
// anything unparsable counts as newer, the informer's order then decides).
func newerRV(a, b string) bool {
	x, err1 := strconv.ParseUint(a, 10, 64)
	y, err2 := strconv.ParseUint(b, 10, 64)
	if err1 != nil || err2 != nil {
		return a != b
	}
	return x > y
}
