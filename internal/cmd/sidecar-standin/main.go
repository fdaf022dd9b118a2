// Command sidecar-standin is the sidecar container of an injected pod on
// the local cluster: a stand-in for Istio's proxy (Envoy with pilot-agent),
// not Envoy. It is a real ADS client of istiod (plaintext xDS, 15010) that
// subscribes as a sidecar does and ACKs what it accepts
// (internal/sidecarstandin), and it carries the pod's traffic: an inbound
// listener per port in front of the app, an optional outbound listener
// routing by the EDS it accepted, Envoy's admin API, and Envoy's
// prometheus listener with Istio's standard metrics.
//
// Usage (every flag also reads SIDECAR_STANDIN_<FLAG_IN_UPPER_SNAKE> from
// the environment, comma-separated for the repeatable ones; a flag given
// on the command line wins — for a repeatable one, adds):
//
//	sidecar-standin --pilot HOST:15010 --ip POD_IP --inbound 8080=18080 [flags]
//
//	--pilot HOST:PORT      istiod's plaintext ADS (required)
//	--node-id ID           sidecar~IP~POD.NS~NS.svc.cluster.local; default built
//	                       from --ip, --pod and --namespace. When given, it
//	                       supplies whichever of those three is not set.
//	--ip IP                the pod IP every listener binds (env POD_IP,
//	                       INSTANCE_IP)
//	--pod NAME             the pod's name (env POD_NAME)
//	--namespace NS         the pod's namespace (env POD_NAMESPACE); also
//	                       destination_workload_namespace
//	--workload NAME        Istio's workload name, destination_workload; default
//	                       the pod name minus its ReplicaSet and pod suffixes
//	                       (greeter-v1-7d4b9c8f6d-x2kqp → greeter-v1: the
//	                       Deployment's name, as Istio derives it), else the
//	                       pod name
//	--labels-file PATH     Downward API labels file (key="value" lines): app,
//	                       version, pod-template-hash … for the node metadata
//	                       and the metric labels; a missing file is an error
//	--label KEY=VALUE      a label (repeatable; wins over the file)
//	--admin-port 15000     Envoy's admin API on IP:PORT
//	--stats-port 15090     Envoy's prometheus listener on IP:PORT,
//	                       /stats/prometheus (Envoy's stats and
//	                       istio_requests_total, istio_request_duration_milliseconds);
//	                       0: none
//	--agent-port 15020     pilot-agent's status port on IP:PORT: /stats/prometheus
//	                       (the same exposition: Istio's injector points
//	                       prometheus.io/port here), /healthz/ready,
//	                       POST /quitquitquit; 0: none
//	--health-port 15021    the health port on IP:PORT, /healthz/ready (200 once
//	                       LIVE: the injected container's readinessProbe); 0: none
//	--inbound PORT=APP     (repeatable; none for a pod without ports, e.g. a
//	                       Job's) listen on IP:PORT — where iptables would
//	                       send the pod's callers, the endpoint port Pilot
//	                       sends — and forward to the app at IP:APP (APP may
//	                       be HOST:PORT, e.g. 127.0.0.1:8080). Opened once the
//	                       stand-in is LIVE (first CDS and LDS processed), as
//	                       Envoy's listeners come from LDS. Counted in Istio's
//	                       metrics with destination_service from Pilot's
//	                       inbound|PORT|| cluster.
//	--outbound-cluster C   open the outbound listener, routing round robin over
//	                       the endpoints of EDS cluster C
//	                       (outbound|7070||greeter.default.svc.cluster.local)
//	--outbound-port 15001  the outbound listener's port (with --outbound-cluster)
//	--drain 5s             on SIGTERM/SIGINT keep serving this long, then exit 0
//	                       (a native sidecar, stopped after the app, drained
//	                       for terminationDrainDuration); a second signal
//	                       exits at once
//	--pilot-timeout 60s    exit 1 if no config has come from Pilot this long
//	                       after start (retrying meanwhile, as Envoy does, each
//	                       distinct error logged); 0: retry forever. Once
//	                       config has come, losing Pilot never ends the
//	                       process: it keeps serving what it accepted.
//	--istio-version 1.31.0 ISTIO_VERSION in the node metadata
//	--cluster-id Kubernetes CLUSTER_ID in the node metadata
//
// POST /quitquitquit on the admin API (or the agent port) ends it at once
// with 0, as Envoy (for Jobs: meshready run --quit-sidecar).
//
// The app must not hold IP:PORT of an --inbound itself (there is no
// iptables to move callers off it): give it another port, or loopback
// (--inbound 8080=127.0.0.1:8080 with the app on 127.0.0.1:8080).
//
// Exit codes: 0 after the drain or /quitquitquit; 1 no config from Pilot
// within --pilot-timeout, or a listener that cannot be bound at start; 2 a
// bad flag (one line on stderr naming it). It logs one line per state change on stderr
// and dies with its parent (PR_SET_PDEATHSIG SIGKILL).
package main

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"os/signal"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/meshready/meshready/internal/sidecarstandin"
)

