// Command meshready is the readiness agent, ENTRYPOINT wrapper and
// diagnostic CLI for application containers in pods with an Envoy sidecar.
// This package only wires: each outside system is known by its own package.
package main

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"runtime"
	"strings"

	"github.com/meshready/meshready/internal/oneline"

	"github.com/alecthomas/kong"
)

// Set by the Makefile with -ldflags -X.
var (
	version = "dev"
	commit  = "unknown"
)

// Exit codes shared by every command (DESIGN.md).
const (
	exitOK        = 0
	exitNotReady  = 1
	exitBadConfig = 2
)

// CLI is the whole command line. Every flag can also come from the
// environment as MESHREADY_<FLAG_IN_UPPER_SNAKE>.
type CLI struct {
	LogFormat string `enum:"text,json" default:"text" help:"Log format: text or json."`
	LogLevel  string `enum:"debug,info,warn,error" default:"info" help:"Log level: debug, info, warn or error."`

	Serve   ServeCmd   `cmd:"" help:"Serve /health, /health/live and /metrics until SIGTERM."`
	Run     RunCmd     `cmd:"" help:"Serve /health, start CMD once the sidecar can route, act as PID 1, and drain on SIGTERM before CMD sees it."`
	Check   CheckCmd   `cmd:"" help:"Run every check once and print the verdict (exit 0 ready, 1 not ready)."`
	Wait    WaitCmd    `cmd:"" help:"Block until ready (exit 0) or --timeout (exit 1): for postStart hooks and scripts."`
	Sync    SyncCmd    `cmd:"" help:"Per xDS type: Envoy's version, what Pilot sent and saw acked, the state (exit 0 all synced, 1 not)."`
	Version VersionCmd `cmd:"" help:"Print version, commit and Go version."`
}

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

// run parses args and runs the command; main's only job is os.Exit.
func run(args []string, stdout, stderr io.Writer) (code int) {
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
		kong.Name("meshready"),
		kong.Description("Readiness agent for pods with an Envoy sidecar: serves /health on :54321 from Envoy's admin API, Pilot's sync status and the app's own readiness."),
		kong.DefaultEnvars("MESHREADY"),
		kong.Writers(stdout, stderr),
		kong.Help(helpPrinter),
		// --help and friends end the program through Exit; turn that into
		// a return so run stays testable.
		kong.Exit(func(code int) { panic(exitRequest(code)) }),
	)
	if err != nil {
		fmt.Fprintf(stderr, "meshready: internal error building the command line: %v\n", err)
		return exitBadConfig
	}
	kctx, err := parser.Parse(args)
	if err != nil {
		var pe *kong.ParseError
		var cmd string
		if errors.As(err, &pe) && pe.Context != nil {
			cmd = commandOf(pe.Context)
		}
		fmt.Fprintln(stderr, errLine(cmd, err.Error()))
		return exitBadConfig
	}
	if kctx == nil || kctx.Command() == "" {
		return exitOK
	}
	log := newLogger(stderr, cli.LogFormat, cli.LogLevel)
	env := &Env{Log: log, Stdout: stdout, Stderr: stderr}
	if err := kctx.Run(env); err != nil {
		var ce codeError
		if errors.As(err, &ce) {
			return int(ce) // the command already said why
		}
		fmt.Fprintln(stderr, errLine(commandOf(kctx), err.Error()))
		var de codedError
		if errors.As(err, &de) {
			return de.code
		}
		return exitBadConfig
	}
	return exitOK
}

// Env is what every command gets besides its flags.
type Env struct {
	Log    *slog.Logger
	Stdout io.Writer
	Stderr io.Writer
}

// exitRequest is kong asking to end the program (after --help).
type exitRequest int

// codeError carries an exit code through kong's Run.
type codeError int

func (c codeError) Error() string { return fmt.Sprintf("exit %d", int(c)) }

// codedError is an error with the exit code it ends the program with.
type codedError struct {
	code int
	msg  string
}

func (e codedError) Error() string { return e.msg }

func codeErrorf(code int, format string, args ...any) error {
	return codedError{code: code, msg: fmt.Sprintf(format, args...)}
}

func newLogger(w io.Writer, format, level string) *slog.Logger {
	var lv slog.Level
	_ = lv.UnmarshalText([]byte(level)) // kong's enum already checked it
	opts := &slog.HandlerOptions{Level: lv}
	if format == "json" {
		return slog.New(slog.NewJSONHandler(w, opts))
	}
	return slog.New(slog.NewTextHandler(w, opts))
}

// commandOf is the command kong selected ("run"), "" when none.
func commandOf(k *kong.Context) string {
	if n := k.Selected(); n != nil {
		for n.Parent != nil && n.Parent.Parent != nil {
			n = n.Parent
		}
		return n.Name
	}
	return ""
}

// errLine is the one error prefix style of every command: "meshready
// <cmd>: …" ("meshready: …" before a command is known). kong's own
// "<cmd>: " prefix on validation errors is not repeated.
func errLine(cmd, msg string) string {
	msg = oneLine(msg)
	if cmd == "" {
		return "meshready: " + msg
	}
	return "meshready " + cmd + ": " + strings.TrimPrefix(msg, cmd+": ")
}

// helpPrinter is kong's, except that `run --help` shows where the flags go:
// before --, and CMD with its arguments after it (kong would say
// "run <command> ... [flags]").
func helpPrinter(opts kong.HelpOptions, ctx *kong.Context) error {
	if commandOf(ctx) != "run" {
		return kong.DefaultHelpPrinter(opts, ctx)
	}
	var buf bytes.Buffer
	out := ctx.Stdout
	ctx.Stdout = &buf
	err := kong.DefaultHelpPrinter(opts, ctx)
	ctx.Stdout = out
	text := buf.String()
	if _, rest, ok := strings.Cut(text, "\n"); ok && strings.HasPrefix(text, "Usage: ") {
		text = "Usage: meshready run [flags] -- CMD [ARGS...]\n\n" +
			"Flags go before --; everything after -- is CMD and its arguments, passed as they are.\n" + rest
	}
	io.WriteString(out, text)
	return err
}

// oneLine keeps an error to the one line a bad flag deserves.
func oneLine(s string) string { return oneline.Cut(s, 1000) }

// VersionCmd is `meshready version`.
type VersionCmd struct{}

// Run prints the build.
func (VersionCmd) Run(env *Env) error {
	fmt.Fprintf(env.Stdout, "meshready %s (commit %s, %s %s/%s)\n", version, commit, runtime.Version(), runtime.GOOS, runtime.GOARCH)
	return nil
}
