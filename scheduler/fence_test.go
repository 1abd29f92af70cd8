package scheduler

import (
	"context"
	"errors"
	"log/slog"
	"testing"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/client/v3/concurrency"

	"github.com/deis/dataplane/pkg/keys"
	"github.com/deis/dataplane/pkg/testenv"
)

// TestDeposedLeaderWritesAreRejected: a leader whose term ended (its
// session lost, another replica elected) cannot write: every scheduler
// write is fenced on the create revision of the leader key it won.
func TestDeposedLeaderWritesAreRejected(t *testing.T) {
	t.Parallel()
	e := testenv.StartEtcd(t)
	cli := e.Client()
	ctx := context.Background()
	s := New(Config{ID: "x"}, cli, slog.New(slog.DiscardHandler), nil)
	campaign := func(id string) (*concurrency.Session, *fence) {
		sess, err := concurrency.NewSession(cli, concurrency.WithTTL(5))
		if err != nil {
			t.Fatal(err)
		}
		el := concurrency.NewElection(sess, keys.SchedulerLeaderPrefix)
		if err := el.Campaign(ctx, id); err != nil {
			t.Fatal(err)
		}
		return sess, &fence{key: el.Key(), rev: el.Rev()}
	}
	old, oldFence := campaign("old")
	if ok, _, err := s.commit(ctx, oldFence, nil, clientv3.OpPut(keys.Unit("h", "a_v1.web.1"), "{}")); !ok || err != nil {
		t.Fatalf("the leader's own write: %v %v", ok, err)
	}
	// The old leader's session ends (lease expired in a partition); a new
	// leader is elected.
	if _, err := cli.Revoke(ctx, old.Lease()); err != nil {
		t.Fatal(err)
	}
	_, newFence := campaign("new")
	_, _, err := s.commit(ctx, oldFence, nil, clientv3.OpPut(keys.Unit("h", "a_v1.web.2"), "{}"))
	if !errors.Is(err, errDeposed) {
		t.Fatalf("stale leader's write: err %v, want errDeposed", err)
	}
	if r, _ := cli.Get(ctx, keys.Unit("h", "a_v1.web.2")); len(r.Kvs) != 0 {
		t.Fatalf("the stale leader's write landed")
	}
	if ok, _, err := s.commit(ctx, newFence, nil, clientv3.OpPut(keys.Unit("h", "a_v1.web.2"), "{}")); !ok || err != nil {
		t.Fatalf("the new leader's write: %v %v", ok, err)
	}
}
