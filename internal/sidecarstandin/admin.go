package sidecarstandin

import (
	"encoding/json"
	"fmt"
	"net/http"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/cespare/xxhash/v2"
)

// The stand-in's admin API: what the agent reads from Envoy's admin port,
// rendered in Envoy's formats (see envoyadmin's parsers and the real
// captures they are tested on) from the stand-in's own xDS state.

const (
	statCounter = 'c'
	statGauge   = 'g'
	statText    = 't'
	statHist    = 'h'
)

type stat struct {
	name string
	kind byte
	val  uint64
	text string
	used bool
	// prometheus rendering: base name and labels when Envoy extracts tags
	promName   string
	promLabels string
}

func stateName(s int) string {
	switch s {
	case 0:
		return "LIVE"
	case 1:
		return "DRAINING"
	case 2:
		return "PRE_INITIALIZING"
	case 3:
		return "INITIALIZING"
	}
	return "UNKNOWN"
}

func b2u(b bool) uint64 {
	if b {
		return 1
	}
	return 0
}

// effectiveStateLocked is server.state as Envoy computes it: a failed
// health check (POST /healthcheck/fail) turns a LIVE server DRAINING.
func (d *DataPlane) effectiveStateLocked() int {
	if d.hcFailed && d.state == 0 {
		return 1
	}
	return d.state
}

func (d *DataPlane) warmingLocked() (clusters, listeners uint64) {
	eds, rds := d.subs[TypeEDS], d.subs[TypeRDS]
	for _, r := range d.subs[TypeCDS].resources {
		if r.eds != "" {
			if _, ok := eds.resources[r.eds]; !ok {
				clusters++
			}
		}
	}
	for _, r := range d.subs[TypeLDS].resources {
		for _, n := range r.rds {
			if _, ok := rds.resources[n]; !ok {
				listeners++
				break
			}
		}
	}
	return clusters, listeners
}

