package scheduler

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"net"
	"sort"
	"strconv"
	"strings"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/deis/dataplane/pkg/keys"
	"github.com/deis/dataplane/pkg/release"
	"github.com/deis/dataplane/pkg/unit"
)

// planner holds what one term of leadership remembers between passes:
// clocks that etcd does not keep (when a host went missing, when a unit was
// first seen published). A new leader starts them afresh, which only ever
// delays a decision, never repeats one.
type planner struct {
	s           *Scheduler
	f           *fence
	started     time.Time
	hostMissing map[string]time.Time
	hostAddr    map[string]string
	published   map[string]time.Time // "<host>/<unit>" → first seen routed
	firstSeen   map[string]time.Time // "<host>/<unit>/<generation>" → unit key first seen
	pulled      map[string]time.Time // "<host>/<unit>/<generation>" → first seen past pulling
	logged      map[string]string    // app → last steady-state problem logged
	// wakeAt is when a missing host's grace period ends (zero: none), so
	// that the pass that moves its units runs on time, not on the next tick.
	wakeAt time.Time
	// again asks for the next pass at once: this one only normalised an
	// app's scale, and its deploy starts on the next (a push's first
	// release should not wait for the watch to echo the scheduler's own
	// write).
	again bool
}

func newPlanner(s *Scheduler, f *fence) *planner {
	return &planner{
		s: s, f: f, started: time.Now(),
		hostMissing: map[string]time.Time{}, hostAddr: map[string]string{},
		published: map[string]time.Time{}, firstSeen: map[string]time.Time{}, pulled: map[string]time.Time{},
		logged: map[string]string{},
	}
}

// pass reads the world once and moves every app one step towards its
// desired state. busy reports that something is in progress (a pass soon
// will have more to do).
func (p *planner) pass(ctx context.Context) (busy bool, err error) {
	start := time.Now()
	st, err := readState(ctx, p.s.etcd)
	if err != nil {
		return false, err
	}
	p.s.m.passes.Inc()
	defer func() { p.s.m.passTime.Observe(time.Since(start).Seconds()) }()
	p.s.logBad(st.bad)
	now := time.Now()

	// Hosts: alive while their key exists; dead once missing for Grace.
	dead := map[string]bool{}
	for h, info := range st.hosts {
		delete(p.hostMissing, h)
		p.hostAddr[h] = info.Addr
	}
	for h := range st.units {
		if _, ok := st.hosts[h]; !ok && p.hostMissing[h].IsZero() {
			p.hostMissing[h] = now
			p.s.log.Warn("host missing: its units move if it is not back within the grace period", "host", h, "grace", p.s.cfg.Grace)
		}
	}
	p.wakeAt = time.Time{}
	p.again = false
	for h, since := range p.hostMissing {
		if now.Sub(since) >= p.s.cfg.Grace {
			dead[h] = true
		} else if end := since.Add(p.s.cfg.Grace); p.wakeAt.IsZero() || end.Before(p.wakeAt) {
			p.wakeAt = end // look again when the grace period ends
		}
		if len(st.units[h]) == 0 && dead[h] {
			delete(p.hostMissing, h)
		}
	}
	loads := p.loads(st)

	// Readiness clocks.
	seen := map[string]bool{}
	for h, units := range st.units {
		for name, u := range units {
			k := h + "/" + name + "/" + strconv.Itoa(u.spec.Generation)
			seen[k] = true
			if p.firstSeen[k].IsZero() {
				p.firstSeen[k] = now
			}
			if s, ok := st.status[h][name]; ok && s.State != unit.Pulling && s.Generation == u.spec.Generation && p.pulled[k].IsZero() {
				p.pulled[k] = now
			}
		}
	}
	for k := range p.firstSeen {
		if !seen[k] {
			delete(p.firstSeen, k)
			delete(p.pulled, k)
		}
	}
	routed := map[string]bool{}
	for _, svc := range st.services {
		for name, addr := range svc {
			h, _, _ := net.SplitHostPort(addr)
			k := h + "/" + name
			routed[k] = true
			if p.published[k].IsZero() {
				p.published[k] = now
			}
		}
	}
	for k := range p.published {
		if !routed[k] {
			delete(p.published, k)
		}
	}

	names := map[string]bool{}
	for a := range st.apps {
		names[a] = true
	}
	for _, units := range st.units {
		for _, u := range units {
			names[u.spec.App] = true
		}
	}
	sorted := make([]string, 0, len(names))
	for a := range names {
		sorted = append(sorted, a)
	}
	sort.Strings(sorted)
	var firstErr error
	for _, app := range sorted {
		b, err := p.app(ctx, st, app, loads, dead, now)
		if errors.Is(err, errDeposed) {
			return false, err
		}
		if err != nil && firstErr == nil {
			firstErr = fmt.Errorf("app %s: %w", app, err)
		}
		busy = busy || b
	}
	if p.s.passHook != nil {
		p.s.passHook(st)
	}
	return busy, firstErr
}

