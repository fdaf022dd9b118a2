package pilotclient

import (
	"encoding/json"
	"errors"
	"io"
	"slices"
	"strings"
	"time"
)

// State is Pilot's view of one xDS type for one proxy, in istioctl's words.
type State string

const (
	StateSynced  State = "SYNCED"   // the last nonce sent was acked
	StateStale   State = "STALE"    // sent, not (yet) acked
	StateNotSent State = "NOT SENT" // subscribed, nothing sent yet
	StateError   State = "ERROR"    // the proxy NACKed the last push
	StateUnknown State = "UNKNOWN"  // Pilot did not say (xDS UNKNOWN, or a future value)
)

// Sources: which of Pilot's surfaces answered.
const (
	SourceSyncz      = "syncz"      // HTTP GET /debug/syncz
	SourceXDS        = "xds"        // ADS stream, type istio.io/debug/syncz
	SourceConfigDump = "configdump" // HTTP GET /debug/config_dump?proxyID=
)

// TypeStatus is one xDS type of one proxy as Pilot reports it.
type TypeStatus struct {
	TypeURL string // e.g. type.googleapis.com/envoy.config.cluster.v3.Cluster
	Type    string // CDS LDS EDS RDS ECDS SDS NDS PCDS WDS WADS, else the URL's last segment
	// Sent and Acked are nonces (HTTP syncz only; the xDS source carries
	// none). Sent == Acked is the exact sync test. Acked is "" when the
	// proxy never acked.
	Sent, Acked string
	// SentVersion and AckedVersion are the push versions inside the nonces
	// (the nonce minus a trailing 36-character UUID, e.g.
	// 2026-11-30T19:11:18Z/3): what Envoy reports as version_info once it
	// accepts. "" when the nonce carries no UUID suffix (Istio 1.0 nonces
	// are timestamps) or there is no nonce.
	SentVersion, AckedVersion string
	State                     State
	SentAt                    time.Time // when Pilot last sent this type; zero if not reported
	Error                     string    // the proxy's NACK message (ERROR)
}

// ProxyStatus is Pilot's sync view of one proxy.
type ProxyStatus struct {
	ProxyID      string // pod.namespace
	ClusterID    string
	ProxyType    string // sidecar, router, … (HTTP syncz of current Istio)
	IstioVersion string // the proxy's Istio version as Pilot knows it
	ProxyVersion string // Istio 1.0's proxy_version
	// EndpointPercent is Istio 1.0's endpoint_percent (istioctl showed EDS
	// as "SYNCED (N%)"); 0 elsewhere.
	EndpointPercent int
	// Types lists the types Pilot reports for the proxy, in the order CDS,
	// LDS, EDS, RDS, ECDS, then the rest. A type Pilot never sent to the
	// proxy is absent (not NOT SENT): the flat *_sent keys are omitted
	// when empty, and a gateway without routes never gets RDS. istioctl
	// ≥1.18 shows such a type as IGNORED.
	Types  []TypeStatus
	Source string // SourceSyncz, SourceXDS or SourceConfigDump
	// FetchedAt is when Pilot gave this answer.
	FetchedAt time.Time
	// Cached is set when the client answered from its last result instead
	// of asking Pilot again, because it is spacing requests while the
	// proxy is not synced (see Client).
	Cached bool
}

// Synced reports whether Pilot sees the proxy in sync: at least one type
// SYNCED and none STALE or ERROR. NOT SENT and UNKNOWN types do not block:
// old istiod lists unsubscribed types as NOT_SENT, and istioctl shows
// UNKNOWN as IGNORED.
func (p ProxyStatus) Synced() bool {
	synced := false
	for _, t := range p.Types {
		switch t.State {
		case StateSynced:
			synced = true
		case StateStale, StateError:
			return false
		}
	}
	return synced
}

// Type returns the status of one type by short name (CDS, LDS, …).
func (p ProxyStatus) Type(short string) (TypeStatus, bool) {
	for _, t := range p.Types {
		if t.Type == short {
			return t, true
		}
	}
	return TypeStatus{}, false
}

const typePrefix = "type.googleapis.com/"

