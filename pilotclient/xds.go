package pilotclient

// The xds source: one short-lived ADS stream per call, asking Pilot for
// istio.io/debug/syncz, the way istioctl proxy-status does
// (istioctl/pkg/xds/client.go, pkg/adsc). Messages are encoded and decoded
// by hand with protowire, for the few fields used, instead of linking
// go-control-plane: its discovery API costs ~3 MiB of binary and the status
// API (ClientConfig) ~6.5 MiB more, in an agent that ships in every image.
// The tests prove the codec against go-control-plane's generated types.
//
// Field numbers, checked against go-control-plane envoy v1.40.0
// (service/discovery/v3/discovery.pb.go, service/status/v3/csds.pb.go,
// config/core/v3/base.pb.go, admin/v3/config_dump_shared.pb.go) and
// google.protobuf's struct.proto, any.proto, timestamp.proto:
//
//	DiscoveryRequest   version_info=1 node=2 resource_names=3 type_url=4 response_nonce=5
//	DiscoveryResponse  version_info=1 resources=2 (Any) type_url=4 nonce=5 control_plane=6
//	Node               id=1 cluster=2 metadata=3 (Struct)
//	Struct             fields=1 (map entry: key=1, value=2 Value)
//	Value              string_value=3 (oneof with null=1 number=2 bool=4 struct=5 list=6)
//	Any                type_url=1 value=2
//	ClientConfig       node=1 xds_config=2 (PerXdsConfig, deprecated) generic_xds_configs=3 client_scope=4
//	GenericXdsConfig   type_url=1 name=2 version_info=3 xds_config=4 last_updated=5 (Timestamp)
//	                   config_status=6 client_status=7 error_state=8 is_static_resource=9
//	PerXdsConfig       status=1; oneof listener_config=2 cluster_config=3 route_config=4
//	                   scoped_route_config=5 endpoint_config=6; client_status=7
//	UpdateFailureState failed_configuration=1 last_update_attempt=2 details=3 version_info=4
//	Timestamp          seconds=1 nanos=2
//	ConfigStatus       UNKNOWN=0 SYNCED=1 NOT_SENT=2 STALE=3 ERROR=4
//
// Istio ≤1.1x filled the deprecated xds_config (one PerXdsConfig per
// type, the type given by which oneof field is set); current Istio fills
// generic_xds_configs. Both are read.

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"math"
	"net"
	"strings"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/mem"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protowire"
)

const (
	// TypeDebugSyncz is the xDS type Pilot answers with one ClientConfig per
	// connected proxy (pilot/pkg/xds/statusgen.go).
	TypeDebugSyncz  = "istio.io/debug/syncz"
	adsMethod       = "/envoy.service.discovery.v3.AggregatedDiscoveryService/StreamAggregatedResources"
	clientConfigURL = typePrefix + "envoy.service.status.v3.ClientConfig"
	// istioctlVersion is the ISTIO_VERSION istioctl's ADS client (pkg/adsc)
	// sends when it has none: newer than any Pilot, so no compatibility
	// path is taken.
	istioctlVersion = "65536.65536.65536"
)

