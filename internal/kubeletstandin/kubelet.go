package kubeletstandin

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/cache"
)

// Config is one Node's kubelet stand-in.
type Config struct {
	Client   kubernetes.Interface
	NodeName string
	// NodeIP is the Node's InternalIP and every pod's hostIP (default
	// 10.244.0.1: local in localcluster's namespace, outside the pod range).
	NodeIP string
	// Dir holds each pod's directory: logs, Downward API files, working
	// directories (required).
	Dir string
	// Images maps an image reference (exactly as in the Pod spec) to its
	// ENTRYPOINT, CMD and ENV. An image not in it cannot be "pulled".
	Images map[string]Image
	// Binaries maps in-image paths to local files: every argument of a
	// container's argv equal to a key is replaced by its value.
	Binaries map[string]string
	// MountPathEnv names, per volume mountPath, the environment variable
	// that tells a container where that volume's host directory is (the
	// stand-in has no mount namespaces): "/etc/podinfo" → "MESHREADY_PODINFO".
	MountPathEnv map[string]string
	// Sidecar gives the sidecar's argv (argv[0] a local file, or an in-image
	// path of Binaries) and environment for a pod Istio would inject. Nil:
	// no pod is injected.
	Sidecar func(pod *corev1.Pod, podIP string) (argv []string, env []string)
	// Logf narrates (nil: silent).
	Logf func(format string, args ...any)
	// RestartBackoff is the first crash-loop back-off, doubling up to
	// MaxRestartBackoff. The kubelet's are 10 s and 5 min; the stand-in's
	// defaults are 1 s and 10 s, so tests of restarts are quick.
	RestartBackoff    time.Duration
	MaxRestartBackoff time.Duration
	// HeartbeatInterval is how often the Lease is renewed and NodeStatus
	// posted (default 10 s, the kubelet's).
	HeartbeatInterval time.Duration
	// Capacity is the Node's capacity and allocatable (default cpu 16,
	// memory 64Gi, pods 256).
	Capacity corev1.ResourceList
	// NodeLabels are added to the Node's labels; Taints are registered
	// with it (the kubelet's --register-with-taints).
	NodeLabels map[string]string
	Taints     []corev1.Taint
}

// Kubelet is a running kubelet stand-in.
type Kubelet struct {
	cfg       Config
	ctx       context.Context
	cancel    context.CancelFunc
	wg        sync.WaitGroup
	ipam      *ipam
	bootID    string
	nodeUID   types.UID
	nodeSince metav1.Time
	started   time.Time

	mu       sync.Mutex
	pods     map[types.UID]*podWorker // live (not yet finished) pods
	finished map[types.UID]bool       // deleted by us: ignore late events
	byName   map[string]*podWorker    // ns/name → latest worker, finished or not
	stopped  bool
}

// Start registers the Node (Ready), starts its heartbeats and the pod
// informer, and returns once the informer has synced.
func Start(ctx context.Context, cfg Config) (*Kubelet, error) {
	if cfg.Client == nil || cfg.NodeName == "" || cfg.Dir == "" {
		return nil, errors.New("kubeletstandin: Config needs Client, NodeName and Dir")
	}
	if cfg.NodeIP == "" {
		cfg.NodeIP = "10.244.0.1"
	}
	if cfg.Logf == nil {
		cfg.Logf = func(string, ...any) {}
	}
	if cfg.RestartBackoff <= 0 {
		cfg.RestartBackoff = time.Second
	}
	if cfg.MaxRestartBackoff <= 0 {
		cfg.MaxRestartBackoff = 10 * time.Second
	}
	if cfg.MaxRestartBackoff < cfg.RestartBackoff {
		cfg.MaxRestartBackoff = cfg.RestartBackoff
	}
	if cfg.HeartbeatInterval <= 0 {
		cfg.HeartbeatInterval = 10 * time.Second
	}
	if cfg.Capacity == nil {
		cfg.Capacity = corev1.ResourceList{
			corev1.ResourceCPU:              resource.MustParse("16"),
			corev1.ResourceMemory:           resource.MustParse("64Gi"),
			corev1.ResourcePods:             resource.MustParse("256"),
			corev1.ResourceEphemeralStorage: resource.MustParse("100Gi"),
		}
	}
	if err := os.MkdirAll(filepath.Join(cfg.Dir, "pods"), 0o755); err != nil {
		return nil, err
	}
	b := make([]byte, 16)
	_, _ = rand.Read(b)
	kctx, cancel := context.WithCancel(context.Background())
	k := &Kubelet{cfg: cfg, ctx: kctx, cancel: cancel, ipam: podIPs, bootID: hex.EncodeToString(b), started: time.Now(),
		pods: map[types.UID]*podWorker{}, finished: map[types.UID]bool{}, byName: map[string]*podWorker{}}
	rctx, rcancel := context.WithTimeout(ctx, 30*time.Second)
	defer rcancel()
	if err := k.register(rctx); err != nil {
		cancel()
		return nil, fmt.Errorf("kubeletstandin: %w", err)
	}
	k.wg.Add(1)
	go k.heartbeat(kctx)

	factory := informers.NewSharedInformerFactoryWithOptions(cfg.Client, 0, informers.WithTweakListOptions(func(o *metav1.ListOptions) {
		o.FieldSelector = fields.OneTermEqualSelector("spec.nodeName", cfg.NodeName).String()
	}))
	inf := factory.Core().V1().Pods().Informer()
	_, err := inf.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    func(obj any) { k.podChanged(obj) },
		UpdateFunc: func(_, obj any) { k.podChanged(obj) },
		DeleteFunc: func(obj any) {
			if t, ok := obj.(cache.DeletedFinalStateUnknown); ok {
				obj = t.Obj
			}
			if p, ok := obj.(*corev1.Pod); ok {
				k.podGone(p)
			}
		},
	})
	if err != nil {
		cancel()
		return nil, err
	}
	factory.Start(kctx.Done())
	for _, ok := range factory.WaitForCacheSync(rctx.Done()) {
		if !ok {
			k.Stop(context.Background())
			return nil, errors.New("kubeletstandin: pod informer did not sync")
		}
	}
	k.wg.Add(1)
	go func() { defer k.wg.Done(); <-kctx.Done(); factory.Shutdown() }()
	k.logf("node %s registered (kubelet stand-in %s, InternalIP %s), dir %s", cfg.NodeName, KubeletVersion, cfg.NodeIP, cfg.Dir)
	return k, nil
}

