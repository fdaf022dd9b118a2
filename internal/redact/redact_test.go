package redact

import "testing"

func TestURL(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct{ in, want string }{
		{"http://127.0.0.1:8080/ready", "http://127.0.0.1:8080/ready"},
		{"http://user:pw@127.0.0.1:8080/ready?token=x#frag", "http://127.0.0.1:8080/ready"},
		{"https://user@host/p?", "https://host/p"},
		{"grpcs://istiod:15012?token=abc", "grpcs://istiod:15012"},
		{"http://u:p%zz@host:1/x?t=1", "http://host:1/x"}, // does not parse: cut by hand
		{"http://a@b@host:1/x", "http://host:1/x"},
		{"localhost:8080", "localhost:8080"},
		{"http://", "http://"},
		{"", ""},
	} {
		if got := URL(tc.in); got != tc.want {
			t.Errorf("URL(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}
