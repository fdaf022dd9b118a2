package sidecarstandin

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	cluster "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	core "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	endpoint "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	listener "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	route "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	hcm "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	discovery "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	rpcstatus "google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/structpb"
)

// xDS type URLs the stand-in subscribes to, in the order a sidecar does.
const (
	TypeCDS = "type.googleapis.com/envoy.config.cluster.v3.Cluster"
	TypeEDS = "type.googleapis.com/envoy.config.endpoint.v3.ClusterLoadAssignment"
	TypeLDS = "type.googleapis.com/envoy.config.listener.v3.Listener"
	TypeRDS = "type.googleapis.com/envoy.config.route.v3.RouteConfiguration"

	typeResource = "type.googleapis.com/envoy.service.discovery.v3.Resource"
	typeHCM      = "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager"
)

var typeOrder = []string{TypeCDS, TypeEDS, TypeLDS, TypeRDS}

// ShortType is CDS, EDS, LDS or RDS for a type URL.
func ShortType(typeURL string) string {
	switch typeURL {
	case TypeCDS:
		return "CDS"
	case TypeEDS:
		return "EDS"
	case TypeLDS:
		return "LDS"
	case TypeRDS:
		return "RDS"
	}
	return typeURL
}

// AckMode says what the stand-in does with each DiscoveryResponse.
type AckMode int

const (
	// AckAll applies every response and ACKs it at once.
	AckAll AckMode = iota
	// HoldAcks applies each response (counters, versions, server state
	// move as in Envoy) but keeps the ACK from Pilot until ReleaseAcks or
	// SetMode(AckAll): the window between Envoy accepting config and Pilot
	// seeing the ACK, held open.
	HoldAcks
	// Freeze leaves responses unprocessed: nothing applied, nothing acked.
	// Pilot sees the push STALE; the stand-in's own counters do not move.
	Freeze
)

func (m AckMode) String() string {
	return [...]string{"ack-all", "hold-acks", "freeze"}[m]
}

// Options configure a stand-in.
type Options struct {
	// Pilot is the ADS address, host:port (istiod's plaintext 15010).
	Pilot string
	// NodeID, when set, is the node id presented to Pilot
	// (sidecar~IP~pod.namespace~namespace.svc.cluster.local) and gives
	// the defaults of IP, Pod and Namespace; see ParseNodeID.
	NodeID string
	// Index n gives the defaults for tests: pod app-n, IP PodIP(n).
	Index     int
	Pod       string // default app-<Index>
	Namespace string // default "default"
	IP        string // default PodIP(Index)
	// Labels are the workload's labels (default app=app, version=v1).
	Labels map[string]string
	// Workload is Istio's workload name (WORKLOAD_NAME: the Deployment's
	// name), the destination_workload of the metrics. Default: the app
	// label.
	Workload     string
	IstioVersion string // ISTIO_VERSION metadata, default 1.31.0
	ClusterID    string // CLUSTER_ID metadata, default Kubernetes
	Mode         AckMode
	// AdminAddr is where the admin API listens (default 127.0.0.1:0).
	AdminAddr string
	// Logf, when set, gets one line per state change (connected to
	// Pilot, stream lost, LIVE, a listener opened).
	Logf func(format string, args ...any)
}

// PodIP is test pod n's address: 10.0.0.n for n ≤ 254, then 10.0.1.x, ….
func PodIP(n int) string { return fmt.Sprintf("10.0.%d.%d", n/255, n%255) }

// ParseNodeID splits a sidecar node id,
// sidecar~IP~pod.namespace~namespace.svc.cluster.local, into its IP, pod
// and namespace.
func ParseNodeID(id string) (ip, pod, namespace string, err error) {
	f := strings.Split(id, "~")
	if len(f) != 4 || f[0] != "sidecar" {
		return "", "", "", fmt.Errorf("node id %q is not sidecar~IP~POD.NAMESPACE~NAMESPACE.svc.cluster.local", id)
	}
	if net.ParseIP(f[1]) == nil {
		return "", "", "", fmt.Errorf("node id %q: %q is not an IP address", id, f[1])
	}
	pod, namespace, ok := strings.Cut(f[2], ".")
	if !ok || pod == "" || namespace == "" || strings.Contains(namespace, ".") {
		return "", "", "", fmt.Errorf("node id %q: %q is not POD.NAMESPACE", id, f[2])
	}
	return f[1], pod, namespace, nil
}

