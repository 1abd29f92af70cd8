package etcdwatch_test

import (
	"context"
	"fmt"
	"log/slog"
	"testing"
	"time"

	"github.com/deis/dataplane/pkg/etcdwatch"
	"github.com/deis/dataplane/pkg/testenv"
)

func startWatcher(t *testing.T, e *testenv.Etcd, prefixes ...string) *etcdwatch.Watcher {
	t.Helper()
	w := etcdwatch.New(e.Client(), prefixes, etcdwatch.Options{Logger: slog.New(slog.DiscardHandler)})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- w.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			t.Error("watcher did not stop within 5s of cancel")
		}
	})
	return w
}

// waitFor waits until the snapshot satisfies cond.
func waitFor(t *testing.T, w *etcdwatch.Watcher, timeout time.Duration, what string, cond func(map[string]string) bool) {
	t.Helper()
	testenv.Eventually(t, timeout, func() bool {
		s := w.Snapshot()
		return s != nil && cond(s.KVs)
	}, "snapshot never showed %s", what)
}

func TestListThenWatch(t *testing.T) {
	t.Parallel()
	e := testenv.StartEtcd(t)
	e.Put("/deis/services/a/a_v1.web.1", "10.0.0.1:80")
	e.Put("/deis/router/bodySize", "2m")
	e.Put("/deis/other", "ignored")
	w := startWatcher(t, e, "/deis/services/", "/deis/router/")
	waitFor(t, w, 5*time.Second, "initial list", func(kv map[string]string) bool {
		return kv["/deis/services/a/a_v1.web.1"] == "10.0.0.1:80" && kv["/deis/router/bodySize"] == "2m"
	})
	if _, ok := w.Snapshot().Get("/deis/other"); ok {
		t.Fatal("key outside the watched prefixes is in the snapshot")
	}
	cli := e.Client()
	ctx := context.Background()
	if _, err := cli.Put(ctx, "/deis/router/bodySize", "5m"); err != nil {
		t.Fatal(err)
	}
	if _, err := cli.Delete(ctx, "/deis/services/a/a_v1.web.1"); err != nil {
		t.Fatal(err)
	}
	waitFor(t, w, 5*time.Second, "update and delete", func(kv map[string]string) bool {
		_, present := kv["/deis/services/a/a_v1.web.1"]
		return kv["/deis/router/bodySize"] == "5m" && !present
	})
	if err := w.Err(); err != nil {
		t.Fatalf("Err() = %v while etcd is up", err)
	}
}

// TestBurstIsCoalesced writes many keys at once and checks that the reader
// sees far fewer snapshots than writes, and that the final one is complete.
func TestBurstIsCoalesced(t *testing.T) {
	t.Parallel()
	e := testenv.StartEtcd(t)
	w := startWatcher(t, e, "/deis/services/")
	waitFor(t, w, 5*time.Second, "initial list", func(map[string]string) bool { return true })
	<-w.Updates() // the initial snapshot

	cli := e.Client()
	const n = 200
	for i := range n {
		if _, err := cli.Put(context.Background(), fmt.Sprintf("/deis/services/app/app_v1.web.%d", i+1), "127.0.0.1:1"); err != nil {
			t.Fatal(err)
		}
	}
	updates := 0
	deadline := time.After(10 * time.Second)
	for {
		select {
		case s := <-w.Updates():
			updates++
			if len(s.KVs) == n {
				if updates >= n {
					t.Fatalf("%d writes produced %d snapshots: no coalescing", n, updates)
				}
				return
			}
		case <-deadline:
			t.Fatalf("never saw all %d keys; last snapshot has %d", n, len(w.Snapshot().KVs))
		}
	}
}

