package envoyadmin

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"math"
	"strconv"
	"strings"
)

// Stats is one /stats answer.
type Stats struct {
	// Values holds counters and gauges by name. From Prometheus input the
	// key is the series as written (name{labels}, or the bare name when it
	// has no labels), plus the dotted alias for the readiness stats (see
	// ParsePrometheusStats).
	Values map[string]uint64
	// Text holds text readouts (e.g. cluster_manager.cds.version_text).
	Text map[string]string
	// Skipped counts lines that did not parse. They are not fatal: a stat
	// format Envoy adds tomorrow must not make today's agent unready.
	Skipped int
}

// Value returns a counter or gauge and whether it was present.
func (s Stats) Value(name string) (uint64, bool) {
	v, ok := s.Values[name]
	return v, ok
}

// maxStatLine bounds one line; a stat line is short, so a longer one means the
// body is not Envoy's stats.
const maxStatLine = 1 << 20

// ParseStats reads Envoy's text /stats ("name: value" a line). Histograms are
// skipped. A text readout is everything between the first `"` after ": " and
// the last `"` on the line, because Envoy does not escape quotes inside it.
// Lines that do not parse are counted in Skipped; a non-empty body in which
// no line is a stat is an error (it is not Envoy's stats). An empty body is
// not an error: a filter may match nothing.
func ParseStats(r io.Reader) (Stats, error) {
	s := Stats{Values: make(map[string]uint64), Text: make(map[string]string)}
	sc := bufio.NewScanner(r)
	sc.Buffer(nil, maxStatLine)
	var good int
	var firstBad []byte
	for sc.Scan() {
		line := bytes.TrimRight(sc.Bytes(), " \t\r")
		if len(bytes.TrimSpace(line)) == 0 {
			continue
		}
		i := bytes.Index(line, []byte(": "))
		if i <= 0 || !validStatName(line[:i]) {
			s.Skipped++
			if firstBad == nil {
				firstBad = bytes.Clone(line[:min(len(line), 60)])
			}
			continue
		}
		name, val := line[:i], bytes.TrimLeft(line[i+2:], " ")
		switch {
		case len(val) > 0 && val[0] == '"':
			if end := bytes.LastIndexByte(val, '"'); end > 0 {
				s.Text[string(name)] = string(val[1:end])
				good++
				continue
			}
		case isHistogramValue(val):
			good++
			continue
		default:
			if v, ok := parseUint(val); ok {
				s.Values[string(name)] = v
				good++
				continue
			}
		}
		s.Skipped++
		if firstBad == nil {
			firstBad = bytes.Clone(line[:min(len(line), 60)])
		}
	}
	if err := sc.Err(); err != nil {
		if err == bufio.ErrTooLong {
			return s, notAdmin("a /stats line is longer than %d bytes", maxStatLine)
		}
		return s, err
	}
	if good == 0 && s.Skipped > 0 {
		return s, notAdmin("no Envoy stats in the answer (%d lines did not parse, first %q)", s.Skipped, oneLine(string(firstBad), 60))
	}
	return s, nil
}

// validStatName rejects names with spaces or control characters: stat names
// never have them, and a line that does is prose, not a stat.
func validStatName(b []byte) bool {
	for _, c := range b {
		if c <= ' ' || c == 0x7f {
			return false
		}
	}
	return true
}

// isHistogramValue recognises Envoy's text histogram renderings:
// "P0(nan,1) P25(…) …", "B0.5(0,0) B1(…) …" (histogram_buckets) and
// "No recorded values".
func isHistogramValue(v []byte) bool {
	if bytes.HasPrefix(v, []byte("No recorded values")) {
		return true
	}
	return len(v) > 2 && (v[0] == 'P' || v[0] == 'B') && v[1] >= '0' && v[1] <= '9' && bytes.IndexByte(v, '(') > 0
}