const name = "sidecar-standin"

func main() {
	// A stand-in must not outlive the harness that started it, even a
	// SIGKILLed one.
	_, _, _ = syscall.RawSyscall(syscall.SYS_PRCTL, syscall.PR_SET_PDEATHSIG, uintptr(syscall.SIGKILL), 0)
	os.Exit(run(os.Args[1:], os.Stderr))
}

type listFlag []string

func (l *listFlag) String() string     { return strings.Join(*l, ",") }
func (l *listFlag) Set(v string) error { *l = append(*l, v); return nil }

type config struct {
	pilot, nodeID, ip, pod, namespace, workload string
	labelsFile, outboundCluster                 string
	istioVersion, clusterID                     string
	labels, inbound                             listFlag
	adminPort, statsPort, outboundPort          int
	agentPort, healthPort                       int
	drain, pilotTimeout                         time.Duration
	labelMap                                    map[string]string
	inbounds                                    []inbound
}

type inbound struct {
	port int
	app  string // host:port
}

type badFlag struct{ msg string }

func (e badFlag) Error() string { return e.msg }

func bad(format string, args ...any) error { return badFlag{fmt.Sprintf(format, args...)} }

func parse(args []string, stderr io.Writer) (*config, error) {
	c := &config{}
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	// A bad flag is one line (ours); -h prints the flags.
	fs.SetOutput(io.Discard)
	fs.StringVar(&c.pilot, "pilot", "", "istiod's plaintext ADS, HOST:PORT (15010)")
	fs.StringVar(&c.nodeID, "node-id", "", "sidecar~IP~POD.NS~NS.svc.cluster.local")
	fs.StringVar(&c.ip, "ip", firstEnv("POD_IP", "INSTANCE_IP"), "the pod IP every listener binds")
	fs.StringVar(&c.pod, "pod", os.Getenv("POD_NAME"), "the pod's name")
	fs.StringVar(&c.namespace, "namespace", os.Getenv("POD_NAMESPACE"), "the pod's namespace")
	fs.StringVar(&c.workload, "workload", "", "Istio's workload name (default: the pod name minus its ReplicaSet and pod suffixes)")
	fs.StringVar(&c.labelsFile, "labels-file", "", "Downward API labels file (key=\"value\" lines)")
	fs.Var(&c.labels, "label", "KEY=VALUE, repeatable; wins over --labels-file")
	fs.IntVar(&c.adminPort, "admin-port", 15000, "Envoy's admin API port")
	fs.IntVar(&c.statsPort, "stats-port", 15090, "Envoy's prometheus listener port (0: none)")
	fs.IntVar(&c.agentPort, "agent-port", 15020, "pilot-agent's status port: /stats/prometheus, /healthz/ready, /quitquitquit (0: none)")
	fs.IntVar(&c.healthPort, "health-port", 15021, "the health port: /healthz/ready (0: none)")
	fs.Var(&c.inbound, "inbound", "PORT=APPPORT or PORT=HOST:APPPORT, repeatable")
	fs.IntVar(&c.outboundPort, "outbound-port", 15001, "the outbound listener's port (with --outbound-cluster)")
	fs.StringVar(&c.outboundCluster, "outbound-cluster", "", "EDS cluster the outbound listener routes to")
	fs.DurationVar(&c.drain, "drain", 5*time.Second, "on SIGTERM keep serving this long, then exit 0")
	fs.DurationVar(&c.pilotTimeout, "pilot-timeout", 60*time.Second, "exit 1 if no config came from Pilot this long after start (0: never)")
	fs.StringVar(&c.istioVersion, "istio-version", "1.31.0", "ISTIO_VERSION node metadata")
	fs.StringVar(&c.clusterID, "cluster-id", "Kubernetes", "CLUSTER_ID node metadata")
	// The environment gives defaults; the command line wins.
	var envErr error
	fs.VisitAll(func(f *flag.Flag) {
		env := "SIDECAR_STANDIN_" + strings.ToUpper(strings.ReplaceAll(f.Name, "-", "_"))
		if v, ok := os.LookupEnv(env); ok && envErr == nil {
			for _, item := range splitList(f, v) {
				if err := f.Value.Set(item); err != nil {
					envErr = bad("%s=%q: %v", env, v, err)
				}
			}
		}
	})
	if envErr != nil {
		return nil, envErr
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			fs.SetOutput(stderr)
			fmt.Fprintf(stderr, "usage: %s --pilot HOST:15010 --ip POD_IP --inbound PORT=APPPORT [flags] (see the package doc)\n", name)
			fs.PrintDefaults()
			return nil, err
		}
		return nil, badFlag{err.Error()}
	}
	if fs.NArg() > 0 {
		return nil, bad("unexpected argument %q", fs.Arg(0))
	}
	return c, c.check()
}

