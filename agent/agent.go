// Package agent runs, on one host, the units the scheduler assigns to it
// (/deis/scheduler/units/<host>/), and reports their status on its lease
// (/deis/scheduler/status/<host>/). See docs/scheduler.md.
//
// Each unit has one worker goroutine that owns its container: it starts it,
// restarts it in place with backoff when it crashes, replaces it when the
// leader bumps its generation, and drains and stops it when the unit is no
// longer assigned. While etcd is unreachable the last assignment stays in
// force: nothing is stopped because etcd went away.
package agent

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/deis/dataplane/agent/runtime"
	"github.com/deis/dataplane/pkg/announce"
	"github.com/deis/dataplane/pkg/etcdwatch"
	"github.com/deis/dataplane/pkg/health"
	"github.com/deis/dataplane/pkg/keys"
	"github.com/deis/dataplane/pkg/release"
	"github.com/deis/dataplane/pkg/unit"
	"github.com/deis/dataplane/pkg/version"
)

// Config holds the agent's settings. Zero durations take the defaults of
// docs/scheduler.md.
type Config struct {
	Host         string            // this host's address and name (--host)
	Labels       map[string]string // placement labels (--labels)
	KeepReleases int               // images of the last N releases are kept (5)
	TTL          time.Duration     // host lease (10 s)
	Reconcile    time.Duration     // full pass (10 s)
	Drain        time.Duration     // route deleted → SIGTERM (3 s; DEIS_DRAIN_SECONDS)
	StopTimeout  time.Duration     // SIGTERM → SIGKILL (30 s; DEIS_STOP_TIMEOUT)
	MinRestart   time.Duration     // first crash restart delay (1 s)
	MaxRestart   time.Duration     // longest crash restart delay (5 min)
	ResetAfter   time.Duration     // up this long resets the backoff (10 min)
	CleanEvery   time.Duration     // disk hygiene pass (10 min)
}

func (c *Config) defaults() {
	set := func(d *time.Duration, v time.Duration) {
		if *d <= 0 {
			*d = v
		}
	}
	set(&c.TTL, 10*time.Second)
	set(&c.Reconcile, 10*time.Second)
	set(&c.Drain, 3*time.Second)
	set(&c.StopTimeout, 30*time.Second)
	set(&c.MinRestart, time.Second)
	set(&c.MaxRestart, 5*time.Minute)
	set(&c.ResetAfter, 10*time.Minute)
	set(&c.CleanEvery, 10*time.Minute)
	if c.KeepReleases <= 0 {
		c.KeepReleases = 5
	}
}

// DefaultLabels are a host's labels when --labels is not given: every plane.
const DefaultLabels = "controlPlane=true,dataPlane=true,routerMesh=true"

// ParseLabels reads "k=v,k2=v2". Keys and values are letters, digits, '-',
// '_' and '.'; an empty string is no labels.
func ParseLabels(s string) (map[string]string, error) {
	out := map[string]string{}
	for _, kv := range strings.Split(s, ",") {
		kv = strings.TrimSpace(kv)
		if kv == "" {
			continue
		}
		k, v, ok := strings.Cut(kv, "=")
		if !ok || !labelWord(k) || !labelWord(v) {
			return nil, fmt.Errorf("label %q: want key=value of letters, digits, '-', '_' or '.'", kv)
		}
		out[k] = v
	}
	return out, nil
}

func labelWord(s string) bool {
	if s == "" || len(s) > 63 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_' || c == '.') {
			return false
		}
	}
	return true
}

// Agent runs one host's units. Create with New and Run it.
type Agent struct {
	cfg    Config
	rt     runtime.Runtime
	etcd   *clientv3.Client
	log    *slog.Logger
	ann    *announce.Announcer
	units  *etcdwatch.Watcher
	runs   *etcdwatch.Watcher
	Health *health.Registry

	mu      sync.Mutex
	workers map[string]*worker            // by unit name
	byID    map[string]string             // container id → unit name
	running map[string]context.CancelFunc // one-off runs by unit name
	runDone chan struct{}                 // a run ended
	wg      sync.WaitGroup
	badSpec map[string]string // unit → last bad value logged

	m metrics
}

type metrics struct {
	units      prometheus.Gauge
	restarts   prometheus.Counter
	starts     prometheus.Counter
	stops      prometheus.Counter
	errors     prometheus.Counter
	imagesGone prometheus.Counter
}

