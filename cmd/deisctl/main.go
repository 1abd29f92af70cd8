// Command deisctl is the operators' command line (deisctl/): settings,
// status, systemd install, backup and restore.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/deis/dataplane/deisctl"
	"github.com/deis/dataplane/pkg/daemon"
	"github.com/deis/dataplane/pkg/etcdutil"
)

func main() {
	fs := flag.NewFlagSet("deisctl", flag.ExitOnError)
	fs.Usage = func() {
		fmt.Fprint(os.Stderr, deisctl.Usage+"\nGlobal flags:\n")
		fs.PrintDefaults()
	}
	endpoints := fs.String("etcd", daemon.Env("ETCD_ENDPOINTS", daemon.DefaultEtcd), "comma-separated etcd v3 endpoints (env ETCD_ENDPOINTS)")
	ca := fs.String("etcd-cacert", daemon.Env("ETCD_CACERT", ""), "PEM file of the CA of etcd's certificate (env ETCD_CACERT)")
	cert := fs.String("etcd-cert", daemon.Env("ETCD_CERT", ""), "PEM client certificate for etcd (env ETCD_CERT)")
	key := fs.String("etcd-key", daemon.Env("ETCD_KEY", ""), "PEM key of --etcd-cert (env ETCD_KEY)")
	timeout := fs.Duration("request-timeout", 30*time.Second, "bound of each command's etcd work (a backup of a big platform may need more)")
	unitDir := fs.String("unit-dir", "/etc/systemd/system", "where install writes the systemd units")
	envDir := fs.String("env-dir", "/etc/deis", "where install writes the components' environment files")
	systemctl := fs.String("systemctl", "systemctl", "the systemctl command install, start, stop and restart run")
	sysctl := fs.String("sysctl", "sysctl", "the sysctl command install router and rolling-restart router run")
	sysctlDir := fs.String("sysctl-dir", "/etc/sysctl.d", "where install router writes its kernel setting for boot")
	_ = fs.Parse(os.Args[1:])

	args := fs.Args()
	c := &deisctl.CLI{Stdout: os.Stdout, Stderr: os.Stderr,
		Systemd: deisctl.Systemd{UnitDir: *unitDir, EnvDir: *envDir, Systemctl: strings.Fields(*systemctl), Sysctl: strings.Fields(*sysctl), SysctlDir: *sysctlDir}}
	if len(args) > 0 && needsEtcd(args[0]) {
		eps, err := daemon.ParseEndpoints(*endpoints)
		if err != nil {
			fail(fmt.Errorf("--etcd: %w", err))
		}
		tlsCfg, err := daemon.EtcdTLS(*ca, *cert, *key)
		if err != nil {
			fail(err)
		}
		cli, err := etcdutil.Connect(eps, etcdutil.WithTLS(tlsCfg))
		if err != nil {
			fail(fmt.Errorf("etcd at %s: %w", *endpoints, err))
		}
		defer cli.Close()
		c.Etcd = cli
	}
	ctx, cancel := context.WithTimeout(context.Background(), *timeout)
	err := c.Run(ctx, args)
	cancel()
	if err != nil {
		fail(err)
	}
}

func needsEtcd(cmd string) bool {
	switch cmd {
	case "config", "status", "backup", "restore":
		return true
	}
	return false
}

func fail(err error) {
	fmt.Fprintln(os.Stderr, "deisctl:", err)
	os.Exit(1)
}