// splitList splits a repeatable flag's environment value on commas.
func splitList(f *flag.Flag, v string) []string {
	if _, ok := f.Value.(*listFlag); ok {
		return strings.Split(v, ",")
	}
	return []string{v}
}

func firstEnv(keys ...string) string {
	for _, k := range keys {
		if v := os.Getenv(k); v != "" {
			return v
		}
	}
	return ""
}

func (c *config) check() error {
	if c.pilot == "" {
		return bad("--pilot is required: istiod's plaintext ADS address, HOST:15010")
	}
	if _, p, err := net.SplitHostPort(c.pilot); err != nil || p == "" {
		return bad("--pilot must be HOST:PORT but got %q", c.pilot)
	}
	if c.nodeID != "" {
		ip, pod, ns, err := sidecarstandin.ParseNodeID(c.nodeID)
		if err != nil {
			return bad("--node-id: %v", err)
		}
		if c.ip == "" {
			c.ip = ip
		}
		if c.pod == "" {
			c.pod = pod
		}
		if c.namespace == "" {
			c.namespace = ns
		}
		if c.ip != ip || c.pod != pod || c.namespace != ns {
			return bad("--node-id %q disagrees with --ip %q, --pod %q, --namespace %q", c.nodeID, c.ip, c.pod, c.namespace)
		}
	}
	if net.ParseIP(c.ip) == nil {
		return bad("--ip must be the pod's IP address but got %q", c.ip)
	}
	if c.pod == "" || c.namespace == "" {
		return bad("--pod and --namespace (or --node-id, or POD_NAME and POD_NAMESPACE) are required")
	}
	for _, p := range []struct {
		flag string
		v    int
		zero bool
	}{{"--admin-port", c.adminPort, false}, {"--stats-port", c.statsPort, true}, {"--agent-port", c.agentPort, true},
		{"--health-port", c.healthPort, true}, {"--outbound-port", c.outboundPort, false}} {
		if p.v < 0 || p.v > 65535 || (p.v == 0 && !p.zero) {
			return bad("%s must be a port, 1-65535, but got %d", p.flag, p.v)
		}
	}
	for _, v := range c.inbound {
		in, err := parseInbound(v, c.ip)
		if err != nil {
			return err
		}
		c.inbounds = append(c.inbounds, in)
	}
	if c.drain < 0 || c.pilotTimeout < 0 {
		return bad("--drain and --pilot-timeout must not be negative")
	}
	c.labelMap = map[string]string{}
	if c.labelsFile != "" {
		l, err := readLabels(c.labelsFile)
		if err != nil {
			return bad("--labels-file: %v", err)
		}
		c.labelMap = l
	}
	for _, kv := range c.labels {
		k, v, ok := strings.Cut(kv, "=")
		if !ok || k == "" {
			return bad("--label must be KEY=VALUE but got %q", kv)
		}
		c.labelMap[k] = v
	}
	if c.workload == "" {
		c.workload = workloadName(c.pod, c.labelMap["pod-template-hash"])
	}
	return nil
}

func parseInbound(v, ip string) (inbound, error) {
	p, app, ok := strings.Cut(v, "=")
	port, err := strconv.Atoi(p)
	if !ok || err != nil || port < 1 || port > 65535 {
		return inbound{}, bad("--inbound must be PORT=APPPORT or PORT=HOST:APPPORT but got %q", v)
	}
	if ap, err := strconv.Atoi(app); err == nil {
		if ap < 1 || ap > 65535 {
			return inbound{}, bad("--inbound %q: app port must be 1-65535", v)
		}
		return inbound{port: port, app: net.JoinHostPort(ip, app)}, nil
	}
	if h, ap, err := net.SplitHostPort(app); err != nil || h == "" || ap == "" {
		return inbound{}, bad("--inbound must be PORT=APPPORT or PORT=HOST:APPPORT but got %q", v)
	}
	return inbound{port: port, app: app}, nil
}

// readLabels reads a Downward API labels file: one key="value" a line,
// the value quoted as Go quotes strings.
func readLabels(path string) (map[string]string, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	out := map[string]string{}
	sc := bufio.NewScanner(f)
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" {
			continue
		}
		k, q, ok := strings.Cut(line, "=")
		v, err := strconv.Unquote(q)
		if !ok || k == "" || err != nil {
			return nil, fmt.Errorf("%s:%d: want key=\"value\" but got %q", path, n, line)
		}
		out[k] = v
	}
	return out, sc.Err()
}

