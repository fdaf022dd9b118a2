package pilotclient

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"math/big"
	"net"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	adminv3 "github.com/envoyproxy/go-control-plane/envoy/admin/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	statusv3 "github.com/envoyproxy/go-control-plane/envoy/service/status/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/structpb"
	"google.golang.org/protobuf/types/known/timestamppb"
)

const (
	cdsURL = "type.googleapis.com/envoy.config.cluster.v3.Cluster"
	ldsURL = "type.googleapis.com/envoy.config.listener.v3.Listener"
	rdsURL = "type.googleapis.com/envoy.config.route.v3.RouteConfiguration"
	edsURL = "type.googleapis.com/envoy.config.endpoint.v3.ClusterLoadAssignment"
)

var sentAt = time.Date(2026, 11, 30, 19, 11, 23, 815493738, time.UTC)

// istiodClientConfig builds what current istiod's debugSyncz
// (pilot/pkg/xds/statusgen.go) sends for one proxy.
func istiodClientConfig(t testing.TB, proxyID string, states map[string]statusv3.ConfigStatus, nack string) *statusv3.ClientConfig {
	meta, err := structpb.NewStruct(map[string]any{"CLUSTER_ID": "Kubernetes", "NAMESPACE": namespaceOf(proxyID), "ISTIO_VERSION": "1.31.0"})
	if err != nil {
		t.Fatal(err)
	}
	cc := &statusv3.ClientConfig{Node: &corev3.Node{Id: proxyID, Metadata: meta}}
	urls := slices.Sorted(func(yield func(string) bool) {
		for u := range states {
			if !yield(u) {
				return
			}
		}
	})
	for _, u := range urls {
		g := &statusv3.ClientConfig_GenericXdsConfig{TypeUrl: u, ConfigStatus: states[u], LastUpdated: timestamppb.New(sentAt)}
		if states[u] == statusv3.ConfigStatus_ERROR {
			g.ErrorState = &adminv3.UpdateFailureState{LastUpdateAttempt: timestamppb.New(sentAt), Details: nack}
		}
		if states[u] == statusv3.ConfigStatus_NOT_SENT {
			g.LastUpdated = timestamppb.New(time.Time{}) // Pilot's zero LastSendTime
		}
		cc.GenericXdsConfigs = append(cc.GenericXdsConfigs, g)
	}
	return cc
}

// oldIstiodClientConfig is what istiod 1.10–1.1x sent: the deprecated
// xds_config, one PerXdsConfig per type with an empty oneof wrapper.
func oldIstiodClientConfig(proxyID string) *statusv3.ClientConfig {
	return &statusv3.ClientConfig{
		Node: &corev3.Node{Id: proxyID},
		XdsConfig: []*statusv3.PerXdsConfig{
			{Status: statusv3.ConfigStatus_SYNCED, PerXdsConfig: &statusv3.PerXdsConfig_ListenerConfig{}},
			{Status: statusv3.ConfigStatus_NOT_SENT, PerXdsConfig: &statusv3.PerXdsConfig_RouteConfig{}},
			{Status: statusv3.ConfigStatus_SYNCED, PerXdsConfig: &statusv3.PerXdsConfig_EndpointConfig{}},
			{Status: statusv3.ConfigStatus_STALE, PerXdsConfig: &statusv3.PerXdsConfig_ClusterConfig{ClusterConfig: &adminv3.ClustersConfigDump{VersionInfo: "v"}}},
		},
	}
}

func synczResponse(t testing.TB, ccs ...*statusv3.ClientConfig) *discoveryv3.DiscoveryResponse {
	resp := &discoveryv3.DiscoveryResponse{
		TypeUrl: TypeDebugSyncz, VersionInfo: "2026-11-30T19:11:18Z/3", Nonce: "n-1",
		ControlPlane: &corev3.ControlPlane{Identifier: `{"Component":"istiod","ID":"istiod-1"}`},
	}
	for _, cc := range ccs {
		resp.Resources = append(resp.Resources, mustAny(t, cc))
	}
	return resp
}