// DataPlane is the data-plane stand-in: an ADS client (go-control-plane
// discovery/v3 over grpc) that subscribes as a sidecar does — CDS, then EDS
// for the EDS clusters, then LDS once clusters are initialised, then RDS for
// the routes the listeners name — and ACKs, NACKs or holds responses on
// command; and an admin API answering /stats, /server_info, /config_dump,
// /ready and the POST mutations in Envoy's formats, from what it really
// received and accepted. It is not Envoy.
type DataPlane struct {
	o      Options
	nodeID string
	node   *core.Node

	adminURL string
	admin    *http.Server
	conn     *grpc.ClientConn
	ctx      context.Context
	cancel   context.CancelFunc
	done     chan struct{}
	started  time.Time

	mu        sync.Mutex
	stream    discovery.AggregatedDiscoveryService_StreamAggregatedResourcesClient
	sentNode  bool
	mode      AckMode
	metrics   *istioMetrics
	nacks     []nackCmd
	pending   []*discovery.DiscoveryResponse // unprocessed (Freeze)
	held      map[string]*discovery.DiscoveryRequest
	subs      map[string]*subscription
	state     int // server.state: 0 LIVE, 1 DRAINING, 2 PRE_INITIALIZING, 3 INITIALIZING
	stateSet  bool
	workers   bool
	hcFailed  bool
	connected bool
	connects  int
	inbound   Inbound
	inPorts   map[int]*Inbound // per ServeInbound port: its HCM's requests
	posts     []string
	adminReqs map[string]int
	changed   chan struct{}
	closed    bool
	traffic   []*http.Server // inbound/outbound listeners (dataplane_traffic.go)
	rr        uint64         // outbound round-robin position
	// outCluster is ServeOutbound's cluster; outSeen the number of healthy
	// endpoints last logged for it (-1: none yet).
	outCluster string
	outSeen    int
}

type nackCmd struct{ typeURL, msg string }

// subscription is one xDS type as the stand-in holds it.
type subscription struct {
	typeURL   string
	requested bool
	names     []string // nil: wildcard (CDS, LDS)

	recvVersion, recvNonce string // last response received (processed or not)
	received               uint64

	version    string // version_info of the last accepted response ("" before)
	nonce      string // nonce of the last processed response (ACKed or NACKed)
	attempt    uint64
	success    uint64
	rejected   uint64
	updateTime time.Time
	lastError  string
	rejectedAt time.Time
	initDone   bool

	resources map[string]resource // accepted
	rejects   []string            // names in the last rejected response
}

type resource struct {
	name    string
	version string
	updated time.Time
	eds     string    // CDS: the EDS service name, "" when not an EDS cluster
	svcs    []Service // CDS: the services of an inbound cluster (its istio metadata)
	rds     []string  // LDS: route configs it names
	addrs   []string  // EDS: host:port of each endpoint Envoy would route to
}

// Inbound is the inbound traffic the stand-in reports, as Istio's
// virtualInbound listener (0.0.0.0_15006) and inbound HTTP connection
// managers do: one per ServeInbound port (inbound_0.0.0.0_PORT), or, with
// no ServeInbound, the one of port 8080 holding what SetInbound set.
type Inbound struct {
	ActiveConnections uint64
	ActiveRequests    uint64
	TotalRequests     uint64
}

