package releasecli

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/apimachinery/pkg/watch"

	"github.com/meshready/meshready/api/v1alpha1"
)

// Commands are the release verbs, for embedding in the command line.
type Commands struct {
	Start   StartCmd   `cmd:"" help:"Start a release: create a Release moving SERVICE's traffic to --to-version step by step."`
	List    ListCmd    `cmd:"" help:"List the Releases (NAME SERVICE FROM TO PHASE STEP WEIGHT SYNCED AGE)."`
	Status  StatusCmd  `cmd:"" help:"Show a Release: phase, the four weights, the gate, every window's numbers (exit 1 when it failed or rolled back)."`
	Pause   PauseCmd   `cmd:"" help:"Hold a Release at its current step (no weight moves, no window counts)."`
	Resume  ResumeCmd  `cmd:"" help:"Let a paused Release go on."`
	Promote PromoteCmd `cmd:"" help:"Skip the current step's analysis (or --full: straight to 100 %, then retire)."`
	Abort   AbortCmd   `cmd:"" help:"Roll a Release back: weights to 100 % from, the new version scaled to 0."`
}

// Output is -o for the verbs that print an object.
type Output struct {
	Output string `short:"o" enum:"text,json" default:"text" help:"text or json (the Release object as the API server returned it)."`
}

// clock is the time the printers use (tests fix it).
var clock0 = time.Now

// ---- start

// StartCmd is `meshrelease start`.
type StartCmd struct {
	Conn
	Output
	Service      string        `arg:"" help:"The Kubernetes Service whose traffic moves."`
	ToVersion    string        `required:"" help:"The version to release (its DestinationRule subset and version label)."`
	Image        string        `xor:"source" help:"The new version's image: a Deployment <app>-<version> is cloned from the current one with it."`
	Container    string        `help:"With --image: the container whose image changes (default: the first)."`
	Deployment   string        `xor:"source" help:"A Deployment you made for the new version (adopted, not cloned)."`
	Steps        string        `default:"10,25,50,100" help:"The weights to the new version, in percent, increasing, ending at 100."`
	Interval     time.Duration `default:"1m" help:"One analysis window, from the moment every proxy holds the step's weights."`
	MaxErrorRate float64       `default:"0.01" help:"The highest error rate a window may show (0.01 = 1 %)."`
	MinRequests  int32         `default:"50" help:"Fewer requests to the new version in a window make it inconclusive (the window repeats)."`
	Name         string        `help:"The Release's name (default: SERVICE-VERSION)."`
}

// Validate runs when kong parses: every bad value is one line, exit 2.
func (c *StartCmd) Validate() error {
	if c.Image == "" && c.Deployment == "" {
		return errors.New("give the new version's pods: --image IMAGE (cloned from the current Deployment) or --deployment NAME (one you made)")
	}
	if c.ToVersion == "" {
		return errors.New("missing flags: --to-version=VERSION (the version to release, e.g. v2)")
	}
	if c.Container != "" && c.Image == "" {
		return errors.New("--container goes with --image only")
	}
	if errs := validation.IsDNS1123Subdomain(c.ToVersion); len(errs) > 0 {
		return fmt.Errorf("--to-version=%q: %s", c.ToVersion, errs[0])
	}
	if _, err := ParseSteps(c.Steps); err != nil {
		return err
	}
	if c.Interval <= 0 {
		return fmt.Errorf("--interval=%s: must be a positive duration such as 1m", c.Interval)
	}
	if c.MaxErrorRate < 0 || c.MaxErrorRate > 1 {
		return fmt.Errorf("--max-error-rate=%v: a fraction between 0 and 1 (0.01 is 1 %%)", c.MaxErrorRate)
	}
	if c.MinRequests < 1 {
		return fmt.Errorf("--min-requests=%d: at least 1", c.MinRequests)
	}
	return nil
}

// ParseSteps reads "10,25,50,100": percentages, increasing, the last 100.
func ParseSteps(s string) ([]int32, error) {
	var out []int32
	for _, f := range strings.Split(s, ",") {
		f = strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(f), "%"))
		v, err := strconv.Atoi(f)
		if err != nil || v < 1 || v > 100 {
			return nil, fmt.Errorf("--steps=%s: %q is not a percentage from 1 to 100 (give e.g. 10,25,50,100)", s, f)
		}
		if len(out) > 0 && int32(v) <= out[len(out)-1] {
			return nil, fmt.Errorf("--steps=%s: the steps must increase (%d after %d)", s, v, out[len(out)-1])
		}
		out = append(out, int32(v))
	}
	if out[len(out)-1] != 100 {
		return nil, fmt.Errorf("--steps=%s: the last step must be 100 (the release ends with all traffic on the new version)", s)
	}
	return out, nil
}

