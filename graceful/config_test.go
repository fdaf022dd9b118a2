package graceful_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/meshready/meshready/graceful"
)

func validConfig() graceful.Config {
	return graceful.Config{
		Argv:         []string{"app"},
		Hold:         func(context.Context) error { return nil },
		StartTimeout: 60 * time.Second,
		DrainMin:     5 * time.Second, DrainQuiet: 2 * time.Second, DrainMax: 15 * time.Second,
		Grace: 10 * time.Second, TerminationGrace: 30 * time.Second,
		Activity: func(context.Context) (graceful.Activity, error) { return graceful.Activity{}, nil },
	}
}

func TestValidate(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name   string
		change func(*graceful.Config)
		says   string // "" = valid
	}{
		{"valid", func(*graceful.Config) {}, ""},
		{"no sidecar, no timeout needed", func(c *graceful.Config) { c.Hold, c.StartTimeout = nil, 0 }, ""},
		{"no CMD", func(c *graceful.Config) { c.Argv = nil }, "no CMD"},
		{"empty CMD", func(c *graceful.Config) { c.Argv = []string{""} }, "no CMD"},
		{"negative drain-min", func(c *graceful.Config) { c.DrainMin = -time.Second }, "drain-min=-1s: must not be negative"},
		{"negative grace", func(c *graceful.Config) { c.Grace = -time.Second }, "grace=-1s"},
		{"hold without timeout", func(c *graceful.Config) { c.StartTimeout = 0 }, "start-timeout=0s: must be > 0"},
		{"min above max", func(c *graceful.Config) { c.DrainMin = 20 * time.Second }, "drain-min=20s: must not exceed drain-max=15s"},
	} {
		c := validConfig()
		tc.change(&c)
		err := c.Validate()
		switch {
		case tc.says == "" && err != nil:
			t.Errorf("%s: unexpected error %v", tc.name, err)
		case tc.says != "" && (err == nil || !strings.Contains(err.Error(), tc.says)):
			t.Errorf("%s: error %v, want one saying %q", tc.name, err, tc.says)
		case err != nil && strings.Contains(err.Error(), "\n"):
			t.Errorf("%s: error is not one line: %q", tc.name, err)
		}
	}
}

func TestWarnings(t *testing.T) {
	t.Parallel()
	c := validConfig()
	if w := c.Warnings(); len(w) != 0 {
		t.Errorf("fitting config warns: %q", w)
	}
	// DESIGN.md's defaults: 25s + 10s does not fit Kubernetes' default 30s.
	c.DrainMax = 25 * time.Second
	if w := c.Warnings(); len(w) != 1 || !strings.Contains(w[0], "drain-max (25s) + grace (10s) = 35s exceeds termination-grace (30s)") {
		t.Errorf("warnings %q", w)
	}
	c.TerminationGrace = 0 // unknown: nothing to compare with
	if w := c.Warnings(); len(w) != 0 {
		t.Errorf("unknown termination grace warns: %q", w)
	}
	c.DrainQuiet = 30 * time.Second
	if w := c.Warnings(); len(w) != 1 || !strings.Contains(w[0], "can never be seen quiet") {
		t.Errorf("warnings %q", w)
	}
}
