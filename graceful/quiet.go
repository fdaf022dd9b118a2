package graceful

import "time"

// quietWatch decides, from successive Activity readings, how long inbound
// traffic has been provably quiet: no request in flight and the counter
// unchanged. It reasons on the times of the readings, not on the clock, so
// "quiet for 2s" means two readings 2s apart agree.
//
// A reading that is not Known (a sidecar with no inbound stats, or one
// whose admin port refuses connections: Envoy has exited and nothing more
// can arrive through it) is no evidence of traffic and counts as quiet; a
// pod without inbound listeners has nothing to drain. The counter's
// baseline survives such readings, so a known reading after them still
// sees any change. A failed read (timeout, 5xx, garbage) is not observed at
// all: the stretch neither grows nor ends, so the drain goes on with what
// was last known. DrainMin is the floor that protects callers regardless.
type quietWatch struct {
	haveTotal bool
	lastTotal uint64
	since     time.Time // first reading of the current quiet stretch; zero while busy
	last      time.Time // latest reading of the current quiet stretch
}

// observe records a reading taken at time at.
func (q *quietWatch) observe(a Activity, at time.Time) {
	if a.Known {
		moved := q.haveTotal && a.Total != q.lastTotal
		q.haveTotal, q.lastTotal = true, a.Total
		if a.Active > 0 || moved {
			q.since, q.last = time.Time{}, time.Time{}
			return
		}
	}
	if q.since.IsZero() {
		q.since = at
	}
	q.last = at
}

// quietFor is how long the readings have shown quiet; ok is false while
// the latest reading was busy or there has been none.
func (q *quietWatch) quietFor() (d time.Duration, ok bool) {
	if q.since.IsZero() {
		return 0, false
	}
	return q.last.Sub(q.since), true
}