// loads counts the units of every live host, for placement.
func (p *planner) loads(st *state) []*hostLoad {
	var out []*hostLoad
	for h, info := range st.hosts {
		l := &hostLoad{name: h, info: info, byGroup: map[string]int{}}
		for _, u := range st.units[h] {
			l.total++
			l.byGroup[u.spec.App+"/"+u.spec.Type]++
			l.memUsed += u.spec.Memory
			l.cpuUsed += u.spec.CPU
		}
		out = append(out, l)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].name < out[j].name })
	return out
}

// hostOf returns the host address a unit's route must point at.
func (p *planner) addrOf(host string) string {
	if a := p.hostAddr[host]; a != "" {
		return a
	}
	return host
}

// appPlan collects one app's writes of a pass; they commit in one txn.
// etcd refuses a txn that names a key twice, so the first write to a key
// wins and later ones are dropped.
type appPlan struct {
	ops     []clientv3.Op
	cmps    []clientv3.Cmp
	touched map[string]bool
}

func (ap *appPlan) first(k string) bool {
	if ap.touched == nil {
		ap.touched = map[string]bool{}
	}
	if ap.touched[k] {
		return false
	}
	ap.touched[k] = true
	return true
}

func (ap *appPlan) put(k, v string) {
	if ap.first(k) {
		ap.ops = append(ap.ops, clientv3.OpPut(k, v))
	}
}

func (ap *appPlan) del(k string) {
	if ap.first(k) {
		ap.ops = append(ap.ops, clientv3.OpDelete(k))
	}
}

// truncate drops the writes added after the first n.
func (ap *appPlan) truncate(n int) {
	for _, op := range ap.ops[n:] {
		delete(ap.touched, string(op.KeyBytes()))
	}
	ap.ops = ap.ops[:n]
}

