package integration

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"github.com/meshready/meshready/internal/localcluster"
)

// ClusterMesh is the local mesh on the real control plane: etcd,
// kube-apiserver, kube-controller-manager, kube-scheduler, istiod and
// Prometheus (internal/localcluster), one Node played by the kubelet
// stand-in (internal/kubeletstandin), and greeter Deployments whose pods
// run the real agent under `meshready run`, beside the sidecar stand-in
// (internal/cmd/sidecar-standin). The Deployment controller rolls the
// pods, the EndpointSlice controller marks them ready and terminating,
// istiod pushes EDS to the proxyless gRPC callers.
type ClusterMesh struct {
	Cluster *localcluster.Cluster
	Kubelet *KubeletStandin
	o       ClusterMeshOptions
	start   time.Time
}

// ClusterMeshOptions configure a ClusterMesh.
type ClusterMeshOptions struct {
	Dir string // everything of the run: the cluster's dir, pods' logs
	// Binaries built by BuildClusterBinaries.
	Bins ClusterBinaries
	Out  io.Writer
	// EndpointBatch is the EndpointSlice controller's
	// --endpointslice-updates-batch-period: how long it batches pod changes
	// before writing a slice. 0 is Kubernetes' default (write at once); a
	// busy cluster's lag is seconds.
	EndpointBatch time.Duration
	Verbose       bool
}

// ClusterBinaries are what pods run.
type ClusterBinaries struct {
	Agent, Greeter, Sidecar string
}

// BuildClusterBinaries builds the agent and the sidecar stand-in (root
// module) and the greeter (this module) into dir.
func BuildClusterBinaries(integrationDir, dir string) (ClusterBinaries, error) {
	agent, greeterBin, err := BuildBinaries(integrationDir, dir)
	if err != nil {
		return ClusterBinaries{}, err
	}
	sidecar := filepath.Join(dir, "sidecar-standin")
	if err := goBuild(filepath.Join(integrationDir, ".."), sidecar, "./internal/cmd/sidecar-standin"); err != nil {
		return ClusterBinaries{}, err
	}
	return ClusterBinaries{Agent: agent, Greeter: greeterBin, Sidecar: sidecar}, nil
}

// StartClusterMesh starts the control plane, the kubelet stand-in and the
// greeter Service. Call localcluster.EnterNetns first (TestMain, main).
func StartClusterMesh(ctx context.Context, o ClusterMeshOptions) (*ClusterMesh, error) {
	if o.Out == nil {
		o.Out = io.Discard
	}
	m := &ClusterMesh{o: o, start: time.Now()}
	if o.Dir == "" {
		d, err := os.MkdirTemp("", "meshready-clustermesh-")
		if err != nil {
			return nil, err
		}
		m.o.Dir = d
	}
	var kcm []string
	if o.EndpointBatch > 0 {
		kcm = append(kcm, "--endpointslice-updates-batch-period="+o.EndpointBatch.String())
	}
	c, err := localcluster.Start(ctx, localcluster.Options{
		Dir: filepath.Join(m.o.Dir, "cluster"), Controllers: true, Istio: true, Prometheus: true,
		ControllerManagerArgs: kcm, Logf: m.Logf,
	})
	if err != nil {
		return nil, err
	}
	m.Cluster = c
	k, err := startKubelet(ctx, m)
	if err != nil {
		c.Stop()
		return nil, err
	}
	m.Kubelet = k
	if _, err := c.Kubectl(ctx, nil, "label", "namespace", "default", "istio-injection=enabled", "--overwrite"); err != nil {
		m.Close()
		return nil, err
	}
	if err := c.Apply(ctx, greeterService); err != nil {
		m.Close()
		return nil, err
	}
	return m, nil
}

// Logf writes one timestamped line of narration.
func (m *ClusterMesh) Logf(format string, args ...any) {
	fmt.Fprintf(m.o.Out, "%s  %s\n", time.Now().Format("15:04:05.000"), fmt.Sprintf(format, args...))
}

// Close stops the kubelet stand-in (every pod's processes) and the control plane.
func (m *ClusterMesh) Close() {
	if m.Kubelet != nil {
		m.Kubelet.Stop()
	}
	if m.Cluster != nil {
		m.Cluster.Stop()
	}
}

// Describe names the cluster's logs and every pod's, for a failing test.
func (m *ClusterMesh) Describe() string {
	s := m.Cluster.Describe()
	if m.Kubelet != nil {
		s += "\n" + m.Kubelet.Describe()
	}
	return s
}

// Deploy applies a greeter Deployment and waits until it is complete
// (every replica updated and available), at most timeout.
func (m *ClusterMesh) Deploy(ctx context.Context, s DeploymentSpec, timeout time.Duration) error {
	s.defaults()
	if err := m.Cluster.Apply(ctx, s.Manifest()); err != nil {
		return err
	}
	return m.WaitComplete(ctx, s.Name, timeout)
}

