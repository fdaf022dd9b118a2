package analysis

import (
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"
	"unicode/utf8"
)

func TestBuildQueries(t *testing.T) {
	t.Parallel()
	end := time.Date(2026, 12, 2, 18, 0, 0, 0, time.UTC)
	w := Window{Start: end.Add(-time.Minute), End: end}
	q, err := buildQueries(Target{Namespace: "shop", Service: "greeter", ToWorkload: "greeter-v2", FromWorkload: "greeter-v1"}, w, nil)
	if err != nil {
		t.Fatal(err)
	}
	sel := `reporter="destination",destination_workload_namespace="shop",destination_workload=~"greeter-v2|greeter-v1",destination_service_name="greeter"`
	at := "[60s] @ 1796234400.000)"
	want := queries{
		Requests: `sum by (destination_workload_namespace, destination_workload) (increase(istio_requests_total{` + sel + `}` + at + `)`,
		Failed: `sum by (destination_workload_namespace, destination_workload) (increase(istio_requests_total{` + sel + `,response_code=~"5.."}` + at +
			` or increase(istio_requests_total{` + sel + `,response_code!~"5..",grpc_response_status=~"2|4|12|13|14|15"}` + at + `)`,
	}
	for i, qq := range []string{"0.5", "0.9", "0.95", "0.99"} {
		want.Latency[i] = `histogram_quantile(` + qq + `, sum by (destination_workload_namespace, destination_workload, le) (increase(istio_request_duration_milliseconds_bucket{` + sel + `}` + at + `))`
	}
	if q != want {
		for i, g := range q.all() {
			if g != want.all()[i] {
				t.Errorf("query %d:\n got %s\nwant %s", i, g, want.all()[i])
			}
		}
	}
}

func TestWindowAndSelector(t *testing.T) {
	t.Parallel()
	base := time.Date(2026, 12, 2, 18, 0, 0, 0, time.UTC)
	for _, tc := range []struct {
		name    string
		target  Target
		w       Window
		codes   []int32
		want    []string // substrings of the failed query
		wantErr string
	}{
		{name: "sub-second window in ms", target: Target{Namespace: "n", ToWorkload: "a"},
			w:    Window{base, base.Add(90*time.Second + 250*time.Millisecond)},
			want: []string{"[90250ms] @ 1796234490.250)", `destination_workload=~"a",`}},
		{name: "no from, no service", target: Target{Namespace: "n", ToWorkload: "a"}, w: Window{base, base.Add(time.Minute)},
			want: []string{`{reporter="destination",destination_workload_namespace="n",destination_workload=~"a",response_code=~"5.."}`}},
		{name: "codes sorted and deduplicated", target: Target{Namespace: "n", ToWorkload: "a"}, w: Window{base, base.Add(time.Minute)},
			codes: []int32{14, 2, 14, 13}, want: []string{`grpc_response_status=~"2|13|14"`}},
		{name: "regexp metacharacters in a workload are literal", target: Target{Namespace: "n", ToWorkload: "a.b", FromWorkload: "c+d"},
			w: Window{base, base.Add(time.Minute)}, want: []string{`destination_workload=~"a\\.b|c\\+d"`}},
		{name: "quotes and backslashes escaped", target: Target{Namespace: `we"ird\ns`, ToWorkload: "a", Service: "s\n"},
			w: Window{base, base.Add(time.Minute)}, want: []string{`destination_workload_namespace="we\"ird\\ns"`, `destination_service_name="s\n"`}},
		{name: "empty window", target: Target{Namespace: "n", ToWorkload: "a"}, w: Window{base, base}, wantErr: "is empty"},
		{name: "inverted window", target: Target{Namespace: "n", ToWorkload: "a"}, w: Window{base, base.Add(-time.Second)}, wantErr: "is empty"},
		{name: "sub-millisecond window", target: Target{Namespace: "n", ToWorkload: "a"}, w: Window{base, base.Add(time.Microsecond)}, wantErr: "is empty"},
		{name: "zero start", target: Target{Namespace: "n", ToWorkload: "a"}, w: Window{End: base}, wantErr: "zero bound"},
		{name: "no namespace", target: Target{ToWorkload: "a"}, w: Window{base, base.Add(time.Minute)}, wantErr: "no namespace"},
		{name: "no workload", target: Target{Namespace: "n"}, w: Window{base, base.Add(time.Minute)}, wantErr: "no workload"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			q, err := buildQueries(tc.target, tc.w, tc.codes)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err = %v, want %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			for _, s := range tc.want {
				if !strings.Contains(q.Failed, s) {
					t.Errorf("failed query %s\nlacks %s", q.Failed, s)
				}
			}
		})
	}
}

