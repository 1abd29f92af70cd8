// Package retry is the one backoff every retry loop uses: exponential from
// Min to Max, with jitter, so that many clients that lost the same server
// (every daemon of a cluster when etcd restarts) do not retry in step.
package retry

import (
	"context"
	"math/rand/v2"
	"time"
)

// Backoff hands out the waits between attempts. The zero value is not
// usable; make one with New. Not safe for concurrent use: one per loop.
type Backoff struct {
	min, max time.Duration
	next     time.Duration
}

// New returns a backoff starting at min and doubling up to max.
func New(min, max time.Duration) *Backoff {
	return &Backoff{min: min, max: max, next: min}
}

// Next returns the wait before the next attempt, between half and all of
// the current step ("equal jitter"), and doubles the step, up to max.
func (b *Backoff) Next() time.Duration {
	d := b.next
	b.next = min(b.next*2, b.max)
	half := d / 2
	return half + rand.N(half+1)
}

// Reset starts again from min, after a success.
func (b *Backoff) Reset() { b.next = b.min }

// Wait sleeps for Next(), or until ctx ends; false when ctx ended.
func (b *Backoff) Wait(ctx context.Context) bool {
	return Sleep(ctx, b.Next())
}

// Sleep waits d, or until ctx ends; false when ctx ended.
func Sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}
