package integration

import (
	"fmt"
	"io"
	"os"
	"sync"
)

// ProcessFailer is the test.Failer that xds.FakeDiscoveryServer needs, for a
// program rather than a test (a demo): Fatal prints and exits the process
// (istio calls it from its own goroutines too, so it cannot unwind to a
// caller), Cleanup functions run at Close, last first.
type ProcessFailer struct {
	Out io.Writer // default os.Stderr

	mu       sync.Mutex
	cleanups []func()
	tmp      []string
}

func (f *ProcessFailer) out() io.Writer {
	if f.Out == nil {
		return os.Stderr
	}
	return f.Out
}

// Fail is FailNow: a program has no "failed but carry on".
func (f *ProcessFailer) Fail() { f.FailNow() }

// FailNow runs the cleanups and exits 1.
func (f *ProcessFailer) FailNow() {
	f.Close()
	os.Exit(1)
}

// Fatal prints and exits.
func (f *ProcessFailer) Fatal(args ...any) {
	fmt.Fprintln(f.out(), append([]any{"fatal:"}, args...)...)
	f.FailNow()
}

// Fatalf prints and exits.
func (f *ProcessFailer) Fatalf(format string, args ...any) {
	fmt.Fprintf(f.out(), "fatal: "+format+"\n", args...)
	f.FailNow()
}

// Log prints.
func (f *ProcessFailer) Log(args ...any) { fmt.Fprintln(f.out(), args...) }

// Logf prints.
func (f *ProcessFailer) Logf(format string, args ...any) { fmt.Fprintf(f.out(), format+"\n", args...) }

// TempDir makes a directory removed at Close.
func (f *ProcessFailer) TempDir() string {
	d, err := os.MkdirTemp("", "pilot-")
	if err != nil {
		f.Fatalf("temp dir: %v", err)
	}
	f.mu.Lock()
	f.tmp = append(f.tmp, d)
	f.mu.Unlock()
	return d
}

// Helper does nothing.
func (f *ProcessFailer) Helper() {}

// Cleanup registers fn for Close.
func (f *ProcessFailer) Cleanup(fn func()) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.cleanups = append(f.cleanups, fn)
}

// Skip is Fatal: a program cannot skip.
func (f *ProcessFailer) Skip(args ...any) { f.Fatal(append([]any{"skip:"}, args...)...) }

// Close runs the cleanups, last registered first, once each.
func (f *ProcessFailer) Close() {
	f.mu.Lock()
	fns, dirs := f.cleanups, f.tmp
	f.cleanups, f.tmp = nil, nil
	f.mu.Unlock()
	for i := len(fns) - 1; i >= 0; i-- {
		fns[i]()
	}
	for _, d := range dirs {
		_ = os.RemoveAll(d)
	}
}