// XDSSyncz opens one ADS stream to Pilot, asks for istio.io/debug/syncz,
// reads the answer and closes the stream. nodeID is the requester's own node
// id, not the proxy's: Pilot needs type~ip~id~domain with a valid IP, and
// checks the namespace (sent as NAMESPACE metadata, taken from the id's
// pod.namespace or else the domain's first label) against the token's; ""
// uses RequesterNodeID(proxyID, ""). The metadata is what istioctl's ADS
// client sends (GENERATOR=event, ISTIO_VERSION, NAMESPACE) and carries no
// PROXY_CONFIG, so Pilot does not list the agent as a proxy. proxyID
// (pod.namespace or the proxy's node id) picks the entry.
//
// Over grpcs:// the token file is read and sent as "authorization: Bearer";
// a missing or unreadable file is an ErrToken error naming it, before any
// request. Unauthenticated (Pilot's ENABLE_DEBUG_ENDPOINT_AUTH without a
// verified identity, always the case on plaintext 15010) and
// PermissionDenied are ErrUnauthenticated and ErrForbidden. No entry for
// the proxy is ErrProxyNotFound.
//
// The stream is not kept: Pilot tracks every connection as a client and
// would regenerate syncz for it on every push, and a new stream may reach
// another Pilot replica when this one does not know the proxy. Between
// calls the backoff spaces requests as for Syncz.
func (c *Client) XDSSyncz(ctx context.Context, nodeID, proxyID string) (ProxyStatus, error) {
	id, err := ProxyIDFromNodeID(proxyID)
	if err != nil {
		return ProxyStatus{}, &Error{Source: SourceXDS, Target: c.display, Err: err}
	}
	if c.isHTTP() {
		return ProxyStatus{}, c.unsupported(SourceXDS, "the xds source speaks gRPC: give a grpc://HOST:15010 or grpcs://HOST:15012 Pilot address")
	}
	if nodeID == "" {
		if nodeID, err = RequesterNodeID(id, ""); err != nil {
			return ProxyStatus{}, &Error{Source: SourceXDS, Target: c.display, Err: err}
		}
	}
	ns, err := requesterNamespace(nodeID)
	if err != nil {
		return ProxyStatus{}, &Error{Source: SourceXDS, Target: c.display, Err: err}
	}
	v, err := c.gates[SourceXDS].do(ctx, call{
		key: SourceXDS + "|" + id + "|" + nodeID, source: SourceXDS, target: c.display,
		run: func(ctx context.Context) (any, error) {
			return c.xdsSyncz(ctx, nodeID, ns, id)
		},
		synced: func(v any) bool { return v.(ProxyStatus).Synced() },
		cached: markCached,
	})
	if err != nil {
		return ProxyStatus{}, err
	}
	return cloneStatus(v.(ProxyStatus)), nil
}

func (c *Client) xdsSyncz(ctx context.Context, nodeID, ns, proxyID string) (any, error) {
	e := &Error{Source: SourceXDS, Target: c.display}
	token := ""
	if c.scheme == "grpcs" && c.tokenFile != "" {
		t, err := readToken(c.tokenFile)
		if err != nil {
			if pe, ok := errors.AsType[*fs.PathError](err); ok {
				err = pe.Err
			}
			e.kind, e.Err = kindToken, err
			e.detail = fmt.Sprintf("cannot read token file %s: %v (mount the istio-token projected volume into this container, or set --pilot-token)", c.tokenFile, err)
			return nil, e
		}
		token = t
	}
	req := encodeDiscoveryRequest(nodeID, [][2]string{
		{"GENERATOR", "event"},
		{"ISTIO_VERSION", istioctlVersion},
		{"NAMESPACE", ns},
	}, TypeDebugSyncz)

	resources, err := c.adsFetch(ctx, e, req, token)
	if err != nil {
		return nil, err
	}
	for _, r := range resources {
		if r.typeURL != clientConfigURL && !strings.HasSuffix(r.typeURL, "/envoy.service.status.v3.ClientConfig") {
			continue
		}
		cc, err := decodeClientConfig(r.value)
		if err != nil {
			e.kind, e.Err = kindMalformed, err
			e.detail = err.Error() + " (is --pilot Pilot's xDS address?)"
			return nil, e
		}
		if cc.nodeID == proxyID {
			st := cc.status()
			st.FetchedAt = time.Now()
			return st, nil
		}
	}
	return nil, c.notFound(SourceXDS, c.display, proxyID, "")
}

