package kubeletstandin

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
)

// probeUserAgent is what kubelet v1.36 sends (kube-probe/<major>.<minor>).
const probeUserAgent = "kube-probe/1.36"

// maxProbeBody is what the kubelet reads of a probe's answer (10 KiB).
const maxProbeBody = 10 << 10

// prober runs one probe of a container, as pkg/probe does.
type prober struct {
	pod       *corev1.Pod
	container *corev1.Container
	podIP     string
	env       []string // the container's resolved environment (exec probes)
	dir       string   // the container's working directory (exec probes)
	kubelet   *Kubelet
}

// probeHandler is the part Probe and LifecycleHandler share.
type probeHandler struct {
	Exec      *corev1.ExecAction
	HTTPGet   *corev1.HTTPGetAction
	TCPSocket *corev1.TCPSocketAction
	GRPC      *corev1.GRPCAction
	Sleep     *corev1.SleepAction
}

// run answers success and a message (kubelet's "… probe failed: MSG").
func (p *prober) run(ctx context.Context, h probeHandler, timeout time.Duration) (bool, string) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	switch {
	case h.HTTPGet != nil:
		return p.httpGet(ctx, h.HTTPGet, timeout)
	case h.TCPSocket != nil:
		host := h.TCPSocket.Host
		if host == "" {
			host = p.podIP
		}
		port, err := p.port(h.TCPSocket.Port)
		if err != nil {
			return false, err.Error()
		}
		var d net.Dialer
		conn, err := d.DialContext(ctx, "tcp", net.JoinHostPort(host, strconv.Itoa(port)))
		if err != nil {
			return false, err.Error()
		}
		conn.Close()
		return true, ""
	case h.GRPC != nil:
		return p.grpc(ctx, h.GRPC, timeout)
	case h.Exec != nil:
		return p.exec(ctx, h.Exec.Command)
	case h.Sleep != nil:
		select {
		case <-ctx.Done():
		case <-time.After(time.Duration(h.Sleep.Seconds) * time.Second):
		}
		return true, ""
	}
	return false, "missing probe handler"
}

// port resolves a probe's port: a number, or a container port's name.
func (p *prober) port(v intstr.IntOrString) (int, error) {
	port := -1
	if v.Type == intstr.Int {
		port = v.IntValue()
	} else {
		for _, cp := range p.container.Ports {
			if cp.Name == v.StrVal {
				port = int(cp.ContainerPort)
			}
		}
		if port < 0 {
			return 0, fmt.Errorf("couldn't find port: %v in %v", v.StrVal, p.container.Name)
		}
	}
	if port <= 0 || port > 65535 {
		return 0, fmt.Errorf("invalid port number: %v", port)
	}
	return port, nil
}

func (p *prober) httpGet(ctx context.Context, g *corev1.HTTPGetAction, timeout time.Duration) (bool, string) {
	scheme := strings.ToLower(string(g.Scheme))
	if scheme == "" {
		scheme = "http"
	}
	host := g.Host
	if host == "" {
		host = p.podIP
	}
	port, err := p.port(g.Port)
	if err != nil {
		return false, err.Error()
	}
	u, err := url.Parse(g.Path)
	if err != nil {
		u = &url.URL{Path: g.Path}
	}
	u.Scheme = scheme
	u.Host = net.JoinHostPort(host, strconv.Itoa(port))
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u.String(), nil)
	if err != nil {
		return false, err.Error()
	}
	for _, h := range g.HTTPHeaders {
		if strings.EqualFold(h.Name, "Host") {
			req.Host = h.Value
			continue
		}
		req.Header.Add(h.Name, h.Value)
	}
	if req.Header.Get("User-Agent") == "" {
		req.Header.Set("User-Agent", probeUserAgent)
	}
	if req.Header.Get("Accept") == "" {
		req.Header.Set("Accept", "*/*")
	}
	hc := &http.Client{
		Timeout: timeout,
		Transport: &http.Transport{
			TLSClientConfig:    &tls.Config{InsecureSkipVerify: true}, //nolint:gosec // kubelet does not verify probe TLS
			DisableKeepAlives:  true,
			DisableCompression: true,
			Proxy:              nil,
		},
		// Same-host redirects are followed (at most 10); another host's
		// redirect ends the probe with the redirect itself (a success).
		CheckRedirect: func(req *http.Request, via []*http.Request) error {
			if req.URL.Hostname() != via[0].URL.Hostname() {
				return http.ErrUseLastResponse
			}
			if len(via) >= 10 {
				return errors.New("stopped after 10 redirects")
			}
			return nil
		},
	}
	resp, err := hc.Do(req)
	if err != nil {
		return false, err.Error()
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, maxProbeBody))
	if resp.StatusCode >= 200 && resp.StatusCode < 400 {
		return true, ""
	}
	return false, fmt.Sprintf("HTTP probe failed with statuscode: %d (%s)", resp.StatusCode, strings.TrimSpace(oneLine(string(body))))
}

