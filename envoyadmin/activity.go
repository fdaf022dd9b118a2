package envoyadmin

import (
	"context"
	"slices"
	"strconv"
	"strings"
)

// Activity is inbound traffic through the sidecar, summed over the inbound
// listener and inbound HTTP connection managers.
//
// Istio's default stats inclusion list keeps only the downstream_cx_active
// suffix (plus cluster_manager, listener_manager, server, …), so on a stock
// sidecar the request gauges and both totals are usually absent: the Has*
// flags say which fields were actually seen, and Series how many stats were
// summed (0 means Envoy reported nothing, so nothing is known about traffic).
// A drain that waits for "no active requests" must fall back to active
// connections when HasActiveRequests is false.
type Activity struct {
	ActiveConnections uint64
	ActiveRequests    uint64
	TotalConnections  uint64
	TotalRequests     uint64
	Series            int

	HasActiveConnections bool
	HasActiveRequests    bool
	HasTotalConnections  bool
	HasTotalRequests     bool
}

// virtualInboundPort is Istio's inbound capture port: every inbound
// connection of a current Istio sidecar lands on the listener
// "virtualInbound" at 0.0.0.0:15006 ([::]:15006 on IPv6, whose stat name
// Envoy sanitises to "[__]_15006").
const virtualInboundPort = 15006

// istioPorts are the sidecar's own ports: traffic to them is the mesh
// talking to itself (admin 15000, outbound capture 15001, debug 15004,
// HBONE 15008, agent 15020, health 15021, DNS 15053, Prometheus 15090), never
// the application's.
var istioPorts = []int{15000, 15001, 15004, 15008, 15020, 15021, 15053, 15090}

// activityFilter asks Envoy for the inbound listener's and inbound HCMs'
// activity only; "_15006\.downstream" also keeps the per-worker copies out.
// No "+" in it: Envoy may or may not read "+" in a query as a space, so
// rawQueryValue escapes it, and an older Envoy may not unescape it.
const activityFilter = `^(listener\...*_15006|http\.(inbound_|InboundPassthroughCluster).*)\.downstream_(cx|rq)_(active|total)$`

// InboundActivityFromStats sums inbound activity from text /stats.
//
// Connections come from the virtualInbound listener (listener.<addr>_15006.*),
// which sees TCP and HTTP alike; only when no such listener stat exists do the
// HTTP connection managers' connection stats stand in. Requests come from the
// inbound HTTP connection managers: http.inbound_<addr>_<port>.* (one per
// application port) and http.InboundPassthroughCluster*.* (undeclared ports).
// Left out: per-worker duplicates (…worker_N.…, which would double-count),
// the admin listener, Envoy-internal listeners, Istio's own ports and
// excludePorts (e.g. the agent's probe port, whose kubelet probes are not
// application traffic). The virtualInbound listener does not break its
// connection counts down by port, so exclusions apply to the HTTP request
// stats only; a probe's short-lived connection can show in
// ActiveConnections.
func InboundActivityFromStats(s Stats, excludePorts []int) Activity {
	type tally struct {
		sum uint64
		n   int
	}
	var lis, hcm [4]tally // indexed by activityMetrics
	for name, v := range s.Values {
		m, scope, ok := splitActivityStat(name)
		if !ok {
			continue
		}
		switch {
		case strings.HasPrefix(scope, "listener."):
			addr := scope[len("listener."):]
			if strings.Contains(addr, "worker_") || strings.HasPrefix(addr, "admin") ||
				strings.Contains(addr, "envoy_internal") || trailingPort(addr) != virtualInboundPort {
				continue
			}
			lis[m].sum += v
			lis[m].n++
		case strings.HasPrefix(scope, "http.inbound_"), strings.HasPrefix(scope, "http.InboundPassthroughCluster"):
			if strings.Contains(scope, "worker_") {
				continue
			}
			if p := trailingPort(scope); p > 0 && (slices.Contains(istioPorts, p) || slices.Contains(excludePorts, p)) {
				continue
			}
			hcm[m].sum += v
			hcm[m].n++
		}
	}
	// The listener already counts the HCMs' connections (and TCP ones the
	// HCMs never see); adding both would double-count.
	cx := hcm
	if lis[cxActive].n+lis[cxTotal].n > 0 {
		cx = lis
	}
	a := Activity{
		ActiveConnections: cx[cxActive].sum, HasActiveConnections: cx[cxActive].n > 0,
		TotalConnections: cx[cxTotal].sum, HasTotalConnections: cx[cxTotal].n > 0,
		ActiveRequests: hcm[rqActive].sum, HasActiveRequests: hcm[rqActive].n > 0,
		TotalRequests: hcm[rqTotal].sum, HasTotalRequests: hcm[rqTotal].n > 0,
	}
	a.Series = cx[cxActive].n + cx[cxTotal].n + hcm[rqActive].n + hcm[rqTotal].n
	return a
}

const (
	cxActive = iota
	cxTotal
	rqActive
	rqTotal
)

// splitActivityStat splits "<scope>.downstream_{cx,rq}_{active,total}".
func splitActivityStat(name string) (metric int, scope string, ok bool) {
	i := strings.LastIndexByte(name, '.')
	if i <= 0 {
		return 0, "", false
	}
	switch name[i+1:] {
	case "downstream_cx_active":
		metric = cxActive
	case "downstream_cx_total":
		metric = cxTotal
	case "downstream_rq_active":
		metric = rqActive
	case "downstream_rq_total":
		metric = rqTotal
	default:
		return 0, "", false
	}
	return metric, name[:i], true
}

// trailingPort reads the port from "0.0.0.0_15006" or "inbound_10.0.0.1_8080";
// 0 when there is none.
func trailingPort(s string) int {
	i := strings.LastIndexByte(s, '_')
	if i < 0 {
		return 0
	}
	p, err := strconv.Atoi(s[i+1:])
	if err != nil || p <= 0 || p > 65535 {
		return 0
	}
	return p
}

// InboundActivity reads inbound activity with one filtered /stats request.
// Ports passed to WithExcludePorts are left out.
func (c *Client) InboundActivity(ctx context.Context) (Activity, error) {
	s, err := c.Stats(ctx, StatsQuery{Filter: activityFilter})
	if err != nil {
		return Activity{}, err
	}
	return InboundActivityFromStats(s, c.exclude), nil
}
