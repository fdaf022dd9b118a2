package main

import (
	"context"
	"encoding/json"
	"fmt"
	"text/tabwriter"
	"time"
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
	a, err := c.build(env.Log, c.Timeout)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*c.Timeout+time.Second)
	defer cancel()
	rep := a.sync.Report(ctx)
	if c.Output == "json" {
		b, _ := json.Marshal(rep)
		fmt.Fprintf(env.Stdout, "%s\n", b)
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
		verdict := "synced"
		if !rep.Synced {
			verdict = "not synced"
		}
		fmt.Fprintf(env.Stdout, "%s: %s\n", verdict, rep.Reason)
	}
	if !rep.Synced {
		return codeError(exitNotReady)
	}
	return nil
}
