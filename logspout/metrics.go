package logspout

import (
	"github.com/prometheus/client_golang/prometheus"
)

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
	ch <- prometheus.MustNewConstMetric(followDropDesc, prometheus.CounterValue, float64(c.l.hub.Dropped.Load()))
}