// New returns an agent. reg receives its metrics.
func New(cfg Config, rt runtime.Runtime, ecli *clientv3.Client, log *slog.Logger, reg prometheus.Registerer) *Agent {
	cfg.defaults()
	a := &Agent{
		cfg: cfg, rt: rt, etcd: ecli, log: log,
		ann:     announce.New(ecli, cfg.TTL, log),
		units:   etcdwatch.New(ecli, []string{keys.UnitsHostPrefix(cfg.Host)}, etcdwatch.Options{Logger: log}),
		runs:    etcdwatch.New(ecli, []string{keys.RunsPrefix}, etcdwatch.Options{Logger: log}),
		running: map[string]context.CancelFunc{},
		runDone: make(chan struct{}, 1),
		Health:  &health.Registry{},
		workers: map[string]*worker{},
		byID:    map[string]string{},
		badSpec: map[string]string{},
	}
	// An agent restarted within its TTL (an upgrade) is not a dead host.
	a.ann.KeepOnExit()
	a.m = metrics{
		units:      prometheus.NewGauge(prometheus.GaugeOpts{Name: "agent_units", Help: "Units this agent runs or is retiring."}),
		restarts:   prometheus.NewCounter(prometheus.CounterOpts{Name: "agent_crash_restarts_total", Help: "Crashed containers restarted in place."}),
		starts:     prometheus.NewCounter(prometheus.CounterOpts{Name: "agent_container_starts_total", Help: "Containers created and started."}),
		stops:      prometheus.NewCounter(prometheus.CounterOpts{Name: "agent_container_stops_total", Help: "Containers drained, stopped and removed."}),
		errors:     prometheus.NewCounter(prometheus.CounterOpts{Name: "agent_unit_errors_total", Help: "Units that could not be started (image, create or start failed)."}),
		imagesGone: prometheus.NewCounter(prometheus.CounterOpts{Name: "agent_images_removed_total", Help: "Old app images removed by disk hygiene."}),
	}
	if reg != nil {
		reg.MustRegister(a.m.units, a.m.restarts, a.m.starts, a.m.stops, a.m.errors, a.m.imagesGone)
	}
	a.Health.Set("etcd", errors.New("not registered yet"))
	return a
}

// Run registers the host and runs its units until ctx ends. On return the
// containers keep running: a restarted agent adopts them.
func (a *Agent) Run(ctx context.Context) error {
	memMB, cpus, err := a.rt.Capacity(ctx)
	if err != nil {
		return fmt.Errorf("read host capacity: %w", err)
	}
	host, _ := json.Marshal(unit.Host{Addr: a.cfg.Host, Labels: a.cfg.Labels, MemMB: memMB, CPUs: cpus, AgentVersion: version.Version, Started: time.Now().UTC()})
	_ = a.ann.Put(ctx, keys.Host(a.cfg.Host), string(host)) // written as soon as a lease is held

	var bg sync.WaitGroup
	annCtx, stopAnn := context.WithCancel(context.WithoutCancel(ctx))
	bg.Go(func() { _ = a.ann.Run(annCtx) })
	bg.Go(func() { _ = a.units.Run(ctx) })
	bg.Go(func() { _ = a.runs.Run(ctx) })
	// The run loop starts goroutines on a.wg: it must end before a.wg.Wait.
	var runLoop sync.WaitGroup
	runLoop.Go(func() { a.runLoop(ctx) })
	bg.Go(func() {
		_ = a.rt.Watch(ctx, a.containerChanged, a.pokeAll)
	})
	bg.Go(func() { a.healthLoop(ctx) })
	bg.Go(func() { a.cleanLoop(ctx) })

	tick := time.NewTicker(a.cfg.Reconcile)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
		case snap := <-a.units.Updates():
			a.reconcile(ctx, snap)
			continue
		case <-tick.C:
			if snap := a.units.Snapshot(); snap != nil {
				a.reconcile(ctx, snap)
			}
			continue
		}
		break
	}
	// Stop the workers (they leave containers as they are), then the lease.
	runLoop.Wait()
	a.mu.Lock()
	for _, w := range a.workers {
		w.cancel()
	}
	a.mu.Unlock()
	a.wg.Wait()
	stopAnn()
	bg.Wait()
	return nil
}

