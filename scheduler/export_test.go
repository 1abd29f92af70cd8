package scheduler_test

import (
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/deis/dataplane/agent/runtime"
)

type (
	runtimeSpec   = runtime.RunSpec
	fakeBehaviour = runtime.FakeBehaviour
)

func clientv3WithPrefix() clientv3.OpOption { return clientv3.WithPrefix() }
