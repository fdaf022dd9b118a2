package kubeletstandin

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"syscall"
	"time"
)

// process is one run of a container: a local process in its own process
// group (the stand-in's "container"), Pdeathsig SIGKILL so it dies with
// the kubelet stand-in, stdout and stderr appended to one log file.
type process struct {
	cmd      *exec.Cmd
	pid      int
	log      string
	started  time.Time
	done     chan struct{}
	exitCode int    // valid after done: 128+n when killed by signal n (as runtimes report)
	signal   string // "" or the signal that ended it
	finished time.Time
}

func startProcess(argv, env []string, dir, logPath string) (*process, error) {
	f, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, err
	}
	defer f.Close() // the child has its own copy
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Env = env
	cmd.Dir = dir
	cmd.Stdout, cmd.Stderr = f, f
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		fmt.Fprintf(f, "kubelet stand-in: start %q: %v\n", argv, err)
		return nil, err
	}
	p := &process{cmd: cmd, pid: cmd.Process.Pid, log: logPath, started: time.Now(), done: make(chan struct{})}
	go func() {
		err := cmd.Wait()
		p.finished = time.Now()
		p.exitCode = 0
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			if ws, ok := ee.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
				p.exitCode = 128 + int(ws.Signal())
				p.signal = unixSignalName(ws.Signal())
			} else {
				p.exitCode = ee.ExitCode()
			}
		} else if err != nil {
			p.exitCode = 128
		}
		// A container ends with its first process: nothing it left in its
		// process group outlives it (a runtime kills the whole cgroup).
		_ = syscall.Kill(-p.pid, syscall.SIGKILL)
		close(p.done)
	}()
	return p, nil
}

// kill signals the process group.
func (p *process) kill(sig syscall.Signal) {
	select {
	case <-p.done:
	default:
		_ = syscall.Kill(-p.pid, sig)
	}
}

func (p *process) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

func unixSignalName(s syscall.Signal) string {
	switch s {
	case syscall.SIGKILL:
		return "SIGKILL"
	case syscall.SIGTERM:
		return "SIGTERM"
	case syscall.SIGINT:
		return "SIGINT"
	case syscall.SIGQUIT:
		return "SIGQUIT"
	case syscall.SIGABRT:
		return "SIGABRT"
	case syscall.SIGSEGV:
		return "SIGSEGV"
	}
	return s.String()
}