// Start starts the admin API and the ADS client. The stand-in
// starts PRE_INITIALIZING and turns LIVE when its first CDS, EDS, LDS and
// RDS responses are processed (accepted or rejected: Envoy lets startup
// continue on a rejected config).
func Start(o Options) (*DataPlane, error) {
	if o.Pilot == "" {
		return nil, errors.New("Options.Pilot: the ADS address is required")
	}
	if o.NodeID != "" {
		ip, pod, ns, err := ParseNodeID(o.NodeID)
		if err != nil {
			return nil, err
		}
		if o.IP == "" {
			o.IP = ip
		}
		if o.Pod == "" {
			o.Pod = pod
		}
		if o.Namespace == "" {
			o.Namespace = ns
		}
	}
	if o.Index <= 0 {
		o.Index = 1
	}
	if o.Pod == "" {
		o.Pod = fmt.Sprintf("app-%d", o.Index)
	}
	if o.Namespace == "" {
		o.Namespace = "default"
	}
	if o.IP == "" {
		o.IP = PodIP(o.Index)
	}
	if o.Labels == nil {
		o.Labels = map[string]string{"app": "app", "version": "v1"}
	}
	if o.IstioVersion == "" {
		o.IstioVersion = "1.31.0"
	}
	if o.ClusterID == "" {
		o.ClusterID = "Kubernetes"
	}
	if o.AdminAddr == "" {
		o.AdminAddr = "127.0.0.1:0"
	}
	if o.Workload == "" {
		o.Workload = o.Labels["app"]
	}
	if o.Logf == nil {
		o.Logf = func(string, ...any) {}
	}
	nodeID := o.NodeID
	if nodeID == "" {
		nodeID = fmt.Sprintf("sidecar~%s~%s.%s~%s.svc.cluster.local", o.IP, o.Pod, o.Namespace, o.Namespace)
	}
	d := &DataPlane{
		o:         o,
		nodeID:    nodeID,
		metrics:   newIstioMetrics(),
		mode:      o.Mode,
		held:      map[string]*discovery.DiscoveryRequest{},
		subs:      map[string]*subscription{},
		state:     2,
		adminReqs: map[string]int{},
		changed:   make(chan struct{}),
		done:      make(chan struct{}),
		started:   time.Now(),
		outSeen:   -1,
	}
	for _, t := range typeOrder {
		d.subs[t] = &subscription{typeURL: t, resources: map[string]resource{}}
	}
	node, err := d.buildNode()
	if err != nil {
		return nil, err
	}
	d.node = node

	l, err := net.Listen("tcp", o.AdminAddr)
	if err != nil {
		return nil, fmt.Errorf("stand-in admin listener: %w", err)
	}
	d.adminURL = "http://" + l.Addr().String()
	d.admin = &http.Server{Handler: http.HandlerFunc(d.serveAdmin), ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = d.admin.Serve(l) }()

	conn, err := grpc.NewClient(o.Pilot, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		_ = d.admin.Close()
		return nil, fmt.Errorf("stand-in ADS client: %w", err)
	}
	d.conn = conn
	d.ctx, d.cancel = context.WithCancel(context.Background())
	go d.run()
	return d, nil
}

func (d *DataPlane) buildNode() (*core.Node, error) {
	labels := map[string]any{}
	for k, v := range d.o.Labels {
		labels[k] = v
	}
	meta, err := structpb.NewStruct(map[string]any{
		"ISTIO_VERSION":     d.o.IstioVersion,
		"CLUSTER_ID":        d.o.ClusterID,
		"NAMESPACE":         d.o.Namespace,
		"PROXY_CONFIG":      map[string]any{},
		"LABELS":            labels,
		"INTERCEPTION_MODE": "REDIRECT",
		"INSTANCE_IPS":      d.o.IP,
		"WORKLOAD_NAME":     d.o.Workload,
		"SERVICE_ACCOUNT":   "default",
		"NODE_NAME":         "node-1",
		"APP_CONTAINERS":    d.o.Labels["app"],
	})
	if err != nil {
		return nil, fmt.Errorf("node metadata: %w", err)
	}
	return &core.Node{
		Id:            d.nodeID,
		Cluster:       d.o.Labels["app"] + "." + d.o.Namespace,
		Metadata:      meta,
		UserAgentName: "meshready-sidecar-standin",
	}, nil
}

// NodeID is the node id the stand-in presents:
// sidecar~IP~pod.namespace~namespace.svc.cluster.local.
func (d *DataPlane) NodeID() string { return d.nodeID }

// ProxyID is pod.namespace, the id Pilot lists it under.
func (d *DataPlane) ProxyID() string { return d.o.Pod + "." + d.o.Namespace }

// AdminURL is the admin API base, e.g. http://127.0.0.1:41234.
func (d *DataPlane) AdminURL() string { return d.adminURL }