func (a *Agent) healthLoop(ctx context.Context) {
	t := time.NewTicker(time.Second)
	defer t.Stop()
	for {
		err := a.ann.Err()
		if err == nil && a.ann.Lease() == 0 {
			err = errors.New("no etcd lease yet")
		}
		if err == nil {
			err = a.units.Err()
		}
		a.Health.Set("etcd", err)
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// reconcile hands every worker its desired spec (nil: retire), starts
// workers for new units, and for containers of this host that no unit
// names (left over from before a restart, or a unit moved away while etcd
// was unreachable).
func (a *Agent) reconcile(ctx context.Context, snap *etcdwatch.Snapshot) {
	if ctx.Err() != nil {
		return
	}
	desired := map[string]unit.Spec{}
	prefix := keys.UnitsHostPrefix(a.cfg.Host)
	for k, v := range snap.KVs {
		_, name, err := keys.ParseUnitKey(keys.UnitsPrefix, k)
		if err == nil && strings.HasPrefix(k, prefix) {
			var spec unit.Spec
			if spec, err = unit.ParseSpec(name, []byte(v)); err == nil {
				desired[name.String()] = spec
				continue
			}
		}
		a.logBadSpec(k, v, err)
	}
	containers, err := a.rt.List(ctx, a.cfg.Host)
	if err != nil {
		a.log.Warn("list containers; will retry", "err", err)
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	for name, spec := range desired {
		w := a.workers[name]
		if w == nil {
			w = a.startWorker(ctx, name)
		}
		w.set(&spec)
	}
	for name, w := range a.workers {
		if _, ok := desired[name]; !ok {
			w.set(nil)
		}
	}
	for _, c := range containers {
		if _, ok := a.workers[c.Name]; ok {
			continue
		}
		cn, err := keys.ParseContainerName(c.Name)
		if err != nil {
			continue // carries our host label but is not a unit: not ours to touch
		}
		if cn.Type == unit.TypeRun {
			// A run container nobody runs or waits for (left by an agent
			// that stopped mid-run, or whose client left meanwhile) goes.
			if a.running[c.Name] == nil && !a.runWanted(cn) {
				_ = a.rt.Remove(ctx, c.ID)
			}
			continue
		}
		w := a.startWorker(ctx, c.Name)
		w.set(nil)
	}
	a.m.units.Set(float64(len(a.workers)))
}

func (a *Agent) logBadSpec(key, value string, err error) {
	a.mu.Lock()
	first := a.badSpec[key] != value
	a.badSpec[key] = value
	a.mu.Unlock()
	if first {
		a.log.Warn("ignoring a unit key the agent cannot read", "key", key, "err", err)
	}
}

// startWorker must be called with a.mu held.
func (a *Agent) startWorker(ctx context.Context, name string) *worker {
	cname, _ := keys.ParseContainerName(name)
	wctx, cancel := context.WithCancel(ctx)
	w := &worker{a: a, name: name, cname: cname, cancel: cancel, poke: make(chan struct{}, 1)}
	w.backoff = newBackoff(a.cfg.MinRestart, a.cfg.MaxRestart)
	a.workers[name] = w
	a.wg.Go(func() {
		defer func() {
			if r := recover(); r != nil {
				a.log.Error("panic in a unit worker; the unit is left as it is until the next pass", "unit", name, "panic", r)
			}
			a.mu.Lock()
			if a.workers[name] == w {
				delete(a.workers, name)
			}
			a.mu.Unlock()
		}()
		w.run(wctx)
	})
	return w
}

// containerChanged routes a container event to the worker owning it.
func (a *Agent) containerChanged(id string) {
	a.mu.Lock()
	w := a.workers[a.byID[id]]
	a.mu.Unlock()
	if w != nil {
		w.wake()
	}
}

func (a *Agent) pokeAll() {
	a.mu.Lock()
	defer a.mu.Unlock()
	for _, w := range a.workers {
		w.wake()
	}
}

func (a *Agent) own(id, name string) {
	a.mu.Lock()
	for k, v := range a.byID {
		if v == name {
			delete(a.byID, k)
		}
	}
	if id != "" {
		a.byID[id] = name
	}
	a.mu.Unlock()
}

// Units returns the names of the units this agent currently runs or
// retires, sorted (for tests and the debug log).
func (a *Agent) Units() []string {
	a.mu.Lock()
	defer a.mu.Unlock()
	out := make([]string, 0, len(a.workers))
	for n := range a.workers {
		out = append(out, n)
	}
	sort.Strings(out)
	return out
}

// releaseOf reads the release a unit runs (for its env and drain settings).
func (a *Agent) releaseOf(ctx context.Context, app string, v int) (*release.Release, error) {
	rctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	return release.Get(rctx, a.etcd, app, v)
}

// runWanted reports whether a run unit's key still exists.
func (a *Agent) runWanted(c keys.ContainerName) bool {
	snap := a.runs.Snapshot()
	if snap == nil {
		return true // not known yet: keep it
	}
	_, ok := snap.Get(keys.RunUnit(c.App, c.String()))
	return ok
}
