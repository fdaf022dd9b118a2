// Package neterr names, in a few words, why a connection to a local or
// in-cluster address failed: the one-line messages of the agent need the
// cause, not Go's nested error chain.
package neterr

import (
	"errors"
	"fmt"
	"net"
	"syscall"
)

// Unreachable names why a dial found nothing to talk to (connection refused,
// no route, network unreachable, address not available, a name that does not
// resolve), or "" when err is not such a failure (a timeout is not: something
// may be there, just slow).
func Unreachable(err error) string {
	if err == nil {
		return ""
	}
	if de, ok := errors.AsType[*net.DNSError](err); ok {
		if de.IsTimeout {
			return ""
		}
		return fmt.Sprintf("cannot resolve %q: %s", de.Name, de.Err)
	}
	switch {
	case errors.Is(err, syscall.ECONNREFUSED):
		return "connection refused"
	case errors.Is(err, syscall.EHOSTUNREACH):
		return "no route to host"
	case errors.Is(err, syscall.ENETUNREACH):
		return "network unreachable"
	case errors.Is(err, syscall.EADDRNOTAVAIL):
		return "address not available"
	}
	return ""
}