func TestCodec_RequestDecodesWithRealType(t *testing.T) {
	t.Parallel()
	const id = "sidecar~10.0.0.7~meshready_app-1_default~default.svc.cluster.local"
	b := encodeDiscoveryRequest(id, [][2]string{{"GENERATOR", "event"}, {"NAMESPACE", "default"}, {"ISTIO_VERSION", istioctlVersion}}, TypeDebugSyncz)
	var req discoveryv3.DiscoveryRequest
	if err := proto.Unmarshal(b, &req); err != nil {
		t.Fatal(err)
	}
	if req.GetNode().GetId() != id || req.GetTypeUrl() != TypeDebugSyncz || req.GetResponseNonce() != "" || req.GetVersionInfo() != "" || len(req.GetResourceNames()) != 0 {
		t.Errorf("%v", &req)
	}
	f := req.GetNode().GetMetadata().GetFields()
	if len(f) != 3 || f["GENERATOR"].GetStringValue() != "event" || f["NAMESPACE"].GetStringValue() != "default" || f["ISTIO_VERSION"].GetStringValue() != istioctlVersion {
		t.Errorf("metadata %v", f)
	}
	// And byte for byte what the generated type encodes (deterministic, fields in order).
	again, err := proto.MarshalOptions{Deterministic: true}.Marshal(&req)
	if err != nil || len(again) != len(b) {
		t.Errorf("re-encoded %d bytes, ours %d", len(again), len(b))
	}
}

func TestCodec_ResponseFromRealTypes(t *testing.T) {
	t.Parallel()
	resp := syncZResponseMixed(t)
	b, err := proto.Marshal(resp)
	if err != nil {
		t.Fatal(err)
	}
	dr, err := decodeDiscoveryResponse(b)
	if err != nil {
		t.Fatal(err)
	}
	if dr.typeURL != TypeDebugSyncz || dr.versionInfo != "2026-11-30T19:11:18Z/3" || dr.nonce != "n-1" || len(dr.resources) != 4 {
		t.Fatalf("%+v", dr)
	}
	got := map[string]ProxyStatus{}
	for _, r := range dr.resources {
		if r.typeURL != clientConfigURL {
			t.Errorf("resource type %q", r.typeURL)
		}
		cc, err := decodeClientConfig(r.value)
		if err != nil {
			t.Fatal(err)
		}
		got[cc.nodeID] = cc.status()
	}

	a := got["app-1.default"]
	if !a.Synced() || a.ClusterID != "Kubernetes" || a.IstioVersion != "1.31.0" || a.Source != SourceXDS {
		t.Errorf("app-1 %+v", a)
	}
	if ty := types(a); !slices.Equal(ty, []string{"CDS", "LDS", "EDS", "RDS"}) {
		t.Errorf("app-1 types %v", ty)
	}
	for _, ty := range a.Types {
		if !ty.SentAt.Equal(sentAt) || ty.Sent != "" || ty.SentVersion != "" {
			t.Errorf("app-1 %+v", ty)
		}
	}

	b2 := got["app-2.default"]
	c, _ := b2.Type("CDS")
	l, _ := b2.Type("LDS")
	r, _ := b2.Type("RDS")
	if c.State != StateStale || l.State != StateError || l.Error != "listener 0.0.0.0_80: bad filter" || r.State != StateNotSent || !r.SentAt.IsZero() || b2.Synced() {
		t.Errorf("app-2 %+v", b2)
	}

	old := got["old-1.default"]
	if ty := types(old); !slices.Equal(ty, []string{"CDS", "LDS", "EDS", "RDS"}) {
		t.Fatalf("old types %v", ty)
	}
	if c, _ := old.Type("CDS"); c.State != StateStale {
		t.Errorf("old CDS %+v", c)
	}
	if r, _ := old.Type("RDS"); r.State != StateNotSent {
		t.Errorf("old RDS %+v", r)
	}

	if u := got["unknown-1.default"]; len(u.Types) != 1 || u.Types[0].State != StateUnknown || u.Synced() {
		t.Errorf("unknown %+v", u)
	}
}

