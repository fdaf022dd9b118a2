package pilotclient

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// This file is the release controller's view of Pilot (meshrelease, not
// the agent): every proxy's sync state in one request, and what Pilot last
// pushed one proxy for one host. The agent asks about itself only.

// ParseSynczAll reads Pilot's whole /debug/syncz answer, at most max
// entries (more is an ErrTooLarge error: the caller raises its cap).
// Entries that cannot be read are skipped and counted in skipped: one odd
// proxy must not blind the release to the others.
func ParseSynczAll(r io.Reader, max int) (all []ProxyStatus, skipped int, err error) {
	dec := json.NewDecoder(r)
	tok, err := dec.Token()
	if err != nil {
		return nil, 0, jsonErr(err, "syncz")
	}
	if tok == nil {
		return nil, 0, trailing(dec)
	}
	if d, ok := tok.(json.Delim); !ok || d != '[' {
		return nil, 0, malformed("malformed syncz: want a JSON array of proxies, got %s", tokenString(tok))
	}
	for dec.More() {
		var e rawSync
		if err := dec.Decode(&e); err != nil {
			if _, ok := errors.AsType[*json.UnmarshalTypeError](err); ok {
				skipped++
				continue
			}
			return nil, skipped, jsonErr(err, "syncz")
		}
		if e.Proxy == "" {
			skipped++
			continue
		}
		if len(all) == max {
			return nil, skipped, ErrTooLarge
		}
		all = append(all, e.status())
	}
	if _, err := dec.Token(); err != nil {
		return nil, skipped, jsonErr(err, "syncz")
	}
	return all, skipped, trailing(dec)
}

// Fleet asks one Pilot replica's /debug/syncz for every proxy connected to
// it (namespace "" for all). Unlike Syncz it is not spaced by the client:
// the caller owns the polling rate (the release controller's one shared
// poll per replica, at most 1/s, only while a gate is open).
func (c *Client) Fleet(ctx context.Context, namespace string, max int) ([]ProxyStatus, error) {
	if !c.isHTTP() {
		return nil, c.unsupported(SourceSyncz, "/debug/syncz is served over HTTP: give an http(s):// Pilot address (port 15014)")
	}
	q := ""
	if namespace != "" {
		q = "namespace=" + url.QueryEscape(namespace)
	}
	var all []ProxyStatus
	err := c.get(ctx, SourceSyncz, "/debug/syncz", q, func(r io.Reader) error {
		var err error
		all, _, err = ParseSynczAll(r, max)
		if errors.Is(err, ErrTooLarge) {
			return malformed("syncz lists more than %d proxies (raise the cap)", max)
		}
		return err
	})
	if err != nil {
		return nil, err
	}
	now := time.Now()
	for i := range all {
		all[i].FetchedAt = now
	}
	return all, nil
}

// HostRouting is what Pilot last pushed one proxy for one host, from
// /debug/config_dump?proxyID= (built from the push context of the last
// push that proxy got: conn.proxy.LastPushContext in istiod).
type HostRouting struct {
	ProxyID string
	// Version is the push version the dump was built for (the
	// version_info a proxy ACKs).
	Version string
	// Subsets are the subsets of the host that have an outbound cluster
	// ("" for the subset-less cluster), from cluster names
	// outbound|PORT|SUBSET|HOST.
	Subsets map[string]bool
	// Routes are the routes of the host's virtual hosts, in order, with
	// the weights of their destinations in this host.
	Routes []Route
	// Routed reports whether any virtual host serves the host: false means
	// the proxy does not route to it at all (its Sidecar scope leaves it
	// out), so it is no caller to wait for.
	Routed bool
}

