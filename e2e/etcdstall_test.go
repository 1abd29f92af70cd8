package e2e

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/deis/dataplane/internal/cptest"
	"github.com/deis/dataplane/pkg/etcdutil"
	"github.com/deis/dataplane/pkg/testenv"
	"github.com/deis/dataplane/pkg/unit"
	"github.com/deis/dataplane/scheduler"
)

// TestEtcdStallMovesNothing freezes a real etcd process (SIGSTOP) for 15 s
// under a running control plane (three agents on the fake runtime, whose
// hosts' leases run out meanwhile) and thaws it: no container is stopped,
// moved or restarted, and the platform is converged again within 20 s.
func TestEtcdStallMovesNothing(t *testing.T) {
	if testing.Short() {
		t.Skip("runs an etcd process for 40 s")
	}
	t.Parallel()
	bin := build(t, "etcd")
	client, peer := testenv.FreeAddr(t), testenv.FreeAddr(t)
	var out bytes.Buffer
	etcd := exec.Command(filepath.Join(bin, "etcd"), "--data-dir", t.TempDir(),
		"--listen-client-urls", "http://"+client, "--listen-peer-urls", "http://"+peer)
	etcd.Stdout, etcd.Stderr = &out, &out
	if err := etcd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = etcd.Process.Signal(syscall.SIGCONT)
		_ = etcd.Process.Kill()
		_ = etcd.Wait()
	})
	cli, err := etcdutil.Connect([]string{"http://" + client})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cli.Close() })
	testenv.Eventually(t, 10*time.Second, func() bool {
		return etcdutil.Ping(context.Background(), cli, time.Second) == nil
	}, "etcd process up")

	c := cptest.New(cli, slog.New(slog.DiscardHandler))
	// Production timings where they matter here: 10 s host leases, 5 s grace.
	c.Agent.TTL, c.Sched.Grace, c.Sched.Session = 10*time.Second, 4*time.Second, 10*time.Second
	t.Cleanup(c.Close)
	hosts := []string{"127.0.0.2", "127.0.0.3", "127.0.0.4"}
	for _, h := range hosts {
		c.StartHost(h, nil)
	}
	c.StartScheduler("s1")
	ctx := context.Background()
	_, rev, err := cptest.Release(ctx, cli, "app", "img:1", map[string]string{"web": "serve"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	waitCtx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if _, err := scheduler.Wait(waitCtx, cli, "app", rev, nil); err != nil {
		t.Fatal(err)
	}
	rev, _ = cptest.Scale(ctx, cli, "app", map[string]int{"web": 3})
	if d, err := scheduler.Wait(waitCtx, cli, "app", rev, nil); err != nil || d.State != unit.Succeeded {
		t.Fatalf("scale: %+v %v", d, err)
	}
	snapshot := func() string {
		s := ""
		for _, h := range hosts {
			list, _ := c.RT.Host(h).List(ctx, h)
			for _, ct := range list {
				s += fmt.Sprintf("%s/%s=%s running=%v; ", h, ct.Name, ct.ID, ct.Running)
			}
		}
		return s
	}
	before := snapshot()

	if err := etcd.Process.Signal(syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	time.Sleep(15 * time.Second)
	if got := snapshot(); got != before {
		t.Errorf("containers changed while etcd was frozen:\nbefore %s\nduring %s", before, got)
	}
	thawed := time.Now()
	if err := etcd.Process.Signal(syscall.SIGCONT); err != nil {
		t.Fatal(err)
	}
	testenv.Eventually(t, 20*time.Second, func() bool {
		u, err1 := cptest.Units(ctx, cli, "app")
		r, err2 := cptest.Routes(ctx, cli, "app")
		d, err3 := cptest.Deploy(ctx, cli, "app")
		return err1 == nil && err2 == nil && err3 == nil && len(u) == 3 && len(r) == 3 && d.State == unit.Succeeded
	}, "converged after the thaw")
	t.Logf("converged %s after etcd resumed", time.Since(thawed).Round(time.Millisecond))
	// Past the grace period too: nothing moved late either.
	time.Sleep(7 * time.Second)
	if got := snapshot(); got != before {
		t.Errorf("containers changed after etcd resumed:\nbefore %s\nafter  %s", before, got)
	}
	if n := c.RT.Running(); n != 3 {
		t.Errorf("%d containers running, want the same 3", n)
	}
}
