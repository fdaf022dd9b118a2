package integration

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"

	"github.com/meshready/meshready/internal/kubeletstandin"
	"github.com/meshready/meshready/internal/localcluster"
)

// KubeletStandin is the local mesh's one Node: internal/kubeletstandin
// with the image table of the greeter and the sidecar stand-in for pods
// Istio would inject.
type KubeletStandin struct {
	*kubeletstandin.Kubelet
}

// Pod annotations the harness reads when it builds a pod's sidecar (what a
// scenario needs of the stand-in; a real pod has no such thing).
const (
	// AnnotationSidecarOutbound opens the sidecar's outbound listener
	// (POD_IP:15001) to the greeter Service: an app that calls through it.
	AnnotationSidecarOutbound = "standin.meshready.io/outbound"
)

func startKubelet(ctx context.Context, m *ClusterMesh) (*KubeletStandin, error) {
	b := m.o.Bins
	k, err := kubeletstandin.Start(ctx, kubeletstandin.Config{
		Client:   m.Cluster.Client,
		NodeName: "node-1",
		Dir:      filepath.Join(m.o.Dir, "kubelet"),
		Images: map[string]kubeletstandin.Image{
			// FROM our Go base image (images/go/Dockerfile): ENTRYPOINT meshready run --.
			ImageMeshready: {Entrypoint: []string{"/usr/local/bin/meshready", "run", "--"}, Cmd: []string{"/app/greeter"}},
			ImageNaive:     {Entrypoint: []string{"/app/greeter"}},
		},
		Binaries:     map[string]string{"/usr/local/bin/meshready": b.Agent, "/app/greeter": b.Greeter},
		MountPathEnv: map[string]string{"/etc/podinfo": "MESHREADY_PODINFO"},
		Sidecar: func(pod *corev1.Pod, ip string) ([]string, []string) {
			argv := []string{b.Sidecar,
				"--pilot", localcluster.IstiodXDS, "--ip", ip, "--pod", pod.Name, "--namespace", pod.Namespace,
				"--inbound", fmt.Sprintf("%d=%d", GreeterPort, appPort), "--drain", "5s",
			}
			keys := make([]string, 0, len(pod.Labels))
			for k := range pod.Labels {
				keys = append(keys, k)
			}
			sort.Strings(keys)
			for _, k := range keys {
				argv = append(argv, "--label", k+"="+pod.Labels[k])
			}
			if pod.Annotations[AnnotationSidecarOutbound] == "true" {
				argv = append(argv, "--outbound-cluster", GreeterCluster, "--outbound-port", fmt.Sprint(outboundPort))
			}
			return argv, nil
		},
		Logf: func(format string, args ...any) {
			if m.o.Verbose {
				m.Logf(format, args...)
			}
		},
	})
	if err != nil {
		return nil, err
	}
	return &KubeletStandin{k}, nil
}

// Stop ends every pod (bounded) and the Node's heartbeats.
func (k *KubeletStandin) Stop() {
	ctx, cancel := context.WithTimeout(context.Background(), 40*time.Second)
	defer cancel()
	k.Kubelet.Stop(ctx)
}

// Gone is how a deleted pod's app container ended.
type Gone struct {
	AppExit     int
	AppExitedAt time.Time
	AppLog      string // the app container's log: the agent's own lines under meshready run
	// DeleteSeenAt is when the kubelet stand-in saw the deletion (its
	// "Killing" event: it begins stopping the containers).
	DeleteSeenAt time.Time
}

// WaitGone waits until the kubelet stand-in has finished the pod's delete.
func (k *KubeletStandin) WaitGone(ctx context.Context, ns, name string, timeout time.Duration) (Gone, error) {
	deadline := time.Now().Add(timeout)
	for {
		p, ok := k.Pod(ns, name)
		if ok && p.Deleted {
			var g Gone
			g.AppExit = -1
			if c, ok := p.Container("greeter"); ok {
				if c.ExitCode != nil {
					g.AppExit = *c.ExitCode
				}
				if b, err := os.ReadFile(c.Log); err == nil {
					g.AppLog = string(b)
				}
			}
			for _, e := range p.Events {
				if e.Container == "greeter" && e.What == "Exited" {
					g.AppExitedAt = e.At
				}
				if e.Container == "" && e.What == "Killing" && g.DeleteSeenAt.IsZero() {
					g.DeleteSeenAt = e.At
				}
			}
			return g, nil
		}
		if time.Now().After(deadline) {
			state := "unknown to the kubelet stand-in"
			if ok {
				state = p.String()
			}
			return Gone{}, fmt.Errorf("pod %s/%s not gone within %s: %s", ns, name, timeout, state)
		}
		select {
		case <-ctx.Done():
			return Gone{}, ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// AppLog is the app container's current log (the agent's lines under meshready run).
func (k *KubeletStandin) AppLog(ns, name string) string {
	p, ok := k.Pod(ns, name)
	if !ok {
		return ""
	}
	c, ok := p.Container("greeter")
	if !ok {
		return ""
	}
	b, _ := os.ReadFile(c.Log)
	return strings.TrimSpace(string(b))
}
