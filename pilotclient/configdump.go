package pilotclient

import (
	"encoding/json"
	"io"
	"strings"
)

// Config kinds returned by ParseConfigDumpVersions. They are the names
// envoyadmin uses for the same sections of Envoy's own /config_dump.
const (
	KindClusters     = "clusters"
	KindListeners    = "listeners"
	KindRoutes       = "routes"
	KindScopedRoutes = "scoped_routes"
	KindEndpoints    = "endpoints"
	KindSecrets      = "secrets"
	KindECDS         = "ecds"
)

// dumpKinds maps an admin dump message to its kind and to the list whose
// entries carry per-resource versions ("" when the dump has a type-level
// version_info). Keys are in both proto (snake) and JSON (camel) spelling:
// Pilot writes its dump with jsonpb, which uses camelCase.
var dumpKinds = map[string]struct{ kind, list, camel string }{
	"ClustersConfigDump":     {KindClusters, "", ""},
	"ListenersConfigDump":    {KindListeners, "", ""},
	"RoutesConfigDump":       {KindRoutes, "dynamic_route_configs", "dynamicRouteConfigs"},
	"ScopedRoutesConfigDump": {KindScopedRoutes, "dynamic_scoped_route_configs", "dynamicScopedRouteConfigs"},
	"EndpointsConfigDump":    {KindEndpoints, "dynamic_endpoint_configs", "dynamicEndpointConfigs"},
	"SecretsConfigDump":      {KindSecrets, "dynamic_active_secrets", "dynamicActiveSecrets"},
	"EcdsConfigDump":         {KindECDS, "ecds_filters", "ecdsFilters"},
}

// ParseConfigDumpVersions reads Pilot's /debug/config_dump?proxyID=… (an
// envoy.admin.v3.ConfigDump that Pilot builds from the config it would push
// now) and returns Pilot's version per kind (KindClusters, KindListeners,
// …): the type-level version_info where the dump has one (clusters,
// listeners), else the version_info of the first dynamic entry (Pilot
// stamps every entry with the same push version). A kind with no dynamic
// entry and no version is absent. It stream-parses: memory is bounded by
// the largest single resource, never by the dump (which runs to tens of
// MiB for a large mesh).
func ParseConfigDumpVersions(r io.Reader) (map[string]string, error) {
	dec := json.NewDecoder(r)
	if err := expectDelim(dec, '{', "config dump"); err != nil {
		return nil, err
	}
	out := map[string]string{}
	sawConfigs := false
	for dec.More() {
		key, err := objectKey(dec)
		if err != nil {
			return nil, err
		}
		if key != "configs" {
			if err := skipValue(dec); err != nil {
				return nil, err
			}
			continue
		}
		sawConfigs = true
		if err := expectDelim(dec, '[', "configs"); err != nil {
			return nil, err
		}
		for dec.More() {
			if err := parseDumpConfig(dec, out); err != nil {
				return nil, err
			}
		}
		if _, err := dec.Token(); err != nil {
			return nil, jsonErr(err, "config dump")
		}
	}
	if _, err := dec.Token(); err != nil { // '}'
		return nil, jsonErr(err, "config dump")
	}
	if tok, err := dec.Token(); err != io.EOF {
		if err != nil {
			return nil, jsonErr(err, "config dump")
		}
		return nil, malformed("malformed config dump: unexpected %s after the object", tokenString(tok))
	}
	if !sawConfigs {
		return nil, malformed("malformed config dump: no \"configs\" list (is this Pilot's /debug/config_dump?)")
	}
	return out, nil
}

// parseDumpConfig reads one element of "configs" (an Any: "@type" plus the
// dump's fields) and records its version.
func parseDumpConfig(dec *json.Decoder, out map[string]string) error {
	tok, err := dec.Token()
	if err != nil {
		return jsonErr(err, "config dump")
	}
	if tok == nil {
		return nil
	}
	if d, ok := tok.(json.Delim); !ok || d != '{' {
		return malformed("malformed config dump: want an object in configs, got %s", tokenString(tok))
	}
	var typ, version, first string
	for dec.More() {
		key, err := objectKey(dec)
		if err != nil {
			return err
		}
		switch key {
		case "@type":
			if typ, err = stringValue(dec, key); err != nil {
				return err
			}
		case "version_info", "versionInfo":
			if version, err = stringValue(dec, key); err != nil {
				return err
			}
		default:
			if !isVersionList(key) {
				if err := skipValue(dec); err != nil {
					return err
				}
				continue
			}
			v, err := firstEntryVersion(dec)
			if err != nil {
				return err
			}
			if first == "" {
				first = v
			}
		}
	}
	if _, err := dec.Token(); err != nil { // '}'
		return jsonErr(err, "config dump")
	}
	name := typ[strings.LastIndexByte(typ, '.')+1:]
	k, ok := dumpKinds[name]
	if !ok {
		return nil // BootstrapConfigDump, or a dump we do not read
	}
	if k.list != "" || version == "" {
		version = first
	}
	if version != "" {
		out[k.kind] = version
	}
	return nil
}