// adsFetch sends one DiscoveryRequest and returns the resources of the
// first response of type TypeDebugSyncz.
func (c *Client) adsFetch(ctx context.Context, e *Error, req []byte, token string) ([]anyMsg, error) {
	budget := c.timeout
	if dl, ok := ctx.Deadline(); ok && time.Until(dl) < budget {
		budget = max(time.Until(dl), 0)
	}
	ctx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()

	var mu sync.Mutex
	var dialErr error
	dial := func(ctx context.Context, addr string) (net.Conn, error) {
		conn, err := (&net.Dialer{}).DialContext(ctx, "tcp", addr)
		if err != nil {
			mu.Lock()
			dialErr = err
			mu.Unlock()
		}
		return conn, err
	}
	creds := insecure.NewCredentials()
	if c.tlsConf != nil {
		creds = credentials.NewTLS(c.tlsConf.Clone())
	}
	opts := []grpc.DialOption{
		grpc.WithTransportCredentials(creds),
		grpc.WithContextDialer(dial),
		grpc.WithUserAgent(c.userAgent),
		grpc.WithDisableRetry(),
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(int(min(c.maxBody, math.MaxInt32)))),
	}
	if token != "" {
		opts = append(opts, grpc.WithPerRPCCredentials(bearer(token)))
	}
	conn, err := grpc.NewClient("passthrough:///"+c.hostport, opts...)
	if err != nil {
		e.Err = err
		return nil, e
	}
	defer conn.Close()

	resources, err := func() ([]anyMsg, error) {
		stream, err := conn.NewStream(ctx, &grpc.StreamDesc{StreamName: "StreamAggregatedResources", ServerStreams: true, ClientStreams: true},
			adsMethod, grpc.ForceCodecV2(rawCodec{}))
		if err != nil {
			return nil, err
		}
		if err := stream.SendMsg(&rawMsg{b: req}); err != nil {
			return nil, err
		}
		for {
			var m rawMsg
			if err := stream.RecvMsg(&m); err != nil {
				return nil, err
			}
			resp, err := decodeDiscoveryResponse(m.b)
			if err != nil {
				return nil, err
			}
			if resp.typeURL == TypeDebugSyncz {
				_ = stream.CloseSend()
				return resp.resources, nil
			}
		}
	}()
	if err == nil {
		c.report(SourceXDS, codes.OK.String())
		return resources, nil
	}
	if errors.Is(err, ErrMalformed) {
		c.report(SourceXDS, codes.OK.String())
		e.kind, e.Err = kindMalformed, err
		e.detail = err.Error() + " (is --pilot Pilot's xDS address?)"
		return nil, e
	}
	mu.Lock()
	derr := dialErr
	mu.Unlock()
	return nil, c.grpcError(ctx, e, err, derr, budget)
}

func (c *Client) report(source, code string) {
	if c.onRequest != nil {
		c.onRequest(source, code)
	}
}

func (c *Client) grpcError(ctx context.Context, e *Error, err, dialErr error, budget time.Duration) *Error {
	st := status.Convert(err)
	code := st.Code()
	switch {
	case errors.Is(ctx.Err(), context.DeadlineExceeded):
		code = codes.DeadlineExceeded
	case errors.Is(ctx.Err(), context.Canceled):
		code = codes.Canceled
	}
	c.report(SourceXDS, code.String())
	e.GRPCCode = code.String()
	e.Err = err
	msg := code.String() + ": " + st.Message()
	switch code {
	case codes.DeadlineExceeded:
		e.kind, e.budget, e.Err = kindTimeout, budget, context.DeadlineExceeded
	case codes.Canceled:
		e.kind, e.Err = kindCanceled, context.Canceled
	case codes.Unauthenticated:
		e.kind, e.Err = kindUnauthenticated, ErrUnauthenticated
		e.detail = msg + ": " + ErrForbidden.Error() + " without a verified identity"
		if c.scheme == "grpcs" && c.tokenFile != "" {
			e.detail += "; the token in " + c.tokenFile + " was not accepted; use the next source"
		} else {
			e.detail += "; use grpcs://…:15012 with --pilot-token, or the next source"
		}
	case codes.PermissionDenied:
		e.kind, e.Err = kindForbidden, ErrForbidden
		e.detail = msg + ": " + ErrForbidden.Error() + " for this identity (the requester node's namespace must be the token's); use the next source"
	case codes.ResourceExhausted:
		e.kind, e.Err = kindTooLarge, ErrTooLarge
		e.detail = msg + fmt.Sprintf(" (answer over the %d-byte cap: raise it)", c.maxBody)
	case codes.Unavailable:
		if cause := unreachableCause(dialErr); cause != "" {
			e.kind, e.detail, e.Err = kindUnreachable, cause, dialErr
			return e
		}
		e.kind, e.Err = kindUnreachable, ErrUnreachable
		e.detail = msg
		if strings.Contains(st.Message(), "x509") || strings.Contains(st.Message(), "tls:") || strings.Contains(st.Message(), "handshake") {
			e.kind, e.Err = kindStatus, ErrStatus
			e.detail = msg + " (Pilot's certificate was not verified: mount Istio's root cert at " + DefaultCAFile + " or set the server name to istiod.istio-system.svc)"
		}
	case codes.Unimplemented:
		e.kind, e.Err = kindStatus, ErrStatus
		e.detail = msg + " (no ADS at this address: is --pilot Pilot's xDS port, 15010 or 15012?)"
	default:
		e.kind, e.Err = kindStatus, ErrStatus
		e.detail = msg
	}
	return e
}

