package envoyadmin

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"strconv"
	"strings"
	"time"
)

// State is Envoy's server state. The numbers are Envoy's own (the
// server.state gauge and envoy.admin.v3.ServerInfo.State), so a gauge value
// converts directly.
type State int

const (
	Live            State = 0
	Draining        State = 1
	PreInitializing State = 2
	Initializing    State = 3
	// StateUnknown is a value this package could not map; never treat it as
	// Live.
	StateUnknown State = -1
)

func (s State) String() string {
	switch s {
	case Live:
		return "LIVE"
	case Draining:
		return "DRAINING"
	case PreInitializing:
		return "PRE_INITIALIZING"
	case Initializing:
		return "INITIALIZING"
	}
	return "UNKNOWN"
}

// stateFromGauge maps the server.state gauge; anything outside Envoy's enum
// is StateUnknown rather than a guess.
func stateFromGauge(v uint64) State {
	if v <= uint64(Initializing) {
		return State(v)
	}
	return StateUnknown
}

// ParseState maps a state name as /server_info prints it (LIVE, or the
// pre-1.9 lower-case "live"/"draining").
func ParseState(name string) State {
	switch strings.ToUpper(strings.TrimSpace(name)) {
	case "LIVE":
		return Live
	case "DRAINING":
		return Draining
	case "PRE_INITIALIZING":
		return PreInitializing
	case "INITIALIZING":
		return Initializing
	}
	return StateUnknown
}

// ServerInfo is the part of /server_info the agent uses.
type ServerInfo struct {
	State   State
	Version string // e.g. "98c1…d58b/1.18.3/Clean/RELEASE/BoringSSL"
	// NodeID is node.id when Envoy reports it (newer versions), else
	// command_line_options.service_node; "" when neither is present (the
	// pre-1.9 text form and trimmed outputs have none).
	NodeID             string
	UptimeCurrentEpoch time.Duration
	UptimeAllEpochs    time.Duration
	// DrainTime and DrainStrategy are Envoy's --drain-time-s and
	// --drain-strategy: how long a graceful /drain_listeners lasts.
	DrainTime     time.Duration
	DrainStrategy string
}

type rawServerInfo struct {
	Version            string          `json:"version"`
	State              json.RawMessage `json:"state"`
	UptimeCurrentEpoch string          `json:"uptime_current_epoch"`
	UptimeAllEpochs    string          `json:"uptime_all_epochs"`
	CommandLineOptions struct {
		ServiceNode   string `json:"service_node"`
		DrainTime     string `json:"drain_time"`
		DrainStrategy string `json:"drain_strategy"`
	} `json:"command_line_options"`
	Node struct {
		ID string `json:"id"`
	} `json:"node"`
}

// ParseServerInfo reads /server_info in either form Envoy has served: the v3
// JSON (`"state": "LIVE"`), and the pre-1.9 text line
// `envoy <version> live <uptime> <uptime all epochs> <epoch>`.
func ParseServerInfo(body []byte) (ServerInfo, error) {
	body = bytes.TrimSpace(body)
	switch {
	case len(body) > 0 && body[0] == '{':
		return parseServerInfoJSON(body)
	case bytes.HasPrefix(body, []byte("envoy ")):
		return parseServerInfoText(string(body))
	}
	return ServerInfo{}, notAdmin("/server_info is neither JSON nor Envoy's pre-1.9 text form (starts %q)", oneLine(string(body), 40))
}

func parseServerInfoJSON(body []byte) (ServerInfo, error) {
	var raw rawServerInfo
	if err := json.Unmarshal(body, &raw); err != nil {
		return ServerInfo{}, malformed("malformed JSON from Envoy: %v", err)
	}
	if len(raw.State) == 0 && raw.Version == "" {
		return ServerInfo{}, notAdmin("/server_info JSON has neither state nor version")
	}
	si := ServerInfo{
		State:              StateUnknown,
		Version:            raw.Version,
		NodeID:             raw.Node.ID,
		UptimeCurrentEpoch: protoDuration(raw.UptimeCurrentEpoch),
		UptimeAllEpochs:    protoDuration(raw.UptimeAllEpochs),
		DrainTime:          protoDuration(raw.CommandLineOptions.DrainTime),
		DrainStrategy:      raw.CommandLineOptions.DrainStrategy,
	}
	if si.NodeID == "" {
		si.NodeID = raw.CommandLineOptions.ServiceNode
	}
	if len(raw.State) > 0 {
		var name string
		var num uint64
		// Envoy prints the enum's name; a number is accepted for
		// proto-JSON encoders configured to emit enum values.
		if json.Unmarshal(raw.State, &name) == nil {
			si.State = ParseState(name)
		} else if json.Unmarshal(raw.State, &num) == nil {
			si.State = stateFromGauge(num)
		}
	}
	return si, nil
}

func parseServerInfoText(line string) (ServerInfo, error) {
	f := strings.Fields(line)
	if len(f) < 3 {
		return ServerInfo{}, malformed("short pre-1.9 /server_info line %q", oneLine(line, 80))
	}
	si := ServerInfo{Version: f[1], State: ParseState(f[2])}
	if len(f) > 3 {
		si.UptimeCurrentEpoch = seconds(f[3])
	}
	if len(f) > 4 {
		si.UptimeAllEpochs = seconds(f[4])
	}
	return si, nil
}

func seconds(s string) time.Duration {
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil || n < 0 || n > int64(1<<62)/int64(time.Second) {
		return 0
	}
	return time.Duration(n) * time.Second
}

// protoDuration parses proto3 JSON durations ("581130s", "0.500s"); anything
// else is 0, since these fields are informational.
func protoDuration(s string) time.Duration {
	if !strings.HasSuffix(s, "s") {
		return 0
	}
	d, err := time.ParseDuration(s)
	if err != nil || d < 0 {
		return 0
	}
	return d
}

// ServerInfo fetches /server_info.
func (c *Client) ServerInfo(ctx context.Context) (ServerInfo, error) {
	var si ServerInfo
	err := c.call(ctx, "GET", "/server_info", "", func(r io.Reader) error {
		body, err := io.ReadAll(r)
		if err != nil {
			return err
		}
		si, err = ParseServerInfo(body)
		return err
	})
	return si, err
}
