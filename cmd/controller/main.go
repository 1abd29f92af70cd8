// Command controller serves the Deis v1 REST API and runs the scheduler
// loop while it holds leadership (docs/scheduler.md).
package main

import (
	"context"
	"flag"
	"fmt"
	"net"
	"os"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"golang.org/x/sync/errgroup"

	"github.com/deis/dataplane/controller"
	"github.com/deis/dataplane/pkg/announce"
	"github.com/deis/dataplane/pkg/daemon"
	"github.com/deis/dataplane/pkg/etcdutil"
	"github.com/deis/dataplane/scheduler"
)

func main() { os.Exit(run()) }

func run() int {
	var (
		common     daemon.Common
		httpAddr   string
		loggerPort int
		cfg        scheduler.Config
	)
	fs := flag.NewFlagSet("controller", flag.ExitOnError)
	common.Register(fs)
	fs.StringVar(&httpAddr, "http-addr", daemon.Env("HTTP_ADDR", ":8001"), "API, health and metrics address (env HTTP_ADDR)")
	fs.IntVar(&loggerPort, "logger-http-port", 8088, "port of the logger's HTTP API on the announced logger host, for `deis logs`")
	fs.StringVar(&cfg.ID, "id", daemon.Env("CONTROLLER_ID", ""), "this replica's name in the leader election (env CONTROLLER_ID; default host:pid)")
	daemon.Parse(fs, os.Args[1:], common.Validate)
	if cfg.ID == "" {
		cfg.ID = fmt.Sprintf("%s:%d", common.Host, os.Getpid())
	}
	log := daemon.NewLogger("controller", common.LogLevel)
	ecli, err := etcdutil.Connect(common.Etcd, etcdutil.WithTLS(common.EtcdTLS))
	if err != nil {
		daemon.Fail("controller", "--etcd", err)
	}
	defer ecli.Close()
	reg := daemon.NewMetrics()
	sched := scheduler.New(cfg, ecli, log, reg)
	admin, err := daemon.NewAdmin(httpAddr, sched.Health, reg, daemon.NewAuth(common.APIToken, log, reg))
	if err != nil {
		daemon.Fail("controller", "--http-addr", err)
	}
	// This replica's lease: app locks and run units live on it, so they go
	// when it dies.
	lease := announce.New(ecli, 10*time.Second, log)
	api := controller.New(controller.Config{LoggerHTTPPort: loggerPort, APIToken: common.APIToken}, ecli, lease.Lease, log, reg)
	admin.Mux.Handle("/v1/", api)
	admin.Mux.Handle("/v1", api)
	_, port, _ := net.SplitHostPort(admin.Addr())
	// The leader announces itself, so the router's deis.<domain> reaches a
	// live replica.
	sched.OnLead = func(ctx context.Context, l clientv3.LeaseID) {
		controller.Announce(ctx, ecli, l, common.Host, port, log)
	}
	ctx, stop := daemon.SignalContext()
	defer stop()
	log.Info("controller starting", "id", cfg.ID, "http", admin.Addr())
	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error { return admin.Run(gctx) })
	g.Go(func() error { return admin.Announce(gctx, ecli, "controller", common.Host, log) }) // deisctl status
	g.Go(func() error { return admin.Auth.Watch(gctx, ecli) })
	g.Go(func() error { return sched.Run(gctx) })
	g.Go(func() error { return lease.Run(gctx) })
	g.Go(func() error { return api.Run(gctx) })
	err = g.Wait()
	if ctx.Err() != nil {
		err = context.Canceled
	}
	return daemon.Exit(log, err)
}
