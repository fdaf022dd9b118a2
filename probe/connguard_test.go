package probe

import (
	"net"
	"net/http"
	"testing"
	"time"
)

type fakeConn struct {
	net.Conn
	addr   *net.TCPAddr
	closed bool
}

func (f *fakeConn) RemoteAddr() net.Addr { return f.addr }
func (f *fakeConn) Close() error         { f.closed = true; return nil }

func TestConnGuardSheds(t *testing.T) {
	t.Parallel()
	clock := time.Unix(1000, 0)
	conn := func(ip string) *fakeConn { return &fakeConn{addr: &net.TCPAddr{IP: net.ParseIP(ip), Port: 1}} }
	type step struct {
		ip    string
		state http.ConnState // applied to the admitted conn after admission; 0: stays New
	}
	cases := []struct {
		name          string
		max, perAddr  int
		steps         []step
		wantShed      []int // indexes of conns shed by the end
		wantRefused   int
		advancePerAdd time.Duration
	}{
		{"per address: the noisy peer sheds its own oldest, not the kubelet's", 100, 2,
			[]step{{"10.0.0.9", 0}, {"10.0.0.1", 0}, {"10.0.0.1", 0}, {"10.0.0.1", 0}}, []int{1}, 0, time.Second},
		{"being served is never shed", 100, 2,
			[]step{{"10.0.0.1", http.StateActive}, {"10.0.0.1", 0}, {"10.0.0.1", 0}}, []int{1}, 0, time.Second},
		{"idle keep-alive is shed", 2, 100,
			[]step{{"10.0.0.1", http.StateIdle}, {"10.0.0.2", http.StateActive}, {"10.0.0.3", 0}}, []int{0}, 0, time.Second},
		{"total: taken from the busiest address", 3, 100,
			[]step{{"10.0.0.9", 0}, {"10.0.0.1", 0}, {"10.0.0.1", 0}, {"10.0.0.2", 0}}, []int{1}, 0, time.Second},
		{"too young to shed: soft bound", 2, 100,
			[]step{{"10.0.0.1", 0}, {"10.0.0.1", 0}, {"10.0.0.1", 0}}, nil, 0, time.Millisecond},
		{"past the hard bound the newcomer is refused", 1, 100,
			[]step{{"10.0.0.1", 0}, {"10.0.0.1", 0}, {"10.0.0.1", 0}, {"10.0.0.1", 0}, {"10.0.0.1", 0}}, nil, 1, time.Millisecond},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			now := clock
			g := newConnGuard(tc.max, tc.perAddr)
			g.now = func() time.Time { return now }
			var conns []*fakeConn
			for _, s := range tc.steps {
				c := conn(s.ip)
				conns = append(conns, c)
				gc := g.admit(c)
				if gc != nil && s.state != 0 {
					g.connState(gc, s.state)
				}
				now = now.Add(tc.advancePerAdd)
			}
			shed := map[int]bool{}
			for _, i := range tc.wantShed {
				shed[i] = true
			}
			for i, c := range conns {
				if c.closed != shed[i] && !(tc.wantRefused > 0 && i == len(conns)-1) {
					t.Errorf("conn %d (%s) closed=%v, want %v", i, c.addr.IP, c.closed, shed[i])
				}
			}
			if got := int(g.refused.Load()); got != tc.wantRefused {
				t.Errorf("refused %d, want %d", got, tc.wantRefused)
			}
			if got := int(g.shed.Load()); got != len(tc.wantShed) {
				t.Errorf("shed %d, want %d", got, len(tc.wantShed))
			}
		})
	}
}
