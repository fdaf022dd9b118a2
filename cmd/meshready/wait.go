package main

import (
	"context"
	"fmt"
	"time"
)

// WaitCmd is `meshready wait`: block until ready, for postStart hooks and
// scripts.
type WaitCmd struct {
	AgentFlags `embed:""`
	Timeout    time.Duration `default:"60s" help:"How long to wait for the pod to be ready."`
}

// Validate checks --timeout.
func (c *WaitCmd) Validate() error {
	if c.Timeout <= 0 {
		return fmt.Errorf("--timeout=%s: must be a positive duration such as 60s", c.Timeout)
	}
	return nil
}

// Run waits; exit 0 ready, 1 timed out (with the last reason).
func (c *WaitCmd) Run(env *Env) error {
	a, err := c.build(env.Log, defaultCheckTimeout)
	if err != nil {
		return err
	}
	start := time.Now()
	ctx, cancel := context.WithTimeout(context.Background(), c.Timeout)
	defer cancel()
	if err := pollReady(ctx, a.ready, a.holdPoll(), env.Log); err != nil {
		fmt.Fprintf(env.Stderr, "meshready: not ready after %s: %v\n", c.Timeout, err)
		return codeError(exitNotReady)
	}
	fmt.Fprintf(env.Stdout, "ready after %s\n", time.Since(start).Round(time.Millisecond))
	return nil
}
