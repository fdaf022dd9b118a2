package main

import (
	"context"
	"fmt"
	"text/tabwriter"
	"time"
)

// CheckCmd is `meshready check`: one verdict now, each check with its reason.
type CheckCmd struct {
	AgentFlags   `embed:""`
	CheckTimeout `embed:""`
	Output       string `enum:"table,json" default:"table" help:"table or json."`
}

// Run prints the verdict; exit 0 ready, 1 not ready.
func (c *CheckCmd) Run(env *Env) error {
	a, err := c.build(env.Log, c.Timeout, nil)
	if err != nil {
		return err
	}
	// The aggregator bounds each check by --timeout; the slack covers the
	// round's own bookkeeping.
	ctx, cancel := context.WithTimeout(context.Background(), c.Timeout+500*time.Millisecond)
	defer cancel()
	v := a.ready.Refresh(ctx)
	if c.Output == "json" {
		env.Stdout.Write(v.VerboseJSON())
	} else {
		tw := tabwriter.NewWriter(env.Stdout, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "CHECK\tSTATUS\tTOOK\tMESSAGE")
		for _, o := range v.Outcomes {
			msg := o.Result.Message
			if o.Result.Warning != "" {
				msg += " (warning: " + o.Result.Warning + ")"
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", o.Name, o.Result.Status, o.Duration.Round(100*time.Microsecond), msg)
		}
		tw.Flush()
		if v.Ready {
			fmt.Fprintln(env.Stdout, "verdict: ready")
		} else {
			fmt.Fprintf(env.Stdout, "verdict: not ready: %s\n", v.Reason)
		}
	}
	if !v.Ready {
		return codeError(exitNotReady)
	}
	return nil
}