// Done is closed once the stand-in has stopped: Close, or POST
// /quitquitquit on its admin API.
func (d *DataPlane) Done() <-chan struct{} { return d.done }

// Close ends the ADS stream and the admin API.
func (d *DataPlane) Close() {
	d.mu.Lock()
	if d.closed {
		d.mu.Unlock()
		return
	}
	d.closed = true
	d.notifyLocked()
	d.mu.Unlock()
	d.cancel()
	<-d.done
	_ = d.conn.Close()
	_ = d.admin.Close()
	d.closeTraffic()
}

// run keeps one ADS stream up, reconnecting with backoff as Envoy does.
func (d *DataPlane) run() {
	defer close(d.done)
	ads := discovery.NewAggregatedDiscoveryServiceClient(d.conn)
	backoff := 50 * time.Millisecond
	var lastErr string
	for d.ctx.Err() == nil {
		stream, err := ads.StreamAggregatedResources(d.ctx)
		if err == nil {
			began := time.Now()
			d.mu.Lock()
			d.stream, d.sentNode, d.connected = stream, false, true
			d.connects++
			d.o.Logf("ADS stream to %s open (connection %d)", d.o.Pilot, d.connects)
			d.requestAllLocked()
			d.notifyLocked()
			d.mu.Unlock()
			for {
				resp, err := stream.Recv()
				if err != nil {
					if d.ctx.Err() == nil {
						d.o.Logf("ADS stream to %s lost: %v", d.o.Pilot, err)
					}
					break
				}
				d.mu.Lock()
				d.handleLocked(resp)
				d.mu.Unlock()
			}
			d.mu.Lock()
			d.stream, d.connected = nil, false
			// Held ACKs and unprocessed responses belong to the old
			// stream; Pilot resends on the new one.
			clear(d.held)
			d.pending = nil
			d.notifyLocked()
			d.mu.Unlock()
			if time.Since(began) > 2*time.Second {
				backoff = 50 * time.Millisecond
			}
		}
		if err != nil && d.ctx.Err() == nil && err.Error() != lastErr {
			// Once per distinct error, not once per retry.
			d.o.Logf("ADS stream to %s failed: %v; retrying every ≤1s", d.o.Pilot, err)
		}
		if err != nil {
			lastErr = err.Error()
		} else {
			lastErr = ""
		}
		select {
		case <-d.ctx.Done():
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, time.Second)
	}
}

// requestAllLocked sends the initial requests of a stream: CDS alone on the
// first connection; on a reconnect every type already subscribed, with the
// versions accepted so far, as Envoy does.
func (d *DataPlane) requestAllLocked() {
	for _, t := range typeOrder {
		s := d.subs[t]
		if t == TypeCDS || s.requested {
			s.requested = true
			d.sendLocked(&discovery.DiscoveryRequest{TypeUrl: t, VersionInfo: s.version, ResourceNames: s.names})
		}
	}
}

func (d *DataPlane) sendLocked(req *discovery.DiscoveryRequest) {
	if d.stream == nil {
		return
	}
	if !d.sentNode {
		req.Node = d.node
		d.sentNode = true
	}
	_ = d.stream.Send(req) // a broken stream shows in Recv
}

func (d *DataPlane) handleLocked(resp *discovery.DiscoveryResponse) {
	s := d.subs[resp.GetTypeUrl()]
	if s == nil {
		return // a type never asked for
	}
	s.received++
	s.recvVersion, s.recvNonce = resp.GetVersionInfo(), resp.GetNonce()
	if d.mode == Freeze {
		d.pending = append(d.pending, resp)
		d.notifyLocked()
		return
	}
	d.processLocked(resp)
	d.notifyLocked()
}

