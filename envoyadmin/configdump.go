package envoyadmin

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"
)

// Kinds of TypeDump, the same for v2alpha and v3 dumps.
const (
	KindClusters     = "clusters"
	KindListeners    = "listeners"
	KindRoutes       = "routes"
	KindScopedRoutes = "scoped_routes"
	KindEndpoints    = "endpoints"
	KindSecrets      = "secrets"
	KindECDS         = "ecds"
)

// Resource is one xDS-delivered resource as Envoy holds it. Static
// (bootstrap) resources are not listed: they are never out of sync.
type Resource struct {
	Name        string
	VersionInfo string // the version of the DiscoveryResponse that carried it
	LastUpdated time.Time
	Warming     bool // received but not yet in use (warming listener, cluster or secret)
	// Error is error_state.details when Envoy rejected the last update of
	// this resource (v3 only); the resource may still be active at an older
	// version.
	Error string
}

// TypeDump is one xDS type from /config_dump.
type TypeDump struct {
	// TypeURL is the xDS resource type, e.g.
	// type.googleapis.com/envoy.config.cluster.v3.Cluster (v2 dumps give
	// the v2 URL, e.g. type.googleapis.com/envoy.api.v2.Cluster).
	TypeURL string
	// Kind is the version-independent short name (KindClusters, …).
	Kind string
	// VersionInfo is the type-level version (the last CDS/LDS response
	// accepted); "" for types that have none (routes, secrets) or when
	// only static config exists.
	VersionInfo string
	Resources   []Resource
}

// ConfigDump is the part of /config_dump a sync check needs.
type ConfigDump struct {
	NodeID string // bootstrap node.id; "" when the dump has none
	Types  []TypeDump
}

// Type returns the dump for kind (KindClusters, …).
func (d ConfigDump) Type(kind string) (TypeDump, bool) {
	for _, t := range d.Types {
		if t.Kind == kind {
			return t, true
		}
	}
	return TypeDump{}, false
}

// dumpKinds maps an admin dump message to its kind and the xDS type URLs of
// its resources (v3, v2).
var dumpKinds = map[string]struct{ kind, v3, v2 string }{
	"ClustersConfigDump":     {KindClusters, "envoy.config.cluster.v3.Cluster", "envoy.api.v2.Cluster"},
	"ListenersConfigDump":    {KindListeners, "envoy.config.listener.v3.Listener", "envoy.api.v2.Listener"},
	"RoutesConfigDump":       {KindRoutes, "envoy.config.route.v3.RouteConfiguration", "envoy.api.v2.RouteConfiguration"},
	"ScopedRoutesConfigDump": {KindScopedRoutes, "envoy.config.route.v3.ScopedRouteConfiguration", "envoy.api.v2.ScopedRouteConfiguration"},
	"EndpointsConfigDump":    {KindEndpoints, "envoy.config.endpoint.v3.ClusterLoadAssignment", "envoy.api.v2.ClusterLoadAssignment"},
	"SecretsConfigDump":      {KindSecrets, "envoy.extensions.transport_sockets.tls.v3.Secret", "envoy.api.v2.auth.Secret"},
	"EcdsConfigDump":         {KindECDS, "envoy.config.core.v3.TypedExtensionConfig", "envoy.config.core.v3.TypedExtensionConfig"},
}

// splitAdminType splits "type.googleapis.com/envoy.admin.v3.ClustersConfigDump.DynamicCluster"
// into ("v3", "ClustersConfigDump", "DynamicCluster"). The element part is
// set for ?resource= answers, where each config is one list element.
func splitAdminType(t string) (ver, dump, elem string) {
	t = t[strings.LastIndexByte(t, '/')+1:]
	rest, ok := strings.CutPrefix(t, "envoy.admin.")
	if !ok {
		return "", "", ""
	}
	ver, rest, _ = strings.Cut(rest, ".")
	dump, elem, _ = strings.Cut(rest, ".")
	return ver, dump, elem
}

