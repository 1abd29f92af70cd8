package sender

import (
	"context"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Set runs a changing set of senders: the logger's drains, logspout's
// route to the platform logger. Replace starts the new senders at once and
// lets each old one finish its queue (at most Grace) before stopping it and
// retiring it: what it still holds goes to its successor, or is abandoned
// and counted. Safe for concurrent use.
type Set struct {
	// Grace bounds how long a replaced or stopped sender may take to
	// deliver its queue (5 s when zero).
	Grace time.Duration

	ctx     context.Context // the senders' lifetime (they outlive callers' requests)
	wg      sync.WaitGroup
	mu      sync.Mutex
	running map[*Sender]func() // sender -> stop its Run and wait
	list    atomic.Pointer[[]*Sender]
}

// NewSet returns an empty set whose senders run until ctx ends or they are
// replaced.
func NewSet(ctx context.Context) *Set {
	s := &Set{ctx: ctx, running: make(map[*Sender]func())}
	empty := []*Sender{}
	s.list.Store(&empty)
	return s
}

// Senders is the current set, for the send path: one atomic load.
func (s *Set) Senders() []*Sender { return *s.list.Load() }

func (s *Set) grace() time.Duration {
	if s.Grace > 0 {
		return s.Grace
	}
	return 5 * time.Second
}

// Replace makes next the current set. Each sender of the previous set that
// is not in next is drained and retired in the background, its remainder
// handed to successor(old) (nil: abandoned).
func (s *Set) Replace(next []*Sender, successor func(old *Sender) *Sender) {
	s.mu.Lock()
	defer s.mu.Unlock()
	keep := make(map[*Sender]bool, len(next))
	for _, n := range next {
		keep[n] = true
		if _, ok := s.running[n]; ok {
			continue
		}
		ctx, cancel := context.WithCancel(s.ctx)
		done := make(chan struct{})
		s.wg.Go(func() { defer close(done); _ = n.Run(ctx) })
		s.running[n] = func() { cancel(); <-done }
	}
	list := append([]*Sender(nil), next...)
	s.list.Store(&list)
	for old, stop := range s.running {
		if keep[old] {
			continue
		}
		delete(s.running, old)
		var to *Sender
		if successor != nil {
			to = successor(old)
		}
		s.wg.Go(func() { s.retire(old, stop, to) })
	}
}

// retire lets old deliver its queue (within Grace, and only while the
// set's context lasts), stops it and hands the rest on.
func (s *Set) retire(old *Sender, stop func(), to *Sender) {
	ctx, cancel := context.WithTimeout(s.ctx, s.grace())
	old.WaitIdle(ctx)
	cancel()
	stop()
	old.Retire(context.WithoutCancel(s.ctx), to)
}

// Close lets every sender deliver its queue (within Grace, and only while
// the set's context lasts), stops them and waits. Unlike a replaced sender,
// nothing is retired: what is still queued is neither handed on nor
// acknowledged, so a caller resuming from acknowledgements (logspout's
// cursors) sends it again after a restart.
func (s *Set) Close() {
	s.mu.Lock()
	running := s.running
	s.running = make(map[*Sender]func())
	empty := []*Sender{}
	s.list.Store(&empty)
	s.mu.Unlock()
	ctx, cancel := context.WithTimeout(s.ctx, s.grace())
	for sender := range running {
		sender.WaitIdle(ctx)
	}
	cancel()
	for _, stop := range running {
		stop()
	}
	s.wg.Wait()
}

// Collector exports each sender's counters as <prefix>_sent_total,
// _dropped_total, _queue_depth and _connects_total, labelled with label
// (its URL, credentials redacted). senders is called at each scrape.
func Collector(prefix, label string, senders func() []*Sender) prometheus.Collector {
	return &collector{
		senders: senders,
		sent:    prometheus.NewDesc(prefix+"_sent_total", "Messages written, per destination.", []string{label}, nil),
		dropped: prometheus.NewDesc(prefix+"_dropped_total", "Messages dropped, per destination.", []string{label}, nil),
		queued:  prometheus.NewDesc(prefix+"_queue_depth", "Messages queued, per destination (its lag).", []string{label}, nil),
		conns:   prometheus.NewDesc(prefix+"_connects_total", "Connections opened, per destination.", []string{label}, nil),
	}
}

type collector struct {
	senders                      func() []*Sender
	sent, dropped, queued, conns *prometheus.Desc
}

func (c *collector) Describe(ch chan<- *prometheus.Desc) {
	ch <- c.sent
	ch <- c.dropped
	ch <- c.queued
	ch <- c.conns
}

func (c *collector) Collect(ch chan<- prometheus.Metric) {
	seen := map[string]bool{}
	for _, s := range c.senders() {
		u := s.Config().URL
		if seen[u] {
			continue // the same URL twice (being replaced): one series
		}
		seen[u] = true
		ch <- prometheus.MustNewConstMetric(c.sent, prometheus.CounterValue, float64(s.Sent.Load()), u)
		ch <- prometheus.MustNewConstMetric(c.dropped, prometheus.CounterValue, float64(s.Dropped.Load()), u)
		ch <- prometheus.MustNewConstMetric(c.queued, prometheus.GaugeValue, float64(s.QueueLen()), u)
		ch <- prometheus.MustNewConstMetric(c.conns, prometheus.CounterValue, float64(s.Reconnects.Load()), u)
	}
}
