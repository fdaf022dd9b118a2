// Package releasecli is `meshrelease start | list | status | pause | resume |
// promote | abort` (DESIGN.md, "Part two"): kubectl-plugin style verbs that
// talk only to the Kubernetes API and only to Release objects. Every verb
// but start is a read or a JSON merge patch of one Release; the controller
// does the rest. Every call has a deadline (--request-timeout); a failure is
// one line saying what failed and what to do, exit 2. cmd/meshrelease wires
// the commands into its kong command line.
package releasecli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"strings"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/serializer"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/meshready/meshready/api/v1alpha1"
	"github.com/meshready/meshready/internal/neterr"
)

// The client's rate limit: a person's commands, a watch at most.
const (
	QPS   = 5
	Burst = 10
)

// IO is where a command writes.
type IO struct {
	Stdout io.Writer
	Stderr io.Writer
}

// ExitCode ends a command with a code, its reason already printed (status:
// 1 when the release failed or rolled back).
type ExitCode int

func (c ExitCode) Error() string { return fmt.Sprintf("exit %d", int(c)) }

// Conn are the connection flags every verb takes, as kubectl names them.
type Conn struct {
	Kubeconfig     string        `help:"The kubeconfig file (default: $KUBECONFIG, then ~/.kube/config, then the pod's service account)."`
	Context        string        `help:"The kubeconfig context to use (default: its current context)."`
	Namespace      string        `short:"n" help:"The Releases' namespace (default: the context's namespace, else default)."`
	RequestTimeout time.Duration `default:"10s" help:"The deadline of each call to the API server."`
	UserAgent      string        `kong:"-"`
}

// Client reads and edits Releases in one namespace.
type Client struct {
	rc        rest.Interface
	ns        string
	server    string
	timeout   time.Duration
	userAgent string
}

// Namespace is the namespace the client works in.
func (c *Client) Namespace() string { return c.ns }

var (
	scheme = runtime.NewScheme()
	codecs = serializer.NewCodecFactory(scheme)
)

func init() {
	if err := v1alpha1.AddToScheme(scheme); err != nil {
		panic(err)
	}
	metav1.AddToGroupVersion(scheme, v1alpha1.GroupVersion)
}

// Connect loads the kubeconfig as kubectl does (an explicit --kubeconfig,
// else $KUBECONFIG and ~/.kube/config, else in-cluster) and makes the
// Release client. Nothing is called yet.
func (o Conn) Connect() (*Client, error) {
	if o.RequestTimeout <= 0 {
		return nil, fmt.Errorf("--request-timeout=%s: must be a positive duration such as 10s", o.RequestTimeout)
	}
	rules := clientcmd.NewDefaultClientConfigLoadingRules()
	rules.ExplicitPath = o.Kubeconfig
	overrides := &clientcmd.ConfigOverrides{CurrentContext: o.Context}
	if o.Namespace != "" {
		overrides.Context.Namespace = o.Namespace
	}
	cc := clientcmd.NewNonInteractiveDeferredLoadingClientConfig(rules, overrides)
	cfg, err := cc.ClientConfig()
	if err != nil {
		where := "the kubeconfig"
		if o.Kubeconfig != "" {
			where = "--kubeconfig=" + o.Kubeconfig
		}
		return nil, fmt.Errorf("%s: %v (give --kubeconfig FILE, set KUBECONFIG, or run in a pod)", where, firstLine(err.Error()))
	}
	ns, _, err := cc.Namespace()
	if err != nil || ns == "" {
		ns = "default"
	}
	cfg = rest.CopyConfig(cfg)
	cfg.QPS, cfg.Burst = QPS, Burst
	// Each call's deadline is its context's; no client-wide timeout, which
	// would also cut a watch.
	cfg.Timeout = 0
	cfg.GroupVersion = &v1alpha1.GroupVersion
	cfg.APIPath = "/apis"
	cfg.NegotiatedSerializer = codecs.WithoutConversion()
	if o.UserAgent != "" {
		cfg.UserAgent = o.UserAgent
	}
	rc, err := rest.RESTClientFor(cfg)
	if err != nil {
		return nil, fmt.Errorf("the API client: %v", err)
	}
	return &Client{rc: rc, ns: ns, server: cfg.Host, timeout: o.RequestTimeout}, nil
}

func (c *Client) call(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(ctx, c.timeout)
}

// Get reads one Release.
func (c *Client) Get(ctx context.Context, name string) (*v1alpha1.Release, error) {
	ctx, cancel := c.call(ctx)
	defer cancel()
	var r v1alpha1.Release
	err := c.rc.Get().Namespace(c.ns).Resource("releases").Name(name).Do(ctx).Into(&r)
	return &r, c.explain(err, "get", name)
}

// List reads the namespace's Releases (every namespace's with all).
func (c *Client) List(ctx context.Context, all bool) (*v1alpha1.ReleaseList, error) {
	ctx, cancel := c.call(ctx)
	defer cancel()
	var l v1alpha1.ReleaseList
	req := c.rc.Get().Resource("releases")
	if !all {
		req = req.Namespace(c.ns)
	}
	err := req.Do(ctx).Into(&l)
	return &l, c.explain(err, "list", "")
}

// Create makes a Release.
func (c *Client) Create(ctx context.Context, r *v1alpha1.Release) (*v1alpha1.Release, error) {
	ctx, cancel := c.call(ctx)
	defer cancel()
	var out v1alpha1.Release
	err := c.rc.Post().Namespace(c.ns).Resource("releases").Body(r).Do(ctx).Into(&out)
	return &out, c.explain(err, "create", r.Name)
}