// The raw* types name only the fields read; encoding/json skips the rest of
// each proto (cluster bodies, filter chains, certificates) without
// allocating for it.
type rawNamed struct {
	Name        string `json:"name"`
	ClusterName string `json:"cluster_name"` // ClusterLoadAssignment has no name
}

type rawErrorState struct {
	Details string `json:"details"`
}

type rawState struct { // v3 DynamicListenerState, v2alpha/v3 Dynamic* entries
	VersionInfo string         `json:"version_info"`
	LastUpdated string         `json:"last_updated"`
	Listener    *rawNamed      `json:"listener"`
	Cluster     *rawNamed      `json:"cluster"`
	RouteConfig *rawNamed      `json:"route_config"`
	Endpoint    *rawNamed      `json:"endpoint_config"`
	EcdsFilter  *rawNamed      `json:"ecds_filter"`
	Name        string         `json:"name"` // DynamicListener, DynamicSecret, DynamicScopedRouteConfigs
	ErrorState  *rawErrorState `json:"error_state"`

	// v3 DynamicListener
	ActiveState   *rawState `json:"active_state"`
	WarmingState  *rawState `json:"warming_state"`
	DrainingState *rawState `json:"draining_state"`
}

// dynamicLists are the repeated fields of the dump messages that hold
// xDS-delivered resources, and whether their entries are warming.
// static_* lists and v2alpha dynamic_draining_listeners are skipped.
var dynamicLists = map[string]bool{
	"dynamic_active_clusters":      false,
	"dynamic_warming_clusters":     true,
	"dynamic_listeners":            false, // v3: states inside each entry
	"dynamic_active_listeners":     false, // v2alpha
	"dynamic_warming_listeners":    true,  // v2alpha
	"dynamic_route_configs":        false,
	"dynamic_scoped_route_configs": false,
	"dynamic_endpoint_configs":     false,
	"dynamic_active_secrets":       false,
	"dynamic_warming_secrets":      true,
	"ecds_filters":                 false,
}

// ParseConfigDump reads /config_dump, v2alpha (older Envoys, e.g. Istio 1.1's:
// dynamic_active_listeners, …) or v3 (dynamic_listeners[].active_state, …),
// also the ?resource= form where each config is one list element.
//
// It walks the JSON with a streaming decoder and decodes one list entry at a
// time, keeping only names, versions and timestamps: memory stays near the
// largest single resource, not the size of the dump, which matters in an
// agent whose whole budget is a few MiB. Draining listeners are left out:
// they are on their way out and say nothing about the config in force.
func ParseConfigDump(r io.Reader) (ConfigDump, error) {
	return parseConfigDump(r, false)
}

// parseConfigDump: warming says whether ?resource= elements came from a
// warming list, which their own type cannot tell.
func parseConfigDump(r io.Reader, warming bool) (ConfigDump, error) {
	var d ConfigDump
	dec := json.NewDecoder(r)
	if err := expectDelim(dec, '{'); err != nil {
		return d, err
	}
	for dec.More() {
		key, err := objectKey(dec)
		if err != nil {
			return d, err
		}
		if key != "configs" {
			if err := skipValue(dec); err != nil {
				return d, err
			}
			continue
		}
		if err := expectDelim(dec, '['); err != nil {
			return d, err
		}
		for dec.More() {
			if err := d.parseConfig(dec, warming); err != nil {
				return d, err
			}
		}
		if err := expectDelim(dec, ']'); err != nil {
			return d, err
		}
	}
	if err := expectDelim(dec, '}'); err != nil {
		return d, err
	}
	return d, nil
}