func (d *DataPlane) statsLocked() []stat {
	state := d.effectiveStateLocked()
	warmC, warmL := d.warmingLocked()
	cds, lds := d.subs[TypeCDS], d.subs[TypeLDS]
	st := []stat{
		{name: "server.state", kind: statGauge, val: uint64(state), used: true},
		{name: "server.live", kind: statGauge, val: b2u(state != 1), used: true},
		{name: "server.uptime", kind: statGauge, val: uint64(time.Since(d.started).Seconds()), used: true},
		{name: "server.concurrency", kind: statGauge, val: 2, used: true},
		{name: "listener_manager.workers_started", kind: statGauge, val: b2u(d.workers), used: d.workers},
		{name: "cluster_manager.warming_clusters", kind: statGauge, val: warmC, used: cds.initDone},
		{name: "cluster_manager.active_clusters", kind: statGauge, val: uint64(len(cds.resources)), used: cds.initDone},
		{name: "listener_manager.total_listeners_warming", kind: statGauge, val: warmL, used: lds.initDone},
		{name: "listener_manager.total_listeners_active", kind: statGauge, val: uint64(len(lds.resources)), used: lds.initDone},
		{name: "cluster.xds-grpc.upstream_cx_active", kind: statGauge, val: b2u(d.connected), used: d.connects > 0},
		{name: "listener.admin.downstream_cx_active", kind: statGauge, val: 1, used: true, promName: "envoy_listener_admin_downstream_cx_active"},
		{name: "listener.0.0.0.0_15090.downstream_cx_active", kind: statGauge, val: 0, used: true,
			promName: "envoy_listener_downstream_cx_active", promLabels: `listener_address="0.0.0.0_15090"`},
		{name: "listener.0.0.0.0_15006.downstream_cx_active", kind: statGauge, val: d.inbound.ActiveConnections, used: true,
			promName: "envoy_listener_downstream_cx_active", promLabels: `listener_address="0.0.0.0_15006"`},
		{name: "listener.0.0.0.0_15006.worker_0.downstream_cx_active", kind: statGauge, val: d.inbound.ActiveConnections, used: true,
			promName: "envoy_listener_worker_downstream_cx_active", promLabels: `listener_address="0.0.0.0_15006",worker_id="0"`},
	}
	hcms := d.inPorts
	if len(hcms) == 0 {
		hcms = map[int]*Inbound{8080: &d.inbound}
	}
	for port, in := range hcms {
		prefix := "inbound_0.0.0.0_" + strconv.Itoa(port)
		st = append(st,
			stat{name: "http." + prefix + ".downstream_rq_active", kind: statGauge, val: in.ActiveRequests, used: *in != Inbound{},
				promName: "envoy_http_downstream_rq_active", promLabels: `http_conn_manager_prefix="` + prefix + `"`},
			stat{name: "http." + prefix + ".downstream_rq_total", kind: statCounter, val: in.TotalRequests, used: in.TotalRequests > 0,
				promName: "envoy_http_downstream_rq_total", promLabels: `http_conn_manager_prefix="` + prefix + `"`})
	}
	for _, s := range []struct {
		prefix string
		sub    *subscription
	}{{"cluster_manager.cds.", cds}, {"listener_manager.lds.", lds}} {
		sub := s.sub
		var ms, hash uint64
		if !sub.updateTime.IsZero() {
			ms = uint64(sub.updateTime.UnixMilli())
		}
		if sub.version != "" {
			hash = xxhash.Sum64String(sub.version)
		}
		st = append(st,
			stat{name: s.prefix + "update_attempt", kind: statCounter, val: sub.attempt},
			stat{name: s.prefix + "update_success", kind: statCounter, val: sub.success},
			stat{name: s.prefix + "update_failure", kind: statCounter},
			stat{name: s.prefix + "update_rejected", kind: statCounter, val: sub.rejected},
			stat{name: s.prefix + "init_fetch_timeout", kind: statCounter},
			stat{name: s.prefix + "update_time", kind: statGauge, val: ms},
			stat{name: s.prefix + "version", kind: statGauge, val: hash},
			stat{name: s.prefix + "version_text", kind: statText, text: sub.version, used: sub.version != ""},
			stat{name: s.prefix + "update_duration", kind: statHist, used: sub.success > 0},
		)
	}
	for i := range st {
		if st[i].val != 0 {
			st[i].used = true
		}
	}
	sort.Slice(st, func(i, j int) bool { return st[i].name < st[j].name })
	return st
}

func (d *DataPlane) serveAdmin(w http.ResponseWriter, r *http.Request) {
	d.mu.Lock()
	d.adminReqs[r.URL.Path]++
	d.mu.Unlock()
	switch r.URL.Path {
	case "/stats":
		if r.URL.Query().Get("format") == "prometheus" {
			d.servePrometheus(w, r)
			return
		}
		d.serveStats(w, r)
	case "/stats/prometheus":
		d.servePrometheus(w, r)
	case "/server_info":
		d.serveServerInfo(w)
	case "/config_dump":
		d.serveConfigDump(w, r)
	case "/ready":
		d.mu.Lock()
		s := d.effectiveStateLocked()
		d.mu.Unlock()
		w.Header().Set("Content-Type", "text/plain; charset=UTF-8")
		if s != 0 {
			w.WriteHeader(http.StatusServiceUnavailable)
		}
		fmt.Fprintln(w, stateName(s))
	case "/quitquitquit", "/drain_listeners", "/healthcheck/fail", "/healthcheck/ok":
		if r.Method != http.MethodPost {
			http.Error(w, fmt.Sprintf("Method %s not allowed, POST required.", r.Method), http.StatusMethodNotAllowed)
			return
		}
		d.mu.Lock()
		d.posts = append(d.posts, r.URL.RequestURI())
		switch r.URL.Path {
		case "/healthcheck/fail":
			d.hcFailed = true
		case "/healthcheck/ok":
			d.hcFailed = false
		}
		d.notifyLocked()
		d.mu.Unlock()
		w.Header().Set("Content-Type", "text/plain; charset=UTF-8")
		fmt.Fprint(w, "OK\n")
		if r.URL.Path == "/quitquitquit" {
			go func() {
				time.Sleep(50 * time.Millisecond) // let the answer go out, as Envoy does
				d.Close()
			}()
		}
	default:
		http.NotFound(w, r)
	}
}

