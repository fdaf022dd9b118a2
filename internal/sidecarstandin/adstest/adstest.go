// Package adstest is a tiny ADS server for the sidecar stand-in's tests:
// it answers each xDS type's first request on a stream with the resources
// it was given (state of the world, one version), and records every
// request (ACKs and NACKs included). It is not Pilot: no pushes, no
// debouncing, no per-proxy config.
package adstest

import (
	"fmt"
	"net"
	"sync"

	cluster "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	core "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	endpoint "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	listener "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	discovery "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"google.golang.org/grpc"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/structpb"
)

// Server is a running ADS server.
type Server struct {
	Addr string // host:port

	srv       *grpc.Server
	version   string
	resources map[string][]proto.Message // by type URL

	mu       sync.Mutex
	requests []*discovery.DiscoveryRequest
	streams  int
}

// Start serves ADS on 127.0.0.1 (a free port) with resources by type URL.
func Start(version string, resources map[string][]proto.Message) (*Server, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	s := &Server{Addr: l.Addr().String(), srv: grpc.NewServer(), version: version, resources: resources}
	discovery.RegisterAggregatedDiscoveryServiceServer(s.srv, (*ads)(s))
	go func() { _ = s.srv.Serve(l) }()
	return s, nil
}

// Stop ends every stream and the listener.
func (s *Server) Stop() { s.srv.Stop() }

// Requests are the requests received so far, in order.
func (s *Server) Requests() []*discovery.DiscoveryRequest {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]*discovery.DiscoveryRequest(nil), s.requests...)
}

// Streams counts the ADS streams opened.
func (s *Server) Streams() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.streams
}

type ads Server

func (a *ads) StreamAggregatedResources(stream discovery.AggregatedDiscoveryService_StreamAggregatedResourcesServer) error {
	s := (*Server)(a)
	s.mu.Lock()
	s.streams++
	s.mu.Unlock()
	sent := map[string]bool{}
	n := 0
	for {
		req, err := stream.Recv()
		if err != nil {
			return err
		}
		s.mu.Lock()
		s.requests = append(s.requests, req)
		s.mu.Unlock()
		t := req.GetTypeUrl()
		if sent[t] || req.GetResponseNonce() != "" {
			continue // an ACK or NACK, or a resubscription: nothing new to send
		}
		sent[t] = true
		n++
		resp := &discovery.DiscoveryResponse{TypeUrl: t, VersionInfo: s.version, Nonce: fmt.Sprintf("nonce-%d", n)}
		for _, m := range s.resources[t] {
			a, err := anypb.New(m)
			if err != nil {
				return err
			}
			resp.Resources = append(resp.Resources, a)
		}
		if err := stream.Send(resp); err != nil {
			return err
		}
	}
}

func (a *ads) DeltaAggregatedResources(discovery.AggregatedDiscoveryService_DeltaAggregatedResourcesServer) error {
	return fmt.Errorf("adstest: delta xDS is not served")
}

// Service is one service of an inbound cluster's telemetry metadata.
type Service struct{ Host, Name, Namespace string }

// InboundCluster is Pilot's inbound cluster for port (inbound|PORT||),
// with the telemetry metadata Pilot attaches (filter_metadata istio.services).
func InboundCluster(port int, svcs ...Service) *cluster.Cluster {
	var list []any
	for _, s := range svcs {
		list = append(list, map[string]any{"host": s.Host, "name": s.Name, "namespace": s.Namespace})
	}
	meta, err := structpb.NewStruct(map[string]any{"services": list})
	if err != nil {
		panic(err)
	}
	return &cluster.Cluster{
		Name:                 fmt.Sprintf("inbound|%d||", port),
		ClusterDiscoveryType: &cluster.Cluster_Type{Type: cluster.Cluster_ORIGINAL_DST},
		ConnectTimeout:       durationpb.New(10e9),
		Metadata:             &core.Metadata{FilterMetadata: map[string]*structpb.Struct{"istio": meta}},
	}
}

// EDSCluster is an outbound EDS cluster (its EDS service name = name).
func EDSCluster(name string) *cluster.Cluster {
	return &cluster.Cluster{
		Name:                 name,
		ClusterDiscoveryType: &cluster.Cluster_Type{Type: cluster.Cluster_EDS},
		EdsClusterConfig:     &cluster.Cluster_EdsClusterConfig{ServiceName: name},
	}
}

// Endpoints is a ClusterLoadAssignment of addrs (ip, port pairs).
func Endpoints(name string, addrs ...*net.TCPAddr) *endpoint.ClusterLoadAssignment {
	var lbs []*endpoint.LbEndpoint
	for _, a := range addrs {
		lbs = append(lbs, &endpoint.LbEndpoint{HostIdentifier: &endpoint.LbEndpoint_Endpoint{Endpoint: &endpoint.Endpoint{
			Address: &core.Address{Address: &core.Address_SocketAddress{SocketAddress: &core.SocketAddress{
				Address: a.IP.String(), PortSpecifier: &core.SocketAddress_PortValue{PortValue: uint32(a.Port)}}}},
		}}})
	}
	return &endpoint.ClusterLoadAssignment{ClusterName: name, Endpoints: []*endpoint.LocalityLbEndpoints{{LbEndpoints: lbs}}}
}

// Listener is a listener with no HTTP connection manager (so no RDS).
func Listener(name string) *listener.Listener { return &listener.Listener{Name: name} }
