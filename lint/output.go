package lint

import (
	"encoding/json"
	"fmt"
	"io"
	"sort"
	"strings"
	"text/tabwriter"

	"github.com/meshready/meshready/internal/oneline"
)

// WriteTable writes one line per finding (LEVEL CODE OBJECT FIELD MESSAGE,
// sorted; peer codes in brackets after the message), then the summary line.
func WriteTable(w io.Writer, r *Report) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	if len(r.Findings) > 0 {
		fmt.Fprintln(tw, "LEVEL\tCODE\tOBJECT\tFIELD\tMESSAGE")
	}
	for _, f := range r.Findings {
		msg := f.Message
		if len(f.PeerCodes) > 0 {
			msg += " [" + strings.Join(f.PeerCodes, " ") + "]"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", f.Level, f.Code, f.Object, f.Field, oneline.Cut(msg, 2000))
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	_, err := fmt.Fprintln(w, r.Summary())
	return err
}

// JSONSchemaVersion is bumped on any change to the JSON output that could
// break a reader (a renamed or removed field); added fields do not bump it.
const JSONSchemaVersion = 1

// JSONReport is the `-o json` document.
type JSONReport struct {
	SchemaVersion int         `json:"schema_version"`
	Findings      []Finding   `json:"findings"` // never null
	Summary       JSONSummary `json:"summary"`
}

// JSONSummary counts the findings and the objects.
type JSONSummary struct {
	Errors   int            `json:"errors"`
	Warnings int            `json:"warnings"`
	Infos    int            `json:"infos"`
	Objects  int            `json:"objects"`
	Ignored  map[string]int `json:"ignored"` // by apiVersion/Kind; never null
}

// WriteJSON writes the report as one JSON document.
func WriteJSON(w io.Writer, r *Report) error {
	doc := JSONReport{
		SchemaVersion: JSONSchemaVersion,
		Findings:      r.Findings,
		Summary: JSONSummary{
			Errors: r.Count(Error), Warnings: r.Count(Warning), Infos: r.Count(Info),
			Objects: r.Objects, Ignored: r.Ignored,
		},
	}
	if doc.Findings == nil {
		doc.Findings = []Finding{}
	}
	if doc.Summary.Ignored == nil {
		doc.Summary.Ignored = map[string]int{}
	}
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(doc)
}

// WriteRules lists every rule: CODE LEVEL PEERS SCOPE TITLE.
func WriteRules(w io.Writer) error {
	rules := append([]Rule(nil), Rules...)
	sort.Slice(rules, func(i, j int) bool { return rules[i].Code < rules[j].Code })
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "CODE\tLEVEL\tSAME AS\tWHERE\tRULE")
	for _, r := range rules {
		peers, where := "-", "manifests, cluster"
		if len(r.PeerCodes) > 0 {
			peers = strings.Join(r.PeerCodes, ",")
		}
		switch {
		case r.ClusterOnly:
			where = "cluster"
		case r.ManifestsOnly:
			where = "manifests"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", r.Code, r.Level, peers, where, r.Title)
	}
	return tw.Flush()
}
