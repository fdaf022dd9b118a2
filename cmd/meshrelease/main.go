// Command meshrelease is the release side of meshready (DESIGN.md, "Part
// two"): the release verbs (start, list, status, pause, resume, promote,
// abort: package releasecli, edits of Release objects); `lint`, the
// onboarding rules a service must satisfy before the mesh and a release
// treat it right; and `version`. This package only wires: the rules are
// package lint, the cluster reading lint/cluster.
package main

import (
	"errors"
	"fmt"
	"io"
	"os"
	"runtime"

	"github.com/alecthomas/kong"

	"github.com/meshready/meshready/internal/oneline"
	"github.com/meshready/meshready/releasecli"
)

// Set by the Makefile with -ldflags -X.
var (
	version = "dev"
	commit  = "unknown"
)

// Exit codes (DESIGN.md, "Onboarding lint").
const (
	exitOK       = 0
	exitFindings = 1 // lint: at least one error-level finding
	exitBadInput = 2 // bad flags, or input that could not be read
)

// CLI is the whole command line. Every flag can also come from the
// environment as MESHRELEASE_<FLAG_IN_UPPER_SNAKE>.
type CLI struct {
	releasecli.Commands `embed:""`
	Controller          ControllerCmd `cmd:"" help:"Run the release controller (in the cluster: config/default installs it)."`
	Lint                LintCmd       `cmd:"" help:"Check Services, Deployments, DestinationRules and VirtualServices against the onboarding rules (exit 0 no error, 1 errors, 2 input not readable)."`
	Version             VersionCmd    `cmd:"" help:"Print version, commit and Go version."`
}

// Env is what every command gets besides its flags.
type Env struct {
	Stdin  io.Reader
	Stdout io.Writer
	Stderr io.Writer
}

func main() {
	os.Exit(run(os.Args[1:], os.Stdin, os.Stdout, os.Stderr))
}

// exitRequest is kong asking to end the program (after --help).
type exitRequest int

// exitCode ends a command with a code, its reason already printed.
type exitCode int

func (c exitCode) Error() string { return fmt.Sprintf("exit %d", int(c)) }

// run parses args and runs the command; main's only job is os.Exit.
func run(args []string, stdin io.Reader, stdout, stderr io.Writer) (code int) {
	defer func() {
		if r := recover(); r != nil {
			e, ok := r.(exitRequest)
			if !ok {
				panic(r)
			}
			code = int(e)
		}
	}()
	var cli CLI
	parser, err := kong.New(&cli,
		kong.Name("meshrelease"),
		kong.Description("Releases on the mesh: start, follow and steer Release objects (the controller does the work), and the onboarding lint."),
		kong.DefaultEnvars("MESHRELEASE"),
		kong.Writers(stdout, stderr),
		kong.Exit(func(code int) { panic(exitRequest(code)) }),
	)
	if err != nil {
		fmt.Fprintf(stderr, "meshrelease: internal error building the command line: %v\n", err)
		return exitBadInput
	}
	kctx, err := parser.Parse(args)
	if err != nil {
		fmt.Fprintf(stderr, "meshrelease: %s\n", oneline.Cut(err.Error(), 1000))
		return exitBadInput
	}
	if kctx == nil || kctx.Command() == "" {
		return exitOK
	}
	if err := kctx.Run(&Env{Stdin: stdin, Stdout: stdout, Stderr: stderr}, &releasecli.IO{Stdout: stdout, Stderr: stderr}); err != nil {
		var ec exitCode
		if errors.As(err, &ec) {
			return int(ec)
		}
		var rc releasecli.ExitCode
		if errors.As(err, &rc) {
			return int(rc)
		}
		fmt.Fprintf(stderr, "meshrelease: %s\n", oneline.Cut(err.Error(), 1000))
		return exitBadInput
	}
	return exitOK
}

// VersionCmd is `meshrelease version`.
type VersionCmd struct{}

// Run prints the build.
func (VersionCmd) Run(env *Env) error {
	fmt.Fprintf(env.Stdout, "meshrelease %s (commit %s, %s %s/%s)\n", version, commit, runtime.Version(), runtime.GOOS, runtime.GOARCH)
	return nil
}
