// Command agent runs, on one host, the app units the scheduler assigns to
// it, and reports their status (docs/scheduler.md).
package main

import (
	"context"
	"flag"
	"fmt"
	"os"

	"golang.org/x/sync/errgroup"

	"github.com/deis/dataplane/agent"
	"github.com/deis/dataplane/agent/runtime"
	"github.com/deis/dataplane/pkg/daemon"
	"github.com/deis/dataplane/pkg/dockerx"
	"github.com/deis/dataplane/pkg/etcdutil"
)

func main() { os.Exit(run()) }

func run() int {
	var (
		common     daemon.Common
		healthAddr string
		labels     string
		keep       int
		cfg        agent.Config
	)
	fs := flag.NewFlagSet("agent", flag.ExitOnError)
	common.Register(fs)
	fs.StringVar(&healthAddr, "health-addr", daemon.Env("HEALTH_ADDR", "127.0.0.1:9093"), "health and metrics address; loopback by default (env HEALTH_ADDR)")
	fs.StringVar(&labels, "labels", daemon.Env("LABELS", agent.DefaultLabels), "this host's placement labels, key=value,... (env LABELS)")
	fs.IntVar(&keep, "keep-releases", envInt("KEEP_RELEASES", 5), "images of each app's last N releases are kept; older ones are removed (env KEEP_RELEASES)")
	daemon.Parse(fs, os.Args[1:], common.Validate, func() (err error) {
		if cfg.Labels, err = agent.ParseLabels(labels); err != nil {
			return fmt.Errorf("--labels: %w", err)
		}
		if keep < 1 || keep > 1000 {
			return fmt.Errorf("--keep-releases: %d must be between 1 and 1000", keep)
		}
		return nil
	})
	cfg.Host, cfg.KeepReleases = common.Host, keep
	log := daemon.NewLogger("agent", common.LogLevel)
	ecli, err := etcdutil.Connect(common.Etcd, etcdutil.WithTLS(common.EtcdTLS))
	if err != nil {
		daemon.Fail("agent", "--etcd", err)
	}
	defer ecli.Close()
	dcli, err := dockerx.Connect(common.Docker)
	if err != nil {
		daemon.Fail("agent", "--docker", err)
	}
	reg := daemon.NewMetrics()
	a := agent.New(cfg, runtime.NewDocker(dcli, log), ecli, log, reg)
	admin, err := daemon.NewAdmin(healthAddr, a.Health, reg, daemon.NewAuth(common.APIToken, log, reg))
	if err != nil {
		daemon.Fail("agent", "--health-addr", err)
	}
	ctx, stop := daemon.SignalContext()
	defer stop()
	log.Info("agent starting", "host", cfg.Host, "labels", cfg.Labels, "health", admin.Addr())
	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error { return admin.Run(gctx) })
	g.Go(func() error { return admin.Announce(gctx, ecli, "agent", common.Host, log) }) // deisctl status
	g.Go(func() error { return admin.Auth.Watch(gctx, ecli) })
	g.Go(func() error { return a.Run(gctx) })
	err = g.Wait()
	if ctx.Err() != nil {
		err = context.Canceled
	}
	return daemon.Exit(log, err)
}

func envInt(name string, def int) int {
	var n int
	if _, err := fmt.Sscan(daemon.Env(name, fmt.Sprint(def)), &n); err != nil {
		return def
	}
	return n
}
