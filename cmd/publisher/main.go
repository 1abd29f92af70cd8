// Command publisher publishes this host's app containers to etcd so the
// router can reach them.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/deis/dataplane/pkg/daemon"
	"github.com/deis/dataplane/pkg/dockerx"
	"github.com/deis/dataplane/pkg/etcdutil"
	"github.com/deis/dataplane/publisher"
)

func main() { os.Exit(run()) }

// run returns the exit code, so that deferred cleanup runs before exiting.
func run() int {
	var (
		common         daemon.Common
		healthAddr     string
		ttl, reconcile string
		cfg            publisher.Config
	)
	fs := flag.NewFlagSet("publisher", flag.ExitOnError)
	common.Register(fs)
	fs.StringVar(&healthAddr, "health-addr", daemon.Env("HEALTH_ADDR", "127.0.0.1:9091"), "health and metrics address; loopback by default (env HEALTH_ADDR)")
	fs.StringVar(&ttl, "ttl", daemon.Env("TTL", "20s"), "etcd lease TTL of published routes (env TTL)")
	fs.StringVar(&reconcile, "reconcile", daemon.Env("RECONCILE", "10s"), "full resync interval (env RECONCILE)")
	daemon.Parse(fs, os.Args[1:], common.Validate, func() (err error) {
		if cfg.TTL, err = daemon.ParseDuration(ttl); err != nil || cfg.TTL < 2*time.Second {
			return fmt.Errorf("--ttl: %q must be a duration of at least 2s", ttl)
		}
		if cfg.Reconcile, err = daemon.ParseDuration(reconcile); err != nil || cfg.Reconcile < time.Second {
			return fmt.Errorf("--reconcile: %q must be a duration of at least 1s", reconcile)
		}
		return nil
	})
	cfg.Host = common.Host
	log := daemon.NewLogger("publisher", common.LogLevel)
	ecli, err := etcdutil.Connect(common.Etcd, etcdutil.WithTLS(common.EtcdTLS))
	if err != nil {
		daemon.Fail("publisher", "--etcd", err)
	}
	defer ecli.Close()
	dcli, err := dockerx.Connect(common.Docker)
	if err != nil {
		daemon.Fail("publisher", "--docker", err)
	}
	reg := daemon.NewMetrics()
	p := publisher.New(cfg, dcli, ecli, log, reg)
	admin, err := daemon.NewAdmin(healthAddr, p.Health, reg, daemon.NewAuth(common.APIToken, log, reg))
	if err != nil {
		daemon.Fail("publisher", "--health-addr", err)
	}
	ctx, stop := daemon.SignalContext()
	defer stop()
	log.Info("publisher starting", "host", cfg.Host, "health", admin.Addr())
	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error { return admin.Run(gctx) })
	g.Go(func() error { return admin.Announce(gctx, ecli, "publisher", common.Host, log) }) // deisctl status
	g.Go(func() error { return admin.Auth.Watch(gctx, ecli) })
	g.Go(func() error { return p.Run(gctx) })
	err = g.Wait()
	if ctx.Err() != nil {
		err = context.Canceled
	}
	return daemon.Exit(log, err)
}