// rsSuffixes matches a Deployment pod's name: NAME-HASH-XXXXX, HASH the
// pod-template-hash and XXXXX the pod's random suffix, both from
// Kubernetes' safe alphabet.
var rsSuffixes = regexp.MustCompile(`^(.+)-[bcdfghjklmnpqrstvwxz2456789]{6,10}-[bcdfghjklmnpqrstvwxz2456789]{5}$`)

// workloadName is Istio's workload name for a pod: its Deployment's name
// (the pod name minus the ReplicaSet's and the pod's suffixes), else the
// pod name.
func workloadName(pod, templateHash string) string {
	if templateHash != "" {
		if i := strings.LastIndex(pod, "-"+templateHash+"-"); i > 0 {
			return pod[:i]
		}
	}
	if m := rsSuffixes.FindStringSubmatch(pod); m != nil {
		return m[1]
	}
	return pod
}

func run(args []string, stderr io.Writer) int {
	logf := func(format string, args ...any) {
		fmt.Fprintf(stderr, "%s %s: %s\n", time.Now().Format("15:04:05.000"), name, fmt.Sprintf(format, args...))
	}
	c, err := parse(args, stderr)
	if errors.Is(err, flag.ErrHelp) {
		return 0
	}
	if err != nil {
		fmt.Fprintf(stderr, "%s: %v\n", name, err)
		return 2
	}
	bind := func(port int) string { return net.JoinHostPort(c.ip, strconv.Itoa(port)) }

	d, err := sidecarstandin.Start(sidecarstandin.Options{
		Pilot: c.pilot, NodeID: c.nodeID, IP: c.ip, Pod: c.pod, Namespace: c.namespace,
		Labels: c.labelMap, Workload: c.workload, IstioVersion: c.istioVersion, ClusterID: c.clusterID,
		AdminAddr: bind(c.adminPort), Logf: logf,
	})
	if err != nil {
		logf("cannot start: %v", err)
		return 1
	}
	defer d.Close()
	logf("started: node %s, workload %s.%s, admin %s, pilot %s", d.NodeID(), c.workload, c.namespace, d.AdminURL(), c.pilot)
	if c.statsPort != 0 {
		if err := d.ServeStats(bind(c.statsPort)); err != nil {
			logf("cannot start: prometheus listener: %v", err)
			return 1
		}
	}
	for _, port := range []int{c.agentPort, c.healthPort} {
		if port == 0 {
			continue
		}
		if err := d.ServeAgent(bind(port)); err != nil {
			logf("cannot start: agent listener: %v", err)
			return 1
		}
	}
	for _, in := range c.inbounds {
		if err := d.ServeInbound(bind(in.port), in.app); err != nil {
			logf("cannot start: %v", err)
			return 1
		}
	}
	if c.outboundCluster != "" {
		if err := d.ServeOutbound(bind(c.outboundPort), c.outboundCluster); err != nil {
			logf("cannot start: %v", err)
			return 1
		}
	}

	sig := make(chan os.Signal, 2)
	signal.Notify(sig, syscall.SIGTERM, syscall.SIGINT)
	configured := make(chan struct{})
	go func() {
		if _, err := d.WaitFor(context.Background(), func(s sidecarstandin.Snapshot) bool { return s.Types["CDS"].Responses > 0 }); err == nil {
			close(configured)
		}
	}()
	var timeout <-chan time.Time
	if c.pilotTimeout > 0 {
		t := time.NewTimer(c.pilotTimeout)
		defer t.Stop()
		timeout = t.C
	}
	select {
	case <-configured:
	case <-timeout:
		logf("no config from Pilot at %s within --pilot-timeout %v (errors above); exiting", c.pilot, c.pilotTimeout)
		return 1
	case s := <-sig:
		return drain(d, s, sig, c.drain, logf)
	case <-d.Done():
		logf("POST /quitquitquit: exiting")
		return 0
	}
	select {
	case s := <-sig:
		return drain(d, s, sig, c.drain, logf)
	case <-d.Done():
		logf("POST /quitquitquit: exiting")
		return 0
	}
}

// drain keeps serving for the drain time after the first signal, as a
// native sidecar stopped after the app does; a second signal ends it.
func drain(d *sidecarstandin.DataPlane, s os.Signal, sig <-chan os.Signal, wait time.Duration, logf func(string, ...any)) int {
	logf("%v: draining, serving for %v more", s, wait)
	select {
	case <-time.After(wait):
		logf("drained; exiting")
	case s := <-sig:
		logf("%v again: exiting now", s)
	}
	d.Close()
	return 0
}
