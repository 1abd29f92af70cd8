package scheduler

import (
	"fmt"
	"net"
	"net/http"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/deis/dataplane/pkg/keys"
	"github.com/deis/dataplane/pkg/release"
	"github.com/deis/dataplane/pkg/unit"
)

// converger moves one app's units one step towards its desired set during
// one pass: the rolling deploy of ../shared/CONTROL-PLANE.md ("Rolling
// deploy", "Scale, restart, destroy"), surge 1 and unavailable 0 per type.
type converger struct {
	p     *planner
	st    *state
	a     *appState
	rel   *release.Release
	scale release.Scale
	loads []*hostLoad
	live  []placed
	now   time.Time
	plan  *appPlan
	rec   *unit.Deploy
	gen   int // generation of new units (the pending restart's, else 0)
	step  string
}

type group struct {
	typ string
	num int
}

func (c *converger) name(u placed) string { return u.spec.Name().String() }

func (c *converger) retire(u placed) {
	c.plan.del(keys.Unit(u.host, c.name(u)))
}

// isSurge reports whether u is a restart's surge unit, which converge
// leaves to restart.
func (c *converger) isSurge(u placed) bool {
	r := c.a.restart
	return r != nil && u.spec.Version == c.a.current && u.spec.Num > c.scale[u.spec.Type] &&
		u.spec.Generation == c.gen && (r.Type == "" || r.Type == u.spec.Type)
}

// converge returns done when every desired unit is ready and nothing else
// runs, or the cause that makes the current change fail.
func (c *converger) converge() (done bool, cause string) {
	groups := map[group][]placed{}
	types := map[string]bool{}
	for t, n := range c.scale {
		if n > 0 {
			types[t] = true
		}
	}
	for _, u := range c.live {
		if c.isSurge(u) {
			continue
		}
		g := group{u.spec.Type, u.spec.Num}
		groups[g] = append(groups[g], u)
		types[u.spec.Type] = true
	}
	done = true
	sortedTypes := make([]string, 0, len(types))
	for t := range types {
		sortedTypes = append(sortedTypes, t)
	}
	sort.Strings(sortedTypes)
	for _, t := range sortedTypes {
		n := c.scale[t]
		nums := map[int]bool{}
		for k := 1; k <= n; k++ {
			nums[k] = true
		}
		for g := range groups {
			if g.typ == t {
				nums[g.num] = true
			}
		}
		ordered := make([]int, 0, len(nums))
		for k := range nums {
			ordered = append(ordered, k)
		}
		sort.Ints(ordered)
		surging := false // one replacement of a serving unit at a time
		for _, k := range ordered {
			us := groups[group{t, k}]
			if k > n {
				for _, u := range us {
					c.retire(u) // scale down: agents drain and stop
				}
				if len(us) > 0 {
					done = false
				}
				continue
			}
			var d *placed
			var others []placed
			for i := range us {
				u := us[i]
				if u.spec.Version == c.a.current && (d == nil || (!c.p.ready(c.st, *d, c.now) && c.p.ready(c.st, u, c.now))) {
					if d != nil {
						others = append(others, *d)
					}
					d = &us[i]
					continue
				}
				others = append(others, u)
			}
			servingOther := ""
			for _, o := range others {
				if c.p.serving(c.st, o) {
					servingOther = o.host
				} else {
					c.retire(o) // never ready, or no longer serving: nothing to wait for
				}
			}
			if d == nil {
				done = false
				if servingOther != "" && surging {
					continue // its turn comes when the replacement before it is ready
				}
				if servingOther != "" {
					surging = true
				}
				if cause := c.placeNew(t, k, servingOther); cause != "" {
					return false, cause
				}
				continue
			}
			if c.p.ready(c.st, *d, c.now) {
				for _, o := range others {
					if c.p.serving(c.st, o) {
						c.retire(o)
						done = false
					}
				}
				continue
			}
			done = false
			if servingOther != "" {
				surging = true
			}
			if c.step == "" {
				c.step = fmt.Sprintf("%s.%d: waiting for %s on %s (%s)", t, k, c.name(*d), d.host, c.p.stateOf(c.st, *d))
			}
			if cause := c.p.problem(c.st, *d, c.rel, c.now); cause != "" && c.rec.State == unit.Running {
				return false, cause
			}
		}
	}
	return done, ""
}

