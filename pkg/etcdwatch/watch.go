// Package etcdwatch mirrors a set of etcd prefixes into immutable snapshots.
//
// It follows the etcd mirror pattern: list every prefix at one revision R,
// then watch from R+1 with WithRequireLeader. A burst of events is coalesced
// into one new snapshot ("newest wins"). When the watch fails (etcd
// restarted, leader lost, history compacted) it lists again, with backoff,
// and keeps handing out the last good snapshot meanwhile.
package etcdwatch

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"sync"
	"sync/atomic"
	"time"

	"go.etcd.io/etcd/api/v3/mvccpb"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/deis/dataplane/pkg/etcdutil"
	"github.com/deis/dataplane/pkg/retry"
)

// Snapshot is an immutable view of the watched keys at one revision. Never
// modify KVs: it is shared by every reader.
type Snapshot struct {
	Revision int64
	KVs      map[string]string
	Taken    time.Time // when this snapshot was built
}

// Get returns the value of key and whether it exists.
func (s *Snapshot) Get(key string) (string, bool) {
	v, ok := s.KVs[key]
	return v, ok
}

// Options tune a Watcher. Zero values take the defaults.
type Options struct {
	// Coalesce is how long to wait for more events before publishing a
	// snapshot (default 20ms). MaxDelay bounds the wait under continuous
	// churn (default 200ms).
	Coalesce time.Duration
	MaxDelay time.Duration
	// MinBackoff and MaxBackoff bound the retry delay after a failure
	// (defaults 100ms and 2s).
	MinBackoff, MaxBackoff time.Duration
	Logger                 *slog.Logger
}

// Watcher mirrors prefixes. Create with New, then Run it.
type Watcher struct {
	cli      *clientv3.Client
	prefixes []string
	opt      Options
	log      *slog.Logger

	current atomic.Pointer[Snapshot]
	updates chan *Snapshot

	mu       sync.Mutex
	lastErr  error
	probeErr error
}

// New returns a watcher of prefixes (each a key prefix such as "/deis/router/").
func New(cli *clientv3.Client, prefixes []string, opt Options) *Watcher {
	if opt.Coalesce <= 0 {
		opt.Coalesce = 20 * time.Millisecond
	}
	if opt.MaxDelay <= 0 {
		opt.MaxDelay = 200 * time.Millisecond
	}
	if opt.MinBackoff <= 0 {
		opt.MinBackoff = 100 * time.Millisecond
	}
	if opt.MaxBackoff <= 0 {
		opt.MaxBackoff = 2 * time.Second
	}
	if opt.Logger == nil {
		opt.Logger = slog.Default()
	}
	return &Watcher{
		cli: cli, prefixes: prefixes, opt: opt, log: opt.Logger,
		updates: make(chan *Snapshot, 1),
	}
}

// Snapshot returns the newest snapshot, or nil before the first list.
func (w *Watcher) Snapshot() *Snapshot { return w.current.Load() }

// Updates delivers each new snapshot. The channel holds one: a slow reader
// only ever sees the newest, never a stale one after a newer.
func (w *Watcher) Updates() <-chan *Snapshot { return w.updates }

// Err is the reason the mirror may currently be out of sync with etcd (the
// watch failed, or etcd does not answer), or nil.
func (w *Watcher) Err() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.lastErr != nil {
		return w.lastErr
	}
	return w.probeErr
}

