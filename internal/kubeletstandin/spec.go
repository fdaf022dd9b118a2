package kubeletstandin

import (
	"fmt"
	"os/exec"
	"sort"
	"strings"

	corev1 "k8s.io/api/core/v1"
)

// Image is what the stand-in knows of an image: its ENTRYPOINT, CMD and ENV
// (as `docker inspect` shows them). Its filesystem is the host's, with the
// in-image paths of Config.Binaries mapped to local files.
type Image struct {
	Entrypoint []string
	Cmd        []string
	Env        []string // KEY=VALUE
}

// defaultPath is the PATH a container gets when its image sets none (Docker's).
const defaultPath = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

// errConfig is a container the kubelet would not create
// (CreateContainerConfigError); errImage, an image it cannot pull.
type errConfig struct{ msg string }

func (e errConfig) Error() string { return e.msg }

type errImage struct{ msg string }

func (e errImage) Error() string { return e.msg }

// resolved is a container ready to exec.
type resolved struct {
	argv []string // argv[0] a local path
	env  []string
}

// resolve builds a container's argv and environment as kubelet + runtime
// would: env from the image, then the container's env (value with $(VAR)
// expansion over the variables before it, valueFrom.fieldRef), then
// command/args with $(VAR) expansion over the container's env; command
// replaces ENTRYPOINT (and drops CMD), args replace CMD.
//
// The process does not inherit the test's environment: only PATH (Docker's
// default unless the image sets one), HOSTNAME, the image's ENV, the
// container's env and extraEnv (MountPathEnv) are set.
func (k *Kubelet) resolve(pod *corev1.Pod, c *corev1.Container, podIP string, extraEnv map[string]string) (resolved, error) {
	img, ok := k.cfg.Images[c.Image]
	if !ok {
		return resolved{}, errImage{fmt.Sprintf("image %q is not in the kubelet stand-in's Images table", c.Image)}
	}
	vars := map[string]string{}
	var order []string
	set := func(name, v string) {
		if _, ok := vars[name]; !ok {
			order = append(order, name)
		}
		vars[name] = v
	}
	// The runtime's layer: image ENV, then PATH/HOSTNAME defaults.
	set("PATH", defaultPath)
	for _, kv := range img.Env {
		n, v, _ := strings.Cut(kv, "=")
		set(n, v)
	}
	set("HOSTNAME", pod.Name)
	// The kubelet's layer: only these are visible to $(VAR) expansion.
	kvars := map[string]string{}
	klookup := func(name string) (string, bool) { v, ok := kvars[name]; return v, ok }
	if len(c.EnvFrom) > 0 {
		return resolved{}, errConfig{"envFrom is not supported by the kubelet stand-in"}
	}
	for _, e := range c.Env {
		var v string
		switch {
		case e.ValueFrom == nil:
			v = expand(e.Value, klookup)
		case e.ValueFrom.FieldRef != nil:
			fv, err := fieldValue(pod, e.ValueFrom.FieldRef.FieldPath, podIP, k.cfg.NodeIP)
			if err != nil {
				return resolved{}, errConfig{fmt.Sprintf("env %s: %v", e.Name, err)}
			}
			v = fv
		default:
			return resolved{}, errConfig{fmt.Sprintf("env %s: only value and valueFrom.fieldRef are supported by the kubelet stand-in", e.Name)}
		}
		kvars[e.Name] = v
		set(e.Name, v)
	}
	for _, n := range sortedKeys(extraEnv) {
		set(n, extraEnv[n])
	}

	var argv []string
	command := make([]string, len(c.Command))
	for i, s := range c.Command {
		command[i] = expand(s, klookup)
	}
	args := make([]string, len(c.Args))
	for i, s := range c.Args {
		args[i] = expand(s, klookup)
	}
	switch {
	case len(command) > 0:
		argv = append(command, args...)
	case len(args) > 0:
		argv = append(append([]string{}, img.Entrypoint...), args...)
	default:
		argv = append(append([]string{}, img.Entrypoint...), img.Cmd...)
	}
	if len(argv) == 0 {
		return resolved{}, errConfig{fmt.Sprintf("no command specified: image %q has no ENTRYPOINT or CMD and the container sets no command", c.Image)}
	}
	argv, err := k.localArgv(argv, vars["PATH"])
	if err != nil {
		return resolved{}, err
	}
	env := make([]string, 0, len(order))
	for _, n := range order {
		env = append(env, n+"="+vars[n])
	}
	return resolved{argv: argv, env: env}, nil
}

// localArgv maps every argument that is exactly an in-image path of
// Config.Binaries to its local file (so `meshready run -- /app/greeter`
// finds both), and looks a bare argv[0] up in PATH.
func (k *Kubelet) localArgv(argv []string, path string) ([]string, error) {
	out := make([]string, len(argv))
	for i, a := range argv {
		if local, ok := k.cfg.Binaries[a]; ok {
			out[i] = local
		} else {
			out[i] = a
		}
	}
	if !strings.Contains(out[0], "/") {
		for _, dir := range strings.Split(path, ":") {
			if local, ok := k.cfg.Binaries[dir+"/"+out[0]]; ok {
				out[0] = local
				return out, nil
			}
		}
		p, err := exec.LookPath(out[0])
		if err != nil {
			return nil, fmt.Errorf("%q: executable file not found in $PATH", out[0])
		}
		out[0] = p
	}
	return out, nil
}

func sortedKeys(m map[string]string) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}
