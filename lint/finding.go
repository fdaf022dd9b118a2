package lint

import (
	"fmt"
	"sort"
	"strings"
)

// Level is how much a finding matters: an error blocks a release (and CI),
// a warning is shown, info is advice.
type Level int

// Levels, most severe first (the order findings sort in).
const (
	Error Level = iota
	Warning
	Info
)

var levelNames = [...]string{Error: "error", Warning: "warning", Info: "info"}

func (l Level) String() string {
	if l >= 0 && int(l) < len(levelNames) {
		return levelNames[l]
	}
	return fmt.Sprintf("level(%d)", int(l))
}

// MarshalText makes the level a word in JSON.
func (l Level) MarshalText() ([]byte, error) { return []byte(l.String()), nil }

// UnmarshalText reads the word back.
func (l *Level) UnmarshalText(b []byte) error {
	for i, n := range levelNames {
		if n == string(b) {
			*l = Level(i)
			return nil
		}
	}
	return fmt.Errorf("level %q is not one of error, warning, info", b)
}

// Finding is one rule broken by one object, at one field.
type Finding struct {
	Level   Level  `json:"level"`
	Code    string `json:"code"`
	Object  string `json:"object"` // Kind/namespace/name
	Kind    string `json:"kind"`
	NS      string `json:"namespace"`
	Name    string `json:"name"`
	Field   string `json:"field"` // path in the object, e.g. spec.ports[0].name
	Message string `json:"message"`
	// PeerCodes are the Istio analyzer / Kiali validation codes that cover
	// the same ground (IST0118, KIA0601…), to look the finding up there.
	PeerCodes []string `json:"peer_codes"` // [] when none
	File      string   `json:"file"`       // "" for live objects
	Line      int      `json:"line"`       // 0 for live objects

}

// sortFindings orders findings for people: errors first, then by object,
// code and field, so one object's findings sit together within a level.
func sortFindings(fs []Finding) {
	sort.SliceStable(fs, func(i, j int) bool {
		a, b := fs[i], fs[j]
		if a.Level != b.Level {
			return a.Level < b.Level
		}
		if a.Object != b.Object {
			return a.Object < b.Object
		}
		if a.Code != b.Code {
			return a.Code < b.Code
		}
		return a.Field < b.Field
	})
}

// Report is the result of one lint run.
type Report struct {
	Findings []Finding
	Objects  int            // objects the rules looked at
	Ignored  map[string]int // kinds no rule looks at, by apiVersion/Kind
}

// Count is how many findings have the level.
func (r *Report) Count(l Level) int {
	n := 0
	for _, f := range r.Findings {
		if f.Level == l {
			n++
		}
	}
	return n
}

// Codes is the sorted set of codes found; handy in tests and summaries.
func (r *Report) Codes() []string {
	seen := map[string]bool{}
	var codes []string
	for _, f := range r.Findings {
		if !seen[f.Code] {
			seen[f.Code] = true
			codes = append(codes, f.Code)
		}
	}
	sort.Strings(codes)
	return codes
}

// Summary is one line: counts by level and what was looked at.
func (r *Report) Summary() string {
	plural := func(n int, word string) string {
		if n == 1 {
			return fmt.Sprintf("%d %s", n, word)
		}
		return fmt.Sprintf("%d %ss", n, word)
	}
	s := fmt.Sprintf("%s, %s, %d info; %s linted", plural(r.Count(Error), "error"), plural(r.Count(Warning), "warning"), r.Count(Info), plural(r.Objects, "object"))
	if len(r.Ignored) > 0 {
		kinds := make([]string, 0, len(r.Ignored))
		total := 0
		for k, n := range r.Ignored {
			kinds = append(kinds, fmt.Sprintf("%s ×%d", k, n))
			total += n
		}
		sort.Strings(kinds)
		s += fmt.Sprintf(", %d ignored (%s)", total, strings.Join(kinds, ", "))
	}
	return s
}