// processLocked applies or rejects one response and answers Pilot.
func (d *DataPlane) processLocked(resp *discovery.DiscoveryResponse) {
	s := d.subs[resp.GetTypeUrl()]
	s.attempt++
	now := time.Now()
	decoded, names, decodeErr := decodeResources(resp)
	msg, nack := d.takeNackLocked(resp.GetTypeUrl())
	if decodeErr != nil && !nack {
		msg, nack = decodeErr.Error(), true
	}
	if nack {
		s.rejected++
		s.lastError, s.rejectedAt = msg, now
		s.nonce = resp.GetNonce()
		s.rejects = names
		s.initDone = true // Envoy lets startup continue on a rejected config
		d.o.Logf("rejected %s version %q: %s", ShortType(s.typeURL), resp.GetVersionInfo(), msg)
		delete(d.held, s.typeURL)
		// A NACK carries the last accepted version and the rejected nonce.
		d.sendLocked(&discovery.DiscoveryRequest{
			TypeUrl: s.typeURL, VersionInfo: s.version, ResponseNonce: resp.GetNonce(), ResourceNames: s.names,
			ErrorDetail: &rpcstatus.Status{Code: int32(codes.InvalidArgument), Message: msg},
		})
		d.advanceLocked()
		return
	}
	for i := range decoded {
		decoded[i].version, decoded[i].updated = resp.GetVersionInfo(), now
	}
	if s.names == nil {
		// CDS, LDS: a state-of-the-world response holds every resource.
		s.resources = make(map[string]resource, len(decoded))
	} else {
		// EDS, RDS: a response may carry only what changed; the rest of
		// what is subscribed stays (xDS protocol, SotW for non-wildcard
		// types). Names no longer subscribed go.
		kept := make(map[string]resource, len(s.names))
		for _, n := range s.names {
			if r, ok := s.resources[n]; ok {
				kept[n] = r
			}
		}
		s.resources = kept
	}
	for _, r := range decoded {
		s.resources[r.name] = r
	}
	if s.typeURL == TypeEDS && d.outCluster != "" {
		if r, ok := s.resources[d.outCluster]; ok && len(r.addrs) != d.outSeen {
			d.outSeen = len(r.addrs)
			d.o.Logf("EDS version %q: %s has %d healthy endpoints %v", resp.GetVersionInfo(), d.outCluster, len(r.addrs), r.addrs)
		}
	}
	s.version, s.nonce = resp.GetVersionInfo(), resp.GetNonce()
	s.success++
	s.updateTime, s.lastError, s.rejects = now, "", nil
	s.initDone = true
	ack := &discovery.DiscoveryRequest{TypeUrl: s.typeURL, VersionInfo: s.version, ResponseNonce: s.nonce, ResourceNames: s.names}
	if d.mode == HoldAcks {
		d.held[s.typeURL] = ack
	} else {
		d.sendLocked(ack)
	}
	d.advanceLocked()
}

func (d *DataPlane) takeNackLocked(typeURL string) (string, bool) {
	for i, n := range d.nacks {
		if n.typeURL == "" || n.typeURL == typeURL {
			d.nacks = slices.Delete(d.nacks, i, i+1)
			return n.msg, true
		}
	}
	return "", false
}

// advanceLocked follows the sidecar's subscription order and moves the
// server state.
func (d *DataPlane) advanceLocked() {
	cds, eds, lds, rds := d.subs[TypeCDS], d.subs[TypeEDS], d.subs[TypeLDS], d.subs[TypeRDS]
	if cds.initDone {
		d.resubscribeLocked(eds, edsNames(cds.resources))
	}
	// As Envoy's cluster manager: every EDS cluster warms until its own
	// ClusterLoadAssignment arrives (Istio sets the EDS initial_fetch_timeout
	// to 0: no timeout), even an empty one; a rejected EDS response lets
	// startup continue. The first EDS response may not name every cluster
	// (istiod answers a subscription that grew with the new names only).
	clustersReady := cds.initDone && (len(eds.names) == 0 || (eds.initDone && (eds.rejected > 0 || edsWarm(eds) == 0)))
	if clustersReady && !lds.requested {
		lds.requested = true
		d.sendLocked(&discovery.DiscoveryRequest{TypeUrl: TypeLDS})
	}
	if lds.initDone {
		d.resubscribeLocked(rds, rdsNames(lds.resources))
	}
	listenersReady := lds.initDone && (len(rds.names) == 0 || rds.initDone)
	if !d.stateSet && d.state != 0 && clustersReady && listenersReady {
		d.state, d.workers = 0, true
		d.o.Logf("LIVE: CDS %q, LDS %q accepted, %d clusters, %d listeners", cds.version, lds.version, len(cds.resources), len(lds.resources))
	}
}

