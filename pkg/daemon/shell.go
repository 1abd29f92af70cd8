package daemon

import (
	"context"
	"flag"
	"fmt"
	"os"
	"time"

	"github.com/deis/dataplane/pkg/dockerx"
	"github.com/deis/dataplane/pkg/etcdutil"
	"github.com/deis/dataplane/pkg/health"
)

// RunShell runs a daemon that has only the common plumbing: common flags,
// an admin server on the flag named adminFlag (/healthz reporting etcd and
// Docker reachability, /metrics) and a clean stop on SIGTERM. It is what a
// component binary runs before its feature exists. It returns the exit code.
func RunShell(name, adminFlag, adminEnv, adminDefault string, args []string) int {
	var common Common
	var adminAddr string
	fs := flag.NewFlagSet(name, flag.ExitOnError)
	common.Register(fs)
	fs.StringVar(&adminAddr, adminFlag, Env(adminEnv, adminDefault), "health and metrics address (env "+adminEnv+")")
	Parse(fs, args, common.Validate)
	log := NewLogger(name, common.LogLevel)
	cli, err := etcdutil.Connect(common.Etcd)
	if err != nil {
		fmt.Fprintf(os.Stderr, "%s: --etcd: %v\n", name, err)
		return 2
	}
	defer cli.Close()
	dcli, err := dockerx.Connect(common.Docker)
	if err != nil {
		fmt.Fprintf(os.Stderr, "%s: --docker: %v\n", name, err)
		return 2
	}
	h := &health.Registry{}
	admin, err := NewAdmin(adminAddr, h, NewMetrics())
	if err != nil {
		fmt.Fprintf(os.Stderr, "%s: --%s: %v\n", name, adminFlag, err)
		return 2
	}
	ctx, stop := SignalContext()
	defer stop()
	go func() {
		t := time.NewTicker(2 * time.Second)
		defer t.Stop()
		for {
			h.Set("etcd", etcdutil.Ping(ctx, cli, time.Second))
			pctx, cancel := context.WithTimeout(ctx, time.Second)
			if err := dcli.PingWithContext(pctx); err != nil {
				h.Set("docker", fmt.Errorf("docker unreachable: %w", err))
			} else {
				h.Set("docker", nil)
			}
			cancel()
			select {
			case <-ctx.Done():
				return
			case <-t.C:
			}
		}
	}()
	log.Info(name+" running (daemon shell: feature not built yet)", "admin", admin.Addr())
	return Exit(log, admin.Run(ctx))
}
