package main

import (
	"fmt"
	"net"
	"net/url"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/meshready/meshready/internal/redact"
	"github.com/meshready/meshready/pilotclient"
	"github.com/meshready/meshready/probe"
)

// PilotFlags say how to ask Pilot whether this pod's sidecar has the config
// it pushed.
type PilotFlags struct {
	Pilot       string        `help:"Pilot's address: http://HOST:15014 (debug HTTP) or grpc://HOST:15010 / grpcs://HOST:15012 (xDS). Empty: no Pilot is asked (Envoy's own counters decide)."`
	PilotSource string        `enum:"auto,syncz,xds,configdump,local" default:"auto" help:"Which of Pilot's surfaces answers mesh.synced: auto tries xds (grpc addresses) or syncz then configdump (http addresses), then local."`
	PilotToken  string        `default:"/var/run/secrets/tokens/istio-token" help:"Bearer token file for grpcs:// and https:// (Istio's istio-ca audience token)."`
	ProxyID     string        `help:"This pod's proxy as Pilot knows it: a full node id (sidecar~10.0.0.1~app-1.default~default.svc.cluster.local) or pod.namespace. Default: Envoy's node id, else $POD_NAME.$POD_NAMESPACE."`
	SyncGate    string        `enum:"startup,always,off" default:"startup" help:"startup: mesh.synced gates readiness until the first sync, then Pilot is not asked again; always: keep checking, unready when stale longer than --stale-after; off: Envoy's own counters only."`
	StaleAfter  time.Duration `default:"30s" help:"With --sync-gate=always, how long a push may stay unacked before the pod turns unready."`
}

// Validate checks Pilot's address and the stale window.
func (p *PilotFlags) Validate() error {
	if p.Pilot != "" {
		if _, err := pilotclient.New(p.Pilot, pilotclient.WithToken("")); err != nil {
			return fmt.Errorf("--pilot: %v", err)
		}
		if err := checkAddress(p.Pilot); err != nil {
			return fmt.Errorf("--pilot=%q: %v", redact.URL(p.Pilot), err)
		}
	} else if p.PilotSource != "auto" && p.PilotSource != "local" {
		return fmt.Errorf("--pilot-source=%s needs --pilot (Pilot's address)", p.PilotSource)
	}
	if p.ProxyID != "" {
		if _, err := pilotclient.ProxyIDFromNodeID(p.ProxyID); err != nil {
			// The error quotes the value safely (escaped, as typed) and
			// says what is wanted: once each.
			return fmt.Errorf("--proxy-id: %v", err)
		}
	}
	if p.StaleAfter <= 0 {
		return fmt.Errorf("--stale-after=%s: must be a positive duration such as 30s", p.StaleAfter)
	}
	return nil
}

// meshOptions builds mesh.synced's options; the Pilot clients report every
// request they make to Pilot in meshready_pilot_requests_total.
func (p *PilotFlags) meshOptions(f *AgentFlags, m *probe.Metrics, checkTimeout time.Duration) (*probe.MeshOptions, error) {
	requests := prometheus.NewCounterVec(prometheus.CounterOpts{Name: "meshready_pilot_requests_total", Help: "Requests that reached for Pilot, by source and answer code."}, []string{"source", "code"})
	syncState := prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "meshready_sync_state", Help: "1 for each xDS type's state in Pilot's last answer (SYNCED, STALE, NOT SENT, ERROR, UNKNOWN)."}, []string{"type", "state"})
	m.Register(requests, syncState)
	opts := []pilotclient.Option{
		pilotclient.WithTimeout(checkTimeout), pilotclient.WithToken(p.PilotToken),
		pilotclient.WithUserAgent("meshready/" + version),
		pilotclient.WithOnRequest(func(source, code string) { requests.WithLabelValues(source, code).Inc() }),
	}
	mo := &probe.MeshOptions{Source: p.PilotSource, Gate: p.SyncGate, StaleAfter: p.StaleAfter, ProxyID: p.ProxyID,
		OnStatus: func(st pilotclient.ProxyStatus) {
			syncState.Reset()
			for _, t := range st.Types {
				syncState.WithLabelValues(t.Type, string(t.State)).Set(1)
			}
		}}
	if p.Pilot != "" {
		c, err := pilotclient.New(p.Pilot, opts...)
		if err != nil {
			return nil, fmt.Errorf("--pilot: %v", err)
		}
		u, _ := url.Parse(p.Pilot)
		mo.Pilot, mo.PilotScheme = c, u.Scheme
	}
	if p.PilotSource == "auto" && p.SyncGate != "off" {
		// Istio 1.10–1.24's agent serves Pilot's debug data on :15004 over
		// the proxy's own authenticated connection: the cheapest authorised
		// path where it exists.
		u, err := url.Parse(f.EnvoyAdmin)
		if err == nil {
			// Its requests are counted as source="agent": they reach Istio's
			// agent on this pod, not Pilot's own syncz.
			agentOpts := append(append([]pilotclient.Option{}, opts...),
				pilotclient.WithOnRequest(func(_, code string) { requests.WithLabelValues("agent", code).Inc() }))
			if c, err := pilotclient.New("http://"+net.JoinHostPort(u.Hostname(), "15004"), agentOpts...); err == nil {
				mo.AgentPilot = c
			}
		}
	}
	return mo, nil
}