// parseUint is strconv.ParseUint without the string conversion, which
// matters at one parse per line per second in every pod.
func parseUint(b []byte) (uint64, bool) {
	if len(b) == 0 || len(b) > 20 {
		return 0, false
	}
	var v uint64
	for _, c := range b {
		if c < '0' || c > '9' {
			return 0, false
		}
		d := uint64(c - '0')
		if v > (math.MaxUint64-d)/10 {
			return 0, false
		}
		v = v*10 + d
	}
	return v, true
}

// promAliases maps Prometheus names of the stats this package reasons about
// to their /stats names. Envoy's Prometheus names are lossy (dots and
// underscores both become "_"), so only known names are mapped back.
var promAliases = func() map[string]string {
	m := make(map[string]string)
	names := []string{
		"server.state", "server.live", "listener_manager.workers_started",
		"cluster_manager.warming_clusters", "listener_manager.total_listeners_warming",
		"control_plane.connected_state",
	}
	for _, sub := range []string{"cluster_manager.cds.", "listener_manager.lds."} {
		for _, f := range []string{"update_attempt", "update_success", "update_failure",
			"update_rejected", "init_fetch_timeout", "update_time", "version", "version_text"} {
			names = append(names, sub+f)
		}
	}
	for _, n := range names {
		m["envoy_"+strings.ReplaceAll(n, ".", "_")] = n
	}
	return m
}()

// ParsePrometheusStats reads Envoy's /stats/prometheus (or an Istio agent's
// merged :15020/stats/prometheus). Every integral sample is kept under its
// series name as written; the readiness stats are also stored under their
// /stats names (envoy_server_state → server.state,
// envoy_cluster_manager_cds_update_success → cluster_manager.cds.update_success),
// so FactsFromStats works on either format. Text readouts, which Envoy only
// emits with ?text_readouts as a gauge with a text_value label, land in Text
// under the alias. Histogram and summary series are skipped, as are samples
// that are not a uint64 (NaN, negative or fractional values from merged
// non-Envoy metrics); only syntax errors count in Skipped.
func ParsePrometheusStats(r io.Reader) (Stats, error) {
	s := Stats{Values: make(map[string]uint64), Text: make(map[string]string)}
	skipFamilies := make(map[string]bool) // histogram and summary families
	sc := bufio.NewScanner(r)
	sc.Buffer(nil, maxStatLine)
	var good int
	var firstBad string
	bad := func(line string) {
		s.Skipped++
		if firstBad == "" {
			firstBad = line[:min(len(line), 60)]
		}
	}
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" {
			continue
		}
		if line[0] == '#' {
			if f := strings.Fields(line); len(f) >= 4 && f[1] == "TYPE" {
				if f[3] == "histogram" || f[3] == "summary" {
					skipFamilies[f[2]] = true
				}
			}
			continue
		}
		name, labels, value, ok := splitPromSample(line)
		if !ok {
			bad(line)
			continue
		}
		good++
		if skipFamilies[name] || skipFamilies[strings.TrimSuffix(name, "_bucket")] ||
			skipFamilies[strings.TrimSuffix(name, "_sum")] || skipFamilies[strings.TrimSuffix(name, "_count")] {
			continue
		}
		alias := promAliases[name]
		if alias != "" {
			if tv, ok := promLabel(labels, "text_value"); ok {
				if _, dup := s.Text[alias]; !dup {
					s.Text[alias] = tv
				}
				continue
			}
		}
		v, ok := promValue(value)
		if !ok {
			continue
		}
		key := name
		if labels != "" {
			key = name + "{" + labels + "}"
		}
		s.Values[key] = v
		if alias != "" {
			if _, dup := s.Values[alias]; !dup {
				s.Values[alias] = v
			}
		}
	}
	if err := sc.Err(); err != nil {
		if err == bufio.ErrTooLong {
			return s, notAdmin("a Prometheus line is longer than %d bytes", maxStatLine)
		}
		return s, err
	}
	if good == 0 && s.Skipped > 0 {
		return s, notAdmin("no Prometheus samples in the answer (%d lines did not parse, first %q)", s.Skipped, oneLine(firstBad, 60))
	}
	return s, nil
}