func (p *prober) grpc(ctx context.Context, g *corev1.GRPCAction, timeout time.Duration) (bool, string) {
	addr := net.JoinHostPort(p.podIP, strconv.Itoa(int(g.Port)))
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()), grpc.WithUserAgent(probeUserAgent))
	if err != nil {
		return false, err.Error()
	}
	defer conn.Close()
	service := ""
	if g.Service != nil {
		service = *g.Service
	}
	resp, err := healthpb.NewHealthClient(conn).Check(ctx, &healthpb.HealthCheckRequest{Service: service}, grpc.WaitForReady(true))
	if err != nil {
		if ctx.Err() != nil {
			return false, fmt.Sprintf("timeout: failed to connect service %q within %v: %v", addr, timeout, err)
		}
		return false, err.Error()
	}
	if resp.GetStatus() != healthpb.HealthCheckResponse_SERVING {
		return false, fmt.Sprintf("service unhealthy (responded with %q)", resp.GetStatus().String())
	}
	return true, ""
}

// exec runs the command in the container's environment and directory, in
// its own process group (killed whole on timeout); exit 0 is success.
func (p *prober) exec(ctx context.Context, command []string) (bool, string) {
	if len(command) == 0 {
		return false, "exec: empty command"
	}
	argv, err := p.kubelet.localArgv(command, envValue(p.env, "PATH"))
	if err != nil {
		return false, err.Error()
	}
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Env = p.env
	cmd.Dir = p.dir
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		return false, err.Error()
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err = <-done:
	case <-ctx.Done():
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		<-done
		return false, fmt.Sprintf("command %q timed out", strings.Join(command, " "))
	}
	_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
	msg := out.String()
	if len(msg) > maxProbeBody {
		msg = msg[:maxProbeBody]
	}
	if err != nil {
		return false, strings.TrimSpace(fmt.Sprintf("command %q: %v: %s", strings.Join(command, " "), err, msg))
	}
	return true, ""
}

func envValue(env []string, name string) string {
	for i := len(env) - 1; i >= 0; i-- {
		if n, v, ok := strings.Cut(env[i], "="); ok && n == name {
			return v
		}
	}
	return os.Getenv(name)
}

func oneLine(s string) string {
	s = strings.ReplaceAll(s, "\n", " ")
	if len(s) > 200 {
		s = s[:200] + "…"
	}
	return s
}

func probeHandlerOf(p *corev1.Probe) probeHandler {
	return probeHandler{Exec: p.Exec, HTTPGet: p.HTTPGet, TCPSocket: p.TCPSocket, GRPC: p.GRPC}
}

func lifecycleHandlerOf(h *corev1.LifecycleHandler) probeHandler {
	return probeHandler{Exec: h.Exec, HTTPGet: h.HTTPGet, TCPSocket: h.TCPSocket, Sleep: h.Sleep}
}

// probeTimings are a probe's settings with the API's defaults filled in.
type probeTimings struct {
	initialDelay, period, timeout time.Duration
	success, failure              int
}

func timingsOf(p *corev1.Probe) probeTimings {
	t := probeTimings{
		initialDelay: time.Duration(p.InitialDelaySeconds) * time.Second,
		period:       time.Duration(p.PeriodSeconds) * time.Second,
		timeout:      time.Duration(p.TimeoutSeconds) * time.Second,
		success:      int(p.SuccessThreshold),
		failure:      int(p.FailureThreshold),
	}
	if t.period <= 0 {
		t.period = 10 * time.Second
	}
	if t.timeout <= 0 {
		t.timeout = time.Second
	}
	if t.success <= 0 {
		t.success = 1
	}
	if t.failure <= 0 {
		t.failure = 3
	}
	return t
}
