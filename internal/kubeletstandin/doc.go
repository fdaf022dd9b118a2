// Package kubeletstandin is a kubelet stand-in: it plays the kubelet of one
// Node against a real control plane (internal/localcluster), running each
// Pod's containers as local processes inside localcluster's private network
// namespace, where every 10.244.x.y answers like loopback. It is a stand-in,
// named so everywhere (the Node reports kubeletVersion v1.36.1-standin):
// what it writes to the API is what a kubelet writes, what it runs is not a
// container.
//
//	k, err := kubeletstandin.Start(ctx, kubeletstandin.Config{
//		Client: c.Client, NodeName: "standin-1", Dir: dir,
//		Images:   map[string]kubeletstandin.Image{"greeter:v1": {Entrypoint: []string{"/usr/local/bin/meshready", "run", "--"}, Cmd: []string{"/app/greeter"}}},
//		Binaries: map[string]string{"/usr/local/bin/meshready": "bin/meshready", "/app/greeter": greeterBin},
//		MountPathEnv: map[string]string{"/etc/podinfo": "MESHREADY_PODINFO"},
//		Sidecar: func(pod *corev1.Pod, podIP string) (argv, env []string) { … },
//	})
//	defer k.Stop(ctx)
//	k.WaitSchedulable(ctx)   // Ready and the not-ready taint gone (~5 s: the node-lifecycle controller's pass)
//	info, _ := k.Pod(ns, name) // IP, processes, log files, SIGTERM/SIGKILL times, exit codes, events
//	t.Log(k.Describe())        // for a failing test
//
// # As a kubelet does (what the API sees)
//
//   - Node: registered Ready (capacity cpu/memory/pods, InternalIP, nodeInfo,
//     hostname/os/arch labels, optional taints); a Lease in kube-node-lease
//     renewed and a NodeStatus heartbeat (strategic-merge patch of the
//     conditions' lastHeartbeatTime) every 10 s, so the controller-manager's
//     node-lifecycle controller removes the not-ready taint and never adds
//     unreachable.
//   - Pods: an informer on spec.nodeName. Status written on every change with
//     conflict retries (UpdateStatus, fresh read on conflict): podIP/podIPs,
//     hostIP/hostIPs, startTime, phase by the kubelet's getPhase rules,
//     conditions PodReadyToStartContainers/Initialized/Ready/ContainersReady
//     (transition times kept while unchanged; PodScheduled and other owners'
//     conditions kept; readiness gates honoured), containerStatuses sorted by
//     name with state (waiting ContainerCreating/PodInitializing/
//     CrashLoopBackOff/ErrImagePull/CreateContainerConfigError, running,
//     terminated with exit code, Completed/Error/StartError), lastState,
//     ready, started, restartCount; init containers in initContainerStatuses.
//   - Pod IPs from 10.244.1.0–10.244.254.255, one pool per process (stand-in
//     nodes of one test share the namespace), next-fit so a freed address is
//     reused last; never 10.244.0.x (the node, 10.244.0.1) or 10.244.255.x (the
//     harness's: istiod). A pod that already has an IP in range keeps it.
//   - Containers: the image's ENTRYPOINT/CMD/ENV from Config.Images;
//     command replaces ENTRYPOINT and drops CMD, args replace CMD; env value
//     with $(VAR) expansion over the variables before it, valueFrom.fieldRef
//     (metadata.name/namespace/uid/labels['k']/annotations['k'],
//     spec.nodeName, spec.serviceAccountName, status.podIP(s), status.hostIP(s));
//     $(VAR) in command/args over the container's env ($$ escapes, unknown
//     stays literal, image ENV not visible to expansion: the kubelet's rules).
//     Init containers in order, each to success; native sidecars (init
//     containers with restartPolicy Always) started before the next one.
//   - Restarts per restartPolicy with the kubelet's back-off shape: the first
//     restart at once, then RestartBackoff doubling to MaxRestartBackoff,
//     reset after a run longer than twice the maximum. The kubelet's are
//     10 s / 5 min; the stand-in's DEFAULTS ARE 1 s / 10 s (set them in
//     Config for kubelet timing). Never/OnFailure pods end Succeeded/Failed.
//   - Probes as pkg/kubelet/prober runs them: startup (gates the others),
//     readiness (starts failed; goes on while the pod terminates), liveness
//     (starts passed); initialDelaySeconds from the container's start,
//     periodSeconds, timeoutSeconds, successThreshold, failureThreshold.
//     httpGet (host = pod IP unless set, port number or named container port,
//     path, scheme, headers, Host header, User-Agent kube-probe/1.36, Accept
//     */*, no keep-alive, TLS unverified, same-host redirects only, 200–399),
//     tcpSocket, grpc (grpc.health.v1 Check, SERVING), exec (the container's
//     env and directory, exit 0, killed at the timeout). A liveness or
//     startup failure kills the container (SIGTERM, SIGKILL after the probe's
//     or pod's terminationGracePeriodSeconds) and restartPolicy decides.
//     postStart (exec/httpGet) runs after the start; a failure kills.
//   - Delete (deletionTimestamp): every app container's preStop hook
//     (exec/httpGet/sleep) then SIGTERM to its process group, all at once;
//     once the app containers have exited, the sidecars get SIGTERM (native
//     sidecar order); SIGKILL at deletionGracePeriodSeconds (a shorter grace
//     on a second delete applies; at least 2 s after a preStop hook, as the
//     kubelet's minimum); then the final status (phase Succeeded/Failed) and
//     Delete with GracePeriodSeconds 0 and a UID precondition. A pod removed
//     behind the stand-in's back (force delete) has its processes ended and
//     nothing written.
//   - Istio injection, decided as the injector does with the default policy:
//     the namespace has istio-injection=enabled, the pod is not hostNetwork
//     nor in kube-system/kube-public, and its sidecar.istio.io/inject label
//     (which wins) or annotation is absent or y/yes/true/on. Then, BEFORE any
//     Downward API file is written and any container starts, the pod's
//     annotations are patched with sidecar.istio.io/status (the injector's
//     JSON, InjectionStatus) and prometheus.io/scrape=true, port 15090, path
//     /stats/prometheus; the sidecar (argv and env from Config.Sidecar) is
//     started first and the apps only once it runs. Config.Sidecar nil: no
//     pod is injected.
//
// # What stands in (deviations from a real kubelet)
//
//   - A container is a local process in its own process group (Pdeathsig
//     SIGKILL, so it dies with the test): no image, no cgroup, no PID, mount
//     or network namespace of its own. Its filesystem is the host's; the
//     in-image paths listed in Config.Binaries are mapped to local files
//     wherever they appear as a whole argument of argv (so `meshready run --
//     /app/greeter` finds both). It is not PID 1. When its first process
//     exits, the rest of its process group is SIGKILLed (as a runtime ends a
//     container); a process that leaves its group (setsid) is not followed.
//   - Every pod shares one network namespace: each pod has its own IP, but a
//     process must bind its pod IP ($(POD_IP):port), not 0.0.0.0, or two pods
//     collide on a port.
//   - The environment holds PATH (Docker's default unless the image sets one),
//     HOSTNAME, the image's ENV, the container's env and the MountPathEnv
//     variables; nothing of the test's environment. No service-link variables
//     (KUBERNETES_SERVICE_HOST, <SVC>_SERVICE_HOST…), no envFrom, no
//     configMapKeyRef/secretKeyRef/resourceFieldRef (the container waits with
//     CreateContainerConfigError rather than run with a wrong env).
//   - Volumes: downwardAPI (and the downwardAPI sources of projected volumes)
//     and emptyDir get a host directory, <Dir>/pods/<ns>_<name>_<uid>/volumes/
//     kubernetes.io~<kind>/<name>; Downward API files are written in the
//     kubelet's format (`key="value"` lines sorted by key, strconv.Quote'd,
//     no final newline) and rewritten as soon as labels or annotations change
//     (the kubelet takes up to a sync period). A process cannot see them at
//     the mountPath: THE STAND-IN CHOSE NOT TO USE MOUNT NAMESPACES (a bind
//     mount needs the mountPath, e.g. /etc/podinfo, to exist on the host, and
//     creating it would change the host). Instead Config.MountPathEnv names,
//     per mountPath, an environment variable set to the host directory
//     ("/etc/podinfo" → MESHREADY_PODINFO, which `meshready --podinfo`
//     reads). Service-account tokens, configMap and secret volumes are not
//     materialised.
//   - The injected sidecar is not in the Pod spec or status (Istio would add
//     an istio-proxy container; spec containers cannot be added after
//     creation): it shows only in the stand-in's logs, PodInfo and Describe.
//   - Logs: stdout and stderr of each run go raw (no CRI timestamps) to
//     <pod dir>/logs/<container>/<restartCount>.log, the kubelet's layout;
//     `kubectl logs`/`exec` do not work (no kubelet API on :10250).
//   - No resource accounting, eviction, image pulls, Kubernetes Events
//     objects (events are kept in PodInfo.Events and the Logf narration),
//     static pods or kubelet API. A stand-in started again on a node re-runs
//     the non-terminal pods it finds (restartCount from 0), keeping their IPs.
//   - Stop ends every process (SIGTERM to all, SIGKILL at ctx's deadline or
//     after 5 s) and the heartbeats, and writes nothing: pods stay as they are
//     in the API and the Node goes NotReady/unreachable as for a dead kubelet.
//
// Measured here (2 cores, -race, the tests in this package): Node
// schedulable ~5 s after Start (the node-lifecycle controller's 5 s pass
// removes the not-ready taint); a Deployment's pod process started ~0.1 s
// and Running+Ready ~1.1 s after the Deployment was created (readiness
// period 1 s); delete → SIGTERM in < 20 ms.
package kubeletstandin