func syncZResponseMixed(t testing.TB) *discoveryv3.DiscoveryResponse {
	S, ST, NS, E := statusv3.ConfigStatus_SYNCED, statusv3.ConfigStatus_STALE, statusv3.ConfigStatus_NOT_SENT, statusv3.ConfigStatus_ERROR
	return synczResponse(t,
		istiodClientConfig(t, "app-1.default", map[string]statusv3.ConfigStatus{cdsURL: S, ldsURL: S, rdsURL: S, edsURL: S}, ""),
		istiodClientConfig(t, "app-2.default", map[string]statusv3.ConfigStatus{cdsURL: ST, ldsURL: E, rdsURL: NS}, "listener 0.0.0.0_80: bad filter"),
		oldIstiodClientConfig("old-1.default"),
		istiodClientConfig(t, "unknown-1.default", map[string]statusv3.ConfigStatus{cdsURL: statusv3.ConfigStatus(9)}, ""),
	)
}

// cert is a self-signed certificate for a test TLS server.
type cert struct {
	tls tls.Certificate
	pem string
}

func newCert(t testing.TB, cn string) cert {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: cn},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(time.Hour),
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
		IsCA:                  true,
		DNSNames:              []string{"istiod.istio-system.svc"},
		IPAddresses:           []net.IP{net.IPv4(127, 0, 0, 1)},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	return cert{
		tls: tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key},
		pem: string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})),
	}
}

// adsServer is a real gRPC ADS server (go-control-plane's generated service)
// that answers istio.io/debug/syncz the way istiod does, or fails the way
// istiod does.
type adsServer struct {
	discoveryv3.UnimplementedAggregatedDiscoveryServiceServer
	respond func(*discoveryv3.DiscoveryRequest) (*discoveryv3.DiscoveryResponse, error)
	hold    time.Duration // answer only after this long

	streams atomic.Int64
	mu      sync.Mutex
	reqs    []*discoveryv3.DiscoveryRequest
	auth    [][]string
	ctype   [][]string
}

func (s *adsServer) StreamAggregatedResources(stream discoveryv3.AggregatedDiscoveryService_StreamAggregatedResourcesServer) error {
	s.streams.Add(1)
	md, _ := metadata.FromIncomingContext(stream.Context())
	req, err := stream.Recv()
	if err != nil {
		return err
	}
	s.mu.Lock()
	s.reqs = append(s.reqs, req)
	s.auth = append(s.auth, md.Get("authorization"))
	s.ctype = append(s.ctype, md.Get("content-type"))
	s.mu.Unlock()
	if s.hold > 0 {
		select {
		case <-time.After(s.hold):
		case <-stream.Context().Done():
			return stream.Context().Err()
		}
	}
	resp, err := s.respond(req)
	if err != nil {
		return err
	}
	if err := stream.Send(resp); err != nil {
		return err
	}
	for {
		if _, err := stream.Recv(); err != nil {
			return nil
		}
	}
}

func (s *adsServer) seen() ([]*discoveryv3.DiscoveryRequest, [][]string, [][]string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.reqs), slices.Clone(s.auth), slices.Clone(s.ctype)
}

// serveADS starts s on loopback, over TLS when crt is set; it returns the
// pilot address.
func serveADS(t *testing.T, s *adsServer, crt *cert) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var opts []grpc.ServerOption
	scheme := "grpc://"
	if crt != nil {
		opts = append(opts, grpc.Creds(credentials.NewTLS(&tls.Config{Certificates: []tls.Certificate{crt.tls}})))
		scheme = "grpcs://"
	}
	srv := grpc.NewServer(opts...)
	discoveryv3.RegisterAggregatedDiscoveryServiceServer(srv, s)
	go func() { _ = srv.Serve(l) }()
	t.Cleanup(srv.Stop)
	return scheme + l.Addr().String()
}

func answers(t testing.TB, resp *discoveryv3.DiscoveryResponse) func(*discoveryv3.DiscoveryRequest) (*discoveryv3.DiscoveryResponse, error) {
	return func(req *discoveryv3.DiscoveryRequest) (*discoveryv3.DiscoveryResponse, error) {
		if req.GetTypeUrl() != TypeDebugSyncz {
			return nil, status.Errorf(codes.InvalidArgument, "unexpected type %q", req.GetTypeUrl())
		}
		return resp, nil
	}
}

