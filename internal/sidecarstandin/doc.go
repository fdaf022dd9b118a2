// Package sidecarstandin is the data-plane stand-in: what takes Envoy's
// place in the pods of the local mesh and the local cluster. It is not
// Envoy. It is
//
//   - a real xDS client (go-control-plane discovery/v3 over grpc, one ADS
//     stream, reconnecting with backoff) that subscribes as a sidecar does
//     — CDS, EDS for the EDS clusters, LDS once clusters are ready, RDS for
//     the routes listeners name — and ACKs, NACKs, holds ACKs or freezes on
//     command (AckMode, NackNext, SetMode, ReleaseAcks);
//   - Envoy's admin API in Envoy's formats, built from what it accepted:
//     /stats (filter, usedonly, type, format=json), /stats/prometheus,
//     /server_info, /config_dump (resource, mask, name_regex, include_eds),
//     /ready, and POST /quitquitquit, /drain_listeners, /healthcheck/*;
//   - a sidecar's traffic path: ServeInbound (in front of the app, counted
//     in Envoy's inbound stats and in Istio's standard metrics),
//     ServeOutbound (round robin over the EDS it accepted), both h2c and
//     HTTP/1.1 reverse proxies opened once LIVE, answering failures with
//     Envoy's local replies (503 UF / UH; gRPC-shaped for gRPC);
//   - Envoy's prometheus listener (ServeStats, :15090/stats/prometheus)
//     with istio_requests_total and istio_request_duration_milliseconds,
//     reporter="destination", Istio's labels and buckets (metrics.go).
//
// Start runs one in process (the integration tests drive it so); the
// binary internal/cmd/sidecar-standin runs one as a pod's sidecar
// container. adstest is a tiny ADS server for tests that need no Pilot.
package sidecarstandin
