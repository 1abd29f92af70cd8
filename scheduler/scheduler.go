// Package scheduler is the control plane's leader loop: it turns the desired
// state in etcd (an app's release and scale, restart requests) into unit
// assignments for the agents, rolls deploys surge-first, converges failed
// deploys back, and moves the units of dead hosts. It is pure logic over
// etcd: no Docker, no HTTP. See docs/scheduler.md and
// ../shared/CONTROL-PLANE.md.
//
// Every replica campaigns for leadership on a 10 s session; only the leader
// acts, and every write it makes is a transaction fenced on its leader key,
// so a deposed leader's writes fail.
package scheduler

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/client/v3/concurrency"

	"github.com/deis/dataplane/pkg/health"
	"github.com/deis/dataplane/pkg/keys"
	"github.com/deis/dataplane/pkg/retry"
)

// Config holds the scheduler's timings; zero values take the defaults of
// docs/scheduler.md.
type Config struct {
	ID             string        // this replica's name, the leader key's value
	Session        time.Duration // leader session TTL (10 s)
	FullPass       time.Duration // level-triggered pass when nothing happens (10 s)
	Tick           time.Duration // pass interval while a change is in progress (500 ms)
	Grace          time.Duration // a host missing this long is dead (4 s; see docs/scheduler.md)
	MinReadyRouted time.Duration // routed unit published this long = ready (2 s)
	MinReadyOther  time.Duration // other unit up this long = ready (10 s)
	Deadline       time.Duration // per unit, after its image is pulled (120 s; DEIS_DEPLOY_TIMEOUT)
	PullDeadline   time.Duration // a unit pulling longer fails (20 min)
}

func (c *Config) defaults() {
	set := func(d *time.Duration, v time.Duration) {
		if *d <= 0 {
			*d = v
		}
	}
	set(&c.Session, 10*time.Second)
	set(&c.FullPass, 10*time.Second)
	set(&c.Tick, 500*time.Millisecond)
	// The host key goes 6.7–10 s after an agent dies (keep-alives every
	// TTL/3), so 4 s keeps a dead host's routes under 15 s; the 5 s of
	// ../shared/CONTROL-PLANE.md would reach 15 s plus a pass at worst.
	set(&c.Grace, 4*time.Second)
	set(&c.MinReadyRouted, 2*time.Second)
	set(&c.MinReadyOther, 10*time.Second)
	set(&c.Deadline, 120*time.Second)
	set(&c.PullDeadline, 20*time.Minute)
}

// Scheduler campaigns for leadership and schedules while it leads. Create
// with New and Run it.
type Scheduler struct {
	cfg    Config
	etcd   *clientv3.Client
	log    *slog.Logger
	Health *health.Registry

	leading atomic.Bool
	// OnLead, when set, runs in its own goroutine for each term of
	// leadership with a context that ends with the term (the controller
	// announces itself there) and the session's lease.
	OnLead func(ctx context.Context, lease clientv3.LeaseID)

	mu       sync.Mutex
	badSeen  map[string]string // key → value already logged as garbage
	m        metrics
	passHook func(*state) // tests: called after each pass
}

type metrics struct {
	leader   prometheus.Gauge
	passes   prometheus.Counter
	passTime prometheus.Histogram
	writes   prometheus.Counter
	fenced   prometheus.Counter
	outcomes *prometheus.CounterVec
	moved    prometheus.Counter
}