var statTypes = map[string]byte{"Counters": statCounter, "Gauges": statGauge, "TextReadouts": statText, "Histograms": statHist}

// selectStats applies ?filter= (RE2, partial match), ?usedonly and ?type=
// as Envoy does; a bad value is Envoy's 400.
func (d *DataPlane) selectStats(w http.ResponseWriter, r *http.Request) ([]stat, bool) {
	q := r.URL.Query()
	var re *regexp.Regexp
	if f := q.Get("filter"); f != "" {
		var err error
		if re, err = regexp.Compile(f); err != nil {
			http.Error(w, "Invalid re2 regex", http.StatusBadRequest)
			return nil, false
		}
	}
	var only byte
	if t := q.Get("type"); t != "" && t != "All" {
		var ok bool
		if only, ok = statTypes[t]; !ok {
			http.Error(w, fmt.Sprintf("invalid type %q", t), http.StatusBadRequest)
			return nil, false
		}
	}
	usedOnly := q.Has("usedonly")
	d.mu.Lock()
	all := d.statsLocked()
	d.mu.Unlock()
	out := all[:0]
	for _, s := range all {
		if (re != nil && !re.MatchString(s.name)) || (usedOnly && !s.used) || (only != 0 && s.kind != only) {
			continue
		}
		out = append(out, s)
	}
	return out, true
}

// serveStats is text /stats: `name: value` a line, sorted; text readouts
// quoted (unescaped, as Envoy does); histograms as quantile lists; and
// ?format=json.
func (d *DataPlane) serveStats(w http.ResponseWriter, r *http.Request) {
	st, ok := d.selectStats(w, r)
	if !ok {
		return
	}
	if r.URL.Query().Get("format") == "json" {
		type jstat struct {
			Name  string `json:"name"`
			Value any    `json:"value"`
		}
		var out struct {
			Stats []jstat `json:"stats"`
		}
		out.Stats = []jstat{}
		for _, s := range st {
			switch s.kind {
			case statHist:
				continue
			case statText:
				out.Stats = append(out.Stats, jstat{s.name, s.text})
			default:
				out.Stats = append(out.Stats, jstat{s.name, s.val})
			}
		}
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(out)
		return
	}
	var b strings.Builder
	for _, s := range st {
		switch s.kind {
		case statText:
			fmt.Fprintf(&b, "%s: \"%s\"\n", s.name, s.text)
		case statHist:
			if s.used {
				fmt.Fprintf(&b, "%s: P0(nan,0) P25(nan,0) P50(nan,1.05) P75(nan,1.075) P90(nan,1.09) P95(nan,1.095) P99(nan,1.099) P99.5(nan,1.0995) P99.9(nan,1.0999) P100(nan,1.1)\n", s.name)
			} else {
				fmt.Fprintf(&b, "%s: No recorded values\n", s.name)
			}
		default:
			fmt.Fprintf(&b, "%s: %d\n", s.name, s.val)
		}
	}
	w.Header().Set("Content-Type", "text/plain; charset=UTF-8")
	fmt.Fprint(w, b.String())
}

