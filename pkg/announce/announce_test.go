package announce_test

import (
	"context"
	"fmt"
	"log/slog"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/deis/dataplane/pkg/announce"
	"github.com/deis/dataplane/pkg/testenv"
)

func get(t *testing.T, cli *clientv3.Client, key string) (string, int64, bool) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	resp, err := cli.Get(ctx, key)
	if err != nil || len(resp.Kvs) == 0 {
		return "", 0, false
	}
	return string(resp.Kvs[0].Value), resp.Kvs[0].Lease, true
}

func run(t *testing.T, a *announce.Announcer) (stop func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { _ = a.Run(ctx); close(done) }()
	stopped := false
	stop = func() {
		if stopped {
			return
		}
		stopped = true
		cancel()
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			t.Error("announcer did not stop within 5s")
		}
	}
	t.Cleanup(stop)
	return stop
}

func TestPutKeepAliveAndRevokeOnStop(t *testing.T) {
	t.Parallel()
	e := testenv.StartEtcd(t)
	cli := e.Client()
	a := announce.New(e.Client(), 2*time.Second, slog.New(slog.DiscardHandler))
	// A key put before the first lease is written once the lease exists.
	if err := a.Put(context.Background(), "/deis/router/hosts/h1", "h1:80"); err != announce.ErrNoLease {
		t.Fatalf("Put before Run = %v, want ErrNoLease", err)
	}
	stop := run(t, a)
	testenv.Eventually(t, 5*time.Second, func() bool { _, _, ok := get(t, cli, "/deis/router/hosts/h1"); return ok }, "key never written")
	if err := a.Put(context.Background(), "/deis/logs/host", "h1"); err != nil {
		t.Fatalf("Put with lease: %v", err)
	}
	_, lease1, _ := get(t, cli, "/deis/router/hosts/h1")
	_, lease2, _ := get(t, cli, "/deis/logs/host")
	if lease1 == 0 || lease1 != lease2 {
		t.Fatalf("keys not on one lease: %x %x", lease1, lease2)
	}
	// Outlive the TTL twice: keep-alives, not rewrites, must hold the keys.
	_, _, _ = get(t, cli, "/deis/router/hosts/h1")
	resp, _ := cli.Get(context.Background(), "/deis/router/hosts/h1")
	modRev := resp.Kvs[0].ModRevision
	time.Sleep(5 * time.Second) // deliberately longer than the 2s TTL
	resp, err := cli.Get(context.Background(), "/deis/router/hosts/h1")
	if err != nil || len(resp.Kvs) == 0 {
		t.Fatal("key expired although the lease was kept alive")
	}
	if resp.Kvs[0].ModRevision != modRev {
		t.Fatalf("key was rewritten (mod revision %d -> %d); keep-alives should suffice", modRev, resp.Kvs[0].ModRevision)
	}
	if err := a.Delete(context.Background(), "/deis/logs/host"); err != nil {
		t.Fatal(err)
	}
	if _, _, ok := get(t, cli, "/deis/logs/host"); ok {
		t.Fatal("Delete left the key in etcd")
	}
	stop()
	if _, _, ok := get(t, cli, "/deis/router/hosts/h1"); ok {
		t.Fatal("key still present after shutdown; lease should be revoked")
	}
}

// TestKeysBackAfterEtcdRestart restarts etcd with its data (lease kept) and
// then loses the lease for real (revoked behind the announcer's back, as a
// wiped or partitioned etcd would); both times the keys must be back within
// 2 seconds of etcd answering again.
func TestKeysBackAfterEtcdRestart(t *testing.T) {
	t.Parallel()
	e := testenv.StartEtcd(t)
	cli := e.Client()
	a := announce.New(e.Client(), 2*time.Second, slog.New(slog.DiscardHandler))
	run(t, a)
	for _, k := range []string{"/deis/services/x/x_v1.web.1", "/deis/services/x/x_v1.web.2"} {
		if err := a.Put(context.Background(), k, "127.0.0.1:1"); err != nil && err != announce.ErrNoLease {
			t.Fatal(err)
		}
	}
	present := func() bool {
		_, _, ok1 := get(t, cli, "/deis/services/x/x_v1.web.1")
		_, _, ok2 := get(t, cli, "/deis/services/x/x_v1.web.2")
		return ok1 && ok2
	}
	testenv.Eventually(t, 5*time.Second, present, "keys never written")

	// etcd down for longer than the TTL, then back.
	e.Stop()
	time.Sleep(3 * time.Second) // the outage itself: longer than the TTL
	e.Start()
	testenv.Eventually(t, 2*time.Second, present, "keys not back within 2s of etcd restart")

	// The lease disappears (as after a wipe): a new one must be granted.
	// The restart may itself have cost the old lease, so wait for the
	// announcer to settle on a live one first.
	testenv.Eventually(t, 5*time.Second, func() bool {
		l := a.Lease()
		if l == 0 {
			return false
		}
		ttl, err := cli.TimeToLive(context.Background(), l)
		return err == nil && ttl.TTL > 0
	}, "announcer never settled on a live lease")
	grants := a.Grants()
	if _, err := cli.Revoke(context.Background(), a.Lease()); err != nil {
		t.Fatal(err)
	}
	testenv.Eventually(t, 2*time.Second, present, "keys not back within 2s of lease loss")
	testenv.Eventually(t, 2*time.Second, func() bool { return a.Grants() > grants }, "no new lease granted")
	if err := a.Err(); err != nil {
		t.Fatalf("Err() = %v after recovery", err)
	}
}

