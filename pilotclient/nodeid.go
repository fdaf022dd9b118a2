package pilotclient

import (
	"fmt"
	"net/netip"
	"strconv"
	"strings"
	"unicode/utf8"
)

const nodeIDForms = "want a node id like sidecar~10.0.0.1~app-1.default~default.svc.cluster.local, or pod.namespace"

// ProxyIDFromNodeID returns the id Pilot knows a proxy by: the third field of
// an Envoy node id (type~ip~pod.namespace~domain), which is what /debug/syncz
// calls "proxy" and what xDS syncz puts in node.id. A bare "pod.namespace" is
// accepted as is. Anything else is an error naming the value.
func ProxyIDFromNodeID(nodeID string) (string, error) {
	id := nodeID
	if strings.Contains(nodeID, "~") {
		parts := strings.Split(nodeID, "~")
		if len(parts) != 4 || parts[0] == "" {
			return "", fmt.Errorf("invalid proxy id %s: a node id has 4 fields separated by ~; %s", quoteID(nodeID), nodeIDForms)
		}
		id = parts[2]
	}
	if err := checkProxyID(id); err != nil {
		return "", fmt.Errorf("invalid proxy id %s: %v; %s", quoteID(nodeID), err, nodeIDForms)
	}
	return id, nil
}

// checkProxyID accepts pod.namespace: a namespace that is a DNS label after
// the last dot, and before it a pod (or VM) name of letters, digits, '-',
// '_' and '.'.
func checkProxyID(id string) error {
	dot := strings.LastIndexByte(id, '.')
	if dot <= 0 || dot == len(id)-1 {
		return fmt.Errorf("no pod.namespace in it")
	}
	pod, ns := id[:dot], id[dot+1:]
	if len(pod) > 253 {
		return fmt.Errorf("pod name longer than 253 characters")
	}
	for i, c := range pod {
		if c == utf8.RuneError {
			if _, n := utf8.DecodeRuneInString(pod[i:]); n <= 1 {
				return fmt.Errorf("pod name has byte %s, which is not UTF-8", strconv.Quote(pod[i:i+1]))
			}
			return fmt.Errorf(`pod name has character \ufffd (input that was not UTF-8?)`)
		}
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_' || c == '.') {
			return fmt.Errorf("pod name has character %q", c)
		}
	}
	if !isDNSLabel(ns) {
		return fmt.Errorf("namespace %s is not a DNS label", quoteID(ns))
	}
	return nil
}

func isDNSLabel(s string) bool {
	if len(s) == 0 || len(s) > 63 || s[0] == '-' || s[len(s)-1] == '-' {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-') {
			return false
		}
	}
	return true
}

// namespaceOf is the namespace of a checked proxy id.
func namespaceOf(proxyID string) string {
	return proxyID[strings.LastIndexByte(proxyID, '.')+1:]
}

// RequesterNodeID builds the node id the agent presents on its own xDS
// debug stream: sidecar~IP~meshready_POD_NS~NS.svc.cluster.local (dots in
// the pod name become '_'). Pilot requires four fields, a node type it
// knows and a valid IP (ip "" uses 127.0.0.1). The third field has no dot
// on purpose: Pilot's /debug/config_dump?proxyID= picks the first
// connection whose id *contains* the given proxy id, and a proxy id is
// always pod.namespace, so it can never match the agent's short-lived
// stream instead of Envoy's. The namespace Pilot checks against the
// token's identity is sent as NAMESPACE metadata (and is the domain's
// first label, Pilot's fallback).
func RequesterNodeID(proxyID, ip string) (string, error) {
	if err := checkProxyID(proxyID); err != nil {
		return "", fmt.Errorf("invalid proxy id %s: %v; %s", quoteID(proxyID), err, nodeIDForms)
	}
	if ip == "" {
		ip = "127.0.0.1"
	}
	if _, err := netip.ParseAddr(ip); err != nil {
		return "", fmt.Errorf("invalid pod IP %q for the xDS node id: want an IPv4 or IPv6 address", clip(ip))
	}
	dot := strings.LastIndexByte(proxyID, '.')
	pod, ns := strings.ReplaceAll(proxyID[:dot], ".", "_"), proxyID[dot+1:]
	return "sidecar~" + ip + "~meshready_" + pod + "_" + ns + "~" + ns + ".svc.cluster.local", nil
}

// requesterNamespace is the namespace to claim for a requester node id:
// the third field's when it is pod.namespace, else the first label of the
// DNS domain (as Pilot's GetProxyConfigNamespace falls back to).
func requesterNamespace(nodeID string) (string, error) {
	parts := strings.Split(nodeID, "~")
	if len(parts) != 4 || parts[0] == "" || parts[1] == "" || parts[2] == "" {
		return "", fmt.Errorf("invalid xDS node id %q: Pilot needs type~ip~id~domain, e.g. sidecar~10.0.0.1~meshready_app-1_default~default.svc.cluster.local", clip(nodeID))
	}
	if checkProxyID(parts[2]) == nil {
		return namespaceOf(parts[2]), nil
	}
	if ns, _, _ := strings.Cut(parts[3], "."); isDNSLabel(ns) {
		return ns, nil
	}
	return "", fmt.Errorf("invalid xDS node id %q: no namespace in its third field (pod.namespace) or domain (namespace.svc.cluster.local)", clip(nodeID))
}

func clip(s string) string { return oneLine(s, 120) }

// quoteID echoes a value as typed, safely: printable UTF-8 as is, control
// characters and bytes that are not UTF-8 escaped (\n, \xff), cut at 120
// bytes of input.
func quoteID(s string) string {
	if len(s) > 120 {
		s = strings.ToValidUTF8(s[:120], "\ufffd") + "…"
	}
	// U+FFFD (what some decoders made of bytes that were not UTF-8) is
	// shown escaped: the one-line cleaner would turn it into a space.
	return strings.ReplaceAll(strconv.Quote(s), "\uFFFD", `\ufffd`)
}
