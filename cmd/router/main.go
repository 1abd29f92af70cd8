// Command router is the Deis edge router: HTTP (80), HTTPS with SNI (443)
// and TCP to the builder (2222), configured live from etcd.
package main

import (
	"flag"
	"fmt"
	"os"
	"time"

	"github.com/deis/dataplane/pkg/daemon"
	"github.com/deis/dataplane/pkg/etcdutil"
	"github.com/deis/dataplane/router"
)

func main() {
	var (
		common    daemon.Common
		cfg       router.Config
		grace     string
		accessLog string
	)
	fs := flag.NewFlagSet("router", flag.ExitOnError)
	common.Register(fs)
	fs.StringVar(&cfg.HTTPAddr, "http-addr", daemon.Env("HTTP_ADDR", ":80"), "HTTP listen address; empty disables (env HTTP_ADDR)")
	fs.StringVar(&cfg.HTTPSAddr, "https-addr", daemon.Env("HTTPS_ADDR", ":443"), "HTTPS listen address; empty disables (env HTTPS_ADDR)")
	fs.StringVar(&cfg.SSHAddr, "ssh-addr", daemon.Env("SSH_ADDR", ":2222"), "TCP address forwarded to the builder; empty disables (env SSH_ADDR)")
	fs.StringVar(&cfg.HealthAddr, "health-addr", daemon.Env("HEALTH_ADDR", ":9090"), "health and metrics address (env HEALTH_ADDR)")
	fs.StringVar(&grace, "grace", daemon.Env("GRACE", "30s"), "how long SIGTERM waits for in-flight requests (env GRACE)")
	fs.StringVar(&accessLog, "access-log", daemon.Env("ACCESS_LOG", "true"), "write a JSON access log line per request to stdout (env ACCESS_LOG)")
	daemon.Parse(fs, os.Args[1:], common.Validate, func() (err error) {
		if cfg.Grace, err = daemon.ParseDuration(grace); err != nil {
			return fmt.Errorf("--grace: %w", err)
		}
		switch accessLog {
		case "true", "1", "on", "yes":
			cfg.AccessLog = true
		case "false", "0", "off", "no":
		default:
			return fmt.Errorf("--access-log: %q is not true or false", accessLog)
		}
		if cfg.HealthAddr == "" {
			return fmt.Errorf("--health-addr: must not be empty")
		}
		return nil
	})
	cfg.Host = common.Host
	cfg.APIToken = common.APIToken
	cfg.HeaderTimeout = 30 * time.Second

	log := daemon.NewLogger("router", common.LogLevel)
	cli, err := etcdutil.Connect(common.Etcd)
	if err != nil {
		fmt.Fprintf(os.Stderr, "router: --etcd: %v\n", err)
		os.Exit(2)
	}
	defer cli.Close()
	r, err := router.New(cfg, cli, log)
	if err != nil {
		fmt.Fprintf(os.Stderr, "router: %v\n", err)
		os.Exit(1)
	}
	ctx, stop := daemon.SignalContext()
	defer stop()
	os.Exit(daemon.Exit(log, r.Run(ctx)))
}
