package logspout

import (
	"net/http"
	"sync"
	"sync/atomic"
)

// hub fans shipped lines out to /logs followers.
type hub struct {
	mu      sync.Mutex
	subs    map[chan []byte]string // channel -> app filter ("" = all)
	dropped atomic.Int64
}

func (h *hub) publish(app string, line []byte) {
	h.mu.Lock()
	defer h.mu.Unlock()
	for ch, filter := range h.subs {
		if filter != "" && filter != app {
			continue
		}
		select {
		case ch <- append([]byte(nil), line...):
		default:
			h.dropped.Add(1) // a follower too slow to keep up misses lines
		}
	}
}

// ServeLogs streams every shipped line as "<time> <app>[<proc>]: <text>",
// optionally only one app's (?app=<name>), until the client goes away.
func (l *Logspout) ServeLogs(w http.ResponseWriter, r *http.Request) {
	ch := make(chan []byte, 1024)
	l.hub.mu.Lock()
	if l.hub.subs == nil {
		l.hub.subs = map[chan []byte]string{}
	}
	l.hub.subs[ch] = r.URL.Query().Get("app")
	l.hub.mu.Unlock()
	defer func() {
		l.hub.mu.Lock()
		delete(l.hub.subs, ch)
		l.hub.mu.Unlock()
	}()
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.WriteHeader(http.StatusOK)
	fl, _ := w.(http.Flusher)
	if fl != nil {
		fl.Flush()
	}
	for {
		select {
		case <-r.Context().Done():
			return
		case line := <-ch:
			if _, err := w.Write(append(line, '\n')); err != nil {
				return
			}
			if fl != nil && len(ch) == 0 {
				fl.Flush()
			}
		}
	}
}

// active reports whether anyone follows /logs (so lines are only
// formatted for followers when there are some).
func (h *hub) active() bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	return len(h.subs) > 0
}
