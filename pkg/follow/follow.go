// Package follow streams log lines live to HTTP followers: the logger's
// `GET /logs/<app>?follow=true` and logspout's `/logs`. One Hub fans each
// published line out to the followers of its key (an app) and to those of
// every key, within limits: a cap on followers (per key and in all) and on
// each follower's unsent bytes, past which that follower misses lines
// (counted) rather than slowing the publisher or growing memory.
package follow

import (
	"errors"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
)

// Default limits.
const (
	DefaultMax    = 256
	DefaultPerKey = 16
	bufferBytes   = 1 << 20
	bufferLines   = 1024
)

// ErrTooMany refuses a follower over the limits.
var ErrTooMany = errors.New("too many live followers")

// Hub is the set of followers. The zero value is not usable; make one
// with New. Safe for concurrent use.
type Hub struct {
	max, perKey int

	mu     sync.Mutex
	subs   map[string]map[*follower]struct{} // by key; "" follows every key
	total  atomic.Int64
	closed bool

	// Dropped counts lines a slow follower missed; Refused, followers
	// refused by the limits.
	Dropped, Refused atomic.Int64
}

type follower struct {
	ch      chan []byte
	pending atomic.Int64 // bytes queued and not yet written
}

// New returns a hub of at most max followers, perKey per key (0: the
// defaults).
func New(max, perKey int) *Hub {
	if max <= 0 {
		max = DefaultMax
	}
	if perKey <= 0 {
		perKey = DefaultPerKey
	}
	return &Hub{max: max, perKey: perKey, subs: make(map[string]map[*follower]struct{})}
}

// Active reports whether anyone follows, so publishers format lines for
// followers only when there are some.
func (h *Hub) Active() bool { return h.total.Load() > 0 }

// Publish hands a copy of line to the followers of key and of every key.
func (h *Hub) Publish(key string, line []byte) {
	if !h.Active() {
		return
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	h.offer(h.subs[key], line)
	if key != "" {
		h.offer(h.subs[""], line)
	}
}

func (h *Hub) offer(subs map[*follower]struct{}, line []byte) {
	for f := range subs {
		if f.pending.Load()+int64(len(line)) > bufferBytes {
			h.Dropped.Add(1)
			continue
		}
		select {
		case f.ch <- append([]byte(nil), line...):
			f.pending.Add(int64(len(line)))
		default:
			h.Dropped.Add(1)
		}
	}
}

func (h *Hub) subscribe(key string) (*follower, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.closed || int(h.total.Load()) >= h.max || len(h.subs[key]) >= h.perKey {
		h.Refused.Add(1)
		return nil, ErrTooMany
	}
	f := &follower{ch: make(chan []byte, bufferLines)}
	if h.subs[key] == nil {
		h.subs[key] = make(map[*follower]struct{})
	}
	h.subs[key][f] = struct{}{}
	h.total.Add(1)
	return f, nil
}

func (h *Hub) unsubscribe(key string, f *follower) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if _, ok := h.subs[key][f]; !ok {
		return
	}
	delete(h.subs[key], f)
	if len(h.subs[key]) == 0 {
		delete(h.subs, key)
	}
	h.total.Add(-1)
}

// Close ends every follower's stream and refuses new ones (shutdown).
func (h *Hub) Close() {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.closed = true
	for key, subs := range h.subs {
		for f := range subs {
			close(f.ch)
		}
		delete(h.subs, key)
	}
	h.total.Store(0)
}

// Serve streams the lines of key ("" for every key) to the client as
// text/plain, one per line, after backlog (the lines it already had),
// until the client goes away or the hub closes. Over the limits it answers
// 429 with Retry-After.
func (h *Hub) Serve(w http.ResponseWriter, r *http.Request, key string, backlog [][]byte) {
	f, err := h.subscribe(key)
	if err != nil {
		w.Header().Set("Retry-After", "10")
		http.Error(w, "too many live followers (at most "+strconv.Itoa(h.perKey)+" per app, "+strconv.Itoa(h.max)+" in all); try again later", http.StatusTooManyRequests)
		return
	}
	defer h.unsubscribe(key, f)
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(http.StatusOK)
	for _, ln := range backlog {
		_, _ = w.Write(append(ln, '\n'))
	}
	fl, _ := w.(http.Flusher)
	if fl != nil {
		fl.Flush()
	}
	write := func(line []byte) bool {
		f.pending.Add(-int64(len(line)))
		_, err := w.Write(append(line, '\n'))
		return err == nil
	}
	for {
		select {
		case <-r.Context().Done():
			return
		case line, ok := <-f.ch:
			if !ok || !write(line) {
				return
			}
			// Send whatever else is waiting before flushing.
			for more := true; more; {
				select {
				case line, ok := <-f.ch:
					if !ok || !write(line) {
						return
					}
				default:
					more = false
				}
			}
			if fl != nil {
				fl.Flush()
			}
		}
	}
}