func (p *planner) app(ctx context.Context, st *state, name string, loads []*hostLoad, dead map[string]bool, now time.Time) (busy bool, err error) {
	a := st.apps[name]
	var plan appPlan
	// Every unit of the app, and the lost ones (on dead hosts).
	var live, lost []placed
	for h, units := range st.units {
		for _, u := range units {
			if u.spec.App != name {
				continue
			}
			if dead[h] {
				lost = append(lost, u)
			} else {
				live = append(live, u)
			}
		}
	}
	sort.Slice(live, func(i, j int) bool {
		return live[i].host+live[i].spec.Name().String() < live[j].host+live[j].spec.Name().String()
	})
	for _, u := range lost {
		plan.del(keys.Unit(u.host, u.spec.Name().String()))
		if addr, ok := st.services[name][u.spec.Name().String()]; ok {
			if h, _, _ := net.SplitHostPort(addr); h == p.addrOf(u.host) {
				plan.del(keys.Service(name, u.spec.Name().String()))
			}
		}
		p.s.m.moved.Inc()
		p.s.log.Warn("moving a unit off a dead host", "unit", u.spec.Name().String(), "host", u.host)
	}
	if a == nil || !a.exists {
		// Destroyed: every unit goes; agents drain and stop them.
		for _, u := range live {
			plan.del(keys.Unit(u.host, u.spec.Name().String()))
		}
		if a != nil && a.deploy != nil {
			plan.del(keys.Deploy(name))
		}
		return len(plan.ops) > 0, p.commit(ctx, &plan)
	}
	if a.current == 0 {
		return false, p.commit(ctx, &plan)
	}
	if a.scaleBad != "" {
		p.logOnce(name, "scale unreadable, units left as they are: "+a.scaleBad)
		return false, p.commit(ctx, &plan)
	}
	rel, err := a.release(a.current)
	if err != nil {
		p.logOnce(name, err.Error())
		return false, p.commit(ctx, &plan)
	}
	// The scale: a default once there is an image; types the Procfile lost
	// leave it.
	if rel.Image != "" && !a.hasScale {
		data, _ := json.Marshal(rel.DefaultScale())
		plan.cmps = append(plan.cmps, clientv3.Compare(clientv3.CreateRevision(keys.AppScale(name)), "=", 0))
		plan.put(keys.AppScale(name), string(data))
		p.again = true
		return true, p.commit(ctx, &plan)
	}
	scale := release.Scale{}
	if rel.Image != "" {
		trimmed := false
		for t, n := range a.scale {
			if _, ok := rel.Procfile[t]; ok {
				scale[t] = n
			} else {
				trimmed = true
			}
		}
		if trimmed && a.scale != nil {
			data, _ := json.Marshal(scale)
			plan.cmps = append(plan.cmps, clientv3.Compare(clientv3.ModRevision(keys.AppScale(name)), "=", a.scaleRev))
			plan.put(keys.AppScale(name), string(data))
			p.again = true
			return true, p.commit(ctx, &plan)
		}
	}
	target := unit.Target{Release: a.current, Scale: scale}
	desiredRev := max(a.currentRev, a.scaleRev, a.restartRev)

	rec := a.deploy
	if rec == nil || (rec.Rev < desiredRev && !(rec.State == unit.Failed && rec.RevertRev >= desiredRev)) {
		rec = p.newRecord(a, live, st, target, desiredRev, now)
		if a.deploy != nil && a.deploy.State == unit.Running {
			p.s.m.outcomes.WithLabelValues(a.deploy.Kind, unit.Superseded).Inc()
			p.s.log.Info("deploy superseded", "app", name, "id", a.deploy.ID, "by", rec.ID)
		}
		p.s.log.Info("deploy started", "app", name, "id", rec.ID, "kind", rec.Kind, "from", rec.From, "to", rec.To)
	}
	running := rec.State == unit.Running
	c := converger{p: p, st: st, a: a, rel: rel, scale: scale, loads: loads, live: live, now: now, plan: &plan, gen: 0, rec: rec}
	if a.restart != nil {
		c.gen = int(a.restartRev)
	}
	kept := len(plan.ops)
	done, cause := c.converge()
	if done && a.restart != nil && cause == "" {
		done, cause = c.restart()
	}
	switch {
	case cause != "" && running:
		plan.truncate(kept) // place nothing more of a change that failed
		return true, p.fail(ctx, a, rec, cause, &plan)
	case cause != "":
		p.logOnce(name, cause)
	case done && running:
		rec.State, rec.Step, rec.Updated = unit.Succeeded, "", now
		if a.restart != nil {
			plan.del(keys.AppRestart(name))
		}
		p.putRecord(&plan, name, rec)
		p.s.m.outcomes.WithLabelValues(rec.Kind, unit.Succeeded).Inc()
		p.s.log.Info("deploy succeeded", "app", name, "id", rec.ID, "kind", rec.Kind, "took", now.Sub(rec.Started).Round(time.Millisecond))
		delete(p.logged, name)
	case running:
		if c.step != rec.Step || rec != a.deploy {
			rec.Step, rec.Updated = c.step, now
			p.putRecord(&plan, name, rec)
		}
	}
	return !done || running, p.commit(ctx, &plan)
}

