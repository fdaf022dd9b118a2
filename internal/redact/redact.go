// Package redact makes addresses safe to log and echo: a URL given on the
// command line may carry credentials (user:password@) or a token in its
// query, and neither may reach a log line, a readiness body or stderr.
package redact

import (
	"net/url"
	"strings"
)

// URL returns raw without userinfo, query and fragment
// ("http://user:pw@127.0.0.1:8080/ready?token=x" → "http://127.0.0.1:8080/ready").
// It never fails: what does not parse is cut by hand at the same places,
// so a malformed value is still echoed without its secret parts.
func URL(raw string) string {
	if !strings.ContainsAny(raw, "@?#") {
		return raw // nothing to hide: echo it exactly as given
	}
	if u, err := url.Parse(raw); err == nil {
		u.User, u.RawQuery, u.ForceQuery, u.Fragment, u.RawFragment = nil, "", false, "", ""
		return u.String()
	}
	s := raw
	if i := strings.IndexAny(s, "?#"); i >= 0 {
		s = s[:i]
	}
	// userinfo ends at the last '@' of the authority (before any '/').
	rest, scheme := s, ""
	if i := strings.Index(s, "://"); i >= 0 {
		scheme, rest = s[:i+3], s[i+3:]
	}
	auth, path := rest, ""
	if i := strings.IndexByte(rest, '/'); i >= 0 {
		auth, path = rest[:i], rest[i:]
	}
	if i := strings.LastIndexByte(auth, '@'); i >= 0 {
		auth = auth[i+1:]
	}
	return scheme + auth + path
}