func isVersionList(key string) bool {
	for _, k := range dumpKinds {
		if k.list != "" && (key == k.list || key == k.camel) {
			return true
		}
	}
	return false
}

// firstEntryVersion walks a list of Dynamic* entries and returns the first
// non-empty version_info, skipping everything else entry by entry.
func firstEntryVersion(dec *json.Decoder) (string, error) {
	tok, err := dec.Token()
	if err != nil {
		return "", jsonErr(err, "config dump")
	}
	if tok == nil {
		return "", nil
	}
	if d, ok := tok.(json.Delim); !ok || d != '[' {
		return "", malformed("malformed config dump: want a list of dynamic entries, got %s", tokenString(tok))
	}
	first := ""
	for dec.More() {
		if first != "" {
			if err := skipElem(dec); err != nil {
				return "", err
			}
			continue
		}
		if err := expectDelim(dec, '{', "dynamic entry"); err != nil {
			return "", err
		}
		for dec.More() {
			key, err := objectKey(dec)
			if err != nil {
				return "", err
			}
			if key == "version_info" || key == "versionInfo" {
				v, err := stringValue(dec, key)
				if err != nil {
					return "", err
				}
				if first == "" {
					first = v
				}
				continue
			}
			if err := skipValue(dec); err != nil {
				return "", err
			}
		}
		if _, err := dec.Token(); err != nil {
			return "", jsonErr(err, "config dump")
		}
	}
	if _, err := dec.Token(); err != nil { // ']'
		return "", jsonErr(err, "config dump")
	}
	return first, nil
}

func objectKey(dec *json.Decoder) (string, error) {
	tok, err := dec.Token()
	if err != nil {
		return "", jsonErr(err, "config dump")
	}
	key, ok := tok.(string)
	if !ok {
		return "", malformed("malformed config dump: want an object key, got %s", tokenString(tok))
	}
	return key, nil
}

func stringValue(dec *json.Decoder, key string) (string, error) {
	tok, err := dec.Token()
	if err != nil {
		return "", jsonErr(err, "config dump")
	}
	switch v := tok.(type) {
	case string:
		return v, nil
	case nil:
		return "", nil
	}
	return "", malformed("malformed config dump: %q is %s, want a string", key, tokenString(tok))
}

func expectDelim(dec *json.Decoder, want json.Delim, what string) error {
	tok, err := dec.Token()
	if err != nil {
		return jsonErr(err, "config dump")
	}
	if d, ok := tok.(json.Delim); !ok || d != want {
		return malformed("malformed config dump: want %q for %s, got %s", string(want), what, tokenString(tok))
	}
	return nil
}

// skipper discards a JSON value without building it.
type skipper struct{}

func (*skipper) UnmarshalJSON([]byte) error { return nil }

// skipElem discards one value whole (the decoder buffers it: use it for
// list entries, which are single resources).
func skipElem(dec *json.Decoder) error {
	if err := dec.Decode(&skipper{}); err != nil {
		return jsonErr(err, "config dump")
	}
	return nil
}

// skipValue discards a value one level at a time, so a long list (every
// cluster of a large mesh) is never buffered whole.
func skipValue(dec *json.Decoder) error {
	tok, err := dec.Token()
	if err != nil {
		return jsonErr(err, "config dump")
	}
	d, ok := tok.(json.Delim)
	if !ok {
		return nil
	}
	switch d {
	case '[':
		for dec.More() {
			if err := skipElem(dec); err != nil {
				return err
			}
		}
	case '{':
		for dec.More() {
			if _, err := objectKey(dec); err != nil {
				return err
			}
			if err := skipElem(dec); err != nil {
				return err
			}
		}
	default:
		return malformed("malformed config dump: unexpected %q", string(d))
	}
	if _, err := dec.Token(); err != nil {
		return jsonErr(err, "config dump")
	}
	return nil
}