// placeNew places unit <app>_v<current>.t.k; replacing is the host of the
// serving unit it replaces ("" when none).
func (c *converger) placeNew(t string, k int, replacing string) (cause string) {
	spec, err := c.spec(t, k, c.gen)
	if err != nil {
		return err.Error()
	}
	h, err := place(c.loads, need{app: spec.App, typ: t, memory: spec.Memory, cpu: spec.CPU, tags: c.rel.Tags, dataPlane: c.st.placementOptions, replacing: replacing})
	if err != nil && len(c.loads) == 0 && c.now.Sub(c.p.started) < c.p.s.cfg.Grace {
		// Leading for moments only (the platform, or this controller, just
		// started): agents register within a second, so wait for them
		// rather than fail a release pushed at once.
		if c.step == "" {
			c.step = fmt.Sprintf("%s.%d: waiting for a host's agent to register", t, k)
		}
		return ""
	}
	if err != nil {
		return err.Error()
	}
	c.putUnit(h.name, spec)
	if c.step == "" {
		c.step = fmt.Sprintf("%s.%d: placing %s on %s", t, k, spec.Name(), h.name)
	}
	return ""
}

func (c *converger) putUnit(host string, spec unit.Spec) {
	spec.Deploy = c.rec.ID
	data, _ := jsonMarshal(spec)
	c.plan.put(keys.Unit(host, spec.Name().String()), string(data))
}

// spec builds the unit of type t, number k of the current release.
func (c *converger) spec(t string, k, gen int) (unit.Spec, error) {
	s := unit.Spec{App: c.a.name, Version: c.a.current, Type: t, Num: k, Image: c.rel.Image, Command: c.rel.Procfile[t], Generation: gen, CPU: c.rel.CPU[t]}
	if m := c.rel.Memory[t]; m != "" {
		b, err := release.ParseMemory(m)
		if err != nil {
			return s, fmt.Errorf("release v%d: %w", c.a.current, err)
		}
		s.Memory = b
	}
	if p, err := strconv.Atoi(c.rel.Config["PORT"]); err == nil && p > 0 && p < 65536 {
		s.Port = p
	}
	return s, nil
}

// restart carries out a rolling restart once the app has converged: for
// each matching unit in turn, a surge unit comes up first, then the unit is
// replaced by a new container of the same name (its generation bumped),
// then the surge unit goes. The count never drops below the scale.
func (c *converger) restart() (done bool, cause string) {
	r := c.a.restart
	var todo []placed
	var surge *placed
	maxNum := map[string]int{}
	for i, u := range c.live {
		if c.isSurge(u) {
			surge = &c.live[i]
			continue
		}
		// Every unit of the type counts for the surge's number, not only
		// those restarted: restarting web.1 of three must not reuse web.2.
		maxNum[u.spec.Type] = max(maxNum[u.spec.Type], u.spec.Num, c.scale[u.spec.Type])
		if r.Type != "" && u.spec.Type != r.Type || r.Num != 0 && u.spec.Num != r.Num {
			continue
		}
		if u.spec.Generation < c.gen {
			todo = append(todo, u)
		} else if !c.p.ready(c.st, u, c.now) {
			// Just restarted: wait for it before the next one.
			c.step = "restart: waiting for " + c.name(u) + " (" + c.p.stateOf(c.st, u) + ")"
			if cause := c.p.problem(c.st, u, c.rel, c.now); cause != "" {
				return false, cause
			}
			return false, ""
		}
	}
	sort.Slice(todo, func(i, j int) bool {
		if todo[i].spec.Type != todo[j].spec.Type {
			return todo[i].spec.Type < todo[j].spec.Type
		}
		return todo[i].spec.Num < todo[j].spec.Num
	})
	if len(todo) == 0 {
		if surge != nil {
			c.retire(*surge)
			c.step = "restart: retiring " + c.name(*surge)
			return false, ""
		}
		return true, ""
	}
	next := todo[0]
	if surge != nil && surge.spec.Type != next.spec.Type {
		c.retire(*surge) // this type is done; the next type gets its own
		return false, ""
	}
	if surge == nil {
		spec, err := c.spec(next.spec.Type, maxNum[next.spec.Type]+1, c.gen)
		if err != nil {
			return false, err.Error()
		}
		h, err := place(c.loads, need{app: spec.App, typ: spec.Type, memory: spec.Memory, cpu: spec.CPU, tags: c.rel.Tags, dataPlane: c.st.placementOptions})
		if err != nil {
			return false, err.Error()
		}
		c.putUnit(h.name, spec)
		c.step = "restart: placing surge unit " + spec.Name().String()
		return false, ""
	}
	if !c.p.ready(c.st, *surge, c.now) {
		c.step = "restart: waiting for surge unit " + c.name(*surge) + " (" + c.p.stateOf(c.st, *surge) + ")"
		if cause := c.p.problem(c.st, *surge, c.rel, c.now); cause != "" {
			return false, cause
		}
		return false, ""
	}
	bumped := next.spec
	bumped.Generation = c.gen
	c.putUnit(next.host, bumped)
	c.step = "restart: replacing " + c.name(next)
	return false, ""
}

