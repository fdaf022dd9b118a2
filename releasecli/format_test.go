package releasecli

import (
	"bytes"
	"flag"
	"os"
	"path/filepath"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/meshready/meshready/api/v1alpha1"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata")

var now = time.Date(2026, 12, 2, 18, 10, 0, 0, time.UTC)

func at(hms string) *metav1.Time {
	t, err := time.Parse("15:04:05", hms)
	if err != nil {
		panic(err)
	}
	return &metav1.Time{Time: time.Date(2026, 12, 2, t.Hour(), t.Minute(), t.Second(), 0, time.UTC)}
}

func atµ(hms string) *metav1.MicroTime { return &metav1.MicroTime{Time: at(hms).Time} }

// progressing is a release at step 2 of 4, its first window passed, the
// second step's gate waiting for one proxy.
func progressing() *v1alpha1.Release {
	return &v1alpha1.Release{
		ObjectMeta: metav1.ObjectMeta{Name: "greeter-v2", Namespace: "shop", CreationTimestamp: *at("18:00:00")},
		Spec: v1alpha1.ReleaseSpec{
			Service:  "greeter",
			To:       v1alpha1.ReleaseTarget{Version: "v2", Image: "greeter:2"},
			Steps:    []int32{10, 25, 50, 100},
			Interval: metav1.Duration{Duration: time.Minute},
			Analysis: v1alpha1.Analysis{MaxErrorRate: "0.01", MinRequests: 50, FailureLimit: 2, InconclusiveLimit: 3},
		},
		Status: v1alpha1.ReleaseStatus{
			Phase: v1alpha1.PhaseProgressing, Stage: v1alpha1.StageWeights, Message: "waiting for 1 of 12 proxies to hold the weights",
			From: "v1", Step: 1, StepLabel: "2/4 (25%)",
			Weights: v1alpha1.Weights{Desired: 25, Applied: 25, Synced: "11/12", Observed: "9.7"},
			Gate: &v1alpha1.GateStatus{
				Object: "VirtualService/shop/greeter", ResourceVersion: "4242", WrittenAt: *atµ("18:09:20"), Synced: "11/12",
				Waiting: []v1alpha1.ProxyWait{{Proxy: "caller-7f9c.shop", Istiod: "istiod-0", Type: "RDS", Since: at("18:09:21")}},
			},
			History: []v1alpha1.HistoryRow{{
				Step: 0, Weight: 10, GateWrittenAt: atµ("18:08:00"), GateOpenedAt: &metav1.MicroTime{Time: at("18:08:00").Add(420 * time.Millisecond)},
				WindowStart: atµ("18:08:00"), WindowEnd: atµ("18:09:00"), Verdict: v1alpha1.VerdictPass,
				Reason:   "error rate 0.00% ≤ 1.00%, 118 requests ≥ 50",
				To:       &v1alpha1.WindowNumbers{Requests: "118", Failed: "0", ErrorRate: "0", P50: "3.1", P99: "12"},
				From:     &v1alpha1.WindowNumbers{Requests: "1062", Failed: "1", ErrorRate: "0.00094", P50: "3", P99: "11.5"},
				Observed: "10.0",
			}},
		},
	}
}

func rolledBack() *v1alpha1.Release {
	r := progressing()
	r.Status.Phase, r.Status.Stage, r.Status.Gate = v1alpha1.PhaseRolledBack, v1alpha1.StageDone, nil
	r.Status.Message = "step 2/4 (25%) failed 2 windows: error rate 5.10% > 1.00%"
	r.Status.Weights = v1alpha1.Weights{Desired: 0, Applied: 0, Synced: "12/12", Observed: "24.9"}
	r.Status.Failures = 2
	for _, w := range []string{"18:10:00", "18:11:00"} {
		s := atµ(w)
		e := metav1.NewMicroTime(s.Add(time.Minute))
		r.Status.History = append(r.Status.History, v1alpha1.HistoryRow{
			Step: 1, Weight: 25, WindowStart: s, WindowEnd: &e, Verdict: v1alpha1.VerdictFail,
			Reason:   "error rate 5.10% > 1.00%",
			To:       &v1alpha1.WindowNumbers{Requests: "294", Failed: "15", ErrorRate: "0.051", P50: "3.2", P99: "14"},
			Observed: "24.9",
		})
	}
	return r
}

func golden(t *testing.T, name string, got []byte) {
	t.Helper()
	p := filepath.Join("testdata", name)
	if *update {
		if err := os.WriteFile(p, got, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(p)
	if err != nil {
		t.Fatalf("%v (go test ./releasecli -update writes it)", err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("%s differs (go test ./releasecli -update rewrites it); got:\n%s\nwant:\n%s", name, got, want)
	}
}

func TestWriteStatus(t *testing.T) {
	for _, tc := range []struct {
		file string
		r    *v1alpha1.Release
	}{
		{"status-progressing.txt", progressing()},
		{"status-rolledback.txt", rolledBack()},
		{"status-new.txt", &v1alpha1.Release{
			ObjectMeta: metav1.ObjectMeta{Name: "cart-v3", Namespace: "shop", CreationTimestamp: *at("18:09:58")},
			Spec: v1alpha1.ReleaseSpec{Service: "cart", To: v1alpha1.ReleaseTarget{Version: "v3", Deployment: "cart-v3"},
				Steps: []int32{50, 100}, Interval: metav1.Duration{Duration: 30 * time.Second}, Paused: true},
		}},
	} {
		t.Run(tc.file, func(t *testing.T) {
			var b bytes.Buffer
			if err := WriteStatus(&b, tc.r, now); err != nil {
				t.Fatal(err)
			}
			golden(t, tc.file, b.Bytes())
		})
	}
}

func TestWriteList(t *testing.T) {
	items := []v1alpha1.Release{*rolledBack(), *progressing()}
	items[0].Name = "greeter-v2-try1"
	items[1].Spec.Abort = true
	var b bytes.Buffer
	if err := WriteList(&b, items, false, now); err != nil {
		t.Fatal(err)
	}
	golden(t, "list.txt", b.Bytes())
}

func TestParseSteps(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want []int32
		err  string
	}{
		{"10,25,50,100", []int32{10, 25, 50, 100}, ""},
		{"100", []int32{100}, ""},
		{" 5%, 100% ", []int32{5, 100}, ""},
		{"10,50", nil, "the last step must be 100"},
		{"50,25,100", nil, "must increase"},
		{"10,10,100", nil, "must increase"},
		{"0,100", nil, "not a percentage"},
		{"10,abc,100", nil, "not a percentage"},
		{"", nil, "not a percentage"},
		{"10,101", nil, "not a percentage"},
	} {
		got, err := ParseSteps(tc.in)
		if tc.err != "" {
			if err == nil || !bytes.Contains([]byte(err.Error()), []byte(tc.err)) {
				t.Errorf("%q: error %v, want %q", tc.in, err, tc.err)
			}
			continue
		}
		if err != nil || len(got) != len(tc.want) {
			t.Errorf("%q: %v %v", tc.in, got, err)
			continue
		}
		for i := range got {
			if got[i] != tc.want[i] {
				t.Errorf("%q: %v, want %v", tc.in, got, tc.want)
			}
		}
	}
}