// Patch applies a JSON merge patch to a Release's spec.
func (c *Client) Patch(ctx context.Context, name string, patch []byte) (*v1alpha1.Release, error) {
	ctx, cancel := c.call(ctx)
	defer cancel()
	var out v1alpha1.Release
	err := c.rc.Patch(types.MergePatchType).Namespace(c.ns).Resource("releases").Name(name).Body(patch).Do(ctx).Into(&out)
	return &out, c.explain(err, "patch", name)
}

// Watch follows one Release from resourceVersion on. The server ends the
// watch after timeout (the caller watches again); ctx bounds the stream.
func (c *Client) Watch(ctx context.Context, name, resourceVersion string, timeout time.Duration) (watch.Interface, error) {
	secs := int64(timeout / time.Second)
	opts := metav1.ListOptions{
		FieldSelector:   "metadata.name=" + name,
		ResourceVersion: resourceVersion,
		TimeoutSeconds:  &secs,
		Watch:           true,
	}
	// The stream lives past this call: the server ends it after timeout,
	// and so do we a request timeout later (a server gone silent); its
	// opening is bounded by a timer that cancels unless the response
	// arrived in time.
	wctx, cancel := context.WithTimeout(ctx, timeout+c.timeout)
	timer := time.AfterFunc(c.timeout, cancel)
	w, err := c.rc.Get().Namespace(c.ns).Resource("releases").
		VersionedParams(&opts, metav1.ParameterCodec).Watch(wctx)
	if !timer.Stop() && err != nil {
		err = context.DeadlineExceeded
	}
	if err != nil {
		cancel()
		return nil, c.explain(err, "watch", name)
	}
	return stopWatch{w, cancel}, nil
}

// stopWatch ends the stream's context with the watch.
type stopWatch struct {
	watch.Interface
	cancel context.CancelFunc
}

func (s stopWatch) Stop() { s.Interface.Stop(); s.cancel() }

// explain turns an API error into one line naming what failed and what to
// do.
func (c *Client) explain(err error, verb, name string) error {
	if err == nil {
		return nil
	}
	what := "releases in namespace " + c.ns
	if name != "" {
		what = fmt.Sprintf("release %q in namespace %s", name, c.ns)
	}
	if verb == "list" && name == "" {
		what = "releases"
		if c.ns != "" {
			what += " in namespace " + c.ns
		}
	}
	var se apierrors.APIStatus
	if errors.As(err, &se) {
		st := se.Status()
		switch {
		case apierrors.IsNotFound(err) && strings.Contains(st.Message, "could not find the requested resource"):
			return fmt.Errorf("%s %s: the API server at %s does not serve meshready.io/v1alpha1 releases: install them with `kubectl apply -k config/default`", verb, what, c.server)
		case apierrors.IsNotFound(err):
			return fmt.Errorf("%s %s: not found (`meshrelease list -n %s` shows the releases there)", verb, what, c.ns)
		case apierrors.IsAlreadyExists(err):
			return fmt.Errorf("%s %s: it already exists (give another --name, or `meshrelease status %s`)", verb, what, name)
		case apierrors.IsUnauthorized(err):
			return fmt.Errorf("%s %s: the API server at %s refused our credentials (401): check the kubeconfig's user", verb, what, c.server)
		case apierrors.IsForbidden(err):
			return fmt.Errorf("%s %s: forbidden: %s", verb, what, firstLine(st.Message))
		case apierrors.IsInvalid(err):
			return fmt.Errorf("%s %s: the API server rejected it: %s", verb, what, invalidMessage(st))
		case apierrors.IsTimeout(err) || apierrors.IsServerTimeout(err):
			return fmt.Errorf("%s %s: the API server at %s timed out: %s", verb, what, c.server, firstLine(st.Message))
		}
		return fmt.Errorf("%s %s: %s", verb, what, firstLine(st.Message))
	}
	if errors.Is(err, context.DeadlineExceeded) || isTimeout(err) {
		return fmt.Errorf("%s %s: the API server at %s did not answer within %s: check that it is up and reachable (--kubeconfig, --context), or raise --request-timeout", verb, what, c.server, c.timeout)
	}
	if why := neterr.Unreachable(err); why != "" {
		return fmt.Errorf("%s %s: cannot reach the API server at %s (%s): check --kubeconfig / --context and that the cluster is up", verb, what, c.server, why)
	}
	return fmt.Errorf("%s %s: %s", verb, what, firstLine(err.Error()))
}

// invalidMessage is the API server's own reasons for a 422, joined.
func invalidMessage(st metav1.Status) string {
	if st.Details == nil || len(st.Details.Causes) == 0 {
		return firstLine(st.Message)
	}
	var parts []string
	for _, c := range st.Details.Causes {
		m := c.Message
		if c.Field != "" && !strings.HasPrefix(m, c.Field) {
			m = c.Field + ": " + m
		}
		parts = append(parts, firstLine(m))
	}
	return strings.Join(parts, "; ")
}

func isTimeout(err error) bool {
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return true
	}
	var ue *url.Error
	return errors.As(err, &ue) && ue.Timeout()
}

func firstLine(s string) string {
	s = strings.TrimSpace(s)
	if i := strings.IndexByte(s, '\n'); i >= 0 {
		s = s[:i]
	}
	return s
}
