package integration

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/status"

	"github.com/meshready/meshready/integration/greeter"
)

// The callers of the local mesh are proxyless gRPC clients
// (google.golang.org/grpc/xds): grpc-go's own xDS client subscribes to the
// discovery server as a proxyless workload (node metadata GENERATOR=grpc)
// and balances over the endpoints of the EDS Pilot pushes — the real
// routing code, reacting to real pushes, with no stand-in on the caller's
// side. It still reaches each greeter pod through that pod's sidecar
// stand-in (inbound 7070 → app 8080), as a mesh caller reaches a pod
// through its Envoy.

// CallerBootstrap is grpc-go's xDS bootstrap for a proxyless caller of the
// given Pilot ADS address (Istio's format: pilot-agent writes the same for
// proxyless pods).
func CallerBootstrap(xdsAddr, name string) []byte {
	b, _ := json.Marshal(map[string]any{
		"xds_servers": []any{map[string]any{
			"server_uri":      xdsAddr,
			"channel_creds":   []any{map[string]any{"type": "insecure"}},
			"server_features": []any{"xds_v3"},
		}},
		"node": map[string]any{
			"id": fmt.Sprintf("sidecar~127.0.0.1~%s.default~default.svc.cluster.local", name),
			"metadata": map[string]any{
				"GENERATOR": "grpc", "NAMESPACE": "default", "CLUSTER_ID": "Kubernetes",
			},
		},
	})
	return b
}

// Load is a steady open-loop stream of demo.Greeter/Hello calls from a
// proxyless gRPC caller to xds:///greeter.default.svc.cluster.local:7070.
type Load struct {
	conn   *grpc.ClientConn
	every  time.Duration
	cancel context.CancelFunc
	done   chan struct{}
	wg     sync.WaitGroup

	mu      sync.Mutex
	results []Call
}

// Call is one request's outcome.
type Call struct {
	At      time.Time
	Took    time.Duration
	Pod     string // who answered ("" on failure)
	Code    string // "OK" or the gRPC status code
	Message string
	Caller  string // which caller sent it, where a test has several ("" otherwise)
}

// DialGreeter connects a proxyless caller through Pilot at xdsAddr and
// waits (up to wait) for one call to succeed: the caller has its config.
func DialGreeter(xdsAddr, name string, wait time.Duration) (*grpc.ClientConn, error) {
	res, err := newXDSResolver(CallerBootstrap(xdsAddr, name))
	if err != nil {
		return nil, fmt.Errorf("xds resolver: %w", err)
	}
	return dialXDS(fmt.Sprintf("xds:///%s:%d", GreeterHost, GreeterPort), wait, grpc.WithResolvers(res))
}

// StartLoad sends rate calls per second on conn, each with a 2 s deadline,
// whether or not earlier ones have answered (open loop: a slow pod does not
// slow the offered load).
func StartLoad(conn *grpc.ClientConn, rate int) *Load {
	ctx, cancel := context.WithCancel(context.Background())
	l := &Load{conn: conn, every: time.Second / time.Duration(rate), cancel: cancel, done: make(chan struct{})}
	go l.run(ctx)
	return l
}

func (l *Load) run(ctx context.Context) {
	defer close(l.done)
	tick := time.NewTicker(l.every)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		l.wg.Add(1)
		go func() {
			defer l.wg.Done()
			at := time.Now()
			cctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
			defer cancel()
			pod, err := greeter.Hello(cctx, l.conn, "hi")
			c := Call{At: at, Took: time.Since(at), Pod: pod, Code: "OK"}
			if err != nil {
				st := status.Convert(err)
				c.Pod, c.Code, c.Message = "", st.Code().String(), st.Message()
			}
			l.mu.Lock()
			l.results = append(l.results, c)
			l.mu.Unlock()
		}()
	}
}

// Stop ends the load, waits for calls in flight, and summarises.
func (l *Load) Stop() LoadResult {
	l.cancel()
	<-l.done
	l.wg.Wait()
	l.mu.Lock()
	defer l.mu.Unlock()
	return Summarise(l.results)
}

// Snapshot summarises what has answered so far.
func (l *Load) Snapshot() LoadResult {
	l.mu.Lock()
	defer l.mu.Unlock()
	return Summarise(l.results)
}

// LoadResult is a summary of calls.
type LoadResult struct {
	Total, Failed int
	ByCode        map[string]int
	ByPod         map[string]int
	P50, P99, Max time.Duration
	// Samples are up to five distinct failure messages.
	Samples []string
	Calls   []Call
}

// Summarise counts calls; latency percentiles are over every call.
func Summarise(calls []Call) LoadResult {
	r := LoadResult{Total: len(calls), ByCode: map[string]int{}, ByPod: map[string]int{}, Calls: slices.Clone(calls)}
	var took []time.Duration
	for _, c := range calls {
		r.ByCode[c.Code]++
		took = append(took, c.Took)
		if c.Code == "OK" {
			r.ByPod[c.Pod]++
			continue
		}
		r.Failed++
		msg := c.Code + ": " + c.Message
		if len(r.Samples) < 5 && !slices.Contains(r.Samples, msg) {
			r.Samples = append(r.Samples, msg)
		}
	}
	if len(took) > 0 {
		sort.Slice(took, func(i, j int) bool { return took[i] < took[j] })
		r.P50 = took[len(took)*50/100]
		r.P99 = took[min(len(took)-1, len(took)*99/100)]
		r.Max = took[len(took)-1]
	}
	return r
}

func (r LoadResult) String() string {
	var pods []string
	for p, n := range r.ByPod {
		pods = append(pods, fmt.Sprintf("%s=%d", p, n))
	}
	sort.Strings(pods)
	return fmt.Sprintf("%d calls, %d failed; p50 %s p99 %s max %s; answered by %s",
		r.Total, r.Failed, r.P50.Round(100*time.Microsecond), r.P99.Round(100*time.Microsecond),
		r.Max.Round(time.Millisecond), strings.Join(pods, " "))
}