// bearer sends the token on the stream; grpc refuses to send it without
// TLS.
type bearer string

func (b bearer) GetRequestMetadata(context.Context, ...string) (map[string]string, error) {
	return map[string]string{"authorization": "Bearer " + string(b)}, nil
}

func (bearer) RequireTransportSecurity() bool { return true }

// rawMsg is a serialized protobuf message; rawCodec passes it through.
type rawMsg struct{ b []byte }

type rawCodec struct{}

func (rawCodec) Marshal(v any) (mem.BufferSlice, error) {
	m, ok := v.(*rawMsg)
	if !ok {
		return nil, fmt.Errorf("pilotclient codec: cannot marshal %T", v)
	}
	return mem.BufferSlice{mem.SliceBuffer(m.b)}, nil
}

func (rawCodec) Unmarshal(data mem.BufferSlice, v any) error {
	m, ok := v.(*rawMsg)
	if !ok {
		return fmt.Errorf("pilotclient codec: cannot unmarshal into %T", v)
	}
	m.b = data.Materialize()
	return nil
}

// Name is "proto": the content-subtype Pilot expects.
func (rawCodec) Name() string { return "proto" }

// encodeDiscoveryRequest builds DiscoveryRequest{node{id, metadata}, type_url}.
func encodeDiscoveryRequest(nodeID string, meta [][2]string, typeURL string) []byte {
	var st []byte
	for _, kv := range meta {
		var val []byte
		val = protowire.AppendTag(val, 3, protowire.BytesType) // Value.string_value
		val = protowire.AppendString(val, kv[1])
		var entry []byte
		entry = protowire.AppendTag(entry, 1, protowire.BytesType) // key
		entry = protowire.AppendString(entry, kv[0])
		entry = protowire.AppendTag(entry, 2, protowire.BytesType) // value
		entry = protowire.AppendBytes(entry, val)
		st = protowire.AppendTag(st, 1, protowire.BytesType) // Struct.fields
		st = protowire.AppendBytes(st, entry)
	}
	var node []byte
	node = protowire.AppendTag(node, 1, protowire.BytesType) // Node.id
	node = protowire.AppendString(node, nodeID)
	node = protowire.AppendTag(node, 3, protowire.BytesType) // Node.metadata
	node = protowire.AppendBytes(node, st)
	var req []byte
	req = protowire.AppendTag(req, 2, protowire.BytesType) // DiscoveryRequest.node
	req = protowire.AppendBytes(req, node)
	req = protowire.AppendTag(req, 4, protowire.BytesType) // DiscoveryRequest.type_url
	req = protowire.AppendString(req, typeURL)
	return req
}

type anyMsg struct {
	typeURL string
	value   []byte
}

type discoveryResponse struct {
	versionInfo, typeURL, nonce string
	resources                   []anyMsg
}