// shortTypes follows Istio's GetShortType (pkg/model/xds.go), plus the v2
// URLs of the Istio 1.0–1.5 era.
var shortTypes = map[string]string{
	typePrefix + "envoy.config.cluster.v3.Cluster":                  "CDS",
	typePrefix + "envoy.config.listener.v3.Listener":                "LDS",
	typePrefix + "envoy.config.endpoint.v3.ClusterLoadAssignment":   "EDS",
	typePrefix + "envoy.config.route.v3.RouteConfiguration":         "RDS",
	typePrefix + "envoy.config.core.v3.TypedExtensionConfig":        "ECDS",
	typePrefix + "envoy.extensions.transport_sockets.tls.v3.Secret": "SDS",
	typePrefix + "istio.networking.nds.v1.NameTable":                "NDS",
	typePrefix + "istio.mesh.v1alpha1.ProxyConfig":                  "PCDS",
	typePrefix + "istio.workload.Address":                           "WDS",
	typePrefix + "istio.workload.Workload":                          "WDS",
	typePrefix + "istio.security.Authorization":                     "WADS",
	typePrefix + "envoy.api.v2.Cluster":                             "CDS",
	typePrefix + "envoy.api.v2.Listener":                            "LDS",
	typePrefix + "envoy.api.v2.ClusterLoadAssignment":               "EDS",
	typePrefix + "envoy.api.v2.RouteConfiguration":                  "RDS",
	typePrefix + "envoy.api.v2.auth.Secret":                         "SDS",
}

var typeOrder = []string{"CDS", "LDS", "EDS", "RDS", "ECDS", "SDS", "NDS", "PCDS", "WDS", "WADS"}

// ShortType names an xDS type URL the way istioctl does (CDS, LDS, …); an
// unknown URL gives its last path segment.
func ShortType(typeURL string) string {
	if s, ok := shortTypes[typeURL]; ok {
		return s
	}
	return typeURL[strings.LastIndexByte(typeURL, '/')+1:]
}

func sortTypes(ts []TypeStatus) {
	rank := func(t TypeStatus) int {
		if i := slices.Index(typeOrder, t.Type); i >= 0 {
			return i
		}
		return len(typeOrder)
	}
	slices.SortStableFunc(ts, func(a, b TypeStatus) int {
		if ra, rb := rank(a), rank(b); ra != rb {
			return ra - rb
		}
		return strings.Compare(a.TypeURL, b.TypeURL)
	})
}

// NonceVersion returns the push version inside an Istio nonce: the nonce
// minus its trailing 36-character UUID (Istio ≥1.10 makes nonces as
// version + uuid). It returns "" when the nonce does not end in a UUID.
func NonceVersion(nonce string) string {
	if len(nonce) < 36 || !isUUID(nonce[len(nonce)-36:]) {
		return ""
	}
	return nonce[:len(nonce)-36]
}

func isUUID(s string) bool {
	if len(s) != 36 {
		return false
	}
	for i := 0; i < 36; i++ {
		c := s[i]
		switch i {
		case 8, 13, 18, 23:
			if c != '-' {
				return false
			}
		default:
			if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f' || c >= 'A' && c <= 'F') {
				return false
			}
		}
	}
	return true
}

// rawSync is one element of /debug/syncz: Istio 1.0's SyncStatus and the
// current one (pilot/pkg/xds/debug.go), whose keys are a superset.
type rawSync struct {
	ClusterID            string              `json:"cluster_id"`
	Proxy                string              `json:"proxy"`
	ProxyType            string              `json:"proxy_type"`
	ProxyVersion         string              `json:"proxy_version"`
	IstioVersion         string              `json:"istio_version"`
	ClusterSent          string              `json:"cluster_sent"`
	ClusterAcked         string              `json:"cluster_acked"`
	ListenerSent         string              `json:"listener_sent"`
	ListenerAcked        string              `json:"listener_acked"`
	RouteSent            string              `json:"route_sent"`
	RouteAcked           string              `json:"route_acked"`
	EndpointSent         string              `json:"endpoint_sent"`
	EndpointAcked        string              `json:"endpoint_acked"`
	ExtensionConfigSent  string              `json:"extensionconfig_sent"`
	ExtensionConfigAcked string              `json:"extensionconfig_acked"`
	EndpointPercent      int                 `json:"endpoint_percent"`
	Resources            map[string]rawTypes `json:"resources"`
}

type rawTypes struct {
	Sent      string `json:"sent"`
	Acked     string `json:"acked"`
	SentTime  string `json:"sentTime"`
	LastError string `json:"lastError"`
}

// ParseSyncz reads Pilot's /debug/syncz (a JSON array, one element per
// connected proxy) and returns the entry whose "proxy" is proxyID. It
// stream-parses element by element and stops at that entry, so a 30 MB
// answer from a large mesh costs one element of memory, never the body.
// found is false, with a nil error, when the array has no such entry (an
// empty array and Istio 1.0's null included). Elements other than ours
// that cannot be read are skipped; ours unreadable, or the array itself
// broken, is an ErrMalformed error.
func ParseSyncz(r io.Reader, proxyID string) (st ProxyStatus, found bool, err error) {
	dec := json.NewDecoder(r)
	tok, err := dec.Token()
	if err != nil {
		return ProxyStatus{}, false, jsonErr(err, "syncz")
	}
	if tok == nil { // null
		return ProxyStatus{}, false, trailing(dec)
	}
	if d, ok := tok.(json.Delim); !ok || d != '[' {
		return ProxyStatus{}, false, malformed("malformed syncz: want a JSON array of proxies, got %s", tokenString(tok))
	}
	for dec.More() {
		var e rawSync
		if err := dec.Decode(&e); err != nil {
			if _, ok := errors.AsType[*json.UnmarshalTypeError](err); ok && e.Proxy != proxyID {
				continue // someone else's entry in an unexpected shape
			}
			return ProxyStatus{}, false, jsonErr(err, "syncz")
		}
		if e.Proxy == proxyID && proxyID != "" {
			return e.status(), true, nil
		}
	}
	if _, err := dec.Token(); err != nil { // ']'
		return ProxyStatus{}, false, jsonErr(err, "syncz")
	}
	return ProxyStatus{}, false, trailing(dec)
}

