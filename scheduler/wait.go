package scheduler

import (
	"context"
	"encoding/json"
	"fmt"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/deis/dataplane/pkg/keys"
	"github.com/deis/dataplane/pkg/unit"
)

// Wait blocks until app's deploy record covers the desired state written at
// revision rev (its Rev >= rev) and reached succeeded or failed, and returns
// it. progress, when not nil, is called with each record seen meanwhile
// (for live output). A record superseded by a newer change is followed to
// the newer one's outcome. Wait returns ctx's error when ctx ends first.
func Wait(ctx context.Context, cli *clientv3.Client, app string, rev int64, progress func(unit.Deploy)) (unit.Deploy, error) {
	key := keys.Deploy(app)
	for {
		resp, err := cli.Get(ctx, key)
		if err != nil {
			return unit.Deploy{}, fmt.Errorf("read the deploy record of %s: %w", app, err)
		}
		if len(resp.Kvs) > 0 {
			var d unit.Deploy
			if err := json.Unmarshal(resp.Kvs[0].Value, &d); err == nil {
				if progress != nil {
					progress(d)
				}
				if d.Rev >= rev && d.Done() {
					return d, nil
				}
			}
		}
		wctx, cancel := context.WithCancel(ctx)
		wc := cli.Watch(wctx, key, clientv3.WithRev(resp.Header.Revision+1))
		select {
		case <-ctx.Done():
		case <-wc:
		}
		cancel()
		if ctx.Err() != nil {
			return unit.Deploy{}, ctx.Err()
		}
	}
}
