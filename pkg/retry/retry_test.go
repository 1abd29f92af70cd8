package retry

import (
	"context"
	"testing"
	"time"
)

func TestBackoffDoublesWithJitterAndResets(t *testing.T) {
	b := New(100*time.Millisecond, time.Second)
	steps := []time.Duration{100, 200, 400, 800, 1000, 1000}
	for i, step := range steps {
		step *= time.Millisecond
		if d := b.Next(); d < step/2 || d > step {
			t.Fatalf("attempt %d: wait %v, want within [%v, %v]", i, d, step/2, step)
		}
	}
	b.Reset()
	if d := b.Next(); d > 100*time.Millisecond {
		t.Fatalf("after Reset: %v", d)
	}
	// Jitter: waits of one step are not all equal.
	seen := map[time.Duration]bool{}
	for range 20 {
		seen[New(time.Second, time.Second).Next()] = true
	}
	if len(seen) < 2 {
		t.Fatal("no jitter")
	}
}

func TestSleepStopsWithTheContext(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if Sleep(ctx, time.Hour) {
		t.Fatal("Sleep returned true after cancel")
	}
	if !Sleep(context.Background(), time.Millisecond) {
		t.Fatal("Sleep returned false")
	}
}
