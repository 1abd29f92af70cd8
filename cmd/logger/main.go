// Command logger is the platform's syslog server and log store: it keeps
// each app's recent lines and serves them to `deis logs`.
package main

import (
	"flag"
	"fmt"
	"os"
	"os/signal"
	"strconv"
	"syscall"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/deis/dataplane/logger"
	"github.com/deis/dataplane/pkg/daemon"
	"github.com/deis/dataplane/pkg/etcdutil"
	"github.com/deis/dataplane/pkg/units"
)

func main() { os.Exit(run()) }

// run returns the exit code, so that deferred cleanup runs before exiting.
func run() int {
	var (
		common             daemon.Common
		cfg                logger.Config
		rotate, keep, max  string
		memLimit, appLimit string
		idle               string
		httpAddr           string
	)
	fs := flag.NewFlagSet("logger", flag.ExitOnError)
	common.Register(fs)
	fs.StringVar(&cfg.SyslogAddr, "syslog-addr", daemon.Env("SYSLOG_ADDR", ":514"), "syslog address, UDP and TCP (env SYSLOG_ADDR)")
	fs.StringVar(&cfg.SyslogTLSAddr, "syslog-tls-addr", daemon.Env("SYSLOG_TLS_ADDR", ""), "syslog over TLS address; empty disables (env SYSLOG_TLS_ADDR)")
	fs.StringVar(&cfg.TLSCert, "tls-cert", daemon.Env("TLS_CERT", ""), "PEM certificate file for --syslog-tls-addr (env TLS_CERT)")
	fs.StringVar(&cfg.TLSKey, "tls-key", daemon.Env("TLS_KEY", ""), "PEM key file for --syslog-tls-addr (env TLS_KEY)")
	fs.StringVar(&httpAddr, "http-addr", daemon.Env("HTTP_ADDR", "127.0.0.1:8088"), "log API, /healthz and /metrics; loopback by default (env HTTP_ADDR)")
	fs.StringVar(&cfg.LogRoot, "log-root", daemon.Env("LOG_ROOT", "/data/logs"), "directory of the file storage adapter, e.g. a CephFS mount (env LOG_ROOT)")
	fs.StringVar(&rotate, "rotate-size", daemon.Env("ROTATE_SIZE", "100m"), "file adapter: rotate an app's file past this size (env ROTATE_SIZE)")
	fs.StringVar(&keep, "rotate-keep", daemon.Env("ROTATE_KEEP", "5"), "file adapter: rotated files kept per app (env ROTATE_KEEP)")
	fs.StringVar(&max, "max-message", daemon.Env("MAX_MESSAGE", "65k"), "largest syslog message accepted (env MAX_MESSAGE)")
	fs.StringVar(&memLimit, "memory-limit", daemon.Env("MEMORY_LIMIT", "256m"), "memory adapter: most bytes of lines kept, all apps together; past it the apps written to least recently are evicted (env MEMORY_LIMIT)")
	fs.StringVar(&appLimit, "memory-app-limit", daemon.Env("MEMORY_APP_LIMIT", "32m"), "memory adapter: most bytes of lines kept per app; past it its oldest lines go (env MEMORY_APP_LIMIT)")
	fs.IntVar(&cfg.MaxApps, "max-apps", 10000, "memory adapter: most apps kept; a new one evicts the app written to least recently")
	fs.IntVar(&cfg.MaxConns, "max-conns", 512, "most syslog TCP/TLS connections at once; more are refused and counted")
	fs.IntVar(&cfg.MaxConnsPerIP, "max-conns-per-ip", 64, "most syslog TCP/TLS connections from one address")
	fs.StringVar(&idle, "conn-idle-timeout", daemon.Env("CONN_IDLE_TIMEOUT", "5m"), "a syslog connection that sends no complete message for this long is closed (env CONN_IDLE_TIMEOUT)")
	daemon.Parse(fs, os.Args[1:], common.Validate, func() error {
		n, err := units.ParseSize(memLimit)
		if err != nil || n < 1<<20 {
			return fmt.Errorf("--memory-limit: %q must be a size of at least 1m", memLimit)
		}
		cfg.MemoryLimit = n
		if n, err = units.ParseSize(appLimit); err != nil || n < 64<<10 || n > cfg.MemoryLimit {
			return fmt.Errorf("--memory-app-limit: %q must be a size from 64k to --memory-limit", appLimit)
		}
		cfg.MemoryAppLimit = int(n)
		if cfg.MaxApps < 1 || cfg.MaxConns < 1 || cfg.MaxConnsPerIP < 1 {
			return fmt.Errorf("--max-apps, --max-conns and --max-conns-per-ip must be at least 1")
		}
		if cfg.IdleTimeout, err = daemon.ParseDuration(idle); err != nil || cfg.IdleTimeout < time.Second {
			return fmt.Errorf("--conn-idle-timeout: %q must be a duration of at least 1s", idle)
		}
		return nil
	}, func() error {
		n, err := units.ParseSize(rotate)
		if err != nil || n < 1024 {
			return fmt.Errorf("--rotate-size: %q must be a size of at least 1k", rotate)
		}
		cfg.RotateBytes = n
		if cfg.RotateKeep, err = strconv.Atoi(keep); err != nil || cfg.RotateKeep < 0 {
			return fmt.Errorf("--rotate-keep: %q must be a whole number", keep)
		}
		m, err := units.ParseSize(max)
		if err != nil || m < 480 || m > 16<<20 {
			return fmt.Errorf("--max-message: %q must be a size from 480 to 16m", max)
		}
		cfg.MaxMessage = int(m) + 1024
		if (cfg.TLSCert == "") != (cfg.TLSKey == "") || (cfg.SyslogTLSAddr != "" && cfg.TLSCert == "") {
			return fmt.Errorf("--syslog-tls-addr needs both --tls-cert and --tls-key")
		}
		return nil
	})
	cfg.Host = common.Host
	cfg.APIToken = common.APIToken
	log := daemon.NewLogger("logger", common.LogLevel)
	cli, err := etcdutil.Connect(common.Etcd, etcdutil.WithTLS(common.EtcdTLS))
	if err != nil {
		daemon.Fail("logger", "--etcd", err)
	}
	defer cli.Close()
	l, err := logger.New(cfg, cli, log, daemon.NewMetrics())
	if err != nil {
		daemon.Fail("logger", "start", err)
	}
	usr1 := make(chan os.Signal, 1)
	signal.Notify(usr1, syscall.SIGUSR1)
	go func() {
		for range usr1 {
			l.ReopenFiles()
		}
	}()
	admin, err := logger.NewAdmin(l, httpAddr)
	if err != nil {
		daemon.Fail("logger", "--http-addr", err)
	}
	daemon.OnReload(log, "syslog TLS certificate and log files", l.Reload)
	ctx, stop := daemon.SignalContext()
	defer stop()
	log.Info("logger serving", "syslog", l.Addr("syslog"), "tls", l.Addr("tls"), "http", admin.Addr())
	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error { return admin.Run(gctx) })
	g.Go(func() error { return admin.Announce(gctx, cli, "logger", common.Host, log) }) // deisctl status
	g.Go(func() error { return admin.Auth.Watch(gctx, cli) })
	g.Go(func() error { return l.Run(gctx) })
	return daemon.Exit(log, g.Wait())
}