// New returns a scheduler. reg receives its metrics.
func New(cfg Config, cli *clientv3.Client, log *slog.Logger, reg prometheus.Registerer) *Scheduler {
	cfg.defaults()
	s := &Scheduler{cfg: cfg, etcd: cli, log: log, Health: &health.Registry{}, badSeen: map[string]string{}}
	s.m = metrics{
		leader:   prometheus.NewGauge(prometheus.GaugeOpts{Name: "scheduler_leader", Help: "1 while this replica leads the scheduler."}),
		passes:   prometheus.NewCounter(prometheus.CounterOpts{Name: "scheduler_passes_total", Help: "Scheduling passes run as leader."}),
		passTime: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "scheduler_pass_seconds", Help: "Duration of one scheduling pass.", Buckets: prometheus.ExponentialBuckets(0.001, 2, 14)}),
		writes:   prometheus.NewCounter(prometheus.CounterOpts{Name: "scheduler_writes_total", Help: "Fenced transactions committed."}),
		fenced:   prometheus.NewCounter(prometheus.CounterOpts{Name: "scheduler_fenced_writes_rejected_total", Help: "Writes rejected because this replica no longer leads."}),
		outcomes: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "scheduler_deploys_total", Help: "Deploy records by kind and outcome."}, []string{"kind", "state"}),
		moved:    prometheus.NewCounter(prometheus.CounterOpts{Name: "scheduler_units_moved_total", Help: "Units re-placed off dead hosts."}),
	}
	if reg != nil {
		reg.MustRegister(s.m.leader, s.m.passes, s.m.passTime, s.m.writes, s.m.fenced, s.m.outcomes, s.m.moved)
	}
	return s
}

// Leading reports whether this replica currently leads.
func (s *Scheduler) Leading() bool { return s.leading.Load() }

// Run campaigns and schedules until ctx ends.
func (s *Scheduler) Run(ctx context.Context) error {
	backoff := retry.New(200*time.Millisecond, 5*time.Second)
	for ctx.Err() == nil {
		err := s.term(ctx)
		if ctx.Err() != nil {
			break
		}
		wait := backoff.Next()
		if err != nil {
			s.log.Warn("scheduler leadership ended; campaigning again", "err", err, "retry_in", wait)
		}
		s.Health.Set("etcd", err)
		retry.Sleep(ctx, wait)
	}
	return nil
}

// errDeposed ends a term whose fenced write was rejected.
var errDeposed = errors.New("a fenced write was rejected: another replica leads")

// term campaigns once and, if elected, leads until the session ends.
func (s *Scheduler) term(ctx context.Context) error {
	sess, err := concurrency.NewSession(s.etcd, concurrency.WithTTL(int((s.cfg.Session+time.Second-1)/time.Second)), concurrency.WithContext(ctx))
	if err != nil {
		return fmt.Errorf("open a leader session: %w", err)
	}
	defer sess.Close()
	s.Health.Set("etcd", nil)
	el := concurrency.NewElection(sess, keys.SchedulerLeaderPrefix)
	if err := el.Campaign(ctx, s.cfg.ID); err != nil {
		return fmt.Errorf("campaign: %w", err)
	}
	lctx, stop := context.WithCancel(ctx)
	defer stop()
	go func() {
		select {
		case <-sess.Done():
		case <-lctx.Done():
		}
		stop()
	}()
	s.leading.Store(true)
	s.m.leader.Set(1)
	defer func() { s.leading.Store(false); s.m.leader.Set(0) }()
	s.log.Info("leading the scheduler", "id", s.cfg.ID, "leader_key", el.Key())
	var hooks sync.WaitGroup
	if s.OnLead != nil {
		hooks.Go(func() { s.OnLead(lctx, sess.Lease()) })
	}
	err = s.lead(lctx, &fence{key: el.Key(), rev: el.Rev()})
	stop()
	hooks.Wait()
	if ctx.Err() == nil {
		// Give leadership up now rather than when the lease expires.
		rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Second)
		_ = el.Resign(rctx)
		cancel()
	}
	s.log.Info("no longer leading the scheduler", "id", s.cfg.ID, "err", err)
	return err
}

// fence is the leader key this term won; every write compares it.
type fence struct {
	key string
	rev int64
}

func (f *fence) cmp() clientv3.Cmp {
	return clientv3.Compare(clientv3.CreateRevision(f.key), "=", f.rev)
}

// coalesceChanges is the least time between two passes set off by changes.
const coalesceChanges = 50 * time.Millisecond