func TestXDSSyncz_Plaintext(t *testing.T) {
	t.Parallel()
	s := &adsServer{respond: answers(t, syncZResponseMixed(t))}
	addr := serveADS(t, s, nil)
	tok := writeFile(t, "token", "must-not-travel-in-clear")
	var codesSeen []string
	var mu sync.Mutex
	c := newClient(t, addr, WithToken(tok), WithOnRequest(func(src, code string) {
		mu.Lock()
		codesSeen = append(codesSeen, src+" "+code)
		mu.Unlock()
	}))

	const nodeID = "sidecar~10.0.0.7~meshready_app-1_default~default.svc.cluster.local"
	st, err := c.XDSSyncz(context.Background(), nodeID, "sidecar~10.0.0.7~app-1.default~default.svc.cluster.local")
	if err != nil {
		t.Fatal(err)
	}
	if !st.Synced() || st.ProxyID != "app-1.default" || st.Source != SourceXDS || st.IstioVersion != "1.31.0" || st.FetchedAt.IsZero() {
		t.Errorf("%+v", st)
	}
	reqs, auth, ctype := s.seen()
	if len(reqs) != 1 {
		t.Fatalf("%d streams", len(reqs))
	}
	r := reqs[0]
	f := r.GetNode().GetMetadata().GetFields()
	if r.GetNode().GetId() != nodeID || r.GetTypeUrl() != TypeDebugSyncz || f["GENERATOR"].GetStringValue() != "event" ||
		f["NAMESPACE"].GetStringValue() != "default" || f["ISTIO_VERSION"].GetStringValue() == "" || f["PROXY_CONFIG"] != nil {
		t.Errorf("request %v", r)
	}
	if len(auth[0]) != 0 {
		t.Errorf("token sent over plaintext gRPC: %v", auth[0])
	}
	if len(ctype[0]) != 1 || ctype[0][0] != "application/grpc+proto" && ctype[0][0] != "application/grpc" {
		t.Errorf("content-type %v", ctype[0])
	}

	// The default requester id is built from the proxy id.
	st, err = c.XDSSyncz(context.Background(), "", "app-2.default")
	if err != nil || st.Synced() {
		t.Fatalf("app-2: %+v %v", st, err)
	}
	reqs, _, _ = s.seen()
	if id := reqs[1].GetNode().GetId(); id != "sidecar~127.0.0.1~meshready_app-2_default~default.svc.cluster.local" {
		t.Errorf("default node id %q", id)
	}
	// app-2 is not synced: within the spacing the same answer comes back cached.
	st, err = c.XDSSyncz(context.Background(), "", "app-2.default")
	if err != nil || !st.Cached || s.streams.Load() != 2 {
		t.Errorf("%+v %v streams %d", st, err, s.streams.Load())
	}

	mu.Lock()
	defer mu.Unlock()
	if strings.Join(codesSeen, ",") != "xds OK,xds OK" {
		t.Errorf("OnRequest %v", codesSeen)
	}
}