// resubscribeLocked asks for a new set of names of a non-wildcard type, as
// Envoy does when clusters or listeners change what they need.
func (d *DataPlane) resubscribeLocked(s *subscription, names []string) {
	if slices.Equal(s.names, names) && (s.requested || len(names) == 0) {
		return
	}
	s.names = names
	if !s.requested {
		if len(names) == 0 {
			return
		}
		s.requested = true
		d.sendLocked(&discovery.DiscoveryRequest{TypeUrl: s.typeURL, ResourceNames: names})
		return
	}
	if h := d.held[s.typeURL]; h != nil {
		// The request carries the nonce, so it is the ACK too: hold it.
		h.ResourceNames = names
		return
	}
	d.sendLocked(&discovery.DiscoveryRequest{TypeUrl: s.typeURL, VersionInfo: s.version, ResponseNonce: s.nonce, ResourceNames: names})
}

// edsWarm counts the subscribed EDS clusters no assignment has come for.
func edsWarm(eds *subscription) int {
	n := 0
	for _, name := range eds.names {
		if _, ok := eds.resources[name]; !ok {
			n++
		}
	}
	return n
}

func edsNames(clusters map[string]resource) []string {
	var n []string
	for _, r := range clusters {
		if r.eds != "" {
			n = append(n, r.eds)
		}
	}
	sort.Strings(n)
	return slices.Compact(n)
}

func rdsNames(listeners map[string]resource) []string {
	var n []string
	for _, r := range listeners {
		n = append(n, r.rds...)
	}
	sort.Strings(n)
	return slices.Compact(n)
}

// decodeResources reads names (and what the next subscription needs) from
// a response. An undecodable resource is an error: the stand-in NACKs it,
// as Envoy would.
func decodeResources(resp *discovery.DiscoveryResponse) ([]resource, []string, error) {
	var out []resource
	var names []string
	for _, a := range resp.GetResources() {
		if a.GetTypeUrl() == typeResource {
			var wrapped discovery.Resource
			if err := a.UnmarshalTo(&wrapped); err != nil {
				return nil, names, fmt.Errorf("resource wrapper: %v", err)
			}
			a = wrapped.GetResource()
		}
		r, err := decodeOne(a)
		if err != nil {
			return nil, names, err
		}
		names = append(names, r.name)
		out = append(out, r)
	}
	return out, names, nil
}

func decodeOne(a *anypb.Any) (resource, error) {
	switch a.GetTypeUrl() {
	case TypeCDS:
		var c cluster.Cluster
		if err := a.UnmarshalTo(&c); err != nil {
			return resource{}, fmt.Errorf("cluster: %v", err)
		}
		r := resource{name: c.GetName(), svcs: telemetryServices(&c)}
		if c.GetType() == cluster.Cluster_EDS {
			r.eds = c.GetEdsClusterConfig().GetServiceName()
			if r.eds == "" {
				r.eds = c.GetName()
			}
		}
		return r, nil
	case TypeLDS:
		var l listener.Listener
		if err := a.UnmarshalTo(&l); err != nil {
			return resource{}, fmt.Errorf("listener: %v", err)
		}
		r := resource{name: l.GetName()}
		chains := append(slices.Clone(l.GetFilterChains()), l.GetDefaultFilterChain())
		for _, fc := range chains {
			for _, f := range fc.GetFilters() {
				tc := f.GetTypedConfig()
				if tc.GetTypeUrl() != typeHCM {
					continue
				}
				var h hcm.HttpConnectionManager
				if err := tc.UnmarshalTo(&h); err != nil {
					return resource{}, fmt.Errorf("listener %s: http connection manager: %v", l.GetName(), err)
				}
				if n := h.GetRds().GetRouteConfigName(); n != "" {
					r.rds = append(r.rds, n)
				}
			}
		}
		return r, nil
	case TypeRDS:
		var rc route.RouteConfiguration
		if err := a.UnmarshalTo(&rc); err != nil {
			return resource{}, fmt.Errorf("route configuration: %v", err)
		}
		return resource{name: rc.GetName()}, nil
	case TypeEDS:
		var cla endpoint.ClusterLoadAssignment
		if err := a.UnmarshalTo(&cla); err != nil {
			return resource{}, fmt.Errorf("cluster load assignment: %v", err)
		}
		r := resource{name: cla.GetClusterName()}
		for _, loc := range cla.GetEndpoints() {
			for _, lb := range loc.GetLbEndpoints() {
				// Envoy routes to HEALTHY and UNKNOWN hosts only.
				if h := lb.GetHealthStatus(); h != core.HealthStatus_UNKNOWN && h != core.HealthStatus_HEALTHY {
					continue
				}
				sa := lb.GetEndpoint().GetAddress().GetSocketAddress()
				if sa.GetAddress() != "" {
					r.addrs = append(r.addrs, net.JoinHostPort(sa.GetAddress(), strconv.Itoa(int(sa.GetPortValue()))))
				}
			}
		}
		return r, nil
	}
	return resource{name: a.GetTypeUrl()}, nil
}

