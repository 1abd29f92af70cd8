// Package announce keeps a set of etcd keys alive on one lease.
//
// The desired keys are held in memory. While a lease is live every desired
// key is written on it; keep-alives renew the lease without rewriting keys.
// When the lease is lost (etcd restarted with fresh data, a partition longer
// than the TTL) a new lease is granted and every key written again. On
// shutdown the lease is revoked, which deletes the keys at once.
package announce

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/deis/dataplane/pkg/retry"
)

// DefaultTTL is the lease TTL of docs/contract.md for published keys.
const DefaultTTL = 20 * time.Second

// ErrNoLease is returned by Put while no lease is held; the key is kept and
// written as soon as one is.
var ErrNoLease = errors.New("no etcd lease held yet")

// Announcer keeps keys alive. Safe for concurrent use. Run must be running
// for keys to be written.
type Announcer struct {
	cli *clientv3.Client
	ttl time.Duration
	log *slog.Logger

	mu      sync.Mutex
	desired map[string]string
	lease   clientv3.LeaseID // 0 while none
	// granted is the lease being set up (granted, keys not all written
	// yet): Put does not use it, but a shutdown must revoke it, or a write
	// still in flight lands after the shutdown's deletes and outlives it.
	granted clientv3.LeaseID
	lastErr error
	onLease []func()
	// keepOnExit leaves the keys to expire with the lease on shutdown.
	keepOnExit bool

	// Grants counts leases granted (the first, plus one per loss); tests
	// and metrics read it.
	grants int
}

// New returns an announcer whose lease lives ttl (DefaultTTL if 0).
func New(cli *clientv3.Client, ttl time.Duration, log *slog.Logger) *Announcer {
	if ttl <= 0 {
		ttl = DefaultTTL
	}
	if log == nil {
		log = slog.Default()
	}
	return &Announcer{cli: cli, ttl: ttl, log: log, desired: make(map[string]string)}
}

// OnNewLease registers f to run (in Run's goroutine) after each new lease
// has been granted and every desired key written. Publishers use it to
// count re-publications.
func (a *Announcer) OnNewLease(f func()) {
	a.mu.Lock()
	a.onLease = append(a.onLease, f)
	a.mu.Unlock()
}

// Put records key=value as desired and writes it on the current lease. If
// no lease is held or the write fails, the key is still kept and written
// when the next lease is granted; the error says what happened.
func (a *Announcer) Put(ctx context.Context, key, value string) error {
	a.mu.Lock()
	a.desired[key] = value
	lease := a.lease
	a.mu.Unlock()
	if lease == 0 {
		return ErrNoLease
	}
	if _, err := a.cli.Put(ctx, key, value, clientv3.WithLease(lease)); err != nil {
		return fmt.Errorf("announce %s: %w", key, err)
	}
	return nil
}

// PutWith is Put with more operations committed in the same transaction
// (the agent marks a unit draining and deletes its route in one step). The
// extra operations are not remembered: only key is rewritten on a new lease.
func (a *Announcer) PutWith(ctx context.Context, key, value string, ops ...clientv3.Op) error {
	a.mu.Lock()
	a.desired[key] = value
	lease := a.lease
	a.mu.Unlock()
	if lease == 0 {
		return ErrNoLease
	}
	all := append([]clientv3.Op{clientv3.OpPut(key, value, clientv3.WithLease(lease))}, ops...)
	if _, err := a.cli.Txn(ctx).Then(all...).Commit(); err != nil {
		return fmt.Errorf("announce %s: %w", key, err)
	}
	return nil
}

// KeepOnExit makes Run leave the keys on shutdown, to expire with the lease
// TTL, instead of revoking it: an agent restarted within the TTL (an
// upgrade) is not taken for a dead host.
func (a *Announcer) KeepOnExit() {
	a.mu.Lock()
	a.keepOnExit = true
	a.mu.Unlock()
}

// Delete forgets key and deletes it from etcd now.
func (a *Announcer) Delete(ctx context.Context, key string) error {
	a.mu.Lock()
	delete(a.desired, key)
	a.mu.Unlock()
	if _, err := a.cli.Delete(ctx, key); err != nil {
		return fmt.Errorf("unannounce %s: %w", key, err)
	}
	return nil
}

// DeleteOwn forgets key and deletes it from etcd only while it still holds
// the value this announcer wrote. A key another writer took over since
// (the same app container name published by another host after a move)
// is left alone.
func (a *Announcer) DeleteOwn(ctx context.Context, key string) error {
	a.mu.Lock()
	v, ok := a.desired[key]
	delete(a.desired, key)
	a.mu.Unlock()
	if !ok {
		return nil
	}
	if _, err := a.cli.Txn(ctx).If(clientv3.Compare(clientv3.Value(key), "=", v)).Then(clientv3.OpDelete(key)).Commit(); err != nil {
		return fmt.Errorf("unannounce %s: %w", key, err)
	}
	return nil
}