// walk calls fn for every field of a message; fn returns false to have the
// field skipped as unknown (as protobuf does for a known number with an
// unexpected wire type).
func walk(b []byte, what string, fn func(num protowire.Number, typ protowire.Type, b []byte) (n int, handled bool)) error {
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return malformed("malformed %s: %v", what, protowire.ParseError(n))
		}
		b = b[n:]
		if m, ok := fn(num, typ, b); ok {
			if m < 0 {
				return malformed("malformed %s: field %d: %v", what, num, protowire.ParseError(m))
			}
			b = b[m:]
			continue
		}
		m := protowire.ConsumeFieldValue(num, typ, b)
		if m < 0 {
			return malformed("malformed %s: field %d: %v", what, num, protowire.ParseError(m))
		}
		b = b[m:]
	}
	return nil
}

func decodeDiscoveryResponse(b []byte) (discoveryResponse, error) {
	var r discoveryResponse
	var inner error
	err := walk(b, "DiscoveryResponse", func(num protowire.Number, typ protowire.Type, b []byte) (int, bool) {
		if typ != protowire.BytesType {
			return 0, false
		}
		v, n := protowire.ConsumeBytes(b)
		if n < 0 {
			return n, true
		}
		switch num {
		case 1:
			r.versionInfo = string(v)
		case 2:
			a, err := decodeAny(v)
			if err != nil && inner == nil {
				inner = err
			}
			r.resources = append(r.resources, a)
		case 4:
			r.typeURL = string(v)
		case 5:
			r.nonce = string(v)
		}
		return n, true
	})
	if err == nil {
		err = inner
	}
	return r, err
}

func decodeAny(b []byte) (anyMsg, error) {
	var a anyMsg
	err := walk(b, "Any", func(num protowire.Number, typ protowire.Type, b []byte) (int, bool) {
		if typ != protowire.BytesType || (num != 1 && num != 2) {
			return 0, false
		}
		v, n := protowire.ConsumeBytes(b)
		if n >= 0 {
			if num == 1 {
				a.typeURL = string(v)
			} else {
				a.value = v
			}
		}
		return n, true
	})
	return a, err
}

// clientConfig holds the fields of envoy.service.status.v3.ClientConfig
// that a sync check reads.
type clientConfig struct {
	nodeID  string
	meta    map[string]string // the string-valued entries of node.metadata
	generic []genericXds
	perXds  []perXds
}

type genericXds struct {
	typeURL, name, versionInfo string
	lastUpdated                timestamp
	configStatus               int32
	clientStatus               int32
	errorDetails               string
	isStatic                   bool
}

type timestamp struct {
	set     bool
	seconds int64
	nanos   int32
}

type perXds struct {
	status int32
	kind   protowire.Number // which oneof field: 2 listener, 3 cluster, 4 route, 5 scoped route, 6 endpoint
}

// decodeClientConfig decodes a ClientConfig. It is as lenient as protobuf's
// own decoder (anything that decodes with the generated type decodes here
// to the same values), and never panics on garbage (fuzzed).
func decodeClientConfig(b []byte) (clientConfig, error) {
	var cc clientConfig
	var inner error
	keep := func(err error) {
		if err != nil && inner == nil {
			inner = err
		}
	}
	err := walk(b, "ClientConfig", func(num protowire.Number, typ protowire.Type, b []byte) (int, bool) {
		if typ != protowire.BytesType || num < 1 || num > 3 {
			return 0, false
		}
		v, n := protowire.ConsumeBytes(b)
		if n < 0 {
			return n, true
		}
		switch num {
		case 1:
			keep(decodeNode(v, &cc))
		case 2:
			var p perXds
			keep(decodePerXds(v, &p))
			cc.perXds = append(cc.perXds, p)
		case 3:
			var g genericXds
			keep(decodeGeneric(v, &g))
			cc.generic = append(cc.generic, g)
		}
		return n, true
	})
	if err == nil {
		err = inner
	}
	return cc, err
}

