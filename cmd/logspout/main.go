// Command logspout ships every container's stdout and stderr as syslog to
// the platform logger (found in etcd) and to extra routes.
package main

import (
	"crypto/x509"
	"flag"
	"fmt"
	"net/http"
	"os"
	"strings"

	"golang.org/x/sync/errgroup"

	"github.com/deis/dataplane/logspout"
	"github.com/deis/dataplane/pkg/daemon"
	"github.com/deis/dataplane/pkg/dockerx"
	"github.com/deis/dataplane/pkg/etcdutil"
	"github.com/deis/dataplane/pkg/units"
)

func main() { os.Exit(run()) }

// run returns the exit code, so that deferred cleanup runs before exiting.
func run() int {
	var (
		common  daemon.Common
		webAddr string
		routes  string
		tlsCA   string
		maxLine string
		cfg     logspout.Config
	)
	fs := flag.NewFlagSet("logspout", flag.ExitOnError)
	common.Register(fs)
	fs.StringVar(&webAddr, "web-addr", daemon.Env("WEB_ADDR", "127.0.0.1:8000"), "HTTP address: /routes, /logs, /healthz, /metrics; loopback by default, since /routes and /logs hand out every container's logs (env WEB_ADDR)")
	fs.StringVar(&cfg.StateDir, "state-dir", daemon.Env("STATE_DIR", "/var/lib/logspout"), "where per-container cursors are kept (env STATE_DIR)")
	fs.StringVar(&routes, "route", daemon.Env("ROUTE_URIS", ""), "extra syslog routes, comma-separated syslog://, syslog+tcp://, syslog+tls:// URLs (env ROUTE_URIS)")
	fs.StringVar(&tlsCA, "tls-ca", daemon.Env("TLS_CA", ""), "PEM file of CAs that verify syslog+tls routes instead of the system roots (env TLS_CA)")
	fs.IntVar(&cfg.MaxRoutes, "max-routes", logspout.DefaultMaxRoutes, "most routes POST /routes may add; each holds up to 10,000 queued lines")
	fs.StringVar(&maxLine, "max-line", daemon.Env("MAX_LINE", "64k"), "longest line shipped; Docker's 16 KiB pieces are rejoined up to this, the rest is cut and counted (env MAX_LINE)")
	daemon.Parse(fs, os.Args[1:], common.Validate, func() error {
		n, err := units.ParseSize(maxLine)
		if err != nil || n < 1024 || n > 1<<20 {
			return fmt.Errorf("--max-line: %q must be a size from 1k to 1m", maxLine)
		}
		cfg.MaxLine = int(n)
		return nil
	}, func() error {
		if tlsCA == "" {
			return nil
		}
		pem, err := os.ReadFile(tlsCA)
		if err != nil {
			return fmt.Errorf("--tls-ca: %w", err)
		}
		cfg.TLSRootCAs = x509.NewCertPool()
		if !cfg.TLSRootCAs.AppendCertsFromPEM(pem) {
			return fmt.Errorf("--tls-ca: no PEM certificate in %s", tlsCA)
		}
		return nil
	})
	cfg.Host = common.Host
	for _, r := range strings.Split(routes, ",") {
		if r = strings.TrimSpace(r); r != "" {
			cfg.Routes = append(cfg.Routes, r)
		}
	}
	log := daemon.NewLogger("logspout", common.LogLevel)
	ecli, err := etcdutil.Connect(common.Etcd, etcdutil.WithTLS(common.EtcdTLS))
	if err != nil {
		daemon.Fail("logspout", "--etcd", err)
	}
	defer ecli.Close()
	dcli, err := dockerx.Connect(common.Docker)
	if err != nil {
		daemon.Fail("logspout", "--docker", err)
	}
	reg := daemon.NewMetrics()
	ls, err := logspout.New(cfg, dcli, ecli, log, reg)
	if err != nil {
		daemon.Fail("logspout", "start", err)
	}
	admin, err := daemon.NewAdmin(webAddr, ls.Health, reg, daemon.NewAuth(common.APIToken, log, reg))
	if err != nil {
		daemon.Fail("logspout", "--web-addr", err)
	}
	admin.Mux.Handle("/routes", admin.Guard(http.HandlerFunc(ls.ServeRoutes)))
	admin.Mux.Handle("/routes/", admin.Guard(http.HandlerFunc(ls.ServeRoutes)))
	admin.Mux.Handle("/logs", admin.Guard(http.HandlerFunc(ls.ServeLogs)))
	ctx, stop := daemon.SignalContext()
	defer stop()
	log.Info("logspout starting", "web", admin.Addr(), "routes", len(cfg.Routes))
	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error { return admin.Run(gctx) })
	g.Go(func() error { return admin.Announce(gctx, ecli, "logspout", common.Host, log) }) // deisctl status
	g.Go(func() error { return admin.Auth.Watch(gctx, ecli) })
	g.Go(func() error { return ls.Run(gctx) })
	return daemon.Exit(log, g.Wait())
}