// WaitComplete waits for the Deployment controller to report the rollout
// complete: observed the latest generation, every replica updated, ready
// and available, no old replica left.
func (m *ClusterMesh) WaitComplete(ctx context.Context, name string, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	var last string
	for {
		d, err := m.Cluster.Client.AppsV1().Deployments("default").Get(ctx, name, metav1.GetOptions{})
		if err == nil {
			if complete(d) {
				return nil
			}
			st := d.Status
			last = fmt.Sprintf("replicas=%d updated=%d ready=%d available=%d", st.Replicas, st.UpdatedReplicas, st.ReadyReplicas, st.AvailableReplicas)
		} else {
			last = err.Error()
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("deployment %s not complete within %s (%s)", name, timeout, last)
		case <-time.After(200 * time.Millisecond):
		}
	}
}

func complete(d *appsv1.Deployment) bool {
	want := int32(1)
	if d.Spec.Replicas != nil {
		want = *d.Spec.Replicas
	}
	st := d.Status
	return st.ObservedGeneration >= d.Generation && st.UpdatedReplicas == want && st.Replicas == want &&
		st.AvailableReplicas == want && st.ReadyReplicas == want
}

// Pods lists the greeter pods of a Deployment (by its version label), sorted by name.
func (m *ClusterMesh) Pods(ctx context.Context, version string) ([]corev1.Pod, error) {
	return m.PodsOf(ctx, "app=greeter,version="+version)
}

// PodsOf lists the pods a label selector picks, sorted by name.
func (m *ClusterMesh) PodsOf(ctx context.Context, selector string) ([]corev1.Pod, error) {
	l, err := m.Cluster.Client.CoreV1().Pods("default").List(ctx, metav1.ListOptions{LabelSelector: selector})
	if err != nil {
		return nil, err
	}
	sort.Slice(l.Items, func(i, j int) bool { return l.Items[i].Name < l.Items[j].Name })
	return l.Items, nil
}

// ClusterRollout is what one rolling restart did.
type ClusterRollout struct {
	Took  time.Duration
	Steps []OldPod
}

// OldPod is one replaced pod: how it was stopped.
type OldPod struct {
	Name       string
	DeletedAt  time.Time
	ExitCode   int           // the app container's exit code (128+n: signal n)
	StoppedAft time.Duration // deletion → the app container exited
	Drain      string        // how the agent ended its drain, from its log
}

// Killed says the old pod's app had to be SIGKILLed.
func (p OldPod) Killed() bool { return p.ExitCode == 137 }

// RollingRestart is `kubectl rollout restart deployment/<name>`: it
// changes the template's restartedAt annotation and lets the Deployment
// controller roll (maxSurge 1, maxUnavailable 0), then waits until the
// rollout is complete and every old pod is gone.
func (m *ClusterMesh) RollingRestart(ctx context.Context, s DeploymentSpec, timeout time.Duration) (ClusterRollout, error) {
	return m.RollingRestartHook(ctx, s, timeout, nil)
}

// RollingRestartHook is RollingRestart with onDelete called (in its own
// goroutine) as each old pod is seen deleted: a scenario's bad condition.
func (m *ClusterMesh) RollingRestartHook(ctx context.Context, s DeploymentSpec, timeout time.Duration, onDelete func(i int, pod string)) (ClusterRollout, error) {
	s.defaults()
	began := time.Now()
	old, err := m.Pods(ctx, s.Version)
	if err != nil {
		return ClusterRollout{}, err
	}
	names := map[string]bool{}
	for _, p := range old {
		names[p.Name] = true
	}
	// Watch the old pods' deletions from now on, to know when each began.
	var mu sync.Mutex
	deleted := map[string]time.Time{}
	wctx, wcancel := context.WithCancel(ctx)
	defer wcancel()
	watchDone, err := m.watchPods(wctx, "app=greeter,version="+s.Version, func(ev watch.EventType, p *corev1.Pod) {
		if !names[p.Name] || (ev != watch.Modified && ev != watch.Deleted) || p.DeletionTimestamp == nil {
			return
		}
		mu.Lock()
		defer mu.Unlock()
		if _, seen := deleted[p.Name]; !seen {
			deleted[p.Name] = time.Now()
			m.Logf("%-26s deleted by the Deployment controller: endpoint terminating, SIGTERM", p.Name)
			if onDelete != nil {
				go onDelete(len(deleted)-1, p.Name)
			}
		}
	})
	if err != nil {
		return ClusterRollout{}, err
	}
	defer func() { wcancel(); <-watchDone }()
	s.Restarted = time.Now().UTC().Format(time.RFC3339Nano)
	if err := m.Cluster.Apply(ctx, s.Manifest()); err != nil {
		return ClusterRollout{}, err
	}
	if err := m.WaitComplete(ctx, s.Name, timeout); err != nil {
		return ClusterRollout{}, err
	}
	rep := ClusterRollout{}
	for _, p := range old {
		ex, err := m.Kubelet.WaitGone(ctx, "default", p.Name, timeout)
		if err != nil {
			return rep, err
		}
		mu.Lock()
		at := deleted[p.Name]
		mu.Unlock()
		if at.IsZero() {
			// Not seen by the watch (it should not happen: say so in the
			// narration): the kubelet stand-in's own record of when it saw
			// the deletion is the next best.
			at = ex.DeleteSeenAt
			m.Logf("%-26s deletion not seen by the watch; using the kubelet stand-in's time", p.Name)
		}
		step := OldPod{Name: p.Name, DeletedAt: at, ExitCode: ex.AppExit}
		if !at.IsZero() && !ex.AppExitedAt.IsZero() {
			step.StoppedAft = ex.AppExitedAt.Sub(at)
		}
		if mm := drainEnded.FindStringSubmatch(ex.AppLog); mm != nil {
			step.Drain = mm[1] + " after " + mm[2]
		}
		rep.Steps = append(rep.Steps, step)
		m.Logf("%-26s gone: app exited %d, %s after deletion%s", p.Name, step.ExitCode, step.StoppedAft.Round(time.Millisecond), drainNote(step.Drain))
	}
	rep.Took = time.Since(began)
	return rep, nil
}