func decodeNode(b []byte, cc *clientConfig) error {
	var inner error
	err := walk(b, "Node", func(num protowire.Number, typ protowire.Type, b []byte) (int, bool) {
		if typ != protowire.BytesType || (num != 1 && num != 3) {
			return 0, false
		}
		v, n := protowire.ConsumeBytes(b)
		if n < 0 {
			return n, true
		}
		if num == 1 {
			cc.nodeID = string(v)
		} else if err := decodeStruct(v, cc); err != nil && inner == nil {
			inner = err
		}
		return n, true
	})
	if err == nil {
		err = inner
	}
	return err
}

// decodeStruct reads google.protobuf.Struct, keeping string values.
func decodeStruct(b []byte, cc *clientConfig) error {
	var inner error
	err := walk(b, "Struct", func(num protowire.Number, typ protowire.Type, b []byte) (int, bool) {
		if typ != protowire.BytesType || num != 1 {
			return 0, false
		}
		v, n := protowire.ConsumeBytes(b)
		if n < 0 {
			return n, true
		}
		var key string
		var val []byte
		hasVal := false
		if err := walk(v, "Struct entry", func(num protowire.Number, typ protowire.Type, b []byte) (int, bool) {
			if typ != protowire.BytesType || (num != 1 && num != 2) {
				return 0, false
			}
			x, n := protowire.ConsumeBytes(b)
			if n >= 0 {
				if num == 1 {
					key = string(x)
				} else {
					val, hasVal = append(val, x...), true // repeated occurrences of a message merge
				}
			}
			return n, true
		}); err != nil {
			if inner == nil {
				inner = err
			}
			return n, true
		}
		s, isString, err := decodeStringValue(val)
		if err != nil && inner == nil {
			inner = err
		}
		if cc.meta == nil {
			cc.meta = map[string]string{}
		}
		if isString && hasVal {
			cc.meta[key] = s
		} else {
			delete(cc.meta, key) // a later non-string value replaces an earlier one
		}
		return n, true
	})
	if err == nil {
		err = inner
	}
	return err
}

// decodeStringValue reads google.protobuf.Value and returns its string
// value, if the last oneof field set (as in protobuf) is string_value.
// Nested structs and lists are not read.
func decodeStringValue(b []byte) (string, bool, error) {
	var s string
	kind := protowire.Number(0)
	err := walk(b, "Value", func(num protowire.Number, typ protowire.Type, b []byte) (int, bool) {
		want := protowire.BytesType
		switch num {
		case 1, 4: // null_value, bool_value
			want = protowire.VarintType
		case 2: // number_value
			want = protowire.Fixed64Type
		case 3, 5, 6: // string_value, struct_value, list_value
		default:
			return 0, false
		}
		if typ != want {
			return 0, false
		}
		n := protowire.ConsumeFieldValue(num, typ, b)
		if n >= 0 {
			if num == 3 {
				v, _ := protowire.ConsumeBytes(b)
				s = string(v)
			}
			kind = num
		}
		return n, true
	})
	return s, kind == 3, err
}

func decodePerXds(b []byte, p *perXds) error {
	return walk(b, "PerXdsConfig", func(num protowire.Number, typ protowire.Type, b []byte) (int, bool) {
		switch {
		case num == 1 && typ == protowire.VarintType:
			v, n := protowire.ConsumeVarint(b)
			if n >= 0 {
				p.status = int32(v)
			}
			return n, true
		case num >= 2 && num <= 6 && typ == protowire.BytesType:
			_, n := protowire.ConsumeBytes(b)
			if n >= 0 {
				p.kind = num
			}
			return n, true
		}
		return 0, false
	})
}

