package kubeletstandin

import (
	"fmt"
	"strings"
	"time"

	"k8s.io/apimachinery/pkg/types"
)

// Event is one thing the stand-in did or saw for a pod: What is Started,
// Exited (ExitCode set), SIGTERM, SIGKILL, Unhealthy, Killing, BackOff,
// PreStop, FailedPreStopHook, Injected, SandboxReady, Deleted, …
type Event struct {
	At        time.Time
	Container string // "" for the pod
	What      string
	ExitCode  *int
	Message   string
}

// ContainerInfo is one container across its restarts (the injected
// sidecar included, with Sidecar set).
type ContainerInfo struct {
	Name     string
	Sidecar  bool // the injected sidecar (not in the Pod spec)
	Init     bool
	Running  bool
	PID      int // the current (or last) process
	Restarts int
	Ready    bool
	Argv     []string
	Log      string   // the current (or last) run's log file
	Logs     []string // every run's log file, oldest first
	ExitCode *int     // the last exit
	// TermAt and KillAt: when the current (or last) run got SIGTERM / SIGKILL.
	TermAt, KillAt time.Time
}

// PodInfo is what the kubelet stand-in knows of one pod.
type PodInfo struct {
	Namespace, Name string
	UID             types.UID
	IP              string
	Dir             string            // the pod's directory
	Volumes         map[string]string // volume name → host directory (downwardAPI, projected, emptyDir)
	Injected        bool
	Phase           string
	Deleted         bool // the stand-in finished its delete
	Containers      []ContainerInfo
	Events          []Event
}

// Container finds a container by name.
func (p PodInfo) Container(name string) (ContainerInfo, bool) {
	for _, c := range p.Containers {
		if c.Name == name {
			return c, true
		}
	}
	return ContainerInfo{}, false
}

// Find is the first event of that kind for that container ("" any), or nil.
func (p PodInfo) Find(container, what string) *Event {
	for i := range p.Events {
		e := &p.Events[i]
		if (container == "" || e.Container == container) && e.What == what {
			return e
		}
	}
	return nil
}

func (w *podWorker) info() PodInfo {
	w.mu.Lock()
	defer w.mu.Unlock()
	p := PodInfo{Namespace: w.ns, Name: w.name, UID: w.uid, IP: w.ip, Dir: w.dir, Injected: w.injected,
		Phase: string(w.phaseLocked(false)), Deleted: w.finished, Volumes: map[string]string{}}
	for n, d := range w.volumes {
		p.Volumes[n] = d
	}
	for _, c := range w.ctrs {
		ci := ContainerInfo{Name: c.name, Sidecar: c.kind == injectedCtr, Init: c.kind == initCtr || c.kind == nativeSidecarCtr,
			Running: c.proc != nil, PID: c.lastPID, Restarts: c.restarts, Ready: c.ready, Argv: append([]string(nil), c.argv...),
			Logs: append([]string(nil), c.logs...), TermAt: c.termAt, KillAt: c.killAt}
		if c.exitCode != nil {
			ci.ExitCode = ptrTo(*c.exitCode)
		}
		if len(c.logs) > 0 {
			ci.Log = c.logs[len(c.logs)-1]
		}
		p.Containers = append(p.Containers, ci)
	}
	p.Events = append([]Event(nil), w.events...)
	return p
}

// String is the pod's state, containers and log files, and its events.
func (p PodInfo) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "pod %s/%s uid %s ip %s phase %s", p.Namespace, p.Name, p.UID, p.IP, p.Phase)
	if p.Deleted {
		b.WriteString(" (deleted)")
	}
	if p.Injected {
		b.WriteString(" (sidecar injected)")
	}
	for _, c := range p.Containers {
		state := "not running"
		if c.Running {
			state = fmt.Sprintf("running pid %d", c.PID)
		} else if c.ExitCode != nil {
			state = fmt.Sprintf("exited %d (pid %d)", *c.ExitCode, c.PID)
		}
		kind := ""
		if c.Sidecar {
			kind = " [sidecar, not in spec]"
		} else if c.Init {
			kind = " [init]"
		}
		fmt.Fprintf(&b, "\n  %s%s: %s, restarts %d, ready %v, log %s", c.Name, kind, state, c.Restarts, c.Ready, c.Log)
		if c.Sidecar {
			fmt.Fprintf(&b, "\n    argv %q", c.Argv)
		}
	}
	for _, e := range p.Events {
		fmt.Fprintf(&b, "\n    %s %-10s %-18s %s", e.At.Format("15:04:05.000"), e.Container, e.What, e.Message)
	}
	return b.String()
}
