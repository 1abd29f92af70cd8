package controller_test

import (
	"context"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/deis/dataplane/pkg/unit"
	"github.com/deis/dataplane/scheduler"
)

func cptestWait(ctx context.Context, cli *clientv3.Client, app string, rev int64) (unit.Deploy, error) {
	return scheduler.Wait(ctx, cli, app, rev, nil)
}
