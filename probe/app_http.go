package probe

import (
	"context"
	"crypto/tls"
	"errors"
	"io"
	"net/http"
	"strconv"

	"github.com/meshready/meshready/internal/redact"
)

// maxAppBody is what the kubelet reads of a probe's body; the rest is left
// unread, which is not an error.
const maxAppBody = 10 << 10

// httpProbe is the client and request one http(s) target reuses, so a probe
// every interval costs a connection, not a rebuilt client.
type httpProbe struct {
	client *http.Client
	req    *http.Request // without ctx; each probe takes a shallow copy
}

// newHTTPProbe mirrors the kubelet's transport (pkg/probe/http): no
// keep-alive, no proxy from the environment, no compression, no certificate
// check, and same-host redirects only (the hostname: a port change is
// followed), with Go's and the kubelet's limit of 10 requests.
func newHTTPProbe(t AppTarget, ua string) *httpProbe {
	tr := &http.Transport{
		Proxy:              nil,
		TLSClientConfig:    &tls.Config{InsecureSkipVerify: true},
		DisableKeepAlives:  true,
		DisableCompression: true,
	}
	client := &http.Client{
		Transport: tr,
		CheckRedirect: func(req *http.Request, via []*http.Request) error {
			if req.URL.Hostname() != via[0].URL.Hostname() {
				return http.ErrUseLastResponse
			}
			if len(via) >= 10 {
				return errors.New("stopped after 10 redirects")
			}
			return nil
		},
	}
	req := &http.Request{
		Method:     http.MethodGet,
		URL:        t.URL,
		Proto:      "HTTP/1.1",
		ProtoMajor: 1,
		ProtoMinor: 1,
		Header:     http.Header{"User-Agent": {ua}, "Accept": {"*/*"}},
	}
	return &httpProbe{client: client, req: req}
}

func probeHTTP(ctx context.Context, t AppTarget, opts AppOptions) (Result, error) {
	h := opts.http
	if h == nil {
		h = newHTTPProbe(t, userAgent(opts))
	}
	res, err := h.client.Do(h.req.WithContext(ctx))
	if err != nil {
		return appFailure(ctx, t.URL, err)
	}
	defer res.Body.Close()
	if _, err := io.CopyN(io.Discard, res.Body, maxAppBody); err != nil && err != io.EOF {
		return appFailure(ctx, t.URL, err)
	}
	code := res.StatusCode
	if code < 200 || code >= 400 {
		return failf("HTTP probe failed with statuscode: " + strconv.Itoa(code)), nil
	}
	r := passf("HTTP " + strconv.Itoa(code))
	if code >= 300 {
		// The kubelet's "Warning", which it counts as success: a redirect it
		// chose not to follow, or a 3xx it could not.
		if loc, err := res.Location(); err == nil && loc.Hostname() != res.Request.URL.Hostname() {
			r.Warning = "redirect to another host not followed: " + redact.URL(loc.String())
		} else {
			r.Warning = "HTTP " + strconv.Itoa(code) + " redirect not followed"
		}
	}
	return r, nil
}
