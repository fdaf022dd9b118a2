package neterr

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"syscall"
	"testing"
)

func TestUnreachable(t *testing.T) {
	t.Parallel()
	wrap := func(e error) error {
		return fmt.Errorf("get: %w", &net.OpError{Op: "dial", Net: "tcp", Err: os.NewSyscallError("connect", e)})
	}
	for _, tc := range []struct {
		err  error
		want string
	}{
		{nil, ""},
		{wrap(syscall.ECONNREFUSED), "connection refused"},
		{wrap(syscall.EHOSTUNREACH), "no route to host"},
		{wrap(syscall.ENETUNREACH), "network unreachable"},
		{wrap(syscall.EADDRNOTAVAIL), "address not available"},
		{&net.DNSError{Name: "istiod.invalid", Err: "no such host"}, `cannot resolve "istiod.invalid": no such host`},
		{&net.DNSError{Name: "slow", Err: "i/o timeout", IsTimeout: true}, ""},
		{context.DeadlineExceeded, ""},
		{errors.New("EOF"), ""},
	} {
		if got := Unreachable(tc.err); got != tc.want {
			t.Errorf("Unreachable(%v) = %q, want %q", tc.err, got, tc.want)
		}
	}
	// A real refused dial.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	_, err = net.Dial("tcp", addr)
	if got := Unreachable(err); got != "connection refused" {
		t.Fatalf("real dial: %q (%v)", got, err)
	}
}
