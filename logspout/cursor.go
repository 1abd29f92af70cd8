package logspout

import (
	"sync"
	"time"
)

// inflight tracks the lines of one container stream that were handed to
// routes, in the order they were read, and moves the stream's saved cursor
// only past lines that every route has written. Routes acknowledge out of
// order with respect to each other (each has its own queue), so a line's
// cursor waits for the slowest route; a crash then repeats at most what
// was queued, and never loses it.
type inflight struct {
	l   *Logspout
	key string // cursor key: "<container id>:<priority>"

	mu    sync.Mutex
	first uint64 // sequence number of lines[0]
	next  uint64 // sequence number of the next line added
	lines []pending
}

type pending struct {
	ts   time.Time
	left int32 // routes that have not written the line yet
}

// add records a line sent to routes routes and returns its sequence
// number. A line no route wants (routes == 0) counts as done at once.
func (f *inflight) add(ts time.Time, routes int) uint64 {
	f.mu.Lock()
	defer f.mu.Unlock()
	seq := f.next
	f.next++
	f.lines = append(f.lines, pending{ts: ts, left: int32(routes)})
	f.advanceLocked()
	return seq
}

// Ack is called by a route's sender once the line seq is written.
func (f *inflight) Ack(seq uint64) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if seq < f.first || seq-f.first >= uint64(len(f.lines)) {
		return // already accounted for (an abandoned line acked twice)
	}
	f.lines[seq-f.first].left--
	f.advanceLocked()
}

// advanceLocked drops the leading lines every route has written and saves
// the newest of them as the stream's cursor.
func (f *inflight) advanceLocked() {
	n := 0
	for n < len(f.lines) && f.lines[n].left <= 0 {
		n++
	}
	if n == 0 {
		return
	}
	ts := f.lines[n-1].ts
	f.first += uint64(n)
	// Reuse the array once it is empty, the common case when routes keep
	// up; otherwise slide the window.
	if n == len(f.lines) {
		f.lines = f.lines[:0]
	} else {
		f.lines = f.lines[n:]
	}
	f.l.setCursor(f.key, ts)
}

// waiting is how many lines are handed out but not written everywhere.
func (f *inflight) waiting() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.lines)
}

func (l *Logspout) setCursor(key string, ts time.Time) {
	l.mu.Lock()
	if _, gone := l.destroyed[key]; !gone {
		l.cursors[key] = ts
		l.dirty = true
	}
	l.mu.Unlock()
}
