package main

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/meshready/meshready/internal/oneline"
	"github.com/meshready/meshready/lint"
	"github.com/meshready/meshready/lint/cluster"
)

// LintCmd is `meshrelease lint`.
type LintCmd struct {
	File       []string      `short:"f" placeholder:"FILE|DIR|-" help:"Manifests to lint: a file, a directory (its .yaml/.yml/.json files) or - for stdin. Repeatable."`
	Namespace  string        `short:"n" help:"Lint the live objects of this namespace instead of manifests (one list per kind; adds the rules only the cluster can answer)."`
	Kubeconfig string        `help:"With --namespace: the kubeconfig file (default: the in-cluster service account)."`
	Context    string        `name:"kube-context" help:"With --kubeconfig: the context to use (default: the file's current context)."`
	Timeout    time.Duration `default:"10s" help:"With --namespace: the deadline of each API call."`
	Output     string        `short:"o" enum:"table,json" default:"table" help:"table or json."`
	DrainMax   time.Duration `default:"20s" help:"The agent's drain-max for containers that set no MESHREADY_DRAIN_MAX (the agent's default; set it to your base image's ENV)."`
	Grace      time.Duration `default:"10s" help:"The agent's grace for containers that set no MESHREADY_GRACE."`
	Rules      bool          `help:"List the rules (code, level, Istio/Kiali code, where it applies) and exit."`
}

// Validate runs when kong parses: every bad value is one line, exit 2.
func (c *LintCmd) Validate() error {
	if c.Rules {
		return nil
	}
	switch {
	case len(c.File) == 0 && c.Namespace == "":
		return errors.New("give manifests with -f FILE|DIR|- or a live namespace with --namespace NS")
	case len(c.File) > 0 && c.Namespace != "":
		return errors.New("-f and --namespace are exclusive: lint either manifests or a live namespace")
	case c.Namespace == "" && (c.Kubeconfig != "" || c.Context != ""):
		return errors.New("--kubeconfig and --kube-context only apply with --namespace")
	}
	for _, d := range []struct {
		flag string
		val  time.Duration
	}{{"--timeout", c.Timeout}, {"--drain-max", c.DrainMax}, {"--grace", c.Grace}} {
		if d.val <= 0 {
			return fmt.Errorf("%s=%s: must be a positive duration such as 10s", d.flag, d.val)
		}
	}
	return nil
}

// Run lints and prints; the exit code says whether an error stands.
func (c *LintCmd) Run(env *Env) error {
	if c.Rules {
		return lint.WriteRules(env.Stdout)
	}
	set, err := c.read(env)
	if err != nil {
		var ie lint.InputErrors
		if errors.As(err, &ie) {
			// Every unreadable document on its own line: each names its
			// file and line.
			for _, e := range ie {
				fmt.Fprintf(env.Stderr, "meshrelease: %s\n", oneline.Cut(e.Error(), 1000))
			}
			fmt.Fprintf(env.Stderr, "meshrelease: %d input errors: nothing was linted\n", len(ie))
			return exitCode(exitBadInput)
		}
		return err
	}
	report := lint.Check(set, lint.Options{DrainMax: c.DrainMax, Grace: c.Grace})
	if c.Output == "json" {
		err = lint.WriteJSON(env.Stdout, report)
	} else {
		err = lint.WriteTable(env.Stdout, report)
	}
	if err != nil {
		return err
	}
	if report.Count(lint.Error) > 0 {
		return exitCode(exitFindings)
	}
	return nil
}

func (c *LintCmd) read(env *Env) (*lint.Set, error) {
	if c.Namespace == "" {
		return lint.Load(c.File, env.Stdin)
	}
	cfg, err := cluster.RESTConfig(c.Kubeconfig, c.Context)
	if err != nil {
		return nil, err
	}
	cfg.UserAgent = "meshrelease/" + version
	return cluster.Read(context.Background(), cfg, c.Namespace, c.Timeout)
}