func (k *Kubelet) logf(format string, args ...any) { k.cfg.Logf("kubelet-standin: "+format, args...) }

// NodeName is the Node this stand-in plays the kubelet of.
func (k *Kubelet) NodeName() string { return k.cfg.NodeName }

func (k *Kubelet) podChanged(obj any) {
	pod, ok := obj.(*corev1.Pod)
	if !ok {
		return
	}
	k.mu.Lock()
	if k.stopped {
		k.mu.Unlock()
		return
	}
	w := k.pods[pod.UID]
	if w == nil && k.finished[pod.UID] {
		k.mu.Unlock()
		return
	}
	if w == nil {
		if pod.Status.Phase == corev1.PodSucceeded || pod.Status.Phase == corev1.PodFailed {
			if pod.DeletionTimestamp != nil {
				// Terminal and being deleted: nothing runs, finish the delete.
				k.mu.Unlock()
				go k.finishDelete(pod)
				return
			}
			k.mu.Unlock()
			return // terminal before we (re)started: nothing to run
		}
		w = newPodWorker(k, pod)
		k.pods[pod.UID] = w
		k.byName[pod.Namespace+"/"+pod.Name] = w
		k.wg.Add(1)
		k.mu.Unlock()
		go w.run()
		return
	}
	k.mu.Unlock()
	w.changed(pod)
}

func (k *Kubelet) podGone(pod *corev1.Pod) {
	k.mu.Lock()
	w := k.pods[pod.UID]
	delete(k.pods, pod.UID)
	k.mu.Unlock()
	if w != nil {
		w.gone()
	}
}

// forget drops a worker whose pod is done with; finished UIDs are never
// run again (a late informer event must not restart a deleted pod).
func (k *Kubelet) forget(w *podWorker, finished bool) {
	k.mu.Lock()
	if k.pods[w.uid] == w {
		delete(k.pods, w.uid)
	}
	if finished {
		k.finished[w.uid] = true
	}
	k.mu.Unlock()
}

// Stop ends every pod's processes — SIGTERM to all at once, SIGKILL to
// what is left when ctx ends or after 5 s, whichever is first — then the
// heartbeats and the informer. Pods are left as they are in the API (a
// stopped kubelet deletes nothing). Nothing the stand-in started is left
// running when it returns.
func (k *Kubelet) Stop(ctx context.Context) {
	k.mu.Lock()
	if k.stopped {
		k.mu.Unlock()
		return
	}
	k.stopped = true
	ws := make([]*podWorker, 0, len(k.pods))
	for _, w := range k.pods {
		ws = append(ws, w)
	}
	k.mu.Unlock()
	deadline := time.Now().Add(5 * time.Second)
	if d, ok := ctx.Deadline(); ok && d.Before(deadline) {
		deadline = d
	}
	k.cancel()
	var wg sync.WaitGroup
	for _, w := range ws {
		wg.Add(1)
		go func() { defer wg.Done(); w.shutdown(deadline) }()
	}
	wg.Wait()
	k.wg.Wait()
	k.logf("node %s: stopped", k.cfg.NodeName)
}

// Pod reports what the stand-in knows of a pod (the latest one of that
// name): its IP, containers with their processes and log files, events.
func (k *Kubelet) Pod(namespace, name string) (PodInfo, bool) {
	k.mu.Lock()
	w := k.byName[namespace+"/"+name]
	k.mu.Unlock()
	if w == nil {
		return PodInfo{}, false
	}
	return w.info(), true
}

// Pods lists what Pod reports, for every pod the stand-in has run.
func (k *Kubelet) Pods() []PodInfo {
	k.mu.Lock()
	ws := make([]*podWorker, 0, len(k.byName))
	for _, w := range k.byName {
		ws = append(ws, w)
	}
	k.mu.Unlock()
	out := make([]PodInfo, 0, len(ws))
	for _, w := range ws {
		out = append(out, w.info())
	}
	sort.Slice(out, func(i, j int) bool {
		return out[i].Namespace+"/"+out[i].Name < out[j].Namespace+"/"+out[j].Name
	})
	return out
}

// Describe is every pod's state, processes and log files, for a failing
// test's output.
func (k *Kubelet) Describe() string {
	var b strings.Builder
	fmt.Fprintf(&b, "kubelet stand-in for node %s (dir %s), up %v", k.cfg.NodeName, k.cfg.Dir, time.Since(k.started).Round(time.Second))
	for _, p := range k.Pods() {
		b.WriteString("\n")
		b.WriteString(p.String())
	}
	return b.String()
}