func decodeGeneric(b []byte, g *genericXds) error {
	var inner error
	err := walk(b, "GenericXdsConfig", func(num protowire.Number, typ protowire.Type, b []byte) (int, bool) {
		switch num {
		case 1, 2, 3, 5, 8:
			if typ != protowire.BytesType {
				return 0, false
			}
			v, n := protowire.ConsumeBytes(b)
			if n < 0 {
				return n, true
			}
			switch num {
			case 1:
				g.typeURL = string(v)
			case 2:
				g.name = string(v)
			case 3:
				g.versionInfo = string(v)
			case 5:
				if err := decodeTimestamp(v, &g.lastUpdated); err != nil && inner == nil {
					inner = err
				}
			case 8:
				if err := decodeFailure(v, g); err != nil && inner == nil {
					inner = err
				}
			}
			return n, true
		case 6, 7, 9:
			if typ != protowire.VarintType {
				return 0, false
			}
			v, n := protowire.ConsumeVarint(b)
			if n < 0 {
				return n, true
			}
			switch num {
			case 6:
				g.configStatus = int32(v)
			case 7:
				g.clientStatus = int32(v)
			case 9:
				g.isStatic = v != 0
			}
			return n, true
		}
		return 0, false
	})
	if err == nil {
		err = inner
	}
	return err
}

func decodeTimestamp(b []byte, t *timestamp) error {
	t.set = true
	return walk(b, "Timestamp", func(num protowire.Number, typ protowire.Type, b []byte) (int, bool) {
		if typ != protowire.VarintType || (num != 1 && num != 2) {
			return 0, false
		}
		v, n := protowire.ConsumeVarint(b)
		if n >= 0 {
			if num == 1 {
				t.seconds = int64(v)
			} else {
				t.nanos = int32(v)
			}
		}
		return n, true
	})
}

func decodeFailure(b []byte, g *genericXds) error {
	var inner error
	err := walk(b, "UpdateFailureState", func(num protowire.Number, typ protowire.Type, b []byte) (int, bool) {
		if typ != protowire.BytesType || num < 1 || num > 3 {
			return 0, false
		}
		v, n := protowire.ConsumeBytes(b)
		if n < 0 {
			return n, true
		}
		switch num {
		case 1:
			if _, err := decodeAny(v); err != nil && inner == nil {
				inner = err
			}
		case 2:
			var ts timestamp
			if err := decodeTimestamp(v, &ts); err != nil && inner == nil {
				inner = err
			}
		case 3:
			g.errorDetails = string(v)
		}
		return n, true
	})
	if err == nil {
		err = inner
	}
	return err
}

// perXdsTypes maps the PerXdsConfig oneof field to the v3 type URL.
var perXdsTypes = map[protowire.Number]string{
	2: typePrefix + "envoy.config.listener.v3.Listener",
	3: typePrefix + "envoy.config.cluster.v3.Cluster",
	4: typePrefix + "envoy.config.route.v3.RouteConfiguration",
	5: typePrefix + "envoy.config.route.v3.ScopedRouteConfiguration",
	6: typePrefix + "envoy.config.endpoint.v3.ClusterLoadAssignment",
}

func configState(s int32) State {
	switch s {
	case 1:
		return StateSynced
	case 2:
		return StateNotSent
	case 3:
		return StateStale
	case 4:
		return StateError
	}
	return StateUnknown
}

func (cc clientConfig) status() ProxyStatus {
	st := ProxyStatus{
		ProxyID:      cc.nodeID,
		ClusterID:    cc.meta["CLUSTER_ID"],
		IstioVersion: cc.meta["ISTIO_VERSION"],
		Source:       SourceXDS,
	}
	seen := map[string]bool{}
	for _, g := range cc.generic {
		if g.typeURL == "" {
			continue
		}
		t := TypeStatus{TypeURL: g.typeURL, Type: ShortType(g.typeURL), State: configState(g.configStatus), Error: g.errorDetails}
		if ts := g.lastUpdated; ts.set && ts.seconds > -62135596800 { // after year 1: Pilot sends the zero time for "never"
			t.SentAt = time.Unix(ts.seconds, int64(ts.nanos)).UTC()
		}
		if t.Error != "" && t.State == StateUnknown {
			t.State = StateError
		}
		st.Types = append(st.Types, t)
		seen[t.TypeURL] = true
	}
	for _, p := range cc.perXds {
		url, ok := perXdsTypes[p.kind]
		if !ok || seen[url] {
			continue
		}
		st.Types = append(st.Types, TypeStatus{TypeURL: url, Type: ShortType(url), State: configState(p.status)})
		seen[url] = true
	}
	sortTypes(st.Types)
	return st
}