// lead runs passes: on every change under the watched prefixes (coalesced),
// every Tick while work is in progress, and every FullPass regardless.
func (s *Scheduler) lead(ctx context.Context, f *fence) error {
	p := newPlanner(s, f)
	wctx, cancel := context.WithCancel(clientv3.WithRequireLeader(ctx))
	defer cancel()
	changes := make(chan struct{}, 1)
	for _, prefix := range []string{keys.AppsPrefix, keys.HostsPrefix, keys.SchedulerPrefix, keys.ServicesPrefix, keys.PlatformPrefix} {
		go s.watch(wctx, prefix, changes)
	}
	full := time.NewTicker(s.cfg.FullPass)
	defer full.Stop()
	failures := 0
	var lastPass time.Time
	for {
		lastPass = time.Now()
		busy, err := p.pass(ctx)
		if errors.Is(err, errDeposed) {
			return err
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if err != nil {
			failures++
			s.Health.Set("etcd", err)
			if failures == 1 || failures%20 == 0 {
				s.log.Warn("scheduling pass failed; nothing was changed", "err", err, "failures", failures)
			}
		} else {
			failures = 0
			s.Health.Set("etcd", nil)
		}
		var tick <-chan time.Time
		if busy || err != nil {
			tick = time.After(s.cfg.Tick)
		} else if !p.wakeAt.IsZero() {
			tick = time.After(time.Until(p.wakeAt))
		}
		if busy && !p.wakeAt.IsZero() && time.Until(p.wakeAt) < s.cfg.Tick {
			tick = time.After(time.Until(p.wakeAt))
		}
		if p.again && err == nil {
			continue
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-changes:
			// A change after a quiet spell runs a pass at once (a push's
			// release waits for nothing); a burst (an agent writing many
			// statuses) is coalesced into at most one pass per
			// coalesceChanges.
			retry.Sleep(ctx, coalesceChanges-time.Since(lastPass))
		case <-tick:
		case <-full.C:
		}
	}
}

// commit runs ops in one transaction fenced on the leader key, plus the
// extra comparisons given. It returns whether the comparisons held, and
// errDeposed if leadership was lost.
func (s *Scheduler) commit(ctx context.Context, f *fence, cmps []clientv3.Cmp, ops ...clientv3.Op) (bool, int64, error) {
	if len(ops) == 0 {
		return true, 0, nil
	}
	wctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	all := append([]clientv3.Cmp{f.cmp()}, cmps...)
	resp, err := s.etcd.Txn(wctx).If(all...).Then(ops...).Else(clientv3.OpGet(f.key)).Commit()
	if err != nil {
		return false, 0, fmt.Errorf("scheduler write: %w", err)
	}
	if resp.Succeeded {
		s.m.writes.Inc()
		return true, resp.Header.Revision, nil
	}
	kvs := resp.Responses[0].GetResponseRange().Kvs
	if len(kvs) == 0 || kvs[0].CreateRevision != f.rev {
		s.m.fenced.Inc()
		return false, 0, errDeposed
	}
	return false, 0, nil // another comparison failed: the state moved on
}

// logBad logs each unreadable key once per value.
func (s *Scheduler) logBad(b []badKey) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, k := range b {
		if s.badSeen[k.key] == k.value {
			continue
		}
		s.badSeen[k.key] = k.value
		s.log.Warn("skipping a key the scheduler cannot read; other apps are unaffected", "key", k.key, "err", k.why)
	}
}

// watch signals changes for every event under prefix until ctx ends,
// watching again when the stream breaks (etcd restarted, compaction).
func (s *Scheduler) watch(ctx context.Context, prefix string, changes chan<- struct{}) {
	for ctx.Err() == nil {
		for range s.etcd.Watch(ctx, prefix, clientv3.WithPrefix()) {
			select {
			case changes <- struct{}{}:
			default:
			}
		}
		retry.Sleep(ctx, time.Second)
	}
}
