package integration

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sync"
)

// The greeter Service as istiod knows it, and the ports inside a greeter
// pod (the production ones, on the pod's own IP: clustermesh_manifests.go).
const (
	GreeterHost    = "greeter.default.svc.cluster.local"
	GreeterPort    = 7070
	GreeterCluster = "outbound|7070||greeter.default.svc.cluster.local"
	appPort        = 8080
	outboundPort   = 15001
)

// Mode is how a pod's main process is started.
type Mode int

const (
	// Naive starts the app as the container's entrypoint, probed directly
	// (kubelet's gRPC probe on the app's port); SIGTERM reaches it at once.
	Naive Mode = iota
	// MeshReady starts it under `meshready run`, probed on the agent's
	// /health.
	MeshReady
)

func (m Mode) String() string { return [...]string{"naive", "meshready"}[m] }

// drainEnded reads the agent's "drain ended" log line (text format).
var drainEnded = regexp.MustCompile(`drain ended.* why=(\S+).* took=(\S+)`)

// syncBuffer is a bytes.Buffer safe for a process's stdout and stderr
// at once, that keeps its first MiB.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.b.Len() > 1<<20 { // keep the head and stop: enough to say why
		return len(p), nil
	}
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// BuildBinaries builds the agent (in the repository root, its own module,
// with the shipped binary's flags: Makefile's build) and the greeter (in
// this module) into dir. integrationDir is this module's directory.
func BuildBinaries(integrationDir, dir string) (agent, greeterBin string, err error) {
	agent, greeterBin = filepath.Join(dir, "meshready"), filepath.Join(dir, "greeter")
	if err := goBuild(filepath.Join(integrationDir, ".."), agent, "./cmd/meshready"); err != nil {
		return "", "", err
	}
	if err := goBuild(integrationDir, greeterBin, "./cmd/greeter"); err != nil {
		return "", "", err
	}
	return agent, greeterBin, nil
}

// goBuild builds pkg (in module directory wd) as a static stripped binary.
func goBuild(wd, out, pkg string) error {
	cmd := exec.Command("go", "build", "-trimpath", "-ldflags=-s -w", "-o", out, pkg)
	cmd.Dir = wd
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if b, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("go build %s (in %s): %v\n%s", pkg, wd, err, b)
	}
	return nil
}
