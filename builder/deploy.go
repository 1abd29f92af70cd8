package builder

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/deis/dataplane/pkg/events"
	"github.com/deis/dataplane/pkg/keys"
	"github.com/deis/dataplane/pkg/unit"
	"github.com/deis/dataplane/scheduler"
)

// awaitDeploy follows the scheduler's deploy of release v<version> (written
// at revision rev) and prints its progress, then "done, <app>:vN deployed to
// Deis" and the app's URL; or the cause, as an error, when it failed.
func (p *push) awaitDeploy(version int, rev int64, out io.Writer) error {
	url := p.appURL()
	if p.b.cfg.DeployTimeout < 0 {
		fmt.Fprintf(out, "done, %s:v%d released\n%s", p.app, version, url)
		return nil
	}
	ctx, cancel := context.WithTimeout(p.ctx, p.b.cfg.DeployTimeout)
	defer cancel()
	leaders, err := p.b.etcd.Get(ctx, keys.SchedulerLeaderPrefix, clientv3.WithPrefix(), clientv3.WithCountOnly())
	if err == nil && leaders.Count == 0 {
		fmt.Fprintf(out, "!      v%d is released, but no scheduler is running to deploy it: start the controller\n", version)
		return errors.New("no scheduler is running")
	}
	fmt.Fprintf(out, "-----> Deploying v%d\n", version)
	lastStep := ""
	d, err := scheduler.Wait(ctx, p.b.etcd, p.app, rev, func(d unit.Deploy) {
		if d.Rev >= rev && d.Step != "" && d.Step != lastStep {
			lastStep = d.Step
			fmt.Fprintf(out, "       %s\n", d.Step)
		}
	})
	switch {
	case errors.Is(err, context.DeadlineExceeded):
		fmt.Fprintf(out, "!      gave up waiting after %s; the deploy of v%d goes on: see `deis releases` and `deis ps`\n", p.b.cfg.DeployTimeout, version)
		return fmt.Errorf("deploy of v%d not finished after %s", version, p.b.cfg.DeployTimeout)
	case err != nil:
		return fmt.Errorf("follow the deploy of v%d: %w", version, err)
	}
	if d.To.Release != version {
		fmt.Fprintf(out, "-----> v%d was superseded by v%d before it finished\n", version, d.To.Release)
		version = d.To.Release
	}
	if d.State == unit.Failed {
		fmt.Fprintf(out, "!      v%d failed to deploy: %s\n", version, d.Msg)
		if d.From.Release > 0 && d.From.Release != version {
			fmt.Fprintf(out, "!      %s keeps serving v%d\n", p.app, d.From.Release)
		}
		events.Send(p.b.etcd, p.app, fmt.Sprintf("deploy of v%d failed: %s", version, d.Msg))
		return fmt.Errorf("v%d failed to deploy: %s", version, firstLine(d.Msg))
	}
	fmt.Fprintf(out, "done, %s:v%d deployed to Deis\n%s", p.app, version, url)
	return nil
}

func (p *push) appURL() string {
	domain := p.platformDomain(p.ctx)
	if domain == "" {
		return fmt.Sprintf("       (no URL: %s is not set)\n", keys.PlatformDomain)
	}
	return fmt.Sprintf("\n       http://%s.%s%s\n\n", p.app, domain, p.routerPort())
}

// routerPort is ":<port>" when the routers announce a port other than 80
// (make run's unprivileged 8080), so that the URL printed opens as is.
func (p *push) routerPort() string {
	resp, err := p.b.etcd.Get(p.ctx, keys.RouterHostsPrefix, clientv3.WithPrefix())
	if err != nil || len(resp.Kvs) == 0 {
		return ""
	}
	_, port, err := net.SplitHostPort(string(resp.Kvs[0].Value))
	if err != nil || port == "80" {
		return ""
	}
	return ":" + port
}

func firstLine(s string) string {
	s, _, _ = strings.Cut(s, "\n")
	return s
}