// servePrometheus is /stats/prometheus: envoy_-prefixed names, tags as
// labels for the listener and HTTP stats, text readouts only with
// ?text_readouts (gauge 0 with a text_value label).
func (d *DataPlane) servePrometheus(w http.ResponseWriter, r *http.Request) {
	st, ok := d.selectStats(w, r)
	if !ok {
		return
	}
	withText := r.URL.Query().Has("text_readouts")
	type family struct {
		kind  string
		lines []string
	}
	fams := map[string]*family{}
	var order []string
	for _, s := range st {
		name := s.promName
		if name == "" {
			name = "envoy_" + strings.NewReplacer(".", "_", "-", "_").Replace(s.name)
		}
		kind := "gauge"
		value := strconv.FormatUint(s.val, 10)
		labels := s.promLabels
		switch s.kind {
		case statCounter:
			kind = "counter"
		case statHist:
			continue
		case statText:
			if !withText {
				continue
			}
			value = "0"
			tv := `text_value="` + strings.NewReplacer(`\`, `\\`, `"`, `\"`, "\n", `\n`).Replace(s.text) + `"`
			if labels != "" {
				labels += ","
			}
			labels += tv
		}
		f := fams[name]
		if f == nil {
			f = &family{kind: kind}
			fams[name] = f
			order = append(order, name)
		}
		if labels != "" {
			f.lines = append(f.lines, fmt.Sprintf("%s{%s} %s", name, labels, value))
		} else {
			f.lines = append(f.lines, name+" "+value)
		}
	}
	sort.Strings(order)
	var b strings.Builder
	for _, n := range order {
		fmt.Fprintf(&b, "# TYPE %s %s\n", n, fams[n].kind)
		for _, l := range fams[n].lines {
			b.WriteString(l + "\n")
		}
	}
	var re *regexp.Regexp
	if f := r.URL.Query().Get("filter"); f != "" {
		re = regexp.MustCompile(f) // selectStats has checked it
	}
	b.Write(d.metrics.exposition(re))
	w.Header().Set("Content-Type", contentTypePrometheus)
	fmt.Fprint(w, b.String())
}

func (d *DataPlane) serveServerInfo(w http.ResponseWriter) {
	d.mu.Lock()
	state := d.effectiveStateLocked()
	d.mu.Unlock()
	up := fmt.Sprintf("%ds", int(time.Since(d.started).Seconds()))
	info := map[string]any{
		"version":             "standin/" + d.o.IstioVersion + "/Clean/RELEASE/BoringSSL",
		"state":               stateName(state),
		"hot_restart_version": "disabled",
		"command_line_options": map[string]any{
			"base_id": "0", "concurrency": 2, "service_cluster": d.node.GetCluster(), "service_node": "",
			"drain_time": "45s", "drain_strategy": "Immediate", "parent_shutdown_time": "60s", "mode": "Serve",
		},
		"node": map[string]any{
			"id": d.nodeID, "cluster": d.node.GetCluster(), "metadata": d.node.GetMetadata().AsMap(),
			"user_agent_name": d.node.GetUserAgentName(),
		},
		"uptime_current_epoch": up,
		"uptime_all_epochs":    up,
	}
	w.Header().Set("Content-Type", "application/json")
	enc := json.NewEncoder(w)
	enc.SetIndent("", " ")
	_ = enc.Encode(info)
}

const adminType = "type.googleapis.com/envoy.admin.v3."

type jobj = map[string]any

func ts(t time.Time) string { return t.UTC().Format(time.RFC3339Nano) }

// configDumpLocked builds the v3 dump: bootstrap (node), clusters and
// listeners with their type-level version_info, routes, and endpoints with
// include_eds. Resources carry only @type and name: the stand-in keeps no
// more of them.
func (d *DataPlane) configDumpLocked(includeEDS bool) []jobj {
	cds, eds, lds, rds := d.subs[TypeCDS], d.subs[TypeEDS], d.subs[TypeLDS], d.subs[TypeRDS]
	sortedRes := func(m map[string]resource) []resource {
		out := make([]resource, 0, len(m))
		for _, r := range m {
			out = append(out, r)
		}
		sort.Slice(out, func(i, j int) bool { return out[i].name < out[j].name })
		return out
	}
	errState := func(s *subscription, name string) jobj {
		if s.lastError == "" {
			return nil
		}
		for _, n := range s.rejects {
			if n == name {
				return jobj{"failed_configuration": jobj{"@type": s.typeURL, "name": name},
					"last_update_attempt": ts(s.rejectedAt), "details": s.lastError}
			}
		}
		return nil
	}

	active, warming := []jobj{}, []jobj{}
	for _, r := range sortedRes(cds.resources) {
		e := jobj{"version_info": r.version, "cluster": jobj{"@type": TypeCDS, "name": r.name}, "last_updated": ts(r.updated)}
		if es := errState(cds, r.name); es != nil {
			e["error_state"] = es
		}
		if _, ok := eds.resources[r.eds]; r.eds != "" && !ok {
			warming = append(warming, e)
			continue
		}
		active = append(active, e)
	}
	clusters := jobj{"@type": adminType + "ClustersConfigDump", "version_info": cds.version,
		"static_clusters":         []jobj{{"cluster": jobj{"@type": TypeCDS, "name": "xds-grpc"}, "last_updated": ts(d.started)}},
		"dynamic_active_clusters": active}
	if len(warming) > 0 {
		clusters["dynamic_warming_clusters"] = warming
	}

	listeners := []jobj{}
	seen := map[string]bool{}
	for _, r := range sortedRes(lds.resources) {
		seen[r.name] = true
		state := jobj{"version_info": r.version, "listener": jobj{"@type": TypeLDS, "name": r.name}, "last_updated": ts(r.updated)}
		e := jobj{"name": r.name}
		warm := false
		for _, n := range r.rds {
			if _, ok := rds.resources[n]; !ok {
				warm = true
			}
		}
		if warm {
			e["warming_state"] = state
		} else {
			e["active_state"] = state
		}
		if es := errState(lds, r.name); es != nil {
			e["error_state"] = es
		}
		listeners = append(listeners, e)
	}
	for _, n := range lds.rejects { // a new listener that was rejected: never active
		if !seen[n] {
			listeners = append(listeners, jobj{"name": n, "error_state": errState(lds, n)})
		}
	}
	routes := []jobj{}
	for _, r := range sortedRes(rds.resources) {
		routes = append(routes, jobj{"version_info": r.version, "route_config": jobj{"@type": TypeRDS, "name": r.name}, "last_updated": ts(r.updated)})
	}
	configs := []jobj{
		{"@type": adminType + "BootstrapConfigDump", "bootstrap": jobj{"node": jobj{
			"id": d.nodeID, "cluster": d.node.GetCluster(), "metadata": d.node.GetMetadata().AsMap(),
			"user_agent_name": d.node.GetUserAgentName()}}, "last_updated": ts(d.started)},
		clusters,
	}
	if includeEDS {
		eps := []jobj{}
		for _, r := range sortedRes(eds.resources) {
			eps = append(eps, jobj{"endpoint_config": jobj{"@type": TypeEDS, "cluster_name": r.name}, "last_updated": ts(r.updated)})
		}
		configs = append(configs, jobj{"@type": adminType + "EndpointsConfigDump", "dynamic_endpoint_configs": eps})
	}
	configs = append(configs,
		jobj{"@type": adminType + "ListenersConfigDump", "version_info": lds.version, "dynamic_listeners": listeners},
		jobj{"@type": adminType + "ScopedRoutesConfigDump"},
		jobj{"@type": adminType + "RoutesConfigDump", "dynamic_route_configs": routes},
		jobj{"@type": adminType + "SecretsConfigDump"},
	)
	return configs
}

// resourceElems maps ?resource= to the list's element type.
var resourceElems = map[string]string{
	"static_clusters":          "ClustersConfigDump.StaticCluster",
	"dynamic_active_clusters":  "ClustersConfigDump.DynamicCluster",
	"dynamic_warming_clusters": "ClustersConfigDump.DynamicCluster",
	"dynamic_listeners":        "ListenersConfigDump.DynamicListener",
	"dynamic_route_configs":    "RoutesConfigDump.DynamicRouteConfig",
	"dynamic_endpoint_configs": "EndpointsConfigDump.DynamicEndpointConfig",
}

// serveConfigDump is /config_dump with ?resource=, ?mask= (comma-separated
// field paths), ?name_regex= and ?include_eds, as Envoy reads them.
func (d *DataPlane) serveConfigDump(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	var nameRE *regexp.Regexp
	if n := q.Get("name_regex"); n != "" {
		var err error
		if nameRE, err = regexp.Compile(n); err != nil {
			http.Error(w, "Error while parsing name_regex from "+n+": "+err.Error(), http.StatusBadRequest)
			return
		}
	}
	var mask [][]string
	if m := q.Get("mask"); m != "" {
		for _, p := range strings.Split(m, ",") {
			mask = append(mask, strings.Split(strings.TrimSpace(p), "."))
		}
	}
	d.mu.Lock()
	configs := d.configDumpLocked(q.Has("include_eds") || q.Get("resource") == "dynamic_endpoint_configs")
	d.mu.Unlock()

	var out []jobj
	if res := q.Get("resource"); res != "" {
		elem, ok := resourceElems[res]
		if !ok {
			http.Error(w, "The resource "+res+" is not supported by this stand-in's config_dump", http.StatusNotFound)
			return
		}
		for _, c := range configs {
			list, _ := c[res].([]jobj)
			for _, e := range list {
				if nameRE != nil && !nameRE.MatchString(elemName(e)) {
					continue
				}
				e2 := applyMask(e, mask)
				e2["@type"] = adminType + elem
				out = append(out, e2)
			}
		}
	} else {
		for _, c := range configs {
			if nameRE != nil {
				c = filterNames(c, nameRE)
			}
			c2 := applyMask(c, mask)
			c2["@type"] = c["@type"]
			out = append(out, c2)
		}
	}
	if out == nil {
		out = []jobj{}
	}
	w.Header().Set("Content-Type", "application/json")
	enc := json.NewEncoder(w)
	enc.SetIndent("", " ")
	_ = enc.Encode(jobj{"configs": out})
}

func elemName(e jobj) string {
	if n, ok := e["name"].(string); ok {
		return n
	}
	for _, k := range []string{"cluster", "listener", "route_config", "endpoint_config"} {
		if inner, ok := e[k].(jobj); ok {
			if n, ok := inner["name"].(string); ok {
				return n
			}
			if n, ok := inner["cluster_name"].(string); ok {
				return n
			}
		}
	}
	return ""
}

func filterNames(c jobj, re *regexp.Regexp) jobj {
	out := jobj{}
	for k, v := range c {
		if list, ok := v.([]jobj); ok && strings.HasPrefix(k, "dynamic_") {
			var kept []jobj
			for _, e := range list {
				if re.MatchString(elemName(e)) {
					kept = append(kept, e)
				}
			}
			out[k] = kept
			continue
		}
		out[k] = v
	}
	return out
}

// applyMask keeps only the masked field paths (no mask: everything).
func applyMask(o jobj, mask [][]string) jobj {
	if len(mask) == 0 {
		out := make(jobj, len(o))
		for k, v := range o {
			out[k] = v
		}
		return out
	}
	out := jobj{}
	for _, path := range mask {
		v, ok := o[path[0]]
		if !ok {
			continue
		}
		if len(path) == 1 {
			out[path[0]] = v
			continue
		}
		if inner, ok := v.(jobj); ok {
			sub := applyMask(inner, [][]string{path[1:]})
			if prev, ok := out[path[0]].(jobj); ok {
				for k, v := range sub {
					prev[k] = v
				}
			} else if len(sub) > 0 {
				out[path[0]] = sub
			}
		}
	}
	return out
}
