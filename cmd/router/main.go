// Command router is the Deis edge router: HTTP (80), HTTPS with SNI (443)
// and TCP to the builder (2222), configured live from etcd.
package main

import (
	"flag"
	"fmt"
	"os"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/deis/dataplane/pkg/daemon"
	"github.com/deis/dataplane/pkg/etcdutil"
	"github.com/deis/dataplane/router"
)

func main() { os.Exit(run()) }

// gcHeadroom is the least heap growth between two collections.
const gcHeadroom = 16 << 20

// run returns the exit code, so that deferred cleanup runs before exiting.
func run() int {
	var (
		common     daemon.Common
		cfg        router.Config
		grace      string
		healthAddr string
	)
	fs := flag.NewFlagSet("router", flag.ExitOnError)
	common.Register(fs)
	fs.StringVar(&cfg.HTTPAddr, "http-addr", daemon.Env("HTTP_ADDR", ":80"), "HTTP listen address; empty disables (env HTTP_ADDR)")
	fs.StringVar(&cfg.HTTPSAddr, "https-addr", daemon.Env("HTTPS_ADDR", ":443"), "HTTPS listen address; empty disables (env HTTPS_ADDR)")
	fs.StringVar(&cfg.SSHAddr, "ssh-addr", daemon.Env("SSH_ADDR", ":2222"), "TCP address forwarded to the builder; empty disables (env SSH_ADDR)")
	fs.StringVar(&healthAddr, "health-addr", daemon.Env("HEALTH_ADDR", ":9090"), "/health-check (for load balancers), /healthz and /metrics (env HEALTH_ADDR)")
	fs.StringVar(&grace, "grace", daemon.Env("GRACE", "30s"), "how long SIGTERM waits for in-flight requests (env GRACE)")
	daemon.BoolVar(fs, &cfg.AccessLog, "access-log", "ACCESS_LOG", true, "write a JSON access log line per request to stdout")
	daemon.Parse(fs, os.Args[1:], common.Validate, func() (err error) {
		if cfg.Grace, err = daemon.ParseDuration(grace); err != nil {
			return fmt.Errorf("--grace: %w", err)
		}
		if healthAddr == "" {
			return fmt.Errorf("--health-addr: must not be empty")
		}
		return nil
	})
	cfg.Host = common.Host
	cfg.HeaderTimeout = 30 * time.Second
	if os.Getenv("GOGC") == "" {
		// Each TLS handshake allocates tens of kB that die at once; with the
		// small live heap of a router the collector would run hundreds of
		// times a second under a handshake load (docs/router.md
		// "Performance"). GOGC set in the environment is left alone.
		cfg.GCHeadroom = gcHeadroom
	}

	log := daemon.NewLogger("router", common.LogLevel)
	cli, err := etcdutil.Connect(common.Etcd, etcdutil.WithTLS(common.EtcdTLS))
	if err != nil {
		daemon.Fail("router", "--etcd", err)
	}
	defer cli.Close()
	r, err := router.New(cfg, cli, log)
	if err != nil {
		daemon.Fail("router", "start", err)
	}
	admin, err := router.NewAdmin(r, healthAddr, common.APIToken)
	if err != nil {
		daemon.Fail("router", "--health-addr", err)
	}
	ctx, stop := daemon.SignalContext()
	defer stop()
	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error { return admin.Run(gctx) })
	g.Go(func() error { return admin.Announce(gctx, cli, "router", common.Host, log) }) // deisctl status
	g.Go(func() error { return admin.Auth.Watch(gctx, cli) })
	g.Go(func() error { return r.Run(gctx) })
	return daemon.Exit(log, g.Wait())
}
