package kubeletstandin

import (
	"context"
	"encoding/json"
	"fmt"
	"runtime"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
)

// KubeletVersion is what the Node reports (status.nodeInfo.kubeletVersion).
const KubeletVersion = "v1.36.1-standin"

// leaseDuration is the kubelet's default node lease (40 s).
const leaseDuration = 40

func (k *Kubelet) nodeConditions(now metav1.Time) []corev1.NodeCondition {
	c := func(t corev1.NodeConditionType, s corev1.ConditionStatus, reason, msg string) corev1.NodeCondition {
		return corev1.NodeCondition{Type: t, Status: s, Reason: reason, Message: msg, LastHeartbeatTime: now, LastTransitionTime: k.nodeSince}
	}
	return []corev1.NodeCondition{
		c(corev1.NodeMemoryPressure, corev1.ConditionFalse, "KubeletHasSufficientMemory", "kubelet has sufficient memory available"),
		c(corev1.NodeDiskPressure, corev1.ConditionFalse, "KubeletHasNoDiskPressure", "kubelet has no disk pressure"),
		c(corev1.NodePIDPressure, corev1.ConditionFalse, "KubeletHasSufficientPID", "kubelet has sufficient PID available"),
		c(corev1.NodeReady, corev1.ConditionTrue, "KubeletReady", "kubelet stand-in is posting ready status"),
	}
}

func (k *Kubelet) nodeStatus(now metav1.Time) corev1.NodeStatus {
	return corev1.NodeStatus{
		Capacity:    k.cfg.Capacity,
		Allocatable: k.cfg.Capacity,
		Conditions:  k.nodeConditions(now),
		Addresses: []corev1.NodeAddress{
			{Type: corev1.NodeInternalIP, Address: k.cfg.NodeIP},
			{Type: corev1.NodeHostName, Address: k.cfg.NodeName},
		},
		NodeInfo: corev1.NodeSystemInfo{
			KubeletVersion:          KubeletVersion,
			ContainerRuntimeVersion: "kubeletstandin://" + KubeletVersion,
			OperatingSystem:         runtime.GOOS,
			Architecture:            runtime.GOARCH,
			OSImage:                 "meshready kubelet stand-in (local processes)",
			KernelVersion:           "",
			MachineID:               k.cfg.NodeName,
			SystemUUID:              k.cfg.NodeName,
			BootID:                  k.bootID,
		},
		DaemonEndpoints: corev1.NodeDaemonEndpoints{KubeletEndpoint: corev1.DaemonEndpoint{Port: 10250}},
	}
}

// register creates the Node (or takes over one of that name) with a Ready
// status, as the kubelet's registerWithAPIServer does.
func (k *Kubelet) register(ctx context.Context) error {
	now := metav1.Now()
	k.nodeSince = now
	labels := map[string]string{
		"kubernetes.io/hostname":            k.cfg.NodeName,
		"kubernetes.io/os":                  runtime.GOOS,
		"kubernetes.io/arch":                runtime.GOARCH,
		"beta.kubernetes.io/os":             runtime.GOOS,
		"node.meshready.io/kubelet-standin": "true",
	}
	for n, v := range k.cfg.NodeLabels {
		labels[n] = v
	}
	node := &corev1.Node{
		ObjectMeta: metav1.ObjectMeta{Name: k.cfg.NodeName, Labels: labels,
			Annotations: map[string]string{"node.alpha.kubernetes.io/ttl": "0", "volumes.kubernetes.io/controller-managed-attach-detach": "true"}},
		Spec:   corev1.NodeSpec{Taints: k.cfg.Taints},
		Status: k.nodeStatus(now),
	}
	nodes := k.cfg.Client.CoreV1().Nodes()
	created, err := nodes.Create(ctx, node, metav1.CreateOptions{})
	switch {
	case apierrors.IsAlreadyExists(err):
		old, err := nodes.Get(ctx, k.cfg.NodeName, metav1.GetOptions{})
		if err != nil {
			return err
		}
		old.Labels = labels
		if old, err = nodes.Update(ctx, old, metav1.UpdateOptions{}); err != nil {
			return err
		}
		old.Status = node.Status
		if created, err = nodes.UpdateStatus(ctx, old, metav1.UpdateOptions{}); err != nil {
			return err
		}
	case err != nil:
		return fmt.Errorf("register node %s: %w", k.cfg.NodeName, err)
	default:
		// Status on create is kept, but make sure (older servers reset it).
		if len(created.Status.Conditions) == 0 {
			created.Status = node.Status
			if created, err = nodes.UpdateStatus(ctx, created, metav1.UpdateOptions{}); err != nil {
				return err
			}
		}
	}
	k.nodeUID = created.UID
	return k.renewLease(ctx)
}