func (p *planner) commit(ctx context.Context, plan *appPlan) error {
	ok, _, err := p.s.commit(ctx, p.f, plan.cmps, plan.ops...)
	if err == nil && !ok {
		return nil // the desired state changed under us: the next pass sees it
	}
	return err
}

func (p *planner) putRecord(plan *appPlan, app string, rec *unit.Deploy) {
	data, _ := json.Marshal(rec)
	plan.put(keys.Deploy(app), string(data))
}

func (p *planner) logOnce(app, msg string) {
	if p.logged[app] == msg {
		return
	}
	p.logged[app] = msg
	p.s.log.Warn("app cannot converge; retrying each pass", "app", app, "cause", msg)
}

// newRecord starts a deploy record for the desired state at rev. From is
// what serves now: the previous record's target when it succeeded, its
// origin when it was still running or failed, else what the units show.
func (p *planner) newRecord(a *appState, live []placed, st *state, to unit.Target, rev int64, now time.Time) *unit.Deploy {
	var from unit.Target
	switch prev := a.deploy; {
	case prev != nil && prev.State == unit.Succeeded:
		from = prev.To
	case prev != nil:
		from = prev.From
	default:
		from.Scale = map[string]int{}
		versions := map[int]int{}
		for _, u := range live {
			if p.serving(st, u) {
				versions[u.spec.Version]++
			}
		}
		for v, n := range versions {
			if n > versions[from.Release] || (n == versions[from.Release] && v > from.Release) {
				from.Release = v
			}
		}
		for _, u := range live {
			if u.spec.Version == from.Release {
				from.Scale[u.spec.Type]++
			}
		}
	}
	kind := unit.KindScale
	switch {
	case from.Release != to.Release:
		kind = unit.KindDeploy
	case a.restart != nil && a.restartRev == rev:
		kind = unit.KindRestart
	}
	return &unit.Deploy{
		ID: a.name + "-" + strconv.FormatInt(rev, 10), Kind: kind, Rev: rev,
		From: from, To: unit.Target{Release: to.Release, Scale: maps.Clone(to.Scale)},
		State: unit.Running, Started: now, Updated: now,
	}
}

// serving reports whether a unit takes traffic now: routed units while
// their route exists, others while up.
func (p *planner) serving(st *state, u placed) bool {
	name := u.spec.Name().String()
	if u.spec.Routed() {
		addr, ok := st.services[u.spec.App][name]
		if !ok {
			return false
		}
		h, _, _ := net.SplitHostPort(addr)
		return h == p.addrOf(u.host)
	}
	s, ok := st.status[u.host][name]
	return ok && s.State == unit.Up
}

// ready reports whether a unit has served long enough (minReady) in its
// current generation.
func (p *planner) ready(st *state, u placed, now time.Time) bool {
	name := u.spec.Name().String()
	s, ok := st.status[u.host][name]
	if !ok || s.State != unit.Up || s.Generation != u.spec.Generation {
		return false
	}
	if !u.spec.Routed() {
		return now.Sub(s.Since) >= p.s.cfg.MinReadyOther
	}
	if !p.serving(st, u) {
		return false
	}
	since := p.published[p.addrOf(u.host)+"/"+name]
	if s.Since.After(since) {
		since = s.Since // a route older than this container is not proof
	}
	return now.Sub(since) >= p.s.cfg.MinReadyRouted
}