// Service is a Kubernetes Service as Pilot names it in a cluster's
// telemetry metadata (filter_metadata "istio", field "services"): what
// Istio's stats filter reads for destination_service,
// destination_service_name and destination_service_namespace.
type Service struct{ Host, Name, Namespace string }

func telemetryServices(c *cluster.Cluster) []Service {
	im := c.GetMetadata().GetFilterMetadata()["istio"]
	var out []Service
	for _, v := range im.GetFields()["services"].GetListValue().GetValues() {
		f := v.GetStructValue().GetFields()
		out = append(out, Service{Host: f["host"].GetStringValue(), Name: f["name"].GetStringValue(), Namespace: f["namespace"].GetStringValue()})
	}
	return out
}

// InboundServices are the services Pilot attached to the inbound cluster
// of port (inbound|PORT||) in the CDS the stand-in accepted.
func (d *DataPlane) InboundServices(port int) []Service {
	d.mu.Lock()
	defer d.mu.Unlock()
	return slices.Clone(d.subs[TypeCDS].resources[inboundCluster(port)].svcs)
}

func inboundCluster(port int) string { return "inbound|" + strconv.Itoa(port) + "||" }

// SetMode switches what the stand-in does with responses. Leaving Freeze
// processes the responses it sat on, in order; AckAll also sends every held
// ACK.
func (d *DataPlane) SetMode(m AckMode) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.mode = m
	if m != Freeze {
		pending := d.pending
		d.pending = nil
		for _, resp := range pending {
			d.processLocked(resp)
		}
	}
	if m == AckAll {
		d.releaseLocked()
	}
	d.notifyLocked()
}

// Mode is the current mode.
func (d *DataPlane) Mode() AckMode {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.mode
}

// ReleaseAcks sends the ACKs HoldAcks kept, CDS first; the mode stays.
func (d *DataPlane) ReleaseAcks() {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.releaseLocked()
	d.notifyLocked()
}

func (d *DataPlane) releaseLocked() {
	for _, t := range typeOrder {
		if req := d.held[t]; req != nil {
			delete(d.held, t)
			d.sendLocked(req)
		}
	}
}

// NackNext makes the next response of typeURL ("" for any type) rejected:
// the stand-in answers with ErrorDetail set and its previous version, its
// update_rejected counter rises, and what it serves does not change.
func (d *DataPlane) NackNext(typeURL, message string) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if message == "" {
		message = "stand-in rejected this push on command"
	}
	d.nacks = append(d.nacks, nackCmd{typeURL: typeURL, msg: message})
}

// SetState overrides server.state (0 LIVE, 1 DRAINING, 2
// PRE_INITIALIZING, 3 INITIALIZING); from then on xDS no longer moves it.
func (d *DataPlane) SetState(state int, workersStarted bool) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.state, d.workers, d.stateSet = state, workersStarted, true
	d.notifyLocked()
}

// SetInbound sets the inbound traffic the stats report.
func (d *DataPlane) SetInbound(in Inbound) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.inbound = in
}

// Posts lists the POSTs the admin API received (path?query), in order.
func (d *DataPlane) Posts() []string {
	d.mu.Lock()
	defer d.mu.Unlock()
	return slices.Clone(d.posts)
}

