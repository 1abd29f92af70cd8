package router

import (
	"context"
	"runtime/debug"
	"runtime/metrics"
	"time"
)

// The collector's pace, when Config.GCHeadroom is set. Go's default
// (GOGC=100) collects each time the heap grows by its live size: a
// router with a small table (a few MB live) then collects hundreds of
// times a second under TLS handshakes, which allocate tens of kB each.
// Here the heap may grow by at least GCHeadroom between collections, never
// by less than its live size (GOGC=100) and never by more than four times
// it: the CPU win where the heap is small, and the default's memory where
// a large table makes it large (16 MB: 10,000 apps keep GOGC=100 and their
// RSS; 64 MB cost them 40 MB for nothing measurable).
const (
	minGCPercent = 100
	maxGCPercent = 400
	gcTuneEvery  = 10 * time.Second
)

// gcPercentFor is the GOGC giving live bytes at least headroom bytes of
// growth, within [minGCPercent, maxGCPercent].
func gcPercentFor(live, headroom uint64) int {
	if live == 0 {
		return maxGCPercent
	}
	return int(min(max(headroom*100/live, minGCPercent), maxGCPercent))
}

// tuneGC sets the GC percent from the live heap now and every gcTuneEvery
// until ctx ends. A new table may be much larger than the heap last
// measured (10,000 apps loaded at once): the default pace then holds until
// a collection has measured the heap with it, gcRemeasure later.
func (r *Router) tuneGC(ctx context.Context) {
	sample := []metrics.Sample{{Name: "/gc/heap/live:bytes"}}
	set := func(p int) {
		if p != debug.SetGCPercent(p) {
			r.log.Debug("gc pace", "gogc", p)
		}
	}
	wait := time.Duration(0)
	for {
		if wait > 0 {
			t := time.NewTimer(wait)
			select {
			case <-ctx.Done():
				t.Stop()
				return
			case <-r.newTable:
				t.Stop()
				set(minGCPercent)
				wait = gcRemeasure
				continue
			case <-t.C:
			}
		}
		metrics.Read(sample)
		if sample[0].Value.Kind() == metrics.KindUint64 {
			set(gcPercentFor(sample[0].Value.Uint64(), r.cfg.GCHeadroom))
		}
		wait = gcTuneEvery
	}
}

// gcRemeasure is how long after a new table the live heap is read again.
const gcRemeasure = 2 * time.Second

// tableChanged tells tuneGC that a table was installed.
func (r *Router) tableChanged() {
	select {
	case r.newTable <- struct{}{}:
	default:
	}
}