func TestXDSSyncz_BadInput(t *testing.T) {
	t.Parallel()
	refuse := func(err error) func(*discoveryv3.DiscoveryRequest) (*discoveryv3.DiscoveryResponse, error) {
		return func(*discoveryv3.DiscoveryRequest) (*discoveryv3.DiscoveryResponse, error) { return nil, err }
	}
	garbage := &discoveryv3.DiscoveryResponse{TypeUrl: TypeDebugSyncz, Resources: []*anypb.Any{{TypeUrl: clientConfigURL, Value: []byte{0x0a, 0xff}}}}
	for _, tc := range []struct {
		name  string
		addr  string
		srv   *adsServer
		node  string
		proxy string
		opts  []Option
		is    error
		says  []string
		code  string // the gRPC code reported to OnRequest; "" when nothing was sent
	}{
		{name: "Unauthenticated (istiod without a verified identity)", srv: &adsServer{respond: refuse(status.Error(codes.Unauthenticated, "authentication required"))},
			is: ErrUnauthenticated, code: "Unauthenticated",
			says: []string{"Unauthenticated: authentication required", "Pilot refuses debug access from pods (ENABLE_DEBUG_ENDPOINT_AUTH)", "grpcs://"}},
		{name: "PermissionDenied", srv: &adsServer{respond: refuse(status.Error(codes.PermissionDenied, "authorization failed: no identities matched"))},
			is: ErrForbidden, code: "PermissionDenied", says: []string{"PermissionDenied", "namespace must be the token's"}},
		{name: "no entry for the proxy", srv: &adsServer{respond: answers(t, syncZResponseMixed(t))}, proxy: "app-9.default",
			is: ErrProxyNotFound, code: "OK", says: []string{`"app-9.default"`, "NOT SENT"}},
		{name: "empty answer", srv: &adsServer{respond: answers(t, synczResponse(t))},
			is: ErrProxyNotFound, code: "OK", says: []string{"NOT SENT"}},
		{name: "garbage ClientConfig", srv: &adsServer{respond: answers(t, garbage)},
			is: ErrMalformed, code: "OK", says: []string{"malformed ClientConfig"}},
		{name: "not ADS (Unimplemented)", srv: &adsServer{respond: refuse(status.Error(codes.Unimplemented, "unknown service"))},
			is: ErrStatus, code: "Unimplemented", says: []string{"Unimplemented", "xDS port"}},
		{name: "slower than the deadline", srv: &adsServer{hold: 3 * time.Second, respond: answers(t, synczResponse(t))},
			opts: []Option{WithTimeout(150 * time.Millisecond)}, is: ErrTimeout, code: "DeadlineExceeded", says: []string{"no answer within 150ms"}},
		{name: "answer over the cap", srv: &adsServer{respond: answers(t, syncZResponseMixed(t))}, opts: []Option{WithMaxBody(64)},
			is: ErrTooLarge, code: "ResourceExhausted", says: []string{"64-byte cap"}},
		{name: "unreachable", addr: "grpc://" + closedPort(t), is: ErrUnreachable, code: "Unavailable", says: []string{"connection refused", "is Pilot running"}},
		{name: "DNS failure", addr: "grpc://pilot.invalid:15010", is: ErrUnreachable, code: "Unavailable", says: []string{`cannot resolve "pilot.invalid"`}},
		{name: "requester node id Pilot would reject", srv: &adsServer{respond: answers(t, synczResponse(t))}, node: "app-1.default",
			says: []string{"invalid xDS node id", "type~ip~id~domain"}},
		{name: "proxy id that is not one", srv: &adsServer{respond: answers(t, synczResponse(t))}, proxy: "sidecar~1~x",
			says: []string{"invalid proxy id"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			addr := tc.addr
			if tc.srv != nil {
				addr = serveADS(t, tc.srv, nil)
			}
			proxy := tc.proxy
			if proxy == "" {
				proxy = "app-1.default"
			}
			var codesSeen []string
			var mu sync.Mutex
			opts := append([]Option{WithBackoff(time.Second, 2*time.Second), WithOnRequest(func(_, code string) {
				mu.Lock()
				codesSeen = append(codesSeen, code)
				mu.Unlock()
			})}, tc.opts...)
			c := newClient(t, addr, opts...)
			_, err := c.XDSSyncz(context.Background(), tc.node, proxy)
			if err == nil {
				t.Fatal("no error")
			}
			if tc.is != nil && !errors.Is(err, tc.is) {
				t.Errorf("%v is not %v", err, tc.is)
			}
			msg := err.Error()
			for _, s := range tc.says {
				if !strings.Contains(msg, s) {
					t.Errorf("%q does not say %q", msg, s)
				}
			}
			if strings.ContainsAny(msg, "\n\r") || !strings.HasPrefix(msg, "pilot xds ") {
				t.Errorf("not one line naming the source: %q", msg)
			}
			mu.Lock()
			got := strings.Join(codesSeen, ",")
			mu.Unlock()
			if got != tc.code {
				t.Errorf("OnRequest codes %q, want %q", got, tc.code)
			}
			if tc.code == "" {
				if tc.srv != nil && tc.srv.streams.Load() != 0 {
					t.Error("a stream was opened")
				}
				return
			}
			streams := int64(0)
			if tc.srv != nil {
				streams = tc.srv.streams.Load()
			}
			_, err = c.XDSSyncz(context.Background(), tc.node, proxy)
			if !errors.Is(err, ErrBackoff) || (tc.is != nil && !errors.Is(err, tc.is)) {
				t.Errorf("second call: %v, want ErrBackoff wrapping %v", err, tc.is)
			}
			if tc.srv != nil && tc.srv.streams.Load() != streams {
				t.Error("the call during backoff reached Pilot")
			}
		})
	}
}

