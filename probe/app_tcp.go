package probe

import (
	"context"
	"net"
)

// probeTCP passes when the port accepts a connection, as the kubelet's
// tcpSocket probe does; nothing is sent.
func probeTCP(ctx context.Context, t AppTarget, _ AppOptions) (Result, error) {
	var d net.Dialer
	c, err := d.DialContext(ctx, "tcp", t.URL.Host)
	if err != nil {
		return appFailure(ctx, t.URL, err)
	}
	c.Close()
	return passf("connected"), nil
}