// watchPods calls fn with every pod event of selector until ctx ends; the
// returned channel closes when it has stopped. The apiserver (and the
// cluster client's 10 s request timeout) ends a watch whenever it likes:
// this one is resumed from the last resourceVersion seen, on a client
// without a request timeout, so no event in between is lost (a rollout
// takes longer than 10 s: the old single watch saw the first deletion and
// missed the rest, leaving StoppedAft 0).
func (m *ClusterMesh) watchPods(ctx context.Context, selector string, fn func(watch.EventType, *corev1.Pod)) (<-chan struct{}, error) {
	cfg := rest.CopyConfig(m.Cluster.REST)
	cfg.Timeout = 0
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return nil, err
	}
	pods := cs.CoreV1().Pods("default")
	l, err := pods.List(ctx, metav1.ListOptions{LabelSelector: selector})
	if err != nil {
		return nil, err
	}
	rv := l.ResourceVersion
	w, err := pods.Watch(ctx, metav1.ListOptions{LabelSelector: selector, ResourceVersion: rv, AllowWatchBookmarks: true})
	if err != nil {
		return nil, err
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			for ev := range w.ResultChan() {
				if ev.Type == watch.Error {
					break // e.g. 410 Gone: re-listed below
				}
				p, ok := ev.Object.(*corev1.Pod)
				if !ok {
					continue
				}
				rv = p.ResourceVersion
				if ev.Type != watch.Bookmark {
					fn(ev.Type, p)
				}
			}
			w.Stop()
			for ctx.Err() == nil {
				if w, err = pods.Watch(ctx, metav1.ListOptions{LabelSelector: selector, ResourceVersion: rv, AllowWatchBookmarks: true}); err == nil {
					break
				}
				if l, lerr := pods.List(ctx, metav1.ListOptions{LabelSelector: selector}); lerr == nil {
					// Too old to resume: what is deleting now is in the list.
					for i := range l.Items {
						fn(watch.Modified, &l.Items[i])
					}
					rv = l.ResourceVersion
				}
				select {
				case <-ctx.Done():
				case <-time.After(100 * time.Millisecond):
				}
			}
			if ctx.Err() != nil {
				return
			}
		}
	}()
	return done, nil
}

func drainNote(d string) string {
	if d == "" {
		return ""
	}
	return " (drain ended: " + d + ")"
}

// WaitRoutable waits until istiod routes callers of the greeter Service to
// a ready pod: a new proxyless caller (its own EDS from istiod, as a new
// sidecar's) gets an answer. A Deployment that is complete is not routable
// yet: the EndpointSlice controller (--endpointslice-updates-batch-period)
// and istiod's debounce come between a pod's Ready and its endpoint in the
// EDS a proxy is sent. It returns how long that took.
func (m *ClusterMesh) WaitRoutable(ctx context.Context, timeout time.Duration) (time.Duration, error) {
	t0 := time.Now()
	conn, err := DialGreeter(localcluster.IstiodXDS, fmt.Sprintf("routable-%d", t0.UnixNano()), timeout)
	if err != nil {
		return 0, fmt.Errorf("the greeter is not routable through istiod within %s: %w", timeout, err)
	}
	_ = conn.Close()
	return time.Since(t0), nil
}

// FirstCall waits for the first run of the app of Deployment app (a
// CallerManifest) to log its first outbound call, and returns that line.
func (m *ClusterMesh) FirstCall(ctx context.Context, app string, d time.Duration) (string, error) {
	deadline := time.Now().Add(d)
	for time.Now().Before(deadline) {
		pods, err := m.PodsOf(ctx, "app="+app)
		if err == nil && len(pods) > 0 {
			if p, ok := m.Kubelet.Pod("default", pods[0].Name); ok {
				if c, ok := p.Container("greeter"); ok && len(c.Logs) > 0 {
					b, _ := os.ReadFile(c.Logs[0])
					for _, l := range strings.Split(string(b), "\n") {
						if i := strings.Index(l, "first outbound call"); i >= 0 {
							return l[i:], nil
						}
					}
				}
			}
		}
		select {
		case <-ctx.Done():
			return "", ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
	return "", fmt.Errorf("%s made no first call within %s", app, d)
}