// Release is the object start creates.
func (c *StartCmd) Release(ns string) *v1alpha1.Release {
	steps, _ := ParseSteps(c.Steps)
	name := c.Name
	if name == "" {
		name = c.Service + "-" + c.ToVersion
	}
	return &v1alpha1.Release{
		TypeMeta:   metav1.TypeMeta{APIVersion: v1alpha1.GroupVersion.String(), Kind: "Release"},
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns},
		Spec: v1alpha1.ReleaseSpec{
			Service: c.Service,
			To: v1alpha1.ReleaseTarget{
				Version: c.ToVersion, Image: c.Image, Container: c.Container, Deployment: c.Deployment,
			},
			Steps:    steps,
			Interval: metav1.Duration{Duration: c.Interval},
			Analysis: v1alpha1.Analysis{
				MaxErrorRate: strconv.FormatFloat(c.MaxErrorRate, 'f', -1, 64),
				MinRequests:  c.MinRequests,
			},
		},
	}
}

// Run creates the Release.
func (c *StartCmd) Run(io *IO) error {
	cl, err := c.Connect()
	if err != nil {
		return err
	}
	r := c.Release(cl.Namespace())
	if errs := validation.IsDNS1123Subdomain(r.Name); len(errs) > 0 {
		return fmt.Errorf("release name %q: %s (give --name)", r.Name, errs[0])
	}
	out, err := cl.Create(context.Background(), r)
	if err != nil {
		return err
	}
	if c.Output.Output == "json" {
		return writeJSON(io.Stdout, out)
	}
	src := "image " + out.Spec.To.Image
	if out.Spec.To.Deployment != "" {
		src = "Deployment " + out.Spec.To.Deployment
	}
	fmt.Fprintf(io.Stdout, "release.meshready.io/%s created: %s to %s (%s), steps %v, window %s\n",
		out.Name, out.Spec.Service, out.Spec.To.Version, src, out.Spec.Steps, out.Spec.Interval.Duration)
	fmt.Fprintf(io.Stdout, "follow it: meshrelease status %s -n %s --watch\n", out.Name, out.Namespace)
	return nil
}

// ---- list

// ListCmd is `meshrelease list`.
type ListCmd struct {
	Conn
	Output
	AllNamespaces bool `short:"A" help:"Every namespace's Releases."`
}

// Run prints the table.
func (c *ListCmd) Run(io *IO) error {
	cl, err := c.Connect()
	if err != nil {
		return err
	}
	l, err := cl.List(context.Background(), c.AllNamespaces)
	if err != nil {
		return err
	}
	if c.Output.Output == "json" {
		l.APIVersion, l.Kind = v1alpha1.GroupVersion.String(), "ReleaseList"
		return writeJSON(io.Stdout, l)
	}
	if len(l.Items) == 0 {
		where := "namespace " + cl.Namespace()
		if c.AllNamespaces {
			where = "any namespace"
		}
		fmt.Fprintf(io.Stderr, "No releases in %s.\n", where)
		return nil
	}
	return WriteList(io.Stdout, l.Items, c.AllNamespaces, clock0())
}

// ---- status

// StatusCmd is `meshrelease status NAME`.
type StatusCmd struct {
	Conn
	Output
	Name  string `arg:"" help:"The Release."`
	Watch bool   `short:"w" help:"Print again on every change until the release ends (or Ctrl-C)."`
}

// Run prints the release; exit 1 when it failed or rolled back.
func (c *StatusCmd) Run(io *IO) error {
	cl, err := c.Connect()
	if err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	r, err := cl.Get(ctx, c.Name)
	if err != nil {
		return err
	}
	last := ""
	print := func(r *v1alpha1.Release) error {
		// Printed again only when what it shows changed: the key is the
		// text at a fixed time (ages and waits move by themselves) or the
		// spec and status.
		var key strings.Builder
		if c.Output.Output == "json" {
			if err := writeJSON(&key, []any{r.Spec, r.Status}); err != nil {
				return err
			}
		} else if err := WriteStatus(&key, r, r.CreationTimestamp.Time); err != nil {
			return err
		}
		if key.String() == last {
			return nil
		}
		first := last == ""
		last = key.String()
		if c.Output.Output == "json" {
			return writeJSON(io.Stdout, r)
		}
		if !first {
			fmt.Fprintf(io.Stdout, "\n--- %s\n", clock0().UTC().Format(time.RFC3339))
		}
		return WriteStatus(io.Stdout, r, clock0())
	}
	if err := print(r); err != nil {
		return err
	}
	if c.Watch {
		r, err = c.follow(ctx, cl, r, print)
		if err != nil {
			return err
		}
	}
	return statusCode(r)
}

