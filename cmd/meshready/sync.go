package main

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/meshready/meshready/probe"
)

// SyncCmd is `meshready sync`: istioctl proxy-status for one pod, with no
// kubectl — per xDS type, what Envoy has and what Pilot sent and saw acked.
type SyncCmd struct {
	AgentFlags   `embed:""`
	CheckTimeout `embed:""`
	Output       string `enum:"table,json" default:"table" help:"table or json."`
}

// Run prints the table; exit 0 when every type Pilot sent is synced.
func (c *SyncCmd) Run(env *Env) error {
	a, err := c.build(env.Log, c.Timeout, nil)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*c.Timeout+time.Second)
	defer cancel()
	rep := a.sync.Report(ctx)
	if c.Output == "json" {
		b, _ := json.Marshal(rep)
		fmt.Fprintf(env.Stdout, "%s\n", b)
	} else if rep.Status == probe.Skip {
		// No sidecar: nothing to compare, and an empty table would say less.
		fmt.Fprintln(env.Stdout, rep.Reason)
	} else {
		if rep.ProxyID != "" {
			fmt.Fprintf(env.Stdout, "proxy: %s\n", rep.ProxyID)
		}
		tw := tabwriter.NewWriter(env.Stdout, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "TYPE\tENVOY VERSION\tPILOT SENT\tPILOT ACKED\tSTATE\tAGE\tSOURCE")
		for _, r := range rep.Rows {
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", r.Type, r.EnvoyVersion, r.PilotSent, r.PilotAcked, r.State, r.Age, r.Source)
		}
		tw.Flush()
		// The reason may already say "not synced: …"; say it once.
		if rep.Synced {
			fmt.Fprintf(env.Stdout, "synced: %s\n", rep.Reason)
		} else {
			fmt.Fprintf(env.Stdout, "not synced: %s\n", strings.TrimPrefix(rep.Reason, "not synced: "))
		}
	}
	if !rep.Synced {
		return codeError(exitNotReady)
	}
	return nil
}