// splitPromSample splits `name{labels} value [timestamp]`. labels is the raw
// text between the braces ("" for none or "{}").
func splitPromSample(line string) (name, labels, value string, ok bool) {
	i := strings.IndexAny(line, "{ \t")
	if i <= 0 {
		return "", "", "", false
	}
	name, rest := line[:i], line[i:]
	if !validPromName(name) {
		return "", "", "", false
	}
	if rest[0] == '{' {
		end := closingBrace(rest)
		if end < 0 {
			return "", "", "", false
		}
		labels, rest = rest[1:end], rest[end+1:]
	}
	f := strings.Fields(rest)
	if len(f) < 1 || len(f) > 2 {
		return "", "", "", false
	}
	if _, err := strconv.ParseFloat(f[0], 64); err != nil {
		if _, uerr := strconv.ParseUint(f[0], 10, 64); uerr != nil {
			return "", "", "", false
		}
	}
	return name, labels, f[0], true
}

func validPromName(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c == '_' || c == ':' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || i > 0 && c >= '0' && c <= '9') {
			return false
		}
	}
	return true
}

// closingBrace finds the `}` that closes the label set starting at s[0],
// honouring quoted values with backslash escapes.
func closingBrace(s string) int {
	inQuote := false
	for i := 1; i < len(s); i++ {
		switch c := s[i]; {
		case inQuote && c == '\\':
			i++
		case c == '"':
			inQuote = !inQuote
		case !inQuote && c == '}':
			return i
		}
	}
	return -1
}

// promLabel returns one label's unescaped value from a raw label set.
func promLabel(labels, key string) (string, bool) {
	for labels != "" {
		eq := strings.IndexByte(labels, '=')
		if eq < 0 || eq+1 >= len(labels) || labels[eq+1] != '"' {
			return "", false
		}
		k := strings.TrimSpace(labels[:eq])
		var val strings.Builder
		i := eq + 2
		for ; i < len(labels); i++ {
			c := labels[i]
			if c == '\\' && i+1 < len(labels) {
				i++
				switch labels[i] {
				case 'n':
					val.WriteByte('\n')
				default:
					val.WriteByte(labels[i])
				}
				continue
			}
			if c == '"' {
				break
			}
			val.WriteByte(c)
		}
		if i >= len(labels) {
			return "", false
		}
		if k == key {
			return val.String(), true
		}
		labels = strings.TrimLeft(labels[i+1:], " ,")
	}
	return "", false
}

// promValue converts a sample value to uint64 when it is one. Large counters
// are tried as integers first: a float64 cannot hold a 64-bit hash exactly.
func promValue(s string) (uint64, bool) {
	if v, err := strconv.ParseUint(s, 10, 64); err == nil {
		return v, true
	}
	f, err := strconv.ParseFloat(s, 64)
	if err != nil || math.IsNaN(f) || f < 0 || f >= math.MaxUint64 || f != math.Trunc(f) {
		return 0, false
	}
	return uint64(f), true
}

// StatsQuery selects stats on Envoy's side, which keeps answers small.
type StatsQuery struct {
	Filter   string // RE2 (older Envoys: std::regex), partial match on the name
	UsedOnly bool   // only stats that were ever written; hides zero counters
	Type     string // "", Counters, Gauges, TextReadouts, Histograms or All (newer Envoys; older ones ignore it)
}

// Stats fetches text /stats.
func (c *Client) Stats(ctx context.Context, q StatsQuery) (Stats, error) {
	switch q.Type {
	case "", "Counters", "Gauges", "TextReadouts", "Histograms", "All":
	default:
		return Stats{}, fmt.Errorf("invalid stats type %q: want Counters, Gauges, TextReadouts, Histograms or All", q.Type)
	}
	var rq []string
	if q.UsedOnly {
		rq = append(rq, "usedonly")
	}
	if q.Filter != "" {
		rq = append(rq, "filter="+rawQueryValue(q.Filter))
	}
	if q.Type != "" {
		rq = append(rq, "type="+q.Type)
	}
	var s Stats
	err := c.call(ctx, "GET", "/stats", query(rq...), func(r io.Reader) error {
		var err error
		s, err = ParseStats(r)
		return err
	})
	return s, err
}
