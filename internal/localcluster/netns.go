package localcluster

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"syscall"
)

// PodCIDR is the range pod IPs come from. Inside the cluster's network
// namespace the whole range is routed to lo ("ip route add local"), so
// every address in it answers like loopback — yet it is not loopback, so
// the EndpointSlice controller's validation (which refuses 127.0.0.0/8)
// accepts it. Nothing on the host changes.
const PodCIDR = "10.244.0.0/16"

// netnsEnv marks the process re-executed inside the private namespace.
const netnsEnv = "MESHREADY_LOCALCLUSTER_NETNS"

// InNetns reports whether this process runs in the namespace EnterNetns made.
func InNetns() bool { return os.Getenv(netnsEnv) != "" }

// EnterNetns makes sure the rest of the program runs in a private network
// namespace where PodCIDR is local: the first call re-executes the program
// (same arguments, same environment) in a new namespace, waits for it and
// exits with its code; in the re-executed process it sets the namespace up
// and returns. Call it first thing in main or TestMain.
//
// Root makes the namespace directly; without root a user namespace maps us
// to root inside it. Everything the cluster starts lives in the namespace,
// so nothing of it is reachable from the host: `nsenter -t PID -n CMD`
// (PID in the banner) runs a command beside it.
func EnterNetns() {
	if InNetns() {
		if err := setupNetns(); err != nil {
			fmt.Fprintln(os.Stderr, "localcluster: set up the network namespace:", err)
			os.Exit(1)
		}
		return
	}
	self, err := os.Executable()
	if err != nil {
		fmt.Fprintln(os.Stderr, "localcluster: find my own executable:", err)
		os.Exit(1)
	}
	run := func(attr *syscall.SysProcAttr) (*exec.Cmd, error) {
		cmd := exec.Command(self, os.Args[1:]...)
		cmd.Stdin, cmd.Stdout, cmd.Stderr = os.Stdin, os.Stdout, os.Stderr
		cmd.Env = append(os.Environ(), netnsEnv+"=1")
		attr.Pdeathsig = syscall.SIGKILL
		cmd.SysProcAttr = attr
		return cmd, cmd.Start()
	}
	cmd, err := run(&syscall.SysProcAttr{Cloneflags: syscall.CLONE_NEWNET})
	if errors.Is(err, syscall.EPERM) {
		cmd, err = run(&syscall.SysProcAttr{
			Cloneflags:  syscall.CLONE_NEWUSER | syscall.CLONE_NEWNET,
			UidMappings: []syscall.SysProcIDMap{{ContainerID: 0, HostID: os.Getuid(), Size: 1}},
			GidMappings: []syscall.SysProcIDMap{{ContainerID: 0, HostID: os.Getgid(), Size: 1}},
		})
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "localcluster: cannot make a private network namespace (needs root or unprivileged user namespaces):", err)
		os.Exit(1)
	}
	// A terminal's Ctrl-C reaches the child itself (same process group): we
	// only must not die of it first. SIGTERM and SIGQUIT (go test's timeout)
	// are sent to us alone: pass them on.
	signal.Ignore(syscall.SIGINT)
	sigs := make(chan os.Signal, 2)
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGQUIT)
	go func() {
		for s := range sigs {
			_ = cmd.Process.Signal(s)
		}
	}()
	err = cmd.Wait()
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		if ws, ok := ee.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
			os.Exit(128 + int(ws.Signal()))
		}
		os.Exit(ee.ExitCode())
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "localcluster:", err)
		os.Exit(1)
	}
	os.Exit(0)
}

func setupNetns() error {
	ip, err := exec.LookPath("ip")
	if err != nil {
		return fmt.Errorf("iproute2's ip is missing (apt-get install iproute2; make cluster-bins installs it)")
	}
	for _, args := range [][]string{
		{"link", "set", "lo", "up"},
		{"route", "add", "local", PodCIDR, "dev", "lo"},
	} {
		if out, err := exec.Command(ip, args...).CombinedOutput(); err != nil {
			return fmt.Errorf("ip %v: %v: %s", args, err, out)
		}
	}
	return nil
}

// Nsenter is the command prefix that runs a command beside this process,
// in its network namespace (call it inside, after EnterNetns): `nsenter -t
// PID -n` when the namespace was made as root, with -U
// --preserve-credentials when a user namespace had to be made too (then
// the same user runs it, without sudo).
func Nsenter() string {
	pid := os.Getpid()
	if b, err := os.ReadFile("/proc/self/uid_map"); err == nil {
		var inside, outside, size uint64
		if _, err := fmt.Sscan(string(b), &inside, &outside, &size); err == nil && size != 4294967295 {
			return fmt.Sprintf("nsenter -t %d -U -n --preserve-credentials", pid)
		}
	}
	return fmt.Sprintf("nsenter -t %d -n", pid)
}
