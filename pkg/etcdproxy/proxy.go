// Package etcdproxy is etcd's v3 gRPC proxy (etcd's own grpcproxy code)
// served from `etcd grpc-proxy start`: the v3 form of Deis v1's etcd
// proxies on hosts outside the etcd cluster. Daemons on such a host point
// --etcd at the local proxy; the proxy follows the cluster's members,
// coalesces watches and keeps leases alive for them.
package etcdproxy

import (
	"context"
	"errors"
	"fmt"
	"net"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/server/v3/etcdserver/api/v3election/v3electionpb"
	"go.etcd.io/etcd/server/v3/etcdserver/api/v3lock/v3lockpb"
	"go.etcd.io/etcd/server/v3/proxy/grpcproxy"
	"go.uber.org/zap"
	"google.golang.org/grpc"
)

// Serve answers etcd v3 clients on ln with the cluster cli reaches, until
// ctx ends. advertise is the URL clients use to reach this proxy (what
// MemberList answers).
func Serve(ctx context.Context, ln net.Listener, cli *clientv3.Client, advertise string, lg *zap.Logger) error {
	kv, _ := grpcproxy.NewKvProxy(cli)
	watch, _ := grpcproxy.NewWatchProxy(ctx, lg, cli)
	cluster, _ := grpcproxy.NewClusterProxy(lg, cli, advertise, "")
	lease, _ := grpcproxy.NewLeaseProxy(ctx, cli)
	srv := grpc.NewServer(grpc.MaxConcurrentStreams(1 << 16))
	pb.RegisterKVServer(srv, kv)
	pb.RegisterWatchServer(srv, watch)
	pb.RegisterClusterServer(srv, cluster)
	pb.RegisterLeaseServer(srv, lease)
	pb.RegisterMaintenanceServer(srv, grpcproxy.NewMaintenanceProxy(cli))
	pb.RegisterAuthServer(srv, grpcproxy.NewAuthProxy(cli))
	v3electionpb.RegisterElectionServer(srv, grpcproxy.NewElectionProxy(cli))
	v3lockpb.RegisterLockServer(srv, grpcproxy.NewLockProxy(cli))
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ln) }()
	select {
	case <-ctx.Done():
		srv.GracefulStop()
		return nil
	case err := <-done:
		if errors.Is(err, grpc.ErrServerStopped) {
			return nil
		}
		return fmt.Errorf("grpc-proxy on %s: %w", ln.Addr(), err)
	}
}