// follow watches the release and prints each change until it is terminal,
// ctx ends (Ctrl-C: the last state decides the exit code) or the release is
// deleted. A watch the server ends is opened again from the last version.
func (c *StatusCmd) follow(ctx context.Context, cl *Client, r *v1alpha1.Release, print func(*v1alpha1.Release) error) (*v1alpha1.Release, error) {
	const session = 5 * time.Minute
	for !r.Status.Phase.Terminal() {
		w, err := cl.Watch(ctx, c.Name, r.ResourceVersion, session)
		if err != nil {
			if ctx.Err() != nil {
				return r, nil
			}
			return r, err
		}
		gone, expired, err := drain(ctx, w, &r, print)
		w.Stop()
		switch {
		case err != nil:
			return r, err
		case gone:
			return r, fmt.Errorf("release %q in namespace %s was deleted", c.Name, cl.Namespace())
		case ctx.Err() != nil:
			return r, nil
		case expired:
			// Too old a version to watch from: read it again.
			nr, err := cl.Get(ctx, c.Name)
			if err != nil {
				return r, err
			}
			r = nr
			if err := print(r); err != nil {
				return r, err
			}
		}
	}
	return r, nil
}

func drain(ctx context.Context, w watch.Interface, r **v1alpha1.Release, print func(*v1alpha1.Release) error) (gone, expired bool, err error) {
	for {
		select {
		case <-ctx.Done():
			return false, false, nil
		case ev, ok := <-w.ResultChan():
			if !ok {
				return false, false, nil
			}
			switch ev.Type {
			case watch.Deleted:
				return true, false, nil
			case watch.Error:
				// 410 Gone (too old a version) or another error: the
				// caller reads the release again and watches anew.
				return false, true, nil
			case watch.Added, watch.Modified:
				nr, ok := ev.Object.(*v1alpha1.Release)
				if !ok {
					continue
				}
				*r = nr
				if err := print(nr); err != nil {
					return false, false, err
				}
				if nr.Status.Phase.Terminal() {
					return false, false, nil
				}
			}
		}
	}
}

// statusCode is status's exit code: 1 when the release failed or rolled
// back, else 0.
func statusCode(r *v1alpha1.Release) error {
	switch r.Status.Phase {
	case v1alpha1.PhaseRolledBack, v1alpha1.PhaseFailed:
		return ExitCode(1)
	}
	return nil
}

// ---- edits

// Edit is what the verbs that patch a Release's spec share.
type Edit struct {
	Conn
	Output
	Name string `arg:"" help:"The Release."`
}

// apply reads the release, lets decide refuse the edit or make its patch,
// and applies the patch.
func (e *Edit) apply(io *IO, verb string, decide EditFunc) error {
	cl, err := e.Connect()
	if err != nil {
		return err
	}
	ctx := context.Background()
	r, err := cl.Get(ctx, e.Name)
	if err != nil {
		return err
	}
	if r.Status.Phase.Terminal() {
		return fmt.Errorf("%s release %q: it has ended (%s): nothing to %s", verb, e.Name, r.Status.Phase, verb)
	}
	spec, done, err := decide(r)
	if err != nil {
		return err
	}
	patch, err := json.Marshal(map[string]any{"spec": spec})
	if err != nil {
		return err
	}
	out, err := cl.Patch(ctx, e.Name, patch)
	if err != nil {
		return err
	}
	if e.Output.Output == "json" {
		return writeJSON(io.Stdout, out)
	}
	fmt.Fprintf(io.Stdout, "release.meshready.io/%s %s\n", out.Name, done)
	return nil
}

// PauseCmd is `meshrelease pause NAME`.
type PauseCmd struct{ Edit }

// Run sets spec.paused.
func (c *PauseCmd) Run(io *IO) error { return c.apply(io, "pause", EditPause) }

// ResumeCmd is `meshrelease resume NAME`.
type ResumeCmd struct{ Edit }

// Run clears spec.paused.
func (c *ResumeCmd) Run(io *IO) error { return c.apply(io, "resume", EditResume) }

// PromoteCmd is `meshrelease promote NAME [--full]`.
type PromoteCmd struct {
	Edit
	Full bool `help:"Straight to 100 % of the new version, then retire the old one."`
}

// Run sets spec.promote: the step read from status (promoting twice does
// not skip two steps), or full.
func (c *PromoteCmd) Run(io *IO) error {
	if c.Full {
		return c.apply(io, "promote", EditPromoteFull)
	}
	return c.apply(io, "promote", EditPromote)
}

// AbortCmd is `meshrelease abort NAME`.
type AbortCmd struct{ Edit }

// Run sets spec.abort.
func (c *AbortCmd) Run(io *IO) error { return c.apply(io, "abort", EditAbort) }

func writeJSON(w io.Writer, v any) error {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return err
	}
	_, err = fmt.Fprintf(w, "%s\n", b)
	return err
}