// HostRouting asks Pilot what it last pushed proxyID for host (a FQDN such
// as greeter.shop.svc.cluster.local). Pilot regenerates the proxy's whole
// config for this: the release gate asks it of one proxy per replica per
// write, and of stragglers, never of the fleet.
func (c *Client) HostRouting(ctx context.Context, proxyID, host string) (HostRouting, error) {
	if !c.isHTTP() {
		return HostRouting{}, c.unsupported(SourceConfigDump, "/debug/config_dump is served over HTTP")
	}
	var hr HostRouting
	err := c.get(ctx, SourceConfigDump, "/debug/config_dump", "proxyID="+url.QueryEscape(proxyID), func(r io.Reader) error {
		var err error
		hr, err = ParseHostRouting(r, host)
		return err
	})
	if err != nil {
		if e, ok := errors.AsType[*Error](err); ok && e.StatusCode == http.StatusNotFound && e.kind == kindStatus {
			return HostRouting{}, c.notFound(SourceConfigDump, e.Target, proxyID, e.detail)
		}
		return HostRouting{}, err
	}
	hr.ProxyID = proxyID
	return hr, nil
}

// Route is one route of a virtual host: its name (Istio copies the
// VirtualService http route's name) and subset → weight of the
// destinations in the host (one cluster is that subset at 100). Other is
// set when it also sends to another host.
type Route struct {
	Name    string
	Weights map[string]uint32
	Other   bool
}

// dumpForRouting is the part of Pilot's config dump the gate reads; Pilot
// writes camelCase (jsonpb), Envoy snake_case: both are accepted.
type dumpForRouting struct {
	Configs []struct {
		Type        string `json:"@type"`
		VersionInfo string `json:"versionInfo"`
		VersionSnk  string `json:"version_info"`
		Clusters    []struct {
			Cluster struct {
				Name string `json:"name"`
			} `json:"cluster"`
		} `json:"dynamicActiveClusters"`
		ClustersSnk []struct {
			Cluster struct {
				Name string `json:"name"`
			} `json:"cluster"`
		} `json:"dynamic_active_clusters"`
		Routes    []dynamicRoute `json:"dynamicRouteConfigs"`
		RoutesSnk []dynamicRoute `json:"dynamic_route_configs"`
	} `json:"configs"`
}

type dynamicRoute struct {
	VersionInfo string      `json:"versionInfo"`
	VersionSnk  string      `json:"version_info"`
	RouteConfig routeConfig `json:"routeConfig"`
	RouteSnk    routeConfig `json:"route_config"`
}

type routeConfig struct {
	VirtualHosts    []virtualHost `json:"virtualHosts"`
	VirtualHostsSnk []virtualHost `json:"virtual_hosts"`
}

type virtualHost struct {
	Name    string   `json:"name"`
	Domains []string `json:"domains"`
	Routes  []struct {
		Name  string `json:"name"`
		Route struct {
			Cluster     string          `json:"cluster"`
			Weighted    *weightedGroups `json:"weightedClusters"`
			WeightedSnk *weightedGroups `json:"weighted_clusters"`
		} `json:"route"`
	} `json:"routes"`
}

type weightedGroups struct {
	Clusters []struct {
		Name   string `json:"name"`
		Weight any    `json:"weight"` // UInt32Value: a number (Envoy) or a string (some encoders)
	} `json:"clusters"`
}

