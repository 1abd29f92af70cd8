package logspout

import (
	"net/http"
	"sync"
	"sync/atomic"

	"github.com/prometheus/client_golang/prometheus"
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

// routeCollector exports per-route counters.
type routeCollector struct{ l *Logspout }

var (
	routeSentDesc    = prometheus.NewDesc("logspout_route_sent_total", "Lines delivered per route.", []string{"route"}, nil)
	routeDroppedDesc = prometheus.NewDesc("logspout_route_dropped_total", "Lines dropped per route.", []string{"route"}, nil)
	routeQueuedDesc  = prometheus.NewDesc("logspout_route_queue_depth", "Lines queued per route (lag).", []string{"route"}, nil)
	routeReconDesc   = prometheus.NewDesc("logspout_route_connects_total", "Connections opened per route.", []string{"route"}, nil)
	followDropDesc   = prometheus.NewDesc("logspout_follow_dropped_total", "Lines not delivered to /logs followers too slow to keep up.", nil, nil)
)

func (c *routeCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{routeSentDesc, routeDroppedDesc, routeQueuedDesc, routeReconDesc, followDropDesc} {
		ch <- d
	}
}

func (c *routeCollector) Collect(ch chan<- prometheus.Metric) {
	for _, s := range c.l.routes() {
		u := s.Config().URL
		ch <- prometheus.MustNewConstMetric(routeSentDesc, prometheus.CounterValue, float64(s.Sent.Load()), u)
		ch <- prometheus.MustNewConstMetric(routeDroppedDesc, prometheus.CounterValue, float64(s.Dropped.Load()), u)
		ch <- prometheus.MustNewConstMetric(routeQueuedDesc, prometheus.GaugeValue, float64(s.QueueLen()), u)
		ch <- prometheus.MustNewConstMetric(routeReconDesc, prometheus.CounterValue, float64(s.Reconnects.Load()), u)
	}
	ch <- prometheus.MustNewConstMetric(followDropDesc, prometheus.CounterValue, float64(c.l.hub.dropped.Load()))
}

// active reports whether anyone follows /logs (so lines are only
// formatted for followers when there are some).
func (h *hub) active() bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	return len(h.subs) > 0
}
