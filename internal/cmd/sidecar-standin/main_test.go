package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"google.golang.org/protobuf/proto"

	"github.com/meshready/meshready/internal/sidecarstandin"
	"github.com/meshready/meshready/internal/sidecarstandin/adstest"
)

var bin string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "sidecar-standin-test")
	if err != nil {
		panic(err)
	}
	bin = filepath.Join(dir, "sidecar-standin")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "build: %v\n%s", err, out)
		os.Exit(1)
	}
	code := m.Run()
	_ = os.RemoveAll(dir)
	os.Exit(code)
}

func TestWorkloadName(t *testing.T) {
	for _, c := range []struct{ pod, hash, want string }{
		{"greeter-v1-7d4b9c8f6d-x2kqp", "", "greeter-v1"},
		{"greeter-v1-7d4b9c8f6d-x2kqp", "7d4b9c8f6d", "greeter-v1"},
		{"web-58dd8b6b7-bq4zr", "", "web"},
		{"web-58dd8b6b7-bq4zr", "58dd8b6b7", "web"},
		{"app-1", "", "app-1"},               // a bare pod: its own name
		{"my-job-abcde", "", "my-job-abcde"}, // one suffix only: not a ReplicaSet's pod
	} {
		if got := workloadName(c.pod, c.hash); got != c.want {
			t.Errorf("workloadName(%q, %q) = %q, want %q", c.pod, c.hash, got, c.want)
		}
	}
}

func TestReadLabels(t *testing.T) {
	p := filepath.Join(t.TempDir(), "labels")
	// As the kubelet writes it.
	if err := os.WriteFile(p, []byte("app=\"greeter\"\npod-template-hash=\"7d4b9c8f6d\"\nversion=\"v1\"\nquote=\"a\\\"b\""), 0o644); err != nil {
		t.Fatal(err)
	}
	l, err := readLabels(p)
	if err != nil {
		t.Fatal(err)
	}
	if l["app"] != "greeter" || l["version"] != "v1" || l["pod-template-hash"] != "7d4b9c8f6d" || l["quote"] != `a"b` || len(l) != 4 {
		t.Errorf("labels %v", l)
	}
	if err := os.WriteFile(p, []byte("app=greeter\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := readLabels(p); err == nil || !strings.Contains(err.Error(), ":1:") {
		t.Errorf("an unquoted value: %v; want an error naming the line", err)
	}
}

// Bad flags: exit 2 and one line naming the flag.
func TestBadFlags(t *testing.T) {
	ok := []string{"--pilot", "127.0.0.1:15010", "--ip", "127.0.0.1", "--pod", "p", "--namespace", "ns", "--inbound", "8080=18080"}
	for _, c := range []struct {
		args []string
		env  []string
		want string
	}{
		{[]string{"--ip", "127.0.0.1", "--pod", "p", "--namespace", "n", "--inbound", "1=2"}, nil, "--pilot is required"},
		{replace(ok, "--pilot", "istiod"), nil, "--pilot must be HOST:PORT"},
		{replace(ok, "--ip", "10.0.0"), nil, "--ip must be"},
		{replace(ok, "--inbound", "8080"), nil, "--inbound must be PORT=APPPORT"},
		{replace(ok, "--inbound", "x=1"), nil, "--inbound must be PORT=APPPORT"},
		{replace(ok, "--inbound", "8080=70000"), nil, "app port must be"},
		{append(ok, "--admin-port", "0"), nil, "--admin-port must be a port"},
		{append(ok, "--node-id", "router~1.2.3.4~p.ns~ns.svc.cluster.local"), nil, "--node-id"},
		{append(ok, "--node-id", "sidecar~10.0.0.9~p.ns~ns.svc.cluster.local"), nil, "disagrees with --ip"},
		{append(ok, "--labels-file", "/nonexistent/labels"), nil, "--labels-file"},
		{append(ok, "--label", "novalue"), nil, "--label must be KEY=VALUE"},
		{append(ok, "--drain", "soon"), nil, "-drain"},
		{append(ok, "--bogus"), nil, "-bogus"},
		{ok, []string{"SIDECAR_STANDIN_STATS_PORT=many"}, "SIDECAR_STANDIN_STATS_PORT"},
		{ok[2:], []string{"SIDECAR_STANDIN_PILOT=nohostport"}, "--pilot must be HOST:PORT"},
		{ok, []string{"SIDECAR_STANDIN_INBOUND=9090=19090,bad"}, "--inbound must be PORT=APPPORT"},
	} {
		cmd := exec.Command(bin, c.args...)
		cmd.Env = append(os.Environ(), c.env...)
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		err := cmd.Run()
		code := -1
		if ee, ok := err.(*exec.ExitError); ok {
			code = ee.ExitCode()
		}
		msg := stderr.String()
		if code != 2 || strings.Count(msg, "\n") != 1 || !strings.HasPrefix(msg, "sidecar-standin: ") || !strings.Contains(msg, c.want) {
			t.Errorf("%v %v: exit %d, stderr %q; want 2 and one line with %q", c.env, c.args, code, msg, c.want)
		}
	}
}

func replace(args []string, flag, value string) []string {
	out := append([]string(nil), args...)
	for i := range out {
		if out[i] == flag {
			out[i+1] = value
		}
	}
	return out
}

func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// lockedBuffer collects a process's stderr.
type lockedBuffer struct {
	ch  chan struct{}
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.ch <- struct{}{}
	defer func() { <-b.ch }()
	return b.buf.Write(p)
}

func (b *lockedBuffer) String() string {
	b.ch <- struct{}{}
	defer func() { <-b.ch }()
	return b.buf.String()
}

func waitFor(t *testing.T, what string, within time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(within)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %v", what, within)
		}
		time.Sleep(25 * time.Millisecond)
	}
}

