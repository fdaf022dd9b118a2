package graceful

import (
	"testing"
	"time"
)

func TestQuietWatch(t *testing.T) {
	t.Parallel()
	t0 := time.Unix(1000, 0)
	ms := func(n int) time.Time { return t0.Add(time.Duration(n) * time.Millisecond) }
	idle := func(total uint64) Activity { return Activity{Total: total, Known: true} }
	type obs struct {
		a  Activity
		at time.Time
	}
	for _, tc := range []struct {
		name   string
		obs    []obs
		want   time.Duration
		wantOK bool
	}{
		{"no reading yet: not quiet", nil, 0, false},
		{"one idle reading: quiet for nothing yet", []obs{{idle(5), ms(0)}}, 0, true},
		{"idle and unchanged: quiet between first and last reading",
			[]obs{{idle(5), ms(0)}, {idle(5), ms(100)}, {idle(5), ms(300)}}, 300 * time.Millisecond, true},
		{"a request in flight: busy",
			[]obs{{idle(5), ms(0)}, {Activity{Active: 1, Total: 5, Known: true}, ms(100)}}, 0, false},
		{"counter moved: busy, even with nothing in flight",
			[]obs{{idle(5), ms(0)}, {idle(6), ms(100)}}, 0, false},
		{"quiet again after the counter moved: counted from the first unchanged reading",
			[]obs{{idle(5), ms(0)}, {idle(6), ms(100)}, {idle(6), ms(200)}, {idle(6), ms(500)}}, 300 * time.Millisecond, true},
		{"unknown readings are no evidence of traffic",
			[]obs{{Activity{}, ms(0)}, {Activity{}, ms(400)}}, 400 * time.Millisecond, true},
		{"the counter's baseline survives unknown readings",
			[]obs{{idle(5), ms(0)}, {Activity{}, ms(100)}, {idle(6), ms(200)}}, 0, false},
		{"busy then unknown: the quiet stretch starts at the unknown reading",
			[]obs{{Activity{Active: 3, Total: 5, Known: true}, ms(0)}, {Activity{}, ms(100)}, {idle(5), ms(350)}}, 250 * time.Millisecond, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var q quietWatch
			for _, o := range tc.obs {
				q.observe(o.a, o.at)
			}
			got, ok := q.quietFor()
			if got != tc.want || ok != tc.wantOK {
				t.Errorf("quietFor() = %v, %v; want %v, %v", got, ok, tc.want, tc.wantOK)
			}
		})
	}
}