func trailing(dec *json.Decoder) error {
	if tok, err := dec.Token(); err != io.EOF {
		if err != nil {
			return jsonErr(err, "syncz")
		}
		return malformed("malformed syncz: unexpected %s after the array", tokenString(tok))
	}
	return nil
}

func (e *rawSync) status() ProxyStatus {
	st := ProxyStatus{
		ProxyID:         e.Proxy,
		ClusterID:       e.ClusterID,
		ProxyType:       e.ProxyType,
		IstioVersion:    e.IstioVersion,
		ProxyVersion:    e.ProxyVersion,
		EndpointPercent: e.EndpointPercent,
		Source:          SourceSyncz,
	}
	seen := map[string]bool{}
	for url, r := range e.Resources {
		t := TypeStatus{TypeURL: url, Type: ShortType(url), Sent: r.Sent, Acked: r.Acked, Error: r.LastError}
		if ts, err := time.Parse(time.RFC3339Nano, r.SentTime); err == nil && ts.Year() > 1 {
			t.SentAt = ts
		}
		t.fill()
		st.Types = append(st.Types, t)
		seen[t.Type] = true
	}
	// The flat keys: all that Istio 1.0–1.2x gives, and a fallback for a
	// type missing from resources. Absent or empty *_sent: never sent.
	for _, f := range []struct{ url, sent, acked string }{
		{typePrefix + "envoy.config.cluster.v3.Cluster", e.ClusterSent, e.ClusterAcked},
		{typePrefix + "envoy.config.listener.v3.Listener", e.ListenerSent, e.ListenerAcked},
		{typePrefix + "envoy.config.endpoint.v3.ClusterLoadAssignment", e.EndpointSent, e.EndpointAcked},
		{typePrefix + "envoy.config.route.v3.RouteConfiguration", e.RouteSent, e.RouteAcked},
		{typePrefix + "envoy.config.core.v3.TypedExtensionConfig", e.ExtensionConfigSent, e.ExtensionConfigAcked},
	} {
		short := shortTypes[f.url]
		if f.sent == "" || seen[short] {
			continue
		}
		t := TypeStatus{TypeURL: f.url, Type: short, Sent: f.sent, Acked: f.acked}
		t.fill()
		st.Types = append(st.Types, t)
	}
	sortTypes(st.Types)
	return st
}

// fill sets the versions and the state from the nonces, as Pilot's own
// debugSyncStatus does (pilot/pkg/xds/statusgen.go): an error first, then
// nothing sent, then sent == acked.
func (t *TypeStatus) fill() {
	t.SentVersion, t.AckedVersion = NonceVersion(t.Sent), NonceVersion(t.Acked)
	switch {
	case t.Error != "":
		t.State = StateError
	case t.Sent == "":
		t.State = StateNotSent
	case t.Sent == t.Acked:
		t.State = StateSynced
	default:
		t.State = StateStale
	}
}

func tokenString(tok json.Token) string {
	switch v := tok.(type) {
	case string:
		return "string " + quote(v)
	case json.Delim:
		return quote(string(v))
	case nil:
		return "null"
	}
	return quote(oneLine(jsonString(tok), 40))
}

func jsonString(v any) string {
	b, _ := json.Marshal(v)
	return string(b)
}

func quote(s string) string { return `"` + oneLine(s, 40) + `"` }

// jsonErr turns a decoder error into ErrMalformed; a reader error (the cap,
// the deadline) is passed through for the client to classify.
func jsonErr(err error, what string) error {
	if errors.Is(err, io.EOF) {
		err = io.ErrUnexpectedEOF
	}
	if _, ok := errors.AsType[*json.SyntaxError](err); ok {
		return malformed("malformed %s JSON: %v", what, err)
	}
	if _, ok := errors.AsType[*json.UnmarshalTypeError](err); ok {
		return malformed("malformed %s JSON: %v", what, err)
	}
	if errors.Is(err, io.ErrUnexpectedEOF) {
		return malformed("malformed %s JSON: cut short", what)
	}
	return err
}