// heartbeat renews the Lease and posts NodeStatus every interval until ctx ends.
func (k *Kubelet) heartbeat(ctx context.Context) {
	defer k.wg.Done()
	t := time.NewTicker(k.cfg.HeartbeatInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		if err := k.renewLease(cctx); err != nil && ctx.Err() == nil {
			k.logf("node %s: renew lease: %v", k.cfg.NodeName, err)
		}
		if err := k.postNodeStatus(cctx); err != nil && ctx.Err() == nil {
			k.logf("node %s: post status: %v", k.cfg.NodeName, err)
		}
		cancel()
	}
}

func (k *Kubelet) renewLease(ctx context.Context) error {
	leases := k.cfg.Client.CoordinationV1().Leases(corev1.NamespaceNodeLease)
	now := metav1.NewMicroTime(time.Now())
	l, err := leases.Get(ctx, k.cfg.NodeName, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		_, err = leases.Create(ctx, &coordinationv1.Lease{
			ObjectMeta: metav1.ObjectMeta{Name: k.cfg.NodeName, Namespace: corev1.NamespaceNodeLease,
				OwnerReferences: []metav1.OwnerReference{{APIVersion: "v1", Kind: "Node", Name: k.cfg.NodeName, UID: k.nodeUID}}},
			Spec: coordinationv1.LeaseSpec{HolderIdentity: ptrTo(k.cfg.NodeName), LeaseDurationSeconds: ptrTo[int32](leaseDuration), RenewTime: &now},
		}, metav1.CreateOptions{})
		return err
	}
	if err != nil {
		return err
	}
	l.Spec.HolderIdentity = ptrTo(k.cfg.NodeName)
	l.Spec.LeaseDurationSeconds = ptrTo[int32](leaseDuration)
	l.Spec.RenewTime = &now
	_, err = leases.Update(ctx, l, metav1.UpdateOptions{})
	return err
}

// postNodeStatus refreshes the conditions' lastHeartbeatTime (a strategic
// merge patch of status, as the kubelet sends).
func (k *Kubelet) postNodeStatus(ctx context.Context) error {
	patch, err := json.Marshal(map[string]any{"status": map[string]any{"conditions": k.nodeConditions(metav1.Now())}})
	if err != nil {
		return err
	}
	_, err = k.cfg.Client.CoreV1().Nodes().Patch(ctx, k.cfg.NodeName, types.StrategicMergePatchType, patch, metav1.PatchOptions{}, "status")
	return err
}

// WaitSchedulable waits until the Node is Ready and carries none of the
// taints the node-lifecycle controller or admission put on a node that is
// not (yet) ready: the scheduler then places pods on it.
func (k *Kubelet) WaitSchedulable(ctx context.Context) error {
	for {
		n, err := k.cfg.Client.CoreV1().Nodes().Get(ctx, k.cfg.NodeName, metav1.GetOptions{})
		if err == nil && NodeSchedulable(n) {
			return nil
		}
		select {
		case <-ctx.Done():
			if err == nil {
				return fmt.Errorf("node %s not schedulable: taints %v: %w", k.cfg.NodeName, n.Spec.Taints, ctx.Err())
			}
			return fmt.Errorf("node %s: %v: %w", k.cfg.NodeName, err, ctx.Err())
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// NodeSchedulable reports a Ready node without not-ready/unreachable taints.
func NodeSchedulable(n *corev1.Node) bool {
	ready := false
	for _, c := range n.Status.Conditions {
		if c.Type == corev1.NodeReady && c.Status == corev1.ConditionTrue {
			ready = true
		}
	}
	for _, t := range n.Spec.Taints {
		if t.Key == corev1.TaintNodeNotReady || t.Key == corev1.TaintNodeUnreachable {
			return false
		}
	}
	return ready && !n.Spec.Unschedulable
}

func ptrTo[T any](v T) *T { return &v }
