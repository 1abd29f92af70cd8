package logspout

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/deis/dataplane/pkg/syslog/sender"
)

// routeCollector exports per-route counters (sender.Collector) and the
// /logs followers' misses.
type routeCollector struct {
	l      *Logspout
	routes prometheus.Collector
}

func newRouteCollector(l *Logspout) *routeCollector {
	return &routeCollector{l: l, routes: sender.Collector("logspout_route", "route", l.routes)}
}

var followDropDesc = prometheus.NewDesc("logspout_follow_dropped_total", "Lines not delivered to /logs followers too slow to keep up.", nil, nil)

func (c *routeCollector) Describe(ch chan<- *prometheus.Desc) {
	c.routes.Describe(ch)
	ch <- followDropDesc
}

func (c *routeCollector) Collect(ch chan<- prometheus.Metric) {
	c.routes.Collect(ch)
	ch <- prometheus.MustNewConstMetric(followDropDesc, prometheus.CounterValue, float64(c.l.hub.Dropped.Load()))
}
