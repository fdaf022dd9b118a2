package graceful

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"syscall"
	"unsafe"
)

// prSetChildSubreaper is PR_SET_CHILD_SUBREAPER (linux/prctl.h, Linux ≥ 3.4).
// The syscall package lacks the name; x/sys/unix would add a dependency
// for one constant.
const prSetChildSubreaper = 36

// becomeReaper makes orphans of CMD's descendants come to us when we are
// not PID 1 (tini -s), so that wait4(-1) can reap them.
func becomeReaper() (how string, err error) {
	if os.Getpid() == 1 {
		return "PID 1", nil
	}
	if _, _, errno := syscall.RawSyscall(syscall.SYS_PRCTL, prSetChildSubreaper, 1, 0); errno != 0 {
		return "", fmt.Errorf("prctl(PR_SET_CHILD_SUBREAPER): %w", errno)
	}
	return "child subreaper", nil
}

// resolve finds CMD as a shell would, and maps failure to the shell's exit
// codes: 127 not found, 126 found but not executable.
func resolve(name string) (path string, code int, err error) {
	path, err = exec.LookPath(name)
	if errors.Is(err, exec.ErrDot) {
		// PATH has "." in it and CMD is there. A container's PATH is its
		// author's choice; run it as the shell would.
		err = nil
	}
	if err == nil {
		return path, 0, nil
	}
	var ee *exec.Error // "exec: NAME: why": the name is already in our message
	if errors.As(err, &ee) {
		err = ee.Err
	}
	if errors.Is(err, fs.ErrPermission) || errors.Is(err, syscall.EISDIR) {
		return "", ExitNotExecutable, fmt.Errorf("CMD %q is not executable: %w", name, err)
	}
	return "", ExitNotFound, fmt.Errorf("CMD %q not found: %w", name, err)
}

// execFailureCode maps the errno of a failed execve (reported by ForkExec)
// to the shell's codes: ENOENT here is usually a missing #! interpreter.
func execFailureCode(err error) int {
	if errors.Is(err, syscall.ENOENT) || errors.Is(err, syscall.ENOTDIR) {
		return ExitNotFound
	}
	return ExitNotExecutable
}

// start runs CMD in a process group of its own (pgid = pid), so that a
// signal can reach every process it spawned, with our stdio, environment
// and working directory. When our stdin is the controlling terminal and we
// own its foreground, the foreground passes to CMD's group (as tini does),
// or an interactive CMD would be stopped by SIGTTIN on its first read.
func start(path string, argv []string) (pid int, err error) {
	sys := &syscall.SysProcAttr{Setpgid: true}
	if ownsForegroundOfStdin() {
		sys.Foreground = true
		sys.Ctty = 0
	}
	return syscall.ForkExec(path, argv, &syscall.ProcAttr{
		Env:   os.Environ(),
		Files: []uintptr{0, 1, 2},
		Sys:   sys,
	})
}

// ownsForegroundOfStdin reports whether fd 0 is our controlling terminal
// and our process group is its foreground group. Any error (not a tty, not
// our ctty) means no.
func ownsForegroundOfStdin() bool {
	var fg int32
	if _, _, errno := syscall.Syscall(syscall.SYS_IOCTL, 0, syscall.TIOCGPGRP, uintptr(unsafe.Pointer(&fg))); errno != 0 {
		return false
	}
	return int(fg) == syscall.Getpgrp()
}

// signalGroup sends sig to CMD's process group. Should CMD have left its
// group (setsid, setpgid), the group alone would miss the one process that
// matters: then CMD gets it directly, and what stayed in the group too.
func signalGroup(pid int, sig syscall.Signal) error {
	if pgid, err := syscall.Getpgid(pid); err == nil && pgid != pid {
		_ = syscall.Kill(-pid, sig)
		return syscall.Kill(pid, sig)
	}
	return syscall.Kill(-pid, sig)
}

// groupAlive reports whether any process is left in process group pgid
// (zombies not yet reaped count).
func groupAlive(pgid int) bool {
	err := syscall.Kill(-pgid, 0)
	return err == nil || errors.Is(err, syscall.EPERM)
}

// exitCode is the code a shell would report for a wait status: the exit
// status, or 128+n when the process died of signal n.
func exitCode(ws syscall.WaitStatus) int {
	switch {
	case ws.Exited():
		return ws.ExitStatus()
	case ws.Signaled():
		return exitSignalBase + int(ws.Signal())
	default:
		return exitSignalBase
	}
}

// reapAll collects every child that has exited — CMD and orphans
// re-parented to us alike — and returns CMD's status if it was among them.
// It never blocks (WNOHANG) and is safe to call at any time.
func reapAll(cmdPid int, onOrphan func(pid int, ws syscall.WaitStatus)) (cmd syscall.WaitStatus, cmdDone bool) {
	for {
		var ws syscall.WaitStatus
		pid, err := syscall.Wait4(-1, &ws, syscall.WNOHANG, nil)
		if errors.Is(err, syscall.EINTR) {
			continue
		}
		if err != nil || pid <= 0 { // ECHILD: no children; 0: none exited yet
			return cmd, cmdDone
		}
		if pid == cmdPid && cmdPid > 0 {
			cmd, cmdDone = ws, true
			continue
		}
		onOrphan(pid, ws)
	}
}
