package main

import (
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/meshready/meshready/api/v1alpha1"
)

// The release verbs through the whole command line against a real
// kube-apiserver: what each creates or patches, what it prints, its exit
// code, and its one line when the input or the API server is wrong. The
// controller is faked by writing status through the status subresource.
func TestReleaseVerbs(t *testing.T) {
	c := apiCluster(t)
	kc := []string{"--kubeconfig", c.Kubeconfig, "-n", "shop"}
	cli := func(args ...string) result {
		t.Helper()
		return runCLI("", append(args, kc...)...)
	}
	oneLine := func(t *testing.T, r result, want string) {
		t.Helper()
		if r.code != exitBadInput || !strings.Contains(r.stderr, want) || strings.Count(strings.TrimSpace(r.stderr), "\n") != 0 || r.stdout != "" {
			t.Errorf("exit %d, want 2 and one line with %q; stdout %q, stderr %q", r.code, want, r.stdout, r.stderr)
		}
	}

	t.Run("start", func(t *testing.T) {
		for _, tc := range []struct {
			name string
			args []string
			code int
			want string // in stdout (exit 0) or stderr
			spec func(*v1alpha1.Release) string
		}{
			{"image, defaults", []string{"start", "cart", "--to-version", "v2", "--image", "cart:2"}, 0,
				"release.meshready.io/cart-v2 created: cart to v2 (image cart:2), steps [10 25 50 100], window 1m0s",
				func(r *v1alpha1.Release) string {
					return fmt.Sprintf("%s %s %+v %v %s %s %d %d", r.Name, r.Spec.Service, r.Spec.To, r.Spec.Steps, r.Spec.Interval.Duration, r.Spec.Analysis.MaxErrorRate, r.Spec.Analysis.MinRequests, r.Spec.Analysis.FailureLimit)
				}},
			{"deployment, every flag", []string{"start", "cart", "--to-version", "v3", "--deployment", "cart-v3", "--steps", "50,100", "--interval", "30s",
				"--max-error-rate", "0.005", "--min-requests", "200", "--name", "cart-canary"}, 0,
				"release.meshready.io/cart-canary created: cart to v3 (Deployment cart-v3), steps [50 100], window 30s", nil},
			{"container", []string{"start", "api", "--to-version", "v2", "--image", "api:2", "--container", "app", "-o", "json"}, 0, `"container": "app"`, nil},
			{"exists", []string{"start", "cart", "--to-version", "v2", "--image", "cart:2"}, 2, `create release "cart-v2" in namespace shop: it already exists`, nil},
			{"no source", []string{"start", "cart", "--to-version", "v2"}, 2, "give the new version's pods: --image IMAGE", nil},
			{"both sources", []string{"start", "cart", "--to-version", "v2", "--image", "a", "--deployment", "b"}, 2, "--image and --deployment can't be used together", nil},
			{"no version", []string{"start", "cart", "--image", "a"}, 2, "missing flags: --to-version", nil},
			{"bad version", []string{"start", "cart", "--to-version", "V2", "--image", "a"}, 2, `--to-version="V2": a lowercase RFC 1123 subdomain`, nil},
			{"last step", []string{"start", "cart", "--to-version", "v4", "--image", "a", "--steps", "10,50"}, 2, "--steps=10,50: the last step must be 100", nil},
			{"steps not numbers", []string{"start", "cart", "--to-version", "v4", "--image", "a", "--steps", "ten,100"}, 2, `"ten" is not a percentage`, nil},
			{"error rate", []string{"start", "cart", "--to-version", "v4", "--image", "a", "--max-error-rate", "5"}, 2, "--max-error-rate=5: a fraction between 0 and 1", nil},
			{"interval", []string{"start", "cart", "--to-version", "v4", "--image", "a", "--interval", "0s"}, 2, "--interval=0s: must be a positive duration", nil},
			{"container without image", []string{"start", "cart", "--to-version", "v4", "--deployment", "d", "--container", "app"}, 2, "--container goes with --image only", nil},
			{"bad name", []string{"start", "cart", "--to-version", "v4", "--image", "a", "--name", "Cart_V4"}, 2, `release name "Cart_V4": a lowercase RFC 1123 subdomain`, nil},
		} {
			t.Run(tc.name, func(t *testing.T) {
				r := cli(tc.args...)
				if tc.code == 2 {
					oneLine(t, r, tc.want)
					return
				}
				if r.code != tc.code || !strings.Contains(r.stdout, tc.want) {
					t.Fatalf("exit %d, want %d with %q; stdout %q, stderr %q", r.code, tc.code, tc.want, r.stdout, r.stderr)
				}
				if tc.spec != nil {
					got := tc.spec(getRelease(t, c, "shop", "cart-v2"))
					if want := "cart-v2 cart {Version:v2 Image:cart:2 Container: Deployment:} [10 25 50 100] 1m0s 0.01 50 2"; got != want {
						t.Errorf("spec %s, want %s", got, want)
					}
				}
			})
		}
		r := getRelease(t, c, "shop", "cart-canary")
		if got := fmt.Sprintf("%s %v %s %s %d", r.Spec.To.Deployment, r.Spec.Steps, r.Spec.Interval.Duration, r.Spec.Analysis.MaxErrorRate, r.Spec.Analysis.MinRequests); got != "cart-v3 [50 100] 30s 0.005 200" {
			t.Errorf("cart-canary spec %s", got)
		}
	})

	ageRE := regexp.MustCompile(`\d+s\n`)
	t.Run("list", func(t *testing.T) {
		setStatus(t, c, "shop", "cart-v2", `{"phase":"Progressing","stage":"Weights","from":"v1","step":1,"stepLabel":"2/4 (25%)","weights":{"desired":25,"applied":25,"synced":"11/12"}}`)
		r := cli("list")
		want := "" +
			"NAME         SERVICE  FROM  TO  PHASE        STEP       WEIGHT  SYNCED  AGE\n" +
			"api-v2       api      -     v2  Pending      -          -       -       AGE\n" +
			"cart-canary  cart     -     v3  Pending      -          -       -       AGE\n" +
			"cart-v2      cart     v1    v2  Progressing  2/4 (25%)  25%     11/12   AGE\n"
		if got := ageRE.ReplaceAllString(r.stdout, "AGE\n"); r.code != 0 || got != want {
			t.Errorf("exit %d, stderr %q; got\n%s\nwant\n%s", r.code, r.stderr, r.stdout, want)
		}
		r = cli("list", "-o", "json")
		var l v1alpha1.ReleaseList
		if err := json.Unmarshal([]byte(r.stdout), &l); err != nil || r.code != 0 || len(l.Items) != 3 || l.Kind != "ReleaseList" {
			t.Errorf("-o json: exit %d, %v, %d items: %s", r.code, err, len(l.Items), r.stdout)
		}
		r = runCLI("", "list", "-A", "--kubeconfig", c.Kubeconfig)
		if r.code != 0 || !strings.HasPrefix(r.stdout, "NAMESPACE  NAME ") || !strings.Contains(r.stdout, "\nshop       cart-v2 ") {
			t.Errorf("-A: exit %d: %s %s", r.code, r.stdout, r.stderr)
		}
		r = runCLI("", "list", "-n", "empty", "--kubeconfig", c.Kubeconfig)
		if r.code != 0 || r.stdout != "" || r.stderr != "No releases in namespace empty.\n" {
			t.Errorf("empty namespace: exit %d, %q %q", r.code, r.stdout, r.stderr)
		}
	})

	t.Run("status", func(t *testing.T) {
		now := time.Now().UTC()
		ts := func(d time.Duration) string { return now.Add(d).Format("2006-01-02T15:04:05.000000Z07:00") }
		setStatus(t, c, "shop", "cart-v2", `{"phase":"Progressing","stage":"Analysis","message":"window 1 of step 2/4 (25%) running","windowStart":"`+ts(-20*time.Second)+`",
			"weights":{"desired":25,"applied":25,"synced":"12/12","observed":"9.7"},
			"gate":{"object":"VirtualService/shop/cart","resourceVersion":"77","writtenAt":"`+ts(-21*time.Second)+`","synced":"11/12",
				"waiting":[{"proxy":"caller-1.shop","istiod":"istiod-0","type":"RDS","since":"`+ts(-20*time.Second)+`"}]},
			"history":[{"step":0,"weight":10,"verdict":"Pass","reason":"error rate 0.00% <= 1.00%, 118 requests >= 50",
				"windowStart":"`+ts(-90*time.Second)+`","windowEnd":"`+ts(-30*time.Second)+`",
				"to":{"requests":"118","failed":"0","errorRate":"0","p50":"3.1","p99":"12"},"observed":"10.0"}]}`)
		r := cli("status", "cart-v2")
		if r.code != 0 {
			t.Fatalf("exit %d: %s", r.code, r.stderr)
		}
		for _, want := range []string{
			"Release:  shop/cart-v2  (service cart: v1 → v2)\n",
			"Phase:    Progressing, stage Analysis, step 2/4 (25%)\n",
			"Message:  window 1 of step 2/4 (25%) running\n",
			"Steps:    10% → 25% → 50% → 100%, window 1m0s (this one opened ",
			"Weights to v2:\n  DESIRED  APPLIED  SYNCED  OBSERVED\n  25%      25%      12/12   9.7%\n",
			"Gate:     VirtualService/shop/cart (resourceVersion 77) written ",
			"  PROXY          ISTIOD    TYPE  WAITING\n  caller-1.shop  istiod-0  RDS   2",
			"  STEP  WEIGHT  WINDOW                     GATE  VERDICT  REQUESTS  FAILED  ERROR RATE  P50    P99   OBSERVED  FROM ERR  FROM P99  REASON\n",
			"  1     10%     ",
			"  -     Pass     118       0       0.00%       3.1ms  12ms  10.0%     -         -         error rate 0.00% <= 1.00%, 118 requests >= 50\n",
		} {
			if !strings.Contains(r.stdout, want) {
				t.Errorf("status lacks %q:\n%s", want, r.stdout)
			}
		}
		r = cli("status", "cart-v2", "-o", "json")
		var rel v1alpha1.Release
		if err := json.Unmarshal([]byte(r.stdout), &rel); err != nil || r.code != 0 || rel.Status.Gate == nil || rel.Status.Gate.Waiting[0].Proxy != "caller-1.shop" || rel.Status.History[0].To.Requests != "118" {
			t.Errorf("-o json: exit %d, %v: %s", r.code, err, r.stdout)
		}
		oneLine(t, cli("status", "nope"), `get release "nope" in namespace shop: not found (`+"`meshrelease list -n shop`"+` shows the releases there)`)

		setStatus(t, c, "shop", "api-v2", `{"phase":"RolledBack","stage":"Done","message":"step 1/4 (10%) failed 2 windows: error rate 5.10% > 1.00%","gate":null}`)
		r = cli("status", "api-v2")
		if r.code != 1 || !strings.Contains(r.stdout, "Phase:    RolledBack, stage Done") || !strings.Contains(r.stdout, "failed 2 windows") {
			t.Errorf("rolled back: exit %d, want 1: %s %s", r.code, r.stdout, r.stderr)
		}
		setStatus(t, c, "shop", "api-v2", `{"phase":"Failed","message":"the VirtualService has no route to v1"}`)
		if r = cli("status", "api-v2", "-o", "json"); r.code != 1 {
			t.Errorf("failed: exit %d, want 1", r.code)
		}
		setStatus(t, c, "shop", "api-v2", `{"phase":"Succeeded"}`)
		if r = cli("status", "api-v2"); r.code != 0 {
			t.Errorf("succeeded: exit %d, want 0", r.code)
		}
	})

	t.Run("edits", func(t *testing.T) {
		spec := func(name string) string {
			r := getRelease(t, c, "shop", name)
			p := "nil"
			if r.Spec.Promote != nil {
				step := "nil"
				if r.Spec.Promote.Step != nil {
					step = fmt.Sprint(*r.Spec.Promote.Step)
				}
				p = fmt.Sprintf("{step %s full %v}", step, r.Spec.Promote.Full)
			}
			return fmt.Sprintf("paused=%v promote=%s abort=%v", r.Spec.Paused, p, r.Spec.Abort)
		}
		for _, tc := range []struct {
			args []string
			code int
			out  string
			spec string // of args[1] after the edit
		}{
			{[]string{"pause", "cart-canary"}, 0, "release.meshready.io/cart-canary paused: it holds at step - (meshrelease resume lets it go on)\n", "paused=true promote=nil abort=false"},
			{[]string{"resume", "cart-canary"}, 0, "release.meshready.io/cart-canary resumed\n", "paused=false promote=nil abort=false"},
			{[]string{"promote", "cart-canary"}, 2, `promote release "cart-canary": it is Pending, not at a step yet (--full promotes it all the way)`, "paused=false promote=nil abort=false"},
			{[]string{"promote", "cart-v2"}, 0, "release.meshready.io/cart-v2 promoted step 2/4 (25%): the next step starts once this one's gate has opened\n", "paused=false promote={step 1 full false} abort=false"},
			{[]string{"promote", "cart-v2"}, 0, "promoted step 2/4 (25%)", "paused=false promote={step 1 full false} abort=false"},
			{[]string{"promote", "cart-v2", "--full"}, 0, "release.meshready.io/cart-v2 promoted in full: straight to 100 %, then retire\n", "paused=false promote={step 1 full true} abort=false"},
			{[]string{"abort", "cart-canary", "-o", "json"}, 0, `"abort": true`, "paused=false promote=nil abort=true"},
			{[]string{"pause", "api-v2"}, 2, `pause release "api-v2": it has ended (Succeeded): nothing to pause`, "paused=false promote=nil abort=false"},
			{[]string{"abort", "api-v2"}, 2, `abort release "api-v2": it has ended (Succeeded)`, "paused=false promote=nil abort=false"},
			{[]string{"resume", "gone"}, 2, `get release "gone" in namespace shop: not found`, ""},
			{[]string{"promote"}, 2, `expected "<name>"`, ""},
		} {
			t.Run(strings.Join(tc.args, " "), func(t *testing.T) {
				r := cli(tc.args...)
				if tc.code == 2 {
					oneLine(t, r, tc.out)
				} else if r.code != 0 || !strings.Contains(r.stdout, tc.out) {
					t.Errorf("exit %d, stdout %q, stderr %q; want %q", r.code, r.stdout, r.stderr, tc.out)
				}
				if tc.spec != "" {
					if got := spec(tc.args[1]); got != tc.spec {
						t.Errorf("spec %s, want %s", got, tc.spec)
					}
				}
			})
		}
		// The controller's own pause (the inconclusive limit) is named.
		setStatus(t, c, "shop", "cart-canary", `{"phase":"Paused","message":"3 inconclusive windows in a row (12 requests < 50)"}`)
		if r := cli("resume", "cart-canary"); r.code != 0 || !strings.Contains(r.stdout, "it was paused by the controller, not by spec.paused: 3 inconclusive windows") {
			t.Errorf("resume of the controller's pause: exit %d %q %q", r.code, r.stdout, r.stderr)
		}
		// The columns show an edit the controller has not acted on yet.
		if r := cli("list"); !regexp.MustCompile(`\ncart-canary +cart +- +v3 +Paused \(aborting\) `).MatchString(r.stdout) {
			t.Errorf("list after abort:\n%s", r.stdout)
		}
	})

	t.Run("watch", func(t *testing.T) {
		for _, tc := range []struct {
			name, end string
			code      int
		}{{"succeeded", "Succeeded", 0}, {"rolled back", "RolledBack", 1}} {
			t.Run(tc.name, func(t *testing.T) {
				name := "watch-" + strings.ToLower(tc.end)
				if r := cli("start", "web", "--to-version", "v2", "--image", "web:2", "--name", name); r.code != 0 {
					t.Fatalf("start: %d %s", r.code, r.stderr)
				}
				done := make(chan result, 1)
				go func() { done <- cli("status", name, "--watch") }()
				time.Sleep(1500 * time.Millisecond)
				for i, st := range []string{
					`{"phase":"Progressing","step":0,"stepLabel":"1/4 (10%)","weights":{"desired":10,"applied":10}}`,
					`{"phase":"Progressing","step":0,"stepLabel":"1/4 (10%)","weights":{"desired":10,"applied":10}, "observedGeneration": 1}`, // prints the same: no reprint
					`{"phase":"Progressing","step":1,"stepLabel":"2/4 (25%)","weights":{"desired":25,"applied":25}}`,
					`{"phase":"` + tc.end + `","stage":"Done"}`,
				} {
					setStatus(t, c, "shop", name, st)
					if i < 3 {
						time.Sleep(300 * time.Millisecond)
					}
				}
				var r result
				select {
				case r = <-done:
				case <-time.After(30 * time.Second):
					t.Fatal("status --watch did not end at a terminal phase")
				}
				if r.code != tc.code {
					t.Errorf("exit %d, want %d: %s", r.code, tc.code, r.stderr)
				}
				prints := strings.Count(r.stdout, "Release:  shop/"+name)
				for _, want := range []string{"Phase:    Pending\n", "step 1/4 (10%)", "step 2/4 (25%)", "Phase:    " + tc.end + ", stage Done"} {
					if !strings.Contains(r.stdout, want) {
						t.Errorf("no %q in the watch's output:\n%s", want, r.stdout)
					}
				}
				if prints != 4 {
					t.Errorf("%d prints, want 4 (pending, step 1, step 2, the end):\n%s", prints, r.stdout)
				}
			})
		}
	})

	t.Run("API server", func(t *testing.T) {
		dir := t.TempDir()
		kubeconfig := func(name, server string) string {
			p := filepath.Join(dir, name)
			text := fmt.Sprintf("apiVersion: v1\nkind: Config\nclusters: [{name: c, cluster: {server: %q, insecure-skip-tls-verify: true}}]\nusers: [{name: u, user: {token: t0ken}}]\ncontexts: [{name: x, context: {cluster: c, user: u, namespace: shop}}]\ncurrent-context: x\n", server)
			if err := os.WriteFile(p, []byte(text), 0o600); err != nil {
				t.Fatal(err)
			}
			return p
		}
		// Accepts, never answers: the deadline ends the call.
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer ln.Close()
		go func() {
			for {
				conn, err := ln.Accept()
				if err != nil {
					return
				}
				defer conn.Close()
			}
		}()
		// An API server without the Release CRD answers as kube-apiserver does.
		bare := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusNotFound)
			_, _ = w.Write([]byte(`{"kind":"Status","apiVersion":"v1","metadata":{},"status":"Failure","message":"the server could not find the requested resource","reason":"NotFound","details":{},"code":404}`))
		}))
		defer bare.Close()
		for _, tc := range []struct {
			name string
			args []string
			want string
		}{
			{"no CRD", []string{"list", "--kubeconfig", kubeconfig("bare", bare.URL)},
				"list releases in namespace shop: the API server at " + bare.URL + " does not serve meshready.io/v1alpha1 releases: install them with `kubectl apply -k config/default`"},
			{"refused", []string{"list", "--kubeconfig", kubeconfig("refused", "https://127.0.0.1:1")},
				"list releases in namespace shop: cannot reach the API server at https://127.0.0.1:1 (connection refused): check --kubeconfig / --context and that the cluster is up"},
			{"silent", []string{"status", "x", "--request-timeout", "500ms", "--kubeconfig", kubeconfig("silent", "https://"+ln.Addr().String())},
				"get release \"x\" in namespace shop: the API server at https://" + ln.Addr().String() + " did not answer within 500ms"},
			{"unauthorized", []string{"pause", "x", "--kubeconfig", kubeconfig("token", "https://127.0.0.1:6443")},
				"get release \"x\" in namespace shop: the API server at https://127.0.0.1:6443 refused our credentials (401)"},
			{"no kubeconfig", []string{"list", "--kubeconfig", filepath.Join(dir, "none")}, "--kubeconfig=" + filepath.Join(dir, "none") + ": "},
			{"no context", []string{"list", "--kubeconfig", c.Kubeconfig, "--context", "nope"}, `context "nope" does not exist`},
			{"bad timeout", []string{"list", "--kubeconfig", c.Kubeconfig, "--request-timeout", "0s"}, "--request-timeout=0s: must be a positive duration"},
		} {
			t.Run(tc.name, func(t *testing.T) {
				start := time.Now()
				r := runCLI("", tc.args...)
				oneLine(t, r, tc.want)
				if d := time.Since(start); d > 5*time.Second {
					t.Errorf("took %v", d)
				}
				if strings.Contains(r.stderr, "t0ken") {
					t.Errorf("the token is echoed: %s", r.stderr)
				}
			})
		}
	})
}
