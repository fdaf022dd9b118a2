package main

import (
	"context"
	"fmt"
	"time"
)

// WaitCmd is `meshready wait`: block until ready, for postStart hooks and
// scripts.
type WaitCmd struct {
	AgentFlags  `embed:""`
	WaitTimeout time.Duration `default:"60s" help:"How long to wait for the pod to be ready (total)."`
	// Timeout is the old name of --wait-timeout. It meant something else
	// on every other command (each check's deadline), so MESHREADY_TIMEOUT
	// set for `serve` in a pod made `wait` give up after 800ms. Kept as a
	// flag that warns; never read from the environment.
	Timeout time.Duration `env:"-" hidden:"" help:"Deprecated: use --wait-timeout."`
}

// Validate checks the timeouts.
func (c *WaitCmd) Validate() error {
	if c.Timeout < 0 {
		return fmt.Errorf("--timeout=%s: must be a positive duration such as 60s (and is deprecated: use --wait-timeout)", c.Timeout)
	}
	if c.WaitTimeout <= 0 {
		return fmt.Errorf("--wait-timeout=%s: must be a positive duration such as 60s", c.WaitTimeout)
	}
	return nil
}

// Run waits; exit 0 ready, 1 timed out (with the last reason).
func (c *WaitCmd) Run(env *Env) error {
	total := c.WaitTimeout
	if c.Timeout > 0 {
		env.Log.Warn("--timeout on wait is deprecated: use --wait-timeout (MESHREADY_WAIT_TIMEOUT)", "wait_timeout", c.Timeout)
		total = c.Timeout
	}
	a, err := c.build(env.Log, defaultCheckTimeout, nil)
	if err != nil {
		return err
	}
	start := time.Now()
	ctx, cancel := context.WithTimeout(context.Background(), total)
	defer cancel()
	if err := pollReady(ctx, a.ready, a.holdPoll(), env.Log); err != nil {
		fmt.Fprintf(env.Stderr, "meshready wait: not ready after %s (--wait-timeout): %v\n", total, err)
		return codeError(exitNotReady)
	}
	fmt.Fprintf(env.Stdout, "ready after %s\n", time.Since(start).Round(time.Millisecond))
	return nil
}
