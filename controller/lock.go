package controller

import (
	"context"
	"fmt"
	"net/http"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/deis/dataplane/pkg/events"
	"github.com/deis/dataplane/pkg/keys"
)

// lock takes /deis/locks/app/<app> for op on this replica's lease, waiting
// up to LockWait; otherwise it answers 409 naming the holder. Mutating
// calls on one app thus run one at a time, across replicas; the lock goes
// with the call (unlock), or with the replica's lease if it dies.
func (q *request) lock(app, op string) (unlock func(), ok bool) {
	lease := q.s.lease()
	if lease == 0 {
		q.fail(detailErr(http.StatusServiceUnavailable, "this controller holds no etcd lease yet; try again"))
		return nil, false
	}
	key := keys.AppLock(app)
	value := fmt.Sprintf("%s %s since %s", q.user.Username, op, q.s.now().UTC().Format(time.RFC3339))
	deadline := time.Now().Add(q.s.cfg.LockWait)
	for {
		resp, err := q.s.etcd.Txn(q.ctx).If(clientv3.Compare(clientv3.CreateRevision(key), "=", 0)).
			Then(clientv3.OpPut(key, value, clientv3.WithLease(lease))).Else(clientv3.OpGet(key)).Commit()
		if err != nil {
			q.fail(fmt.Errorf("take the lock of %s: %w", app, err))
			return nil, false
		}
		if resp.Succeeded {
			rev := resp.Header.Revision
			return func() {
				ctx, cancel := context.WithTimeout(context.WithoutCancel(q.ctx), 3*time.Second)
				defer cancel()
				_, _ = q.s.etcd.Txn(ctx).If(clientv3.Compare(clientv3.ModRevision(key), "=", rev)).Then(clientv3.OpDelete(key)).Commit()
			}, true
		}
		holder := ""
		if kvs := resp.Responses[0].GetResponseRange().Kvs; len(kvs) > 0 {
			holder = string(kvs[0].Value)
		}
		if time.Now().After(deadline) {
			q.fail(detailErr(http.StatusConflict, fmt.Sprintf("%s is busy: %s; try again when it is done", app, holder)))
			return nil, false
		}
		select {
		case <-q.ctx.Done():
			return nil, false
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// event tells the app's log what a user did (pkg/events).
func (s *Server) event(app, text string) { events.Send(s.etcd, app, text) }
