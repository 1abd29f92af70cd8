package logger

import (
	"errors"
	"sync"
	"sync/atomic"
)

// Follower limits. Each follower holds at most followerBufferBytes of
// lines it has not yet written; past that it misses lines (counted), so a
// client that stops reading costs a bounded amount of memory.
const (
	defaultMaxFollowers       = 256
	defaultMaxFollowersPerApp = 16
	followerBufferBytes       = 1 << 20
	followerBufferLines       = 1024
)

// errTooManyFollowers refuses a follower over the limits.
var errTooManyFollowers = errors.New("too many live followers")

// hub fans stored lines out to live followers of each app.
type hub struct {
	max, perApp int
	mu          sync.Mutex
	subs        map[string]map[*follower]struct{}
	total       int
	dropped     atomic.Int64 // lines a slow follower missed
	refused     atomic.Int64 // followers refused by the limits
}

// follower is one live stream's queue.
type follower struct {
	ch      chan []byte
	pending atomic.Int64 // bytes queued and not yet taken
}

// take marks a line received from ch as no longer pending.
func (f *follower) take(line []byte) { f.pending.Add(-int64(len(line))) }

func newHub(max, perApp int) hub {
	if max <= 0 {
		max = defaultMaxFollowers
	}
	if perApp <= 0 {
		perApp = defaultMaxFollowersPerApp
	}
	return hub{max: max, perApp: perApp, subs: make(map[string]map[*follower]struct{})}
}

func (h *hub) subscribe(app string) (*follower, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.total >= h.max || len(h.subs[app]) >= h.perApp {
		h.refused.Add(1)
		return nil, errTooManyFollowers
	}
	f := &follower{ch: make(chan []byte, followerBufferLines)}
	if h.subs[app] == nil {
		h.subs[app] = make(map[*follower]struct{})
	}
	h.subs[app][f] = struct{}{}
	h.total++
	return f, nil
}

func (h *hub) unsubscribe(app string, f *follower) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if _, ok := h.subs[app][f]; !ok {
		return
	}
	delete(h.subs[app], f)
	h.total--
	if len(h.subs[app]) == 0 {
		delete(h.subs, app)
	}
}

func (h *hub) publish(app string, line []byte) {
	h.mu.Lock()
	defer h.mu.Unlock()
	for f := range h.subs[app] {
		if f.pending.Load()+int64(len(line)) > followerBufferBytes {
			h.dropped.Add(1)
			continue
		}
		select {
		case f.ch <- append([]byte(nil), line...):
			f.pending.Add(int64(len(line)))
		default:
			h.dropped.Add(1) // a follower too slow to keep up misses lines
		}
	}
}

func (h *hub) closeAll() {
	h.mu.Lock()
	defer h.mu.Unlock()
	for app, subs := range h.subs {
		for f := range subs {
			close(f.ch)
		}
		delete(h.subs, app)
	}
	h.total = 0
}