// fail ends a running record: it marks the release failed and moves the
// desired state back to what served when the change began, in one fenced
// transaction; convergence back then happens like any deploy.
func (p *planner) fail(ctx context.Context, a *appState, rec *unit.Deploy, cause string, plan *appPlan) error {
	now := time.Now()
	rec.State, rec.Msg, rec.Updated, rec.Step = unit.Failed, cause, now, ""
	name := a.name
	switch {
	case rec.To.Release != rec.From.Release:
		back := rec.From.Release
		if back == 0 {
			// Nothing served before this release: go back to the newest
			// earlier release that did not fail (v1 of a new app has no image
			// and runs nothing).
			for v := a.current - 1; v >= 1; v-- {
				if _, failed := a.failed[v]; !failed {
					if _, ok := a.rawRel[v]; ok {
						back = v
						break
					}
				}
			}
		}
		plan.put(keys.AppFailed(name, a.current), cause)
		if back > 0 {
			plan.cmps = append(plan.cmps, clientv3.Compare(clientv3.ModRevision(keys.AppCurrentRelease(name)), "=", a.currentRev))
			plan.put(keys.AppCurrentRelease(name), strconv.Itoa(back))
			if prev, err := a.release(back); err == nil {
				// The live config always matches the current release.
				live, err := p.s.etcd.Get(ctx, keys.ConfigPrefixFor(name), clientv3.WithPrefix(), clientv3.WithKeysOnly())
				if err != nil {
					return fmt.Errorf("read the config to restore: %w", err)
				}
				want := map[string]string{}
				for k, v := range prev.Config {
					want[keys.Config(name, k)] = v
				}
				for _, kv := range live.Kvs {
					if _, ok := want[string(kv.Key)]; !ok {
						plan.del(string(kv.Key))
					}
				}
				for k, v := range want {
					plan.put(k, v)
				}
			}
		}
		if !sameScale(rec.From.Scale, rec.To.Scale) && len(rec.From.Scale) > 0 {
			data, _ := json.Marshal(rec.From.Scale)
			plan.cmps = append(plan.cmps, clientv3.Compare(clientv3.ModRevision(keys.AppScale(name)), "=", a.scaleRev))
			plan.put(keys.AppScale(name), string(data))
		}
	case rec.Kind == unit.KindRestart:
		if a.restart != nil {
			plan.del(keys.AppRestart(name))
		}
	default: // scale
		data, _ := json.Marshal(rec.From.Scale)
		plan.cmps = append(plan.cmps, clientv3.Compare(clientv3.ModRevision(keys.AppScale(name)), "=", a.scaleRev))
		plan.put(keys.AppScale(name), string(data))
	}
	p.putRecord(plan, name, rec)
	ok, rev, err := p.s.commit(ctx, p.f, plan.cmps, plan.ops...)
	if err != nil || !ok {
		return err
	}
	p.s.m.outcomes.WithLabelValues(rec.Kind, unit.Failed).Inc()
	p.s.log.Warn("deploy failed; converging back", "app", name, "id", rec.ID, "kind", rec.Kind, "cause", cause)
	// Remember the revert's own revision, so it does not start a record of
	// its own: the failed record stays the last word for its waiters.
	rec.RevertRev = rev
	var again appPlan
	p.putRecord(&again, name, rec)
	return p.commit(ctx, &again)
}

func sameScale(a, b map[string]int) bool {
	for t, n := range a {
		if b[t] != n {
			return false
		}
	}
	for t, n := range b {
		if a[t] != n {
			return false
		}
	}
	return true
}

// deadline is the app's per-unit readiness deadline.
func (p *planner) deadline(rel *release.Release) time.Duration {
	if v, ok := rel.Config["DEIS_DEPLOY_TIMEOUT"]; ok {
		if n, err := strconv.Atoi(strings.TrimSpace(v)); err == nil && n > 0 && n <= 86400 {
			return time.Duration(n) * time.Second
		}
	}
	return p.s.cfg.Deadline
}

func jsonMarshal(v any) ([]byte, error) { return json.Marshal(v) }