// parseConfig reads one element of "configs". Its kind comes from "@type",
// which proto JSON writes first but JSON does not promise, so resources are
// collected first and filed under a kind at the end.
func (d *ConfigDump) parseConfig(dec *json.Decoder, warming bool) error {
	if err := expectDelim(dec, '{'); err != nil {
		return err
	}
	var (
		typ  string
		elem rawState // element fields of a ?resource= answer; VersionInfo doubles as the type-level version
		boot struct {
			Node struct {
				ID string `json:"id"`
			} `json:"node"`
		}
		hasBoot bool
		res     []Resource
	)
	for dec.More() {
		key, err := objectKey(dec)
		if err != nil {
			return err
		}
		var target any
		switch key {
		case "@type":
			target = &typ
		case "bootstrap":
			target, hasBoot = &boot, true
		case "version_info":
			target = &elem.VersionInfo
		case "last_updated":
			target = &elem.LastUpdated
		case "name":
			target = &elem.Name
		case "cluster":
			target = &elem.Cluster
		case "listener":
			target = &elem.Listener
		case "route_config":
			target = &elem.RouteConfig
		case "endpoint_config":
			target = &elem.Endpoint
		case "ecds_filter":
			target = &elem.EcdsFilter
		case "error_state":
			target = &elem.ErrorState
		case "active_state":
			target = &elem.ActiveState
		case "warming_state":
			target = &elem.WarmingState
		case "draining_state":
			target = &elem.DrainingState
		}
		if target != nil {
			if err := dec.Decode(target); err != nil {
				return jsonErr(err)
			}
			continue
		}
		listWarming, ok := dynamicLists[key]
		if !ok {
			if err := skipValue(dec); err != nil {
				return err
			}
			continue
		}
		tok, err := dec.Token()
		if err != nil {
			return jsonErr(err)
		}
		if tok == nil { // null: an empty list
			continue
		}
		if d, ok := tok.(json.Delim); !ok || d != '[' {
			return malformed("malformed JSON from Envoy: want a list for %q, got %v", key, tokenString(tok))
		}
		for dec.More() {
			var e rawState
			if err := dec.Decode(&e); err != nil {
				return jsonErr(err)
			}
			res = e.appendResources(res, listWarming)
		}
		if err := expectDelim(dec, ']'); err != nil {
			return err
		}
	}
	if err := expectDelim(dec, '}'); err != nil {
		return err
	}

	ver, dump, elemType := splitAdminType(typ)
	if dump == "BootstrapConfigDump" {
		if hasBoot && d.NodeID == "" {
			d.NodeID = boot.Node.ID
		}
		return nil
	}
	k, ok := dumpKinds[dump]
	if !ok {
		return nil
	}
	t := d.typeFor(k.kind, ver, k.v3, k.v2)
	if elemType != "" {
		if strings.HasPrefix(elemType, "Dynamic") || elemType == "EcdsFilterConfig" {
			t.Resources = elem.appendResources(t.Resources, warming)
		}
		return nil
	}
	if elem.VersionInfo != "" {
		t.VersionInfo = elem.VersionInfo
	}
	t.Resources = append(t.Resources, res...)
	return nil
}

func objectKey(dec *json.Decoder) (string, error) {
	tok, err := dec.Token()
	if err != nil {
		return "", jsonErr(err)
	}
	key, ok := tok.(string)
	if !ok {
		return "", malformed("malformed JSON from Envoy: want an object key, got %v", tokenString(tok))
	}
	return key, nil
}

// skipper discards a JSON value without building it.
type skipper struct{}

func (*skipper) UnmarshalJSON([]byte) error { return nil }

func skipValue(dec *json.Decoder) error {
	if err := dec.Decode(&skipper{}); err != nil {
		return jsonErr(err)
	}
	return nil
}

func expectDelim(dec *json.Decoder, want json.Delim) error {
	tok, err := dec.Token()
	if err != nil {
		return jsonErr(err)
	}
	if got, ok := tok.(json.Delim); !ok || got != want {
		return malformed("malformed JSON from Envoy: want %q in config dump, got %v", string(want), tokenString(tok))
	}
	return nil
}

func tokenString(tok json.Token) string {
	if s, ok := tok.(string); ok {
		return fmt.Sprintf("%q", oneLine(s, 40))
	}
	return fmt.Sprint(tok)
}

func jsonErr(err error) error {
	if errors.Is(err, io.EOF) {
		err = io.ErrUnexpectedEOF
	}
	// A reader error (cap reached, deadline) is not the JSON's fault; the
	// client classifies those.
	var syn *json.SyntaxError
	var typ *json.UnmarshalTypeError
	if errors.As(err, &syn) || errors.As(err, &typ) || errors.Is(err, io.ErrUnexpectedEOF) {
		return malformed("malformed JSON from Envoy: %v", err)
	}
	return err
}

