// Package etcdutil connects to etcd the same way in every component: short
// dial timeouts, keep-alives, and no global logger noise.
package etcdutil

import (
	"context"
	"crypto/tls"
	"fmt"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
	"google.golang.org/grpc"
	"google.golang.org/grpc/backoff"

	"github.com/deis/dataplane/pkg/keys"
)

// Option adjusts a connection.
type Option func(*clientv3.Config)

// WithTLS makes the client speak TLS to etcd (https:// endpoints) with cfg:
// the CA that signed etcd's certificate and, for client-certificate
// authentication, the client's own. A nil cfg changes nothing.
func WithTLS(cfg *tls.Config) Option {
	return func(c *clientv3.Config) {
		if cfg != nil {
			c.TLS = cfg
		}
	}
}

// Connect returns a client for endpoints (several: the client fails over
// between them when one member dies). It does not wait for etcd to be up:
// components must start (and serve their last state) while etcd is away.
func Connect(endpoints []string, opts ...Option) (*clientv3.Client, error) {
	cfg := clientv3.Config{
		Endpoints:   endpoints,
		DialTimeout: 2 * time.Second,
		// etcd refuses pings closer than 5 s, and pings on a connection
		// without streams (GOAWAY "too_many_pings"): ping at 10 s, only
		// while a watch or request is open.
		DialKeepAliveTime:    10 * time.Second,
		DialKeepAliveTimeout: 3 * time.Second,
		AutoSyncInterval:     0,
		Logger:               zap.NewNop(),
		PermitWithoutStream:  false,
		// gRPC's default reconnect backoff grows to two minutes; after an
		// etcd restart we want to be back within a second or so.
		DialOptions: []grpc.DialOption{grpc.WithConnectParams(grpc.ConnectParams{
			Backoff: backoff.Config{
				BaseDelay:  100 * time.Millisecond,
				Multiplier: 1.6,
				Jitter:     0.2,
				MaxDelay:   time.Second,
			},
			MinConnectTimeout: time.Second,
		}), grpc.WithChainUnaryInterceptor(retryThroughElections)},
	}
	for _, o := range opts {
		o(&cfg)
	}
	cli, err := clientv3.New(cfg)
	if err != nil {
		return nil, fmt.Errorf("etcd client for %v: %w", endpoints, err)
	}
	return cli, nil
}

// Ping checks that etcd answers a linearizable read within timeout.
func Ping(ctx context.Context, cli *clientv3.Client, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	if _, err := cli.Get(ctx, keys.PlatformDomain, clientv3.WithCountOnly()); err != nil {
		return fmt.Errorf("etcd unreachable: %w", err)
	}
	return nil
}