// AdminRequests counts admin API requests by path.
func (d *DataPlane) AdminRequests() map[string]int {
	d.mu.Lock()
	defer d.mu.Unlock()
	m := make(map[string]int, len(d.adminReqs))
	for k, v := range d.adminReqs {
		m[k] = v
	}
	return m
}

// TypeSnapshot is one xDS type as the stand-in holds it.
type TypeSnapshot struct {
	Type       string // CDS, EDS, LDS, RDS
	Subscribed bool
	Names      []string // requested names (nil: wildcard)
	// Received is the last response that arrived, processed or not.
	ReceivedVersion, ReceivedNonce string
	Responses                      uint64
	// Accepted is the version_info of the last accepted response.
	Accepted          string
	Nonce             string // nonce of the last processed response
	Attempts          uint64
	Successes         uint64
	Rejections        uint64
	LastError         string
	Resources         []string
	HeldAck, Unacked  bool // an ACK is held (HoldAcks); responses wait unprocessed (Freeze)
	LastUpdate        time.Time
	InitialFetchReady bool
}

// Snapshot is the stand-in's state.
type Snapshot struct {
	State          int
	WorkersStarted bool
	Connected      bool
	Connects       int
	Mode           AckMode
	Types          map[string]TypeSnapshot // by short name
}

// Live says server.state is LIVE with workers started.
func (s Snapshot) Live() bool { return s.State == 0 && s.WorkersStarted }

// String describes a snapshot in one line, for failure messages.
func (s Snapshot) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "state=%d workers=%v connected=%v mode=%s", s.State, s.WorkersStarted, s.Connected, s.Mode)
	for _, t := range []string{"CDS", "EDS", "LDS", "RDS"} {
		ts := s.Types[t]
		fmt.Fprintf(&b, " %s{acc=%s ok=%d rej=%d held=%v unacked=%v}", t, ts.Accepted, ts.Successes, ts.Rejections, ts.HeldAck, ts.Unacked)
	}
	return b.String()
}

// Snapshot returns the current state.
func (d *DataPlane) Snapshot() Snapshot {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.snapshotLocked()
}

func (d *DataPlane) snapshotLocked() Snapshot {
	s := Snapshot{State: d.state, WorkersStarted: d.workers, Connected: d.connected, Connects: d.connects, Mode: d.mode, Types: map[string]TypeSnapshot{}}
	unacked := map[string]bool{}
	for _, r := range d.pending {
		unacked[r.GetTypeUrl()] = true
	}
	for _, t := range typeOrder {
		sub := d.subs[t]
		ts := TypeSnapshot{
			Type: ShortType(t), Subscribed: sub.requested, Names: slices.Clone(sub.names),
			ReceivedVersion: sub.recvVersion, ReceivedNonce: sub.recvNonce, Responses: sub.received,
			Accepted: sub.version, Nonce: sub.nonce, Attempts: sub.attempt, Successes: sub.success,
			Rejections: sub.rejected, LastError: sub.lastError, HeldAck: d.held[t] != nil, Unacked: unacked[t],
			LastUpdate: sub.updateTime, InitialFetchReady: sub.initDone,
		}
		for n := range sub.resources {
			ts.Resources = append(ts.Resources, n)
		}
		sort.Strings(ts.Resources)
		s.Types[ts.Type] = ts
	}
	return s
}

// WaitFor blocks until cond holds for the stand-in's state or ctx ends.
func (d *DataPlane) WaitFor(ctx context.Context, cond func(Snapshot) bool) (Snapshot, error) {
	for {
		d.mu.Lock()
		s := d.snapshotLocked()
		ch := d.changed
		closed := d.closed
		d.mu.Unlock()
		if cond(s) {
			return s, nil
		}
		if closed {
			return s, errors.New("stand-in closed")
		}
		select {
		case <-ctx.Done():
			return s, fmt.Errorf("waiting for the stand-in %s: %w", d.ProxyID(), ctx.Err())
		case <-ch:
		}
	}
}

func (d *DataPlane) notifyLocked() {
	close(d.changed)
	d.changed = make(chan struct{})
}