func (d *ConfigDump) typeFor(kind, ver, v3, v2 string) *TypeDump {
	for i := range d.Types {
		if d.Types[i].Kind == kind {
			return &d.Types[i]
		}
	}
	url := v3
	if ver != "v3" && ver != "" {
		url = v2
	}
	d.Types = append(d.Types, TypeDump{TypeURL: "type.googleapis.com/" + url, Kind: kind})
	return &d.Types[len(d.Types)-1]
}

// appendResources turns one Dynamic* entry into resources. A v3
// DynamicListener nests its versions in active/warming states and may carry
// both while an update warms.
func (e *rawState) appendResources(res []Resource, warming bool) []Resource {
	errDetail := ""
	if e.ErrorState != nil {
		errDetail = oneLine(e.ErrorState.Details, 300)
	}
	if e.ActiveState == nil && e.WarmingState == nil && e.DrainingState == nil &&
		(e.Listener != nil || e.Cluster != nil || e.RouteConfig != nil || e.Endpoint != nil || e.EcdsFilter != nil || e.Name != "" || e.VersionInfo != "") {
		r := e.resource(warming)
		r.Error = errDetail
		return append(res, r)
	}
	n := 0
	for _, s := range []struct {
		st      *rawState
		warming bool
	}{{e.ActiveState, false}, {e.WarmingState, true}} {
		if s.st == nil {
			continue
		}
		r := s.st.resource(s.warming)
		if r.Name == "" {
			r.Name = e.Name
		}
		r.Error = errDetail
		res = append(res, r)
		n++
	}
	if n == 0 && errDetail != "" { // a new listener Envoy rejected: never active
		res = append(res, Resource{Name: e.Name, Error: errDetail})
	}
	return res
}

func (e *rawState) resource(warming bool) Resource {
	r := Resource{VersionInfo: e.VersionInfo, Warming: warming, Name: e.Name}
	for _, n := range []*rawNamed{e.Cluster, e.Listener, e.RouteConfig, e.Endpoint, e.EcdsFilter} {
		if n != nil && r.Name == "" {
			r.Name = n.Name
			if r.Name == "" {
				r.Name = n.ClusterName
			}
		}
	}
	if e.LastUpdated != "" {
		if ts, err := time.Parse(time.RFC3339Nano, e.LastUpdated); err == nil {
			r.LastUpdated = ts
		}
	}
	return r
}

// ConfigDumpQuery narrows /config_dump. A full dump of a large mesh can be
// tens of MiB and costs Envoy's main thread to render; the sync check only
// needs versions, e.g. {Mask: "version_info"} for the type-level versions.
type ConfigDumpQuery struct {
	Resource   string // e.g. dynamic_active_clusters; each element becomes its own config
	Mask       string // FieldMask paths, comma-separated, e.g. version_info
	NameRegex  string // only resources whose name matches (newer Envoys)
	IncludeEDS bool   // add EndpointsConfigDump (can be large)
}

// ConfigDump fetches and parses /config_dump.
func (c *Client) ConfigDump(ctx context.Context, q ConfigDumpQuery) (ConfigDump, error) {
	var rq []string
	if q.Resource != "" {
		rq = append(rq, "resource="+rawQueryValue(q.Resource))
	}
	if q.Mask != "" {
		rq = append(rq, "mask="+rawQueryValue(q.Mask))
	}
	if q.NameRegex != "" {
		rq = append(rq, "name_regex="+rawQueryValue(q.NameRegex))
	}
	if q.IncludeEDS {
		rq = append(rq, "include_eds")
	}
	var d ConfigDump
	err := c.call(ctx, "GET", "/config_dump", query(rq...), func(r io.Reader) error {
		var err error
		d, err = parseConfigDump(r, strings.Contains(q.Resource, "warming"))
		return err
	})
	return d, err
}