// probe pings etcd every interval: a watch on a dead server does not fail
// (the client retries silently), so health would otherwise stay green.
func (w *Watcher) probe(ctx context.Context, interval time.Duration) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		err := etcdutil.Ping(ctx, w.cli, interval)
		if ctx.Err() != nil {
			return
		}
		w.mu.Lock()
		changed := (err == nil) != (w.probeErr == nil)
		w.probeErr = err
		w.mu.Unlock()
		if changed && err != nil {
			w.log.Warn("etcd unreachable; serving last snapshot", "err", err)
		} else if changed {
			w.log.Info("etcd reachable again")
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

func (w *Watcher) setErr(err error) {
	w.mu.Lock()
	w.lastErr = err
	w.mu.Unlock()
}

// Run lists and watches until ctx ends. It returns only ctx's error.
func (w *Watcher) Run(ctx context.Context) error {
	pctx, stopProbe := context.WithCancel(ctx)
	var probing sync.WaitGroup
	probing.Go(func() { w.probe(pctx, 2*time.Second) })
	defer probing.Wait()
	defer stopProbe()
	backoff := retry.New(w.opt.MinBackoff, w.opt.MaxBackoff)
	for {
		err := w.syncOnce(ctx)
		if ctx.Err() != nil {
			return ctx.Err()
		}
		w.setErr(err)
		if err == nil {
			backoff.Reset()
		}
		wait := backoff.Next()
		w.log.Warn("etcd watch interrupted; serving last snapshot and retrying", "prefixes", w.prefixes, "err", err, "retry_in", wait)
		if !retry.Sleep(ctx, wait) {
			return ctx.Err()
		}
	}
}

// syncOnce lists, publishes, then watches until something breaks.
func (w *Watcher) syncOnce(ctx context.Context) error {
	kvs, rev, err := w.list(ctx)
	if err != nil {
		return err
	}
	w.setErr(nil)
	w.publish(&Snapshot{Revision: rev, KVs: kvs, Taken: time.Now()})

	wctx, cancel := context.WithCancel(clientv3.WithRequireLeader(ctx))
	defer cancel()
	events := make(chan clientv3.WatchResponse, 16)
	var wg sync.WaitGroup
	for _, p := range w.prefixes {
		wch := w.cli.Watch(wctx, p, clientv3.WithPrefix(), clientv3.WithRev(rev+1), clientv3.WithProgressNotify())
		wg.Add(1)
		go func() {
			defer wg.Done()
			for resp := range wch {
				select {
				case events <- resp:
				case <-wctx.Done():
					return
				}
			}
			// A closed channel means the watch is over; tell the loop.
			select {
			case events <- clientv3.WatchResponse{Canceled: true}:
			case <-wctx.Done():
			}
		}()
	}
	defer wg.Wait()
	defer cancel()

	var (
		working  map[string]string // copy-on-write of the last snapshot
		dirtyRev int64
		timer    *time.Timer
		timerC   <-chan time.Time
		first    time.Time
	)
	flush := func() {
		if working != nil {
			w.publish(&Snapshot{Revision: dirtyRev, KVs: working, Taken: time.Now()})
			working = nil
		}
		timerC = nil
	}
	for {
		select {
		case <-ctx.Done():
			flush()
			return ctx.Err()
		case <-timerC:
			if time.Since(first) >= w.opt.MaxDelay || len(events) == 0 {
				flush()
			} else {
				timer.Reset(w.opt.Coalesce)
			}
		case resp := <-events:
			if err := resp.Err(); err != nil || resp.Canceled {
				flush()
				if err == nil {
					err = errors.New("watch channel closed")
				}
				if errors.Is(err, context.Canceled) && ctx.Err() != nil {
					return ctx.Err()
				}
				return fmt.Errorf("watch %v from revision %d: %w", w.prefixes, rev+1, err)
			}
			if len(resp.Events) == 0 {
				continue // progress notification
			}
			if working == nil {
				working = maps.Clone(w.current.Load().KVs)
				first = time.Now()
			}
			for _, ev := range resp.Events {
				k := string(ev.Kv.Key)
				if ev.Type == mvccpb.DELETE {
					delete(working, k)
				} else {
					working[k] = string(ev.Kv.Value)
				}
			}
			dirtyRev = resp.Header.Revision
			rev = max(rev, dirtyRev)
			if timerC == nil {
				if timer == nil {
					timer = time.NewTimer(w.opt.Coalesce)
				} else {
					timer.Reset(w.opt.Coalesce)
				}
				timerC = timer.C
			}
		}
	}
}

// list reads every prefix at one revision.
func (w *Watcher) list(ctx context.Context) (map[string]string, int64, error) {
	kvs := make(map[string]string)
	var rev int64
	for _, p := range w.prefixes {
		lctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		opts := []clientv3.OpOption{clientv3.WithPrefix()}
		if rev > 0 {
			opts = append(opts, clientv3.WithRev(rev))
		}
		resp, err := w.cli.Get(lctx, p, opts...)
		cancel()
		if err != nil {
			return nil, 0, fmt.Errorf("list %s: %w", p, err)
		}
		if rev == 0 {
			rev = resp.Header.Revision
		}
		for _, kv := range resp.Kvs {
			kvs[string(kv.Key)] = string(kv.Value)
		}
	}
	return kvs, rev, nil
}

// publish installs s as current and offers it on Updates, replacing an
// unread older snapshot.
func (w *Watcher) publish(s *Snapshot) {
	w.current.Store(s)
	for {
		select {
		case w.updates <- s:
			return
		default:
		}
		select {
		case <-w.updates: // drop the stale one
		default:
		}
	}
}