func status(url string) int {
	resp, err := http.Get(url)
	if err != nil {
		return 0
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, resp.Body)
	return resp.StatusCode
}

// The binary against a tiny ADS server: it subscribes with the node id and
// metadata its flags give, turns LIVE, forwards inbound traffic to the app,
// counts it in Istio's metrics on the stats port, and on SIGTERM keeps
// serving for --drain, then exits 0.
func TestBinary(t *testing.T) {
	inPort, appPort, adminPort, statsPort, agentPort, healthPort := freePort(t), freePort(t), freePort(t), freePort(t), freePort(t), freePort(t)
	app := &http.Server{Addr: net.JoinHostPort("127.0.0.1", strconv.Itoa(appPort)), Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintln(w, "hello")
	})}
	go func() { _ = app.ListenAndServe() }()
	t.Cleanup(func() { _ = app.Close() })
	ads, err := adstest.Start("v1", map[string][]proto.Message{
		sidecarstandin.TypeCDS: {adstest.InboundCluster(inPort, adstest.Service{Host: "web.shop.svc.cluster.local", Name: "web", Namespace: "shop"})},
		sidecarstandin.TypeLDS: {adstest.Listener("virtualInbound")},
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(ads.Stop)
	labels := filepath.Join(t.TempDir(), "labels")
	if err := os.WriteFile(labels, []byte("app=\"web\"\npod-template-hash=\"58dd8b6b7\"\nversion=\"v3\"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, "--pilot", ads.Addr, "--node-id", "sidecar~127.0.0.1~web-v3-58dd8b6b7-bq4zr.shop~shop.svc.cluster.local",
		"--admin-port", strconv.Itoa(adminPort), "--stats-port", strconv.Itoa(statsPort),
		"--agent-port", strconv.Itoa(agentPort), "--health-port", strconv.Itoa(healthPort),
		"--labels-file", labels, "--drain", "700ms")
	// The environment works as the flags do.
	cmd.Env = append(os.Environ(), fmt.Sprintf("SIDECAR_STANDIN_INBOUND=%d=%d", inPort, appPort))
	stderr := &lockedBuffer{ch: make(chan struct{}, 1)}
	cmd.Stderr = stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		if t.Failed() {
			t.Logf("sidecar-standin's stderr:\n%s", stderr)
		}
	})
	admin := fmt.Sprintf("http://127.0.0.1:%d", adminPort)
	in := fmt.Sprintf("http://127.0.0.1:%d/", inPort)
	waitFor(t, "admin /ready 200 (LIVE)", 10*time.Second, func() bool { return status(admin+"/ready") == 200 })
	for _, port := range []int{agentPort, healthPort} {
		if code := status(fmt.Sprintf("http://127.0.0.1:%d/healthz/ready", port)); code != 200 {
			t.Errorf(":%d/healthz/ready: %d once LIVE, want 200", port, code)
		}
	}
	waitFor(t, "the inbound listener forwarding to the app", 5*time.Second, func() bool { return status(in) == 200 })
	if code := status(in); code != 200 {
		t.Fatalf("second request: %d", code)
	}

	// What Pilot was told: the node id, the workload, the labels.
	var first *struct{ id string }
	for _, r := range ads.Requests() {
		if n := r.GetNode(); n != nil {
			first = &struct{ id string }{n.GetId()}
			md := n.GetMetadata().AsMap()
			if md["WORKLOAD_NAME"] != "web-v3" || md["NAMESPACE"] != "shop" || md["INSTANCE_IPS"] != "127.0.0.1" {
				t.Errorf("node metadata %v", md)
			}
			if l, _ := md["LABELS"].(map[string]any); l["app"] != "web" || l["version"] != "v3" {
				t.Errorf("node labels %v", md["LABELS"])
			}
			break
		}
	}
	if first == nil || first.id != "sidecar~127.0.0.1~web-v3-58dd8b6b7-bq4zr.shop~shop.svc.cluster.local" {
		t.Errorf("node id sent to Pilot: %+v", first)
	}
	var info struct {
		State string `json:"state"`
	}
	resp, err := http.Get(admin + "/server_info")
	if err != nil {
		t.Fatal(err)
	}
	_ = json.NewDecoder(resp.Body).Decode(&info)
	resp.Body.Close()
	if info.State != "LIVE" {
		t.Errorf("/server_info state %q", info.State)
	}

	for _, port := range []int{statsPort, agentPort} {
		checkRequests(t, fmt.Sprintf("http://127.0.0.1:%d/stats/prometheus", port))
	}

	// SIGTERM: still serving during the drain, then exit 0.
	sent := time.Now()
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	time.Sleep(200 * time.Millisecond)
	if code := status(in); code != 200 {
		t.Errorf("during the drain: %d, want the app's 200", code)
	}
	select {
	case err := <-exited:
		if err != nil {
			t.Errorf("exit after the drain: %v, want 0", err)
		}
		if took := time.Since(sent); took < 700*time.Millisecond || took > 5*time.Second {
			t.Errorf("exited %v after SIGTERM, want the --drain of 700ms", took)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("still running 10s after SIGTERM")
	}
	log := stderr.String()
	for _, want := range []string{"started: node sidecar~127.0.0.1~web-v3", "ADS stream to " + ads.Addr + " open", "LIVE:", "open", "draining", "drained; exiting"} {
		if !strings.Contains(log, want) {
			t.Errorf("stderr lacks %q:\n%s", want, log)
		}
	}
}

// checkRequests scrapes url and wants the two inbound requests counted
// with this pod's labels.
// A request is counted when its stream ends, a moment after the caller may
// have its answer: poll briefly.
func checkRequests(t *testing.T, url string) {
	t.Helper()
	want := "web-v3 shop/web.shop.svc.cluster.local web v3 http 200 - 2" // waitFor's successful probe and the second request
	var got []string
	for deadline := time.Now().Add(3 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		got = scrapeRequests(t, url)
		if (len(got) == 1 && got[0] == want) || time.Now().After(deadline) {
			break
		}
	}
	if len(got) != 1 || got[0] != want {
		t.Errorf("istio_requests_total at %s: %q, want [%q]", url, got, want)
	}
}

func scrapeRequests(t *testing.T, url string) []string {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	p := expfmt.NewTextParser(model.LegacyValidation)
	fams, err := p.TextToMetricFamilies(resp.Body)
	resp.Body.Close()
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, m := range fams["istio_requests_total"].GetMetric() {
		l := map[string]string{}
		for _, lp := range m.GetLabel() {
			l[lp.GetName()] = lp.GetValue()
		}
		got = append(got, fmt.Sprintf("%s %s/%s %s %s %s %s %s %v", l["destination_workload"], l["destination_workload_namespace"],
			l["destination_service"], l["destination_app"], l["destination_version"], l["request_protocol"], l["response_code"], l["response_flags"], m.GetCounter().GetValue()))
	}
	return got
}

// No Pilot: it keeps retrying, logs the error once, and exits 1 with one
// clear line at --pilot-timeout.
func TestNoPilot(t *testing.T) {
	dead := freePort(t)
	cmd := exec.Command(bin, "--pilot", fmt.Sprintf("127.0.0.1:%d", dead), "--ip", "127.0.0.1", "--pod", "p", "--namespace", "ns",
		"--admin-port", strconv.Itoa(freePort(t)), "--stats-port", "0", "--agent-port", "0", "--health-port", "0",
		"--inbound", fmt.Sprintf("%d=1", freePort(t)), "--pilot-timeout", "1500ms")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	began := time.Now()
	err := cmd.Run()
	took := time.Since(began)
	ee, ok := err.(*exec.ExitError)
	if !ok || ee.ExitCode() != 1 {
		t.Fatalf("exit %v, want 1; stderr:\n%s", err, stderr.String())
	}
	if took < 1500*time.Millisecond || took > 6*time.Second {
		t.Errorf("exited after %v, want --pilot-timeout 1.5s", took)
	}
	lines := strings.Split(strings.TrimSpace(stderr.String()), "\n")
	if last := lines[len(lines)-1]; !strings.Contains(last, "no config from Pilot at 127.0.0.1:") || !strings.Contains(last, "exiting") {
		t.Errorf("last line %q", last)
	}
	if n := strings.Count(stderr.String(), "failed: "); n < 1 || n > 3 {
		t.Errorf("%d lines of ADS errors over ~15 retries, want each distinct error once:\n%s", n, stderr.String())
	}
}

// POST /quitquitquit (meshready run --quit-sidecar, for Jobs) ends it at
// once with 0, as Envoy.
func TestQuitQuitQuit(t *testing.T) {
	ads, err := adstest.Start("v1", map[string][]proto.Message{
		sidecarstandin.TypeCDS: {adstest.InboundCluster(8080)},
		sidecarstandin.TypeLDS: {adstest.Listener("virtualInbound")},
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(ads.Stop)
	adminPort := freePort(t)
	cmd := exec.Command(bin, "--pilot", ads.Addr, "--ip", "127.0.0.1", "--pod", "job-x7k2p", "--namespace", "batch",
		"--admin-port", strconv.Itoa(adminPort), "--stats-port", "0", "--agent-port", "0", "--health-port", "0",
		"--drain", "1m") // a Job's pod: no ports, no --inbound
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	t.Cleanup(func() { _ = cmd.Process.Kill() })
	admin := fmt.Sprintf("http://127.0.0.1:%d", adminPort)
	waitFor(t, "admin /ready 200 (LIVE)", 10*time.Second, func() bool { return status(admin+"/ready") == 200 })
	resp, err := http.Post(admin+"/quitquitquit", "", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	select {
	case err := <-exited:
		if err != nil {
			t.Errorf("exit after /quitquitquit: %v, want 0; stderr:\n%s", err, stderr.String())
		}
	case <-time.After(5 * time.Second):
		t.Fatal("still running 5s after /quitquitquit")
	}
	if !strings.Contains(stderr.String(), "quitquitquit: exiting") {
		t.Errorf("stderr:\n%s", stderr.String())
	}
}