// unquotePromQL reads a PromQL double-quoted string as Prometheus' lexer
// and parser do: the lexer accepts only these escapes (promql/parser/lex.go
// lexEscape), then the parser calls strconv.Unquote.
func unquotePromQL(s string) (string, bool) {
	if len(s) < 2 || s[0] != '"' || s[len(s)-1] != '"' {
		return "", false
	}
	body := s[1 : len(s)-1]
	for i := 0; i < len(body); i++ {
		switch body[i] {
		case '"', '\n':
			return "", false // unescaped quote or newline ends or breaks the string
		case '\\':
			i++
			if i >= len(body) {
				return "", false
			}
			hex := func(n int) bool {
				for j := 1; j <= n; j++ {
					if i+j >= len(body) || !strings.ContainsRune("0123456789abcdefABCDEF", rune(body[i+j])) {
						return false
					}
				}
				i += n
				return true
			}
			switch c := body[i]; {
			case strings.IndexByte(`abfnrtv\"`, c) >= 0:
			case c >= '0' && c <= '7':
				for j := 1; j <= 2; j++ {
					if i+j >= len(body) || body[i+j] < '0' || body[i+j] > '7' {
						return "", false
					}
				}
				i += 2
			case c == 'x':
				if !hex(2) {
					return "", false
				}
			case c == 'u':
				if !hex(4) {
					return "", false
				}
			case c == 'U':
				if !hex(8) {
					return "", false
				}
			default:
				return "", false
			}
		}
	}
	v, err := strconv.Unquote(s)
	return v, err == nil
}

// FuzzLabelMatchers: whatever the namespace, service and workload names,
// the selector's string literals are valid PromQL whose values are the
// names exactly, and the workload regexp matches exactly the two names.
func FuzzLabelMatchers(f *testing.F) {
	for _, s := range [][3]string{
		{"shop", "greeter-v2", "greeter-v1"},
		{`we"ird\ns`, "a.b", "c+d"},
		{"\x00\xff", "(?i)", "|"},
		{"ünï\u2028", "a\\", `"`},
		{"", "", ""},
	} {
		f.Add(s[0], s[1], s[2])
	}
	lit := regexp.MustCompile(`"(?:[^"\\]|\\.)*"`)
	matcher := regexp.MustCompile(`^,?[a-z_]+(=|=~)$`)
	f.Fuzz(func(t *testing.T, ns, to, from string) {
		tgt := Target{Namespace: ns, Service: ns + to, ToWorkload: to, FromWorkload: from}
		sel := selector(tgt)
		// The selector is name OP "literal" pairs joined by commas; pull the
		// literals out in order as a PromQL lexer would.
		lits := lit.FindAllStringIndex(sel, -1)
		var vals []string
		last := 0
		for _, l := range lits {
			v, ok := unquotePromQL(sel[l[0]:l[1]])
			if !ok {
				t.Fatalf("selector %q: literal %q is not valid PromQL", sel, sel[l[0]:l[1]])
			}
			vals = append(vals, v)
			if between := sel[last:l[0]]; !matcher.MatchString(between) {
				t.Fatalf("selector %q: %q between literals", sel, between)
			}
			last = l[1]
		}
		if last != len(sel) {
			t.Fatalf("selector %q: trailing %q", sel, sel[last:])
		}
		want := 4
		if tgt.Service == "" {
			want = 3
		}
		if len(vals) != want {
			t.Fatalf("selector %q: %d literals, want %d", sel, len(vals), want)
		}
		if vals[0] != "destination" || vals[1] != ns {
			t.Fatalf("selector %q: reporter %q, namespace %q", sel, vals[0], vals[1])
		}
		if want == 4 && vals[3] != tgt.Service {
			t.Fatalf("selector %q: service %q, want %q", sel, vals[3], tgt.Service)
		}
		if !utf8.ValidString(to) || !utf8.ValidString(from) {
			return // Go's regexp (RE2, as Prometheus') works on UTF-8
		}
		re, err := regexp.Compile("^(?:" + vals[2] + ")$")
		if err != nil {
			t.Fatalf("workload regexp %q: %v", vals[2], err)
		}
		if !re.MatchString(to) {
			t.Fatalf("workload regexp %q does not match %q", vals[2], to)
		}
		if from != "" && !re.MatchString(from) {
			t.Fatalf("workload regexp %q does not match %q", vals[2], from)
		}
		for _, other := range []string{to + "x", "x" + to, from + to + "|"} {
			if other != to && other != from && re.MatchString(other) {
				t.Fatalf("workload regexp %q matches %q too", vals[2], other)
			}
		}
	})
}

// FuzzParseRate: ParseRate accepts exactly the API's pattern
// ^(0|1)?(\.[0-9]+)?$ with a value in [0, 1], and its value is the decimal's.
func FuzzParseRate(f *testing.F) {
	for _, s := range []string{"0.01", ".5", "1", "0", "1.0", "1.5", "", ".", "1e-2", "-0.1", "NaN", "0x1p-3", "00.1", "0.01%", " 0.1"} {
		f.Add(s)
	}
	api := regexp.MustCompile(`^(0|1)?(\.[0-9]+)?$`)
	f.Fuzz(func(t *testing.T, s string) {
		v, err := ParseRate(s)
		if err != nil {
			if api.MatchString(s) && s != "" && s != "." && len(s) <= 32 {
				if f, perr := strconv.ParseFloat(s, 64); perr == nil && f <= 1 {
					t.Fatalf("ParseRate(%q) = %v, but the API accepts it", s, err)
				}
			}
			return
		}
		if v < 0 || v > 1 || v != v {
			t.Fatalf("ParseRate(%q) = %v, outside [0,1]", s, v)
		}
		if f, perr := strconv.ParseFloat(s, 64); perr != nil || f != v {
			t.Fatalf("ParseRate(%q) = %v, ParseFloat says %v, %v", s, v, f, perr)
		}
		if !api.MatchString(s) && !regexp.MustCompile(`^[0-9]*\.?[0-9]*$`).MatchString(s) {
			t.Fatalf("ParseRate(%q) accepted something that is not a plain decimal", s)
		}
	})
}