func TestXDSSyncz_TLSAndToken(t *testing.T) {
	t.Parallel()
	crt := newCert(t, "istiod")
	ca := writeFile(t, "root-cert.pem", crt.pem)
	s := &adsServer{respond: func(req *discoveryv3.DiscoveryRequest) (*discoveryv3.DiscoveryResponse, error) {
		return synczResponse(t, istiodClientConfig(t, "app-1.default", map[string]statusv3.ConfigStatus{cdsURL: statusv3.ConfigStatus_SYNCED}, "")), nil
	}}
	addr := serveADS(t, s, &crt)
	tok := writeFile(t, "istio-token", "eyJhbGciOiJSUzI1NiJ9.payload.sig\n")

	t.Run("bearer token arrives", func(t *testing.T) {
		c := newClient(t, addr, WithCAFile(ca), WithToken(tok))
		st, err := c.XDSSyncz(context.Background(), "", "app-1.default")
		if err != nil || !st.Synced() {
			t.Fatalf("%+v %v", st, err)
		}
		_, auth, _ := s.seen()
		if got := auth[len(auth)-1]; len(got) != 1 || got[0] != "Bearer eyJhbGciOiJSUzI1NiJ9.payload.sig" {
			t.Errorf("authorization metadata %v", got)
		}
	})
	t.Run("server name", func(t *testing.T) {
		c := newClient(t, addr, WithCAFile(ca), WithToken(tok), WithServerName("istiod.istio-system.svc"))
		if _, err := c.XDSSyncz(context.Background(), "", "app-1.default"); err != nil {
			t.Fatal(err)
		}
	})

	for _, tc := range []struct {
		name, token string
		says        []string
	}{
		{"token file missing", "/var/run/secrets/tokens/nonexistent", []string{"cannot read token file /var/run/secrets/tokens/nonexistent", "no such file", "istio-token projected volume"}},
		{"token file unreadable (a directory)", t.TempDir(), []string{"cannot read token file", "is a directory"}},
		{"token file empty", writeFile(t, "empty", "\n"), []string{"cannot read token file", "empty"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := s.streams.Load()
			var n atomic.Int64
			c := newClient(t, addr, WithCAFile(ca), WithToken(tc.token), WithOnRequest(func(string, string) { n.Add(1) }))
			_, err := c.XDSSyncz(context.Background(), "", "app-1.default")
			if !errors.Is(err, ErrToken) || !errors.Is(err, ErrUnauthenticated) {
				t.Errorf("%v: want ErrToken (and ErrUnauthenticated)", err)
			}
			for _, w := range tc.says {
				if err == nil || !strings.Contains(err.Error(), w) {
					t.Errorf("%v does not say %q", err, w)
				}
			}
			if s.streams.Load() != before || n.Load() != 0 {
				t.Error("Pilot was asked without a token")
			}
		})
	}

	t.Run("unverified certificate", func(t *testing.T) {
		c := newClient(t, addr, WithCAFile(writeFile(t, "other.pem", newCert(t, "other").pem)), WithToken(tok))
		_, err := c.XDSSyncz(context.Background(), "", "app-1.default")
		if err == nil || !strings.Contains(err.Error(), "certificate") || !strings.Contains(err.Error(), DefaultCAFile) {
			t.Errorf("%v", err)
		}
	})
	t.Run("insecure skip verify, as istioctl", func(t *testing.T) {
		c := newClient(t, addr, WithInsecureSkipVerify(), WithToken(tok))
		if _, err := c.XDSSyncz(context.Background(), "", "app-1.default"); err != nil {
			t.Fatal(err)
		}
	})
}