func TestDeletedKeyIsNotResurrected(t *testing.T) {
	t.Parallel()
	e := testenv.StartEtcd(t)
	cli := e.Client()
	a := announce.New(e.Client(), 2*time.Second, slog.New(slog.DiscardHandler))
	run(t, a)
	_ = a.Put(context.Background(), "/k/a", "1")
	testenv.Eventually(t, 5*time.Second, func() bool { _, _, ok := get(t, cli, "/k/a"); return ok }, "key never written")
	if err := a.Delete(context.Background(), "/k/a"); err != nil {
		t.Fatal(err)
	}
	grants := a.Grants()
	if _, err := cli.Revoke(context.Background(), a.Lease()); err != nil {
		t.Fatal(err)
	}
	testenv.Eventually(t, 3*time.Second, func() bool { return a.Grants() > grants }, "no new lease granted")
	if _, _, ok := get(t, cli, "/k/a"); ok {
		t.Fatal("deleted key was written again on the new lease")
	}
}

// TestDeleteOwnLeavesAKeyTakenOver: DeleteOwn removes a key only while it
// holds this announcer's value; one rewritten by another writer (a unit
// published by another host after a move) stays. KeepOnExit leaves the
// keys to the lease on shutdown.
func TestDeleteOwnLeavesAKeyTakenOver(t *testing.T) {
	t.Parallel()
	e := testenv.StartEtcd(t)
	cli := e.Client()
	a := announce.New(cli, 5*time.Second, slog.New(slog.DiscardHandler))
	a.KeepOnExit()
	stop := run(t, a)
	ctx := context.Background()
	testenv.Eventually(t, 5*time.Second, func() bool { return a.Lease() != 0 }, "a lease")
	if err := a.Put(ctx, "/k/mine", "10.0.0.1:1"); err != nil {
		t.Fatal(err)
	}
	if err := a.Put(ctx, "/k/moved", "10.0.0.1:2"); err != nil {
		t.Fatal(err)
	}
	e.Put("/k/moved", "10.0.0.2:7") // another host took it over
	if err := a.DeleteOwn(ctx, "/k/moved"); err != nil {
		t.Fatal(err)
	}
	if v, _, ok := get(t, cli, "/k/moved"); !ok || v != "10.0.0.2:7" {
		t.Errorf("a key taken over was deleted: %q %v", v, ok)
	}
	if err := a.DeleteOwn(ctx, "/k/mine"); err != nil {
		t.Fatal(err)
	}
	if _, _, ok := get(t, cli, "/k/mine"); ok {
		t.Errorf("our own key survived DeleteOwn")
	}
	if err := a.Put(ctx, "/k/kept", "x"); err != nil {
		t.Fatal(err)
	}
	stop()
	if _, lease, ok := get(t, cli, "/k/kept"); !ok || lease == 0 {
		t.Errorf("KeepOnExit: the key went with the shutdown (%v, lease %x)", ok, lease)
	}
}

// TestStopWhileWritingKeysLeavesNothing stops the announcer while it is
// still writing its keys on a fresh lease (the moment after an etcd
// restart). The lease being set up must be revoked too: a write in flight
// could otherwise land after the shutdown's deletes and outlive it by a
// TTL (seen once as a route left behind by a publisher's clean stop).
func TestStopWhileWritingKeysLeavesNothing(t *testing.T) {
	t.Parallel()
	e := testenv.StartEtcd(t)
	cli := e.Client()
	const prefix = "/deis/services/stopwrite/"
	a := announce.New(e.Client(), 20*time.Second, slog.New(slog.DiscardHandler))
	for i := range 400 {
		_ = a.Put(context.Background(), fmt.Sprintf("%sstopwrite_v1.web.%d", prefix, i), "127.0.0.1:80")
	}
	stop := run(t, a)
	testenv.Eventually(t, 5*time.Second, func() bool {
		resp, err := cli.Get(context.Background(), prefix, clientv3.WithPrefix(), clientv3.WithCountOnly())
		return err == nil && resp.Count > 0
	}, "no key written")
	if a.Lease() != 0 {
		t.Skip("the announcer wrote all 400 keys before the test could stop it; nothing to check")
	}
	stop()
	resp, err := cli.Get(context.Background(), prefix, clientv3.WithPrefix(), clientv3.WithCountOnly())
	if err != nil || resp.Count != 0 {
		t.Fatalf("after a stop during setup: %d keys left (%v), want 0", resp.Count, err)
	}
	leases, err := cli.Leases(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if len(leases.Leases) != 0 {
		t.Fatalf("lease(s) %v left after stop, want the lease being set up revoked", leases.Leases)
	}
}