// Keys returns a copy of the desired keys.
func (a *Announcer) Keys() map[string]string {
	a.mu.Lock()
	defer a.mu.Unlock()
	out := make(map[string]string, len(a.desired))
	for k, v := range a.desired {
		out[k] = v
	}
	return out
}

// Lease is the current lease, 0 when none.
func (a *Announcer) Lease() clientv3.LeaseID {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.lease
}

// Grants is how many leases have been granted so far.
func (a *Announcer) Grants() int {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.grants
}

// Err is why no lease is currently held, or nil.
func (a *Announcer) Err() error {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.lastErr
}

// Run holds a lease until ctx ends, then revokes it (deleting the keys).
func (a *Announcer) Run(ctx context.Context) error {
	// Keep retries quick: keys must be back within seconds of etcd.
	backoff := retry.New(100*time.Millisecond, time.Second)
	for {
		err := a.holdLease(ctx)
		if ctx.Err() != nil {
			a.revoke()
			return ctx.Err()
		}
		a.mu.Lock()
		a.lease = 0
		a.granted = 0
		a.lastErr = err
		a.mu.Unlock()
		wait := backoff.Next()
		a.log.Warn("etcd lease lost; announcing again", "err", err, "retry_in", wait)
		if !retry.Sleep(ctx, wait) {
			a.revoke()
			return ctx.Err()
		}
	}
}

// holdLease grants a lease, writes every desired key, and keeps it alive
// until the keep-alive stream ends.
func (a *Announcer) holdLease(ctx context.Context) error {
	gctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	grant, err := a.cli.Grant(gctx, int64((a.ttl+time.Second-1)/time.Second))
	cancel()
	if err != nil {
		return fmt.Errorf("grant lease: %w", err)
	}
	a.mu.Lock()
	a.granted = grant.ID
	a.mu.Unlock()
	kctx, stopKeepAlive := context.WithCancel(ctx)
	defer stopKeepAlive()
	alive, err := a.cli.KeepAlive(kctx, grant.ID)
	if err != nil {
		return fmt.Errorf("keep lease %x alive: %w", grant.ID, err)
	}
	if err := a.writeAll(ctx, grant.ID); err != nil {
		return err
	}
	a.mu.Lock()
	a.lease = grant.ID
	a.lastErr = nil
	a.grants++
	hooks := append([]func(){}, a.onLease...)
	a.mu.Unlock()
	// Keys Put while writeAll ran were written without a lease id or not at
	// all; write once more now that Put uses the lease directly.
	if err := a.writeAll(ctx, grant.ID); err != nil {
		return err
	}
	a.log.Info("etcd lease granted", "lease", fmt.Sprintf("%x", grant.ID), "ttl", a.ttl, "keys", len(a.Keys()))
	for _, f := range hooks {
		f()
	}
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case _, ok := <-alive:
			if !ok {
				return fmt.Errorf("lease %x expired or keep-alive ended", grant.ID)
			}
		}
	}
}

func (a *Announcer) writeAll(ctx context.Context, lease clientv3.LeaseID) error {
	for k, v := range a.Keys() {
		a.mu.Lock()
		cur, still := a.desired[k]
		a.mu.Unlock()
		if !still || cur != v {
			continue // deleted or replaced meanwhile: never resurrect it
		}
		wctx, cancel := context.WithTimeout(ctx, 3*time.Second)
		_, err := a.cli.Put(wctx, k, v, clientv3.WithLease(lease))
		cancel()
		if err != nil {
			return fmt.Errorf("write %s on lease %x: %w", k, lease, err)
		}
	}
	return nil
}

// revoke removes every key on shutdown, within 5 seconds: it revokes the
// lease, and the one being set up, and deletes the keys one by one too,
// since shutdown may come while a new lease is being set up and the keys
// sit on an older one.
func (a *Announcer) revoke() {
	a.mu.Lock()
	leases := []clientv3.LeaseID{a.lease}
	if a.granted != a.lease {
		leases = append(leases, a.granted)
	}
	a.lease, a.granted = 0, 0
	keep := a.keepOnExit
	a.mu.Unlock()
	if keep {
		return
	}
	// A clean stop takes its keys along: give etcd a few seconds (it may be
	// reconnecting after a restart, or slow under load; make test's race
	// pass once took over 2 s), well within any supervisor's stop grace.
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	for _, lease := range leases {
		if lease == 0 {
			continue
		}
		if _, err := a.cli.Revoke(ctx, lease); err != nil {
			a.log.Warn("revoke lease on shutdown", "lease", fmt.Sprintf("%x", lease), "err", err)
		}
	}
	for k := range a.Keys() {
		if _, err := a.cli.Delete(ctx, k); err != nil {
			a.log.Warn("delete key on shutdown", "key", k, "err", err)
			return
		}
	}
}
