// pid1app is the app that images/test-image.sh runs under the Go base image's
// ENTRYPOINT (meshready run -- /pid1app ...), inside the image's own filesystem:
// a static Go program, as the Go base expects. It writes one line per event to
// the file named by -events, each with the wall-clock time in seconds:
//
//	start <unix seconds> pid=<pid> uid=<uid> gid=<gid> home=<$HOME>
//	term <unix seconds>
//
// and on SIGTERM exits with -code. It also proves the image's /tmp is writable
// for its user: it creates a temporary file there before writing "start".
//
// It lives under testdata so that `go build ./...` and `go vet ./...` skip it.
package main

import (
	"flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"
	"time"
)

func now() string {
	return fmt.Sprintf("%.6f", float64(time.Now().UnixNano())/1e9)
}

func record(path, line string) {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o644)
	if err != nil {
		fmt.Fprintln(os.Stderr, "pid1app:", err)
		os.Exit(90)
	}
	if _, err := fmt.Fprintln(f, line); err != nil {
		fmt.Fprintln(os.Stderr, "pid1app:", err)
		os.Exit(90)
	}
	if err := f.Close(); err != nil {
		fmt.Fprintln(os.Stderr, "pid1app:", err)
		os.Exit(90)
	}
}

func main() {
	events := flag.String("events", "/tmp/events", "file the events are appended to")
	code := flag.Int("code", 0, "exit code after SIGTERM")
	limit := flag.Duration("limit", time.Minute, "exit 91 if no SIGTERM came within this long")
	flag.Parse()

	// Before "start": a test that sees "start" may signal at once.
	term := make(chan os.Signal, 1)
	signal.Notify(term, syscall.SIGTERM)

	tmp, err := os.CreateTemp("", "pid1app-*")
	if err != nil {
		fmt.Fprintln(os.Stderr, "pid1app: /tmp is not writable:", err)
		os.Exit(92)
	}
	tmp.Close()
	os.Remove(tmp.Name())

	record(*events, fmt.Sprintf("start %s pid=%d uid=%d gid=%d home=%s",
		now(), os.Getpid(), os.Getuid(), os.Getgid(), os.Getenv("HOME")))
	select {
	case <-term:
		record(*events, "term "+now())
		os.Exit(*code)
	case <-time.After(*limit):
		fmt.Fprintln(os.Stderr, "pid1app: no SIGTERM within", *limit)
		os.Exit(91)
	}
}