// ParseHostRouting reads a config dump (Pilot's or Envoy's) and returns how
// it routes host. Malformed JSON or a dump with no configs is an
// ErrMalformed error.
func ParseHostRouting(r io.Reader, host string) (HostRouting, error) {
	var d dumpForRouting
	dec := json.NewDecoder(r)
	if err := dec.Decode(&d); err != nil {
		return HostRouting{}, jsonErr(err, "config dump")
	}
	if d.Configs == nil {
		return HostRouting{}, malformed("malformed config dump: no \"configs\" list (is this Pilot's /debug/config_dump?)")
	}
	hr := HostRouting{Subsets: map[string]bool{}}
	for _, c := range d.Configs {
		ver := first(c.VersionInfo, c.VersionSnk)
		if strings.HasSuffix(c.Type, "ClustersConfigDump") && ver != "" {
			hr.Version = ver
		}
		for _, cl := range append(c.Clusters, c.ClustersSnk...) {
			if sub, h, ok := outboundCluster(cl.Cluster.Name); ok && h == host {
				hr.Subsets[sub] = true
			}
		}
		for _, dr := range append(c.Routes, c.RoutesSnk...) {
			if hr.Version == "" {
				hr.Version = first(dr.VersionInfo, dr.VersionSnk)
			}
			rc := dr.RouteConfig
			vhs := append(rc.VirtualHosts, rc.VirtualHostsSnk...)
			vhs = append(vhs, dr.RouteSnk.VirtualHosts...)
			vhs = append(vhs, dr.RouteSnk.VirtualHostsSnk...)
			for _, vh := range vhs {
				if !servesHost(vh.Name, vh.Domains, host) {
					continue
				}
				hr.Routed = true
				for _, rt := range vh.Routes {
					out := Route{Name: rt.Name, Weights: map[string]uint32{}}
					w := out.Weights
					if rt.Route.Cluster != "" {
						if sub, h, ok := outboundCluster(rt.Route.Cluster); ok && h == host {
							w[sub] = 100
						} else {
							out.Other = true
						}
					}
					wg := rt.Route.Weighted
					if wg == nil {
						wg = rt.Route.WeightedSnk
					}
					if wg != nil {
						for _, wc := range wg.Clusters {
							sub, h, ok := outboundCluster(wc.Name)
							if !ok || h != host {
								out.Other = true
								continue
							}
							w[sub] += weightOf(wc.Weight)
						}
					}
					hr.Routes = append(hr.Routes, out)
				}
			}
		}
	}
	return hr, nil
}

func first(a, b string) string {
	if a != "" {
		return a
	}
	return b
}

// outboundCluster splits Istio's outbound|PORT|SUBSET|HOST cluster name.
func outboundCluster(name string) (subset, host string, ok bool) {
	parts := strings.Split(name, "|")
	if len(parts) != 4 || parts[0] != "outbound" {
		return "", "", false
	}
	return parts[2], parts[3], true
}

// servesHost: Istio names a sidecar's virtual host HOST:PORT and lists the
// host (and its short forms) in domains; proxyless gRPC gets HOST:PORT too.
func servesHost(name string, domains []string, host string) bool {
	if name == host || strings.HasPrefix(name, host+":") {
		return true
	}
	for _, d := range domains {
		if d == host || strings.HasPrefix(d, host+":") {
			return true
		}
	}
	return false
}

func weightOf(v any) uint32 {
	switch w := v.(type) {
	case float64:
		if w >= 0 && w <= 1<<32-1 {
			return uint32(w)
		}
	case string:
		if n, err := strconv.ParseUint(w, 10, 32); err == nil {
			return uint32(n)
		}
	case map[string]any: // {"value": N}
		return weightOf(w["value"])
	}
	return 0
}

// ComparePushVersions orders Istio push versions "<RFC3339>/<counter>"
// (istiod's NextVersion): by time, then counter, so a restarted istiod's
// versions (a new process: the counter starts again at 1, the time is
// later) sort after the old ones. ok is false when either does not parse;
// the caller then can only test equality.
func ComparePushVersions(a, b string) (cmp int, ok bool) {
	ta, ca, okA := splitPushVersion(a)
	tb, cb, okB := splitPushVersion(b)
	if !okA || !okB {
		return 0, false
	}
	switch {
	case ta.Before(tb):
		return -1, true
	case ta.After(tb):
		return 1, true
	case ca < cb:
		return -1, true
	case ca > cb:
		return 1, true
	}
	return 0, true
}

func splitPushVersion(v string) (time.Time, uint64, bool) {
	i := strings.LastIndexByte(v, '/')
	if i < 0 {
		return time.Time{}, 0, false
	}
	t, err := time.Parse(time.RFC3339, v[:i])
	if err != nil {
		return time.Time{}, 0, false
	}
	n, err := strconv.ParseUint(v[i+1:], 10, 64)
	if err != nil {
		return time.Time{}, 0, false
	}
	return t, n, true
}
