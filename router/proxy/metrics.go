package proxy

import (
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// appCollector exports per-app request counters from the current table, so
// the request path only does atomic adds.
type appCollector struct{ p *Proxy }

var appRequestsDesc = prometheus.NewDesc("router_requests_total", "Requests by app and status class.", []string{"app", "status"}, nil)

var tableDescs = struct{ age, apps, backends, invalid *prometheus.Desc }{
	prometheus.NewDesc("router_table_age_seconds", "Seconds since the routing table in use was built.", nil, nil),
	prometheus.NewDesc("router_table_apps", "Apps in the routing table.", nil, nil),
	prometheus.NewDesc("router_table_backends", "Backends in the routing table.", nil, nil),
	prometheus.NewDesc("router_table_invalid_entries", "Entries skipped as invalid in the last build.", nil, nil),
}

func (c *appCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- appRequestsDesc
	ch <- tableDescs.age
	ch <- tableDescs.apps
	ch <- tableDescs.backends
	ch <- tableDescs.invalid
}

func (c *appCollector) Collect(ch chan<- prometheus.Metric) {
	t := c.p.Table()
	if t == nil {
		return
	}
	ch <- prometheus.MustNewConstMetric(tableDescs.age, prometheus.GaugeValue, time.Since(t.Built).Seconds())
	ch <- prometheus.MustNewConstMetric(tableDescs.apps, prometheus.GaugeValue, float64(len(t.Apps)))
	ch <- prometheus.MustNewConstMetric(tableDescs.backends, prometheus.GaugeValue, float64(t.Backends()))
	ch <- prometheus.MustNewConstMetric(tableDescs.invalid, prometheus.GaugeValue, float64(t.Invalid))
	for _, a := range t.Apps {
		for class := 1; class < len(a.Stats.ByClass); class++ {
			if n := a.Stats.ByClass[class].Load(); n > 0 {
				ch <- prometheus.MustNewConstMetric(appRequestsDesc, prometheus.CounterValue, float64(n), a.Name, strconv.Itoa(class)+"xx")
			}
		}
	}
}
