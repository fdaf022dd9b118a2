// Package oneline makes text safe for the one-line messages the agent gives
// everywhere: a readiness body, a log line, a CLI's stderr.
package oneline

import (
	"strings"
	"unicode"
	"unicode/utf8"
)

// Cut turns s into one line: control characters and newlines become spaces,
// runs of spaces collapse, and it is cut at max runes with "…".
func Cut(s string, max int) string {
	var b strings.Builder
	n := 0
	space := false
	for _, r := range s {
		if r == utf8.RuneError || unicode.IsControl(r) || unicode.IsSpace(r) {
			if !space && b.Len() > 0 {
				b.WriteByte(' ')
				n++
			}
			space = true
			continue
		}
		if n >= max {
			return strings.TrimRight(b.String(), " ") + "…"
		}
		space = false
		b.WriteRune(r)
		n++
	}
	return strings.TrimRight(b.String(), " ")
}