// stateOf is a unit's reported state, for steps and causes.
func (p *planner) stateOf(st *state, u placed) string {
	s, ok := st.status[u.host][u.spec.Name().String()]
	switch {
	case !ok:
		return "no status yet"
	case s.Generation != u.spec.Generation:
		return "replacing"
	case s.State == unit.Up && u.spec.Routed() && !p.serving(st, u):
		return "up, not routed yet"
	}
	return s.State
}

// problem returns why a unit that is not ready will not become ready: an
// error, a crash, or its deadline passed. "" while it may still.
func (p *planner) problem(st *state, u placed, rel *release.Release, now time.Time) string {
	name := u.spec.Name().String()
	where := fmt.Sprintf("%s on %s", name, u.host)
	s, ok := st.status[u.host][name]
	k := u.host + "/" + name + "/" + strconv.Itoa(u.spec.Generation)
	if ok && s.Generation == u.spec.Generation {
		switch s.State {
		case unit.Error:
			return fmt.Sprintf("%s could not start: %s", where, s.Msg)
		case unit.Crashed:
			msg := fmt.Sprintf("%s crashed: %s (restarts %d)", where, s.Msg, s.Restarts)
			if tail := lastLines(s.Tail, 5); tail != "" {
				msg += "; last output: " + tail
			}
			return msg
		}
	}
	first := p.firstSeen[k]
	if first.IsZero() {
		return ""
	}
	pulled := p.pulled[k]
	if pulled.IsZero() {
		if now.Sub(first) > p.s.cfg.PullDeadline {
			return fmt.Sprintf("%s: image %s still not pulled after %s", where, u.spec.Image, p.s.cfg.PullDeadline)
		}
		if !ok && now.Sub(first) > p.deadline(rel) {
			return fmt.Sprintf("%s: no status from the agent on %s after %s (is it running?)", where, u.host, p.deadline(rel))
		}
		return ""
	}
	limit := p.deadline(rel)
	if now.Sub(pulled) <= limit {
		return ""
	}
	msg := fmt.Sprintf("%s not ready after %s: %s", where, limit, p.stateOf(st, u))
	if u.spec.Routed() && ok && s.State == unit.Up && s.Port > 0 {
		msg += "; " + probe(net.JoinHostPort(p.addrOf(u.host), strconv.Itoa(s.Port)), rel.Config["HEALTHCHECK_URL"])
	}
	return msg
}

// probe checks once what a published-never unit answers, to name the cause.
func probe(addr, healthURL string) string {
	conn, err := net.DialTimeout("tcp", addr, time.Second)
	if err != nil {
		return "port " + addr + " refused: " + err.Error()
	}
	conn.Close()
	path := strings.TrimSpace(healthURL)
	if path == "" {
		return "port " + addr + " accepts connections but the app never answered there"
	}
	if !strings.HasPrefix(path, "/") {
		path = "/" + path
	}
	client := &http.Client{Timeout: 2 * time.Second, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err := client.Get("http://" + addr + path)
	if err != nil {
		return "GET " + path + " failed: " + err.Error()
	}
	resp.Body.Close()
	return fmt.Sprintf("GET %s answered %d", path, resp.StatusCode)
}

func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.TrimSpace(strings.Join(lines, " | "))
}
