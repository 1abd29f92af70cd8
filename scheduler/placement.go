package scheduler

import (
	"fmt"
	"sort"
	"strings"

	"github.com/deis/dataplane/pkg/unit"
)

// hostLoad is what placement knows of one live host during a pass.
type hostLoad struct {
	name    string
	info    unit.Host
	total   int            // units on it
	byGroup map[string]int // "<app>/<type>" → units
	memUsed int64          // bytes of limits of its units
	cpuUsed int            // shares of its units
}

// need is what one unit asks of a host.
type need struct {
	app, typ string
	memory   int64
	cpu      int
	tags     map[string]string
	// dataPlane: placement options are on, so only dataPlane=true hosts.
	dataPlane bool
	// replacing is the host of the unit this one replaces: units of its
	// group there are leaving, so they do not count against the host.
	replacing string
}

// place picks a host for n, deterministically: filter (alive, plane label,
// tags, capacity), then score (fewest units of the same app and type,
// fewest units in total, host name). When no host fits, the error names the
// constraint, e.g. "no host with dataPlane=true and environ=prod has 512M free".
func place(hosts []*hostLoad, n need) (*hostLoad, error) {
	group := n.app + "/" + n.typ
	var fits []*hostLoad
	labelled, sized := 0, 0
	for _, h := range hosts {
		if n.dataPlane && h.info.Labels["dataPlane"] != "true" {
			continue
		}
		if !hasTags(h.info.Labels, n.tags) {
			continue
		}
		labelled++
		if n.memory > 0 && h.info.MemMB > 0 && h.memUsed+n.memory > h.info.MemMB<<20 {
			continue
		}
		if n.cpu > 0 && h.info.CPUs > 0 && h.cpuUsed+n.cpu > h.info.CPUs*1024 {
			continue
		}
		sized++
		fits = append(fits, h)
	}
	if len(fits) == 0 {
		return nil, noHostError(len(hosts), labelled, n)
	}
	count := func(h *hostLoad) int {
		c := h.byGroup[group]
		if h.name == n.replacing && c > 0 {
			c--
		}
		return c
	}
	sort.SliceStable(fits, func(i, j int) bool {
		a, b := fits[i], fits[j]
		if ca, cb := count(a), count(b); ca != cb {
			return ca < cb
		}
		if a.total != b.total {
			return a.total < b.total
		}
		return a.name < b.name
	})
	h := fits[0]
	h.total++
	h.byGroup[group]++
	h.memUsed += n.memory
	h.cpuUsed += n.cpu
	return h, nil
}

func hasTags(labels, tags map[string]string) bool {
	for k, v := range tags {
		if labels[k] != v {
			return false
		}
	}
	return true
}

func noHostError(alive, labelled int, n need) error {
	var want []string
	if n.dataPlane {
		want = append(want, "dataPlane=true")
	}
	tk := make([]string, 0, len(n.tags))
	for k := range n.tags {
		tk = append(tk, k)
	}
	sort.Strings(tk)
	for _, k := range tk {
		want = append(want, k+"="+n.tags[k])
	}
	switch {
	case alive == 0:
		return fmt.Errorf("no host is alive to run %s.%s (no agent is registered)", n.app, n.typ)
	case labelled == 0:
		return fmt.Errorf("no host with %s is alive to run %s.%s", strings.Join(want, " and "), n.app, n.typ)
	}
	var free []string
	if n.memory > 0 {
		free = append(free, fmt.Sprintf("%dM", n.memory>>20))
	}
	if n.cpu > 0 {
		free = append(free, fmt.Sprintf("%d CPU shares", n.cpu))
	}
	with := ""
	if len(want) > 0 {
		with = " with " + strings.Join(want, " and ")
	}
	return fmt.Errorf("no host%s has %s free for %s.%s", with, strings.Join(free, " and "), n.app, n.typ)
}
