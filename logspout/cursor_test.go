package logspout

import (
	"testing"
	"time"
)

// TestInflightWaitsForEveryRoute: the cursor moves only past lines that
// every route has written, whatever order the routes acknowledge in.
func TestInflightWaitsForEveryRoute(t *testing.T) {
	t.Parallel()
	l := &Logspout{cursors: map[string]time.Time{}, destroyed: map[string]time.Time{}}
	f := &inflight{l: l, key: "c:14"}
	t0 := time.Unix(1000, 0)
	at := func(i int) time.Time { return t0.Add(time.Duration(i) * time.Second) }
	s0 := f.add(at(0), 2) // two routes
	s1 := f.add(at(1), 2)
	s2 := f.add(at(2), 0) // filtered: no route wants it
	s3 := f.add(at(3), 1)
	cur := func() time.Time { return l.cursors["c:14"] }

	f.Ack(s1) // route A writes line 1 before anything of line 0 is written everywhere
	f.Ack(s0)
	if !cur().IsZero() {
		t.Fatalf("cursor moved to %v with line 0 written by one route of two", cur())
	}
	f.Ack(s0)
	if !cur().Equal(at(0)) {
		t.Fatalf("cursor = %v, want line 0", cur())
	}
	f.Ack(s3)
	if !cur().Equal(at(0)) {
		t.Fatalf("cursor = %v, want still line 0 (line 1 waits for a route)", cur())
	}
	f.Ack(s1)
	if !cur().Equal(at(3)) || f.waiting() != 0 {
		t.Fatalf("cursor = %v, waiting %d; want line 3 and none (line %d was filtered)", cur(), f.waiting(), s2)
	}
	f.Ack(s1) // a late duplicate is ignored
	if !cur().Equal(at(3)) {
		t.Fatalf("duplicate ack moved the cursor to %v", cur())
	}
	l.destroyed["c:14"] = time.Now()
	f.Ack(f.add(at(4), 1))
	if !cur().Equal(at(3)) {
		t.Fatal("an ack after the container was destroyed recreated its cursor")
	}
}

func BenchmarkInflight(b *testing.B) {
	l := &Logspout{cursors: map[string]time.Time{}, destroyed: map[string]time.Time{}}
	f := &inflight{l: l, key: "c:14"}
	ts := time.Unix(1000, 0)
	b.ReportAllocs()
	for b.Loop() {
		seq := f.add(ts, 2)
		f.Ack(seq)
		f.Ack(seq)
	}
}
