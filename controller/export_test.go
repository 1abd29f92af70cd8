package controller_test

import (
	"context"
	"io"
	"sync"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/deis/dataplane/pkg/unit"
	"github.com/deis/dataplane/scheduler"
)

func cptestWait(ctx context.Context, cli *clientv3.Client, app string, rev int64) (unit.Deploy, error) {
	return scheduler.Wait(ctx, cli, app, rev, nil)
}

// syncWriter serialises writes of concurrent handlers to one buffer.
type syncWriter struct {
	mu sync.Mutex
	w  io.Writer
}

func (s *syncWriter) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.w.Write(p)
}
