package kubeletstandin

import (
	"reflect"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

func TestExpandLikeKubelet(t *testing.T) {
	vars := map[string]string{"A": "a", "EMPTY": ""}
	lookup := func(n string) (string, bool) { v, ok := vars[n]; return v, ok }
	for in, want := range map[string]string{
		"$(A)":           "a",
		"x$(A)y$(A)":     "xaya",
		"$(EMPTY)!":      "!",
		"$(MISSING)":     "$(MISSING)",
		"$$(A)":          "$(A)",
		"$$$(A)":         "$a",
		"$(A":            "$(A",
		"$A":             "$A",
		"a$":             "a$",
		"$":              "$",
		"$()":            "$()",
		"100$ and $(A)$": "100$ and a$",
	} {
		if got := expand(in, lookup); got != want {
			t.Errorf("expand(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestFormatMapIsKubelets(t *testing.T) {
	got := formatMap(map[string]string{"b": "two\nlines", "a": `say "hi"`, "c": "ü"})
	want := "a=\"say \\\"hi\\\"\"\nb=\"two\\nlines\"\nc=\"ü\""
	if got != want {
		t.Errorf("formatMap = %q, want %q", got, want)
	}
	if formatMap(nil) != "" {
		t.Error("empty map must be empty")
	}
}

func TestResolveCommandArgsEntrypoint(t *testing.T) {
	k := &Kubelet{cfg: Config{NodeIP: "10.244.0.1",
		Images:   map[string]Image{"greeter:v1": {Entrypoint: []string{"/usr/local/bin/meshready", "run", "--"}, Cmd: []string{"/app/greeter"}, Env: []string{"PATH=/bin:/usr/bin", "IMG=1"}}},
		Binaries: map[string]string{"/usr/local/bin/meshready": "/repo/bin/meshready", "/app/greeter": "/tmp/greeter"},
	}}
	pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "p", Namespace: "ns", UID: "u-1", Labels: map[string]string{"app": "x"}},
		Spec: corev1.PodSpec{NodeName: "n1", ServiceAccountName: "sa"}}
	env := []corev1.EnvVar{
		{Name: "POD_NAME", ValueFrom: &corev1.EnvVarSource{FieldRef: &corev1.ObjectFieldSelector{FieldPath: "metadata.name"}}},
		{Name: "POD_IP", ValueFrom: &corev1.EnvVarSource{FieldRef: &corev1.ObjectFieldSelector{FieldPath: "status.podIP"}}},
		{Name: "APP", ValueFrom: &corev1.EnvVarSource{FieldRef: &corev1.ObjectFieldSelector{FieldPath: "metadata.labels['app']"}}},
		{Name: "ADDR", Value: "$(POD_IP):8080"},
		{Name: "LATER", Value: "$(DEFINED_AFTER)"},
		{Name: "DEFINED_AFTER", Value: "x"},
		{Name: "IMGREF", Value: "$(IMG)"}, // image ENV is not visible to expansion
	}
	for _, tc := range []struct {
		name          string
		command, args []string
		want          []string
	}{
		{"image default", nil, nil, []string{"/repo/bin/meshready", "run", "--", "/tmp/greeter"}},
		{"args replace CMD", nil, []string{"/app/greeter", "--addr=$(ADDR)"}, []string{"/repo/bin/meshready", "run", "--", "/tmp/greeter", "--addr=10.244.1.7:8080"}},
		{"command drops CMD", []string{"/app/greeter"}, nil, []string{"/tmp/greeter"}},
		{"command and args", []string{"/app/greeter", "$(POD_NAME)"}, []string{"$$(POD_NAME)", "$(NOPE)"}, []string{"/tmp/greeter", "p", "$(POD_NAME)", "$(NOPE)"}},
	} {
		r, err := k.resolve(pod, &corev1.Container{Image: "greeter:v1", Command: tc.command, Args: tc.args, Env: env}, "10.244.1.7", map[string]string{"MESHREADY_PODINFO": "/d"})
		if err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		if !reflect.DeepEqual(r.argv, tc.want) {
			t.Errorf("%s: argv %q, want %q", tc.name, r.argv, tc.want)
		}
		got := strings.Join(r.env, "\n")
		for _, want := range []string{"PATH=/bin:/usr/bin", "IMG=1", "HOSTNAME=p", "POD_NAME=p", "POD_IP=10.244.1.7", "APP=x", "ADDR=10.244.1.7:8080",
			"LATER=$(DEFINED_AFTER)", "DEFINED_AFTER=x", "IMGREF=$(IMG)", "MESHREADY_PODINFO=/d"} {
			if !strings.Contains("\n"+got+"\n", "\n"+want+"\n") {
				t.Errorf("%s: env lacks %q:\n%s", tc.name, want, got)
			}
		}
	}
	if _, err := k.resolve(pod, &corev1.Container{Image: "nope:v1"}, "", nil); err == nil {
		t.Error("an unknown image must not resolve")
	}
	if _, err := k.resolve(pod, &corev1.Container{Image: "greeter:v1", Env: []corev1.EnvVar{{Name: "X", ValueFrom: &corev1.EnvVarSource{SecretKeyRef: &corev1.SecretKeySelector{Key: "k"}}}}}, "", nil); err == nil {
		t.Error("secretKeyRef must be refused (CreateContainerConfigError), not silently empty")
	}
}

func TestIPAMNextFitAndRange(t *testing.T) {
	m := newIPAM()
	a, _ := m.allocate()
	b, _ := m.allocate()
	if a != "10.244.1.0" || b != "10.244.1.1" {
		t.Fatalf("first addresses %s %s", a, b)
	}
	m.release(a)
	c, _ := m.allocate()
	if c == a {
		t.Fatalf("a freed address came back at once (%s)", c)
	}
	n := 0
	for {
		ip, err := m.allocate()
		if err != nil {
			break
		}
		if strings.HasPrefix(ip, "10.244.255.") || strings.HasPrefix(ip, "10.244.0.") {
			t.Fatalf("allocated %s outside 10.244.1.0-10.244.254.255", ip)
		}
		n++
	}
	if total := n + 2; total != 254*256 {
		t.Errorf("allocated %d addresses, want %d", total, 254*256)
	}
	m.release("10.244.7.7")
	if ip, _ := m.allocate(); ip != "10.244.7.7" {
		t.Errorf("the only free address is 10.244.7.7, got %s", ip)
	}
}