// TestSurvivesRestartAndCompaction stops etcd mid-watch, checks that the
// last snapshot is kept and the outage reported, then changes keys and
// compacts history while the watcher is disconnected from that history, and
// checks the watcher ends with exactly etcd's state: no lost update, no
// stale value, no resurrected key.
func TestSurvivesRestartAndCompaction(t *testing.T) {
	t.Parallel()
	e := testenv.StartEtcd(t)
	e.Put("/deis/services/a/a_v1.web.1", "v1")
	e.Put("/deis/services/b/b_v1.web.1", "keep")
	w := startWatcher(t, e, "/deis/services/")
	waitFor(t, w, 5*time.Second, "initial list", func(kv map[string]string) bool { return kv["/deis/services/a/a_v1.web.1"] == "v1" })

	e.Stop()
	testenv.Eventually(t, 10*time.Second, func() bool { return w.Err() != nil }, "Err() stayed nil while etcd was down")
	if v, _ := w.Snapshot().Get("/deis/services/b/b_v1.web.1"); v != "keep" {
		t.Fatalf("last good snapshot lost while etcd was down: %q", v)
	}
	e.Start()

	// Many revisions then a compaction: a watcher that only resumed from its
	// old revision would miss these or fail with ErrCompacted.
	cli := e.Client()
	ctx := context.Background()
	for i := range 50 {
		if _, err := cli.Put(ctx, "/deis/services/a/a_v1.web.1", fmt.Sprintf("v%d", i+2)); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := cli.Delete(ctx, "/deis/services/b/b_v1.web.1"); err != nil {
		t.Fatal(err)
	}
	if _, err := cli.Put(ctx, "/deis/services/c/c_v1.web.1", "new"); err != nil {
		t.Fatal(err)
	}
	e.Compact()
	waitFor(t, w, 10*time.Second, "state after restart and compaction", func(kv map[string]string) bool {
		_, b := kv["/deis/services/b/b_v1.web.1"]
		return kv["/deis/services/a/a_v1.web.1"] == "v51" && !b && kv["/deis/services/c/c_v1.web.1"] == "new" && len(kv) == 2
	})
	testenv.Eventually(t, 10*time.Second, func() bool { return w.Err() == nil }, "Err() not cleared after etcd came back: %v", w.Err())
}

// TestCompactionWhileDisconnected compacts past the watcher's revision while
// it cannot reach etcd, so its resumed watch must fail with ErrCompacted and
// be replaced by a fresh list.
func TestCompactionWhileDisconnected(t *testing.T) {
	t.Parallel()
	e := testenv.StartEtcd(t)
	e.Put("/deis/services/a/a_v1.web.1", "old")
	w := startWatcher(t, e, "/deis/services/")
	waitFor(t, w, 5*time.Second, "initial list", func(kv map[string]string) bool { return kv["/deis/services/a/a_v1.web.1"] == "old" })

	// A second etcd client changes and compacts history while the watcher's
	// stream is cut by a server restart.
	e.Stop()
	e.Start()
	cli := e.Client()
	ctx := context.Background()
	for i := range 20 {
		if _, err := cli.Put(ctx, "/deis/services/a/a_v1.web.1", fmt.Sprintf("mid%d", i)); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := cli.Put(ctx, "/deis/services/a/a_v1.web.1", "final"); err != nil {
		t.Fatal(err)
	}
	e.Compact()
	waitFor(t, w, 10*time.Second, "final value", func(kv map[string]string) bool { return kv["/deis/services/a/a_v1.web.1"] == "final" })
	// And no later snapshot may go back to an older value.
	deadline := time.Now().Add(300 * time.Millisecond)
	for time.Now().Before(deadline) {
		if v, _ := w.Snapshot().Get("/deis/services/a/a_v1.web.1"); v != "final" {
			t.Fatalf("stale value %q after final", v)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func BenchmarkSnapshotGet(b *testing.B) {
	kvs := make(map[string]string, 30000)
	for i := range 30000 {
		kvs[fmt.Sprintf("/deis/services/app%d/app%d_v1.web.1", i/3, i/3)] = "127.0.0.1:80"
	}
	s := &etcdwatch.Snapshot{KVs: kvs}
	b.ReportAllocs()
	for b.Loop() {
		if _, ok := s.Get("/deis/services/app77/app77_v1.web.1"); !ok {
			b.Fatal("missing")
		}
	}
}
