package oneline

import "testing"

func TestCut(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		in   string
		max  int
		want string
	}{
		{"plain", 10, "plain"},
		{"a\nb\r\n\tc  d ", 20, "a b c d"},
		{"  lead", 10, "lead"},
		{"abcdefgh", 3, "abc…"},
		{"héllo wörld", 5, "héllo…"},
		{"bad \xff byte", 20, "bad byte"},
		{"", 5, ""},
	} {
		if got := Cut(tc.in, tc.max); got != tc.want {
			t.Errorf("Cut(%q, %d) = %q, want %q", tc.in, tc.max, got, tc.want)
		}
	}
}
