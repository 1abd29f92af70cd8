// Command builder is the SSH git server behind `git push deis master`: it
// builds the pushed revision on Docker and records a release in etcd.
// `builder hook` is the pre-receive hook git runs inside each push.
package main

import (
	"flag"
	"fmt"
	"os"
	"strconv"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/deis/dataplane/builder"
	"github.com/deis/dataplane/pkg/daemon"
	"github.com/deis/dataplane/pkg/dockerx"
	"github.com/deis/dataplane/pkg/etcdutil"
	"github.com/deis/dataplane/pkg/health"
	"github.com/deis/dataplane/pkg/units"
)

func main() {
	if len(os.Args) > 1 && os.Args[1] == "hook" {
		os.Exit(builder.RunHook(os.Stdin, os.Stdout, os.Stderr))
	}
	os.Exit(run())
}

// run returns the exit code, so that deferred cleanup runs before exiting.
func run() int {
	var (
		common     daemon.Common
		cfg        builder.Config
		deployWait string
		healthAddr string
		keep       string
		keepAlive  string
		grace      string
		pushIdle   string
		pushSize   string
		buildMem   string
	)
	fs := flag.NewFlagSet("builder", flag.ExitOnError)
	common.Register(fs)
	fs.StringVar(&cfg.SSHAddr, "ssh-addr", daemon.Env("SSH_ADDR", ":2223"), "SSH git address (env SSH_ADDR)")
	fs.StringVar(&healthAddr, "health-addr", daemon.Env("HEALTH_ADDR", "127.0.0.1:9092"), "health and metrics address; loopback by default (env HEALTH_ADDR)")
	fs.StringVar(&cfg.RepoRoot, "repo-root", daemon.Env("REPO_ROOT", "/var/lib/builder/repos"), "where the apps' bare git repositories are kept (env REPO_ROOT)")
	fs.StringVar(&cfg.StackImage, "stack-image", daemon.Env("STACK_IMAGE", "deis/busybox:latest"), "base image of apps pushed without a Dockerfile (env STACK_IMAGE)")
	fs.StringVar(&keep, "keep-releases", daemon.Env("KEEP_RELEASES", "5"), "build images kept per app (env KEEP_RELEASES)")
	fs.StringVar(&keepAlive, "keepalive", daemon.Env("KEEPALIVE", "30s"), "SSH keep-alive interval, so idle timeouts in front do not cut long builds (env KEEPALIVE)")
	fs.StringVar(&grace, "login-grace-time", daemon.Env("LOGIN_GRACE_TIME", "30s"), "an SSH connection not authenticated within this is closed, as OpenSSH's LoginGraceTime (env LOGIN_GRACE_TIME)")
	fs.IntVar(&cfg.MaxUnauthenticated, "max-startups", builder.DefaultMaxUnauthenticated, "most SSH connections still authenticating; more are refused, as OpenSSH's MaxStartups")
	fs.StringVar(&pushIdle, "push-idle-timeout", daemon.Env("PUSH_IDLE_TIMEOUT", "60s"), "a push that sends nothing for this long before its build starts is aborted and its lock released (env PUSH_IDLE_TIMEOUT)")
	fs.StringVar(&pushSize, "max-push-size", daemon.Env("MAX_PUSH_SIZE", "500m"), "largest push git accepts (receive.maxInputSize); 0 = no limit (env MAX_PUSH_SIZE)")
	fs.StringVar(&buildMem, "build-memory", daemon.Env("BUILD_MEMORY", "2g"), "memory limit of each build; 0 = none (env BUILD_MEMORY)")
	fs.Float64Var(&cfg.BuildCPUs, "build-cpus", 2, "CPU limit of each build, in cores; 0 = none")
	fs.StringVar(&deployWait, "deploy-timeout", daemon.Env("DEPLOY_TIMEOUT", "10m"), "how long a push waits for the scheduler to deploy its release; 0 = do not wait (env DEPLOY_TIMEOUT)")
	daemon.Parse(fs, os.Args[1:], common.Validate, func() error {
		var err error
		if cfg.LoginGrace, err = daemon.ParseDuration(grace); err != nil || cfg.LoginGrace < time.Second {
			return fmt.Errorf("--login-grace-time: %q must be a duration of at least 1s", grace)
		}
		if cfg.PushIdleTimeout, err = daemon.ParseDuration(pushIdle); err != nil || cfg.PushIdleTimeout < time.Second {
			return fmt.Errorf("--push-idle-timeout: %q must be a duration of at least 1s", pushIdle)
		}
		if cfg.MaxPushSize, err = units.ParseSize(pushSize); err != nil || cfg.MaxPushSize < 0 {
			return fmt.Errorf("--max-push-size: %q must be a size such as 500m, or 0", pushSize)
		}
		if cfg.BuildMemory, err = units.ParseSize(buildMem); err != nil || (cfg.BuildMemory != 0 && cfg.BuildMemory < 6<<20) {
			return fmt.Errorf("--build-memory: %q must be a size of at least 6m, or 0", buildMem)
		}
		if cfg.DeployTimeout, err = daemon.ParseDuration(deployWait); err != nil || cfg.DeployTimeout < 0 {
			return fmt.Errorf("--deploy-timeout: %q must be a duration, or 0 not to wait", deployWait)
		}
		if cfg.DeployTimeout == 0 {
			cfg.DeployTimeout = -1
		}
		if cfg.MaxUnauthenticated < 1 || cfg.BuildCPUs < 0 {
			return fmt.Errorf("--max-startups must be at least 1 and --build-cpus at least 0")
		}
		return nil
	}, func() error {
		n, err := strconv.Atoi(keep)
		if err != nil || n < 1 {
			return fmt.Errorf("--keep-releases: %q must be a whole number of at least 1", keep)
		}
		cfg.KeepReleases = n
		d, err := daemon.ParseDuration(keepAlive)
		if err != nil || d < time.Second {
			return fmt.Errorf("--keepalive: %q must be a duration of at least 1s", keepAlive)
		}
		cfg.KeepAlive = d
		return nil
	})
	cfg.Host = common.Host
	log := daemon.NewLogger("builder", common.LogLevel)
	ecli, err := etcdutil.Connect(common.Etcd, etcdutil.WithTLS(common.EtcdTLS))
	if err != nil {
		daemon.Fail("builder", "--etcd", err)
	}
	defer ecli.Close()
	dcli, err := dockerx.Connect(common.Docker)
	if err != nil {
		daemon.Fail("builder", "--docker", err)
	}
	ctx, stop := daemon.SignalContext()
	defer stop()
	reg := daemon.NewMetrics()
	cfg.Health = &health.Registry{}
	admin, err := daemon.NewAdmin(healthAddr, cfg.Health, reg, daemon.NewAuth(common.APIToken, log, reg))
	if err != nil {
		daemon.Fail("builder", "--health-addr", err)
	}
	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error { return admin.Run(gctx) })                                         // answers 503 while the builder waits for etcd
	g.Go(func() error { return admin.Announce(gctx, ecli, "builder", common.Host, log) }) // deisctl status
	g.Go(func() error { return admin.Auth.Watch(gctx, ecli) })
	b, err := builder.New(gctx, cfg, ecli, dcli, log, reg)
	if err != nil {
		signalled := ctx.Err() != nil
		stop()
		_ = g.Wait()
		if signalled {
			return daemon.ExitOK // stopped while waiting for etcd
		}
		daemon.Fail("builder", "start", err)
	}
	g.Go(func() error { return b.Run(gctx) })
	return daemon.Exit(log, g.Wait())
}
