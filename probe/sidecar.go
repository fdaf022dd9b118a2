package probe

import (
	"bufio"
	"bytes"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"time"
)

// SidecarMode is --sidecar.
type SidecarMode string

const (
	SidecarAuto     SidecarMode = "auto"
	SidecarRequired SidecarMode = "required"
	SidecarNone     SidecarMode = "none"
)

// istioStatusAnnotation is what Istio's injector writes on every pod it
// injects; its presence in the Downward API annotations file is the cheapest
// and surest sign of a sidecar.
const istioStatusAnnotation = "sidecar.istio.io/status"

// Sidecar decides whether this pod has an Envoy sidecar, once, and remembers
// why. Clusters mix mesh and non-mesh pods, so under auto the agent must find
// out without ever waiting forever: the Downward API annotations first, else
// whether Envoy's admin port answers within the start timeout.
type Sidecar struct {
	deadline time.Time
	timeout  time.Duration
	log      *slog.Logger
	now      func() time.Time

	mu      sync.Mutex
	decided bool
	present bool
	why     string
}

// NewSidecar applies --sidecar and, under auto, reads <podinfo>/annotations.
func NewSidecar(mode SidecarMode, podinfoDir string, startTimeout time.Duration, log *slog.Logger) *Sidecar {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	s := &Sidecar{timeout: startTimeout, log: log, now: time.Now}
	s.deadline = s.now().Add(startTimeout)
	switch mode {
	case SidecarRequired:
		s.decide(true, "--sidecar=required")
	case SidecarNone:
		s.decide(false, "--sidecar=none")
	default:
		path := filepath.Join(podinfoDir, "annotations")
		found, err := hasAnnotation(path, istioStatusAnnotation)
		switch {
		case err == nil && found:
			s.decide(true, fmt.Sprintf("%s has %s", path, istioStatusAnnotation))
		case err == nil:
			s.decide(false, fmt.Sprintf("no sidecar: %s has no %s annotation", path, istioStatusAnnotation))
		default:
			log.Debug("no Downward API annotations; will detect the sidecar by its admin port", "path", path, "err", err)
		}
	}
	return s
}

// State reports whether a sidecar is present, whether that is decided yet,
// and why.
func (s *Sidecar) State() (present, decided bool, why string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.present, s.decided, s.why
}

// answered records that Envoy's admin port answered: under auto, the pod has
// a sidecar from now on.
func (s *Sidecar) answered() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.decided {
		s.decideLocked(true, "Envoy's admin port answered")
	}
}

// unanswered records that the admin port did not answer, and reports whether
// the agent has now given up looking for a sidecar.
func (s *Sidecar) unanswered() (gaveUp bool, why string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.decided {
		return !s.present, s.why
	}
	if s.now().Before(s.deadline) {
		return false, fmt.Sprintf("waiting for the sidecar: Envoy's admin port does not answer yet (auto-detect gives up after %s, --start-timeout)", s.timeout)
	}
	s.decideLocked(false, fmt.Sprintf("no sidecar: Envoy's admin port did not answer within %s and there is no Downward API annotations file", s.timeout))
	s.log.Warn("no sidecar detected; only the app counts for readiness (set --sidecar=required or mount the Downward API annotations to be sure)", "waited", s.timeout)
	return true, s.why
}

func (s *Sidecar) decide(present bool, why string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.decideLocked(present, why)
}

func (s *Sidecar) decideLocked(present bool, why string) {
	s.decided, s.present, s.why = true, present, why
	s.log.Debug("sidecar decided", "present", present, "why", why)
}

// hasAnnotation reads a Downward API annotations file (key="value" lines) and
// reports whether key is among them. Bounded: the file is small by nature and
// a huge one is someone else's mistake, not a reason to read it all.
func hasAnnotation(path, key string) (bool, error) {
	f, err := os.Open(path)
	if err != nil {
		return false, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 0, 64*1024), 1<<20)
	prefix := []byte(key + "=")
	for sc.Scan() {
		if bytes.HasPrefix(sc.Bytes(), prefix) {
			return true, nil
		}
	}
	if err := sc.Err(); err != nil && err != bufio.ErrTooLong {
		return false, err
	}
	return false, nil
}
