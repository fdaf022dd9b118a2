package envoyadmin

import (
	"context"
	"errors"
	"io"
	"syscall"
)

// Envoy's mutating admin endpoints answer 400 to GET, so these POST with an
// empty body and read nothing but the status.

// DrainListeners starts Envoy's listener drain: inboundOnly limits it to
// listeners whose traffic_direction is INBOUND (what Istio's agent does for
// sidecars), graceful runs the --drain-time-s drain period instead of closing
// listeners at once. Envoy exits when the drain ends (no skip_exit).
func (c *Client) DrainListeners(ctx context.Context, inboundOnly, graceful bool) error {
	var rq []string
	if inboundOnly {
		rq = append(rq, "inboundonly")
	}
	if graceful {
		rq = append(rq, "graceful")
	}
	return c.call(ctx, "POST", "/drain_listeners", query(rq...), nil)
}

// HealthcheckFail makes Envoy's health-check filter fail and its state
// DRAINING, so upstream load balancers stop sending before listeners close.
func (c *Client) HealthcheckFail(ctx context.Context) error {
	return c.call(ctx, "POST", "/healthcheck/fail", "", nil)
}

// HealthcheckOK undoes HealthcheckFail.
func (c *Client) HealthcheckOK(ctx context.Context) error {
	return c.call(ctx, "POST", "/healthcheck/ok", "", nil)
}

// QuitQuitQuit asks Envoy to exit. An Envoy that exits before its answer is
// fully read has done what was asked, so a connection cut after the request
// was sent counts as success; "connection refused" does not (nothing was
// there to ask), and IsUnreachable tells the caller so.
func (c *Client) QuitQuitQuit(ctx context.Context) error {
	err := c.call(ctx, "POST", "/quitquitquit", "", func(r io.Reader) error {
		_, err := io.Copy(io.Discard, r)
		if errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, syscall.ECONNRESET) {
			return nil
		}
		return err
	})
	if e, ok := errors.AsType[*Error](err); ok && e.kind == kindOther &&
		(errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, syscall.ECONNRESET)) {
		return nil
	}
	return err
}
