package e2e

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	docker "github.com/fsouza/go-dockerclient"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/deis/dataplane/internal/cptest"
	"github.com/deis/dataplane/pkg/keys"
	"github.com/deis/dataplane/pkg/release"
	"github.com/deis/dataplane/pkg/testenv"
	"github.com/deis/dataplane/pkg/unit"
	"github.com/deis/dataplane/scheduler"
)

// TestHostDeathUnderLoad kills a host for real in the middle of traffic:
// SIGKILL to its agent and publisher processes and its containers. Its
// routes go, its units come up on the other hosts within the scheduler's
// budget (10 s lease + 5 s grace + start), and the failed requests, if
// any, all fall in that window.
func TestHostDeathUnderLoad(t *testing.T) {
	if testing.Short() {
		t.Skip("builds binaries and needs Docker")
	}
	t.Parallel()
	dcli := testenv.Docker(t)
	if err := testenv.EnsureBusyboxImage(dcli); err != nil {
		t.Fatal(err)
	}
	bin := build(t, "router", "controller", "agent", "publisher")
	e := testenv.StartEtcd(t)
	cli := e.Client()
	e.Put(keys.PlatformDomain, "example.test")
	app := fmt.Sprintf("hostdeath%d", os.Getpid()%100000)
	t.Cleanup(func() {
		list, _ := dcli.ListContainers(docker.ListContainersOptions{All: true, Filters: map[string][]string{"label": {keys.LabelApp + "=" + app}}})
		for _, c := range list {
			_ = dcli.RemoveContainer(docker.RemoveContainerOptions{ID: c.ID, Force: true})
		}
	})
	procs := map[string]*exec.Cmd{}
	var logs sync.Map
	start := func(name string, args ...string) {
		var out bytes.Buffer
		cmd := exec.Command(filepath.Join(bin, strings.Fields(name)[0]), append([]string{"--etcd", e.Endpoint, "--log-level", "warn"}, args...)...)
		cmd.Stdout, cmd.Stderr = &out, &out
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		procs[name] = cmd
		logs.Store(name, &out)
		t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	}
	routerAddr := testenv.FreeAddr(t)
	start("router", "--host", "127.0.0.1", "--http-addr", routerAddr, "--https-addr", "", "--ssh-addr", "", "--health-addr", testenv.FreeAddr(t))
	start("controller", "--host", "127.0.0.1", "--http-addr", testenv.FreeAddr(t))
	hosts := []string{"127.0.0.81", "127.0.0.82", "127.0.0.83"}
	for _, h := range hosts {
		start("agent "+h, "--host", h, "--health-addr", h+":0")
		start("publisher "+h, "--host", h, "--health-addr", h+":0")
	}
	ctx := context.Background()
	testenv.Eventually(t, 20*time.Second, func() bool {
		r, err := cli.Get(ctx, keys.HostsPrefix, clientv3.WithPrefix(), clientv3.WithCountOnly())
		return err == nil && r.Count >= 3
	}, "three agents registered")
	if err := cptest.CreateApp(ctx, cli, app, "tester"); err != nil {
		t.Fatal(err)
	}
	if _, err := release.Write(ctx, cli, app, func(*release.Release, map[string]string) (*release.Release, error) {
		return &release.Release{Image: testenv.BusyboxImage, Procfile: map[string]string{"web": "mkdir -p /www && hostname > /www/index.html && exec httpd -f -p $PORT -h /www"}}, nil
	}); err != nil {
		t.Fatal(err)
	}
	rev, _ := cptest.Scale(ctx, cli, app, map[string]int{"web": 2})
	wctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	if d, err := scheduler.Wait(wctx, cli, app, rev, nil); err != nil || d.State != unit.Succeeded {
		t.Fatalf("scale to 2: %+v %v", d, err)
	}
	units, _ := cptest.Units(ctx, cli, app)
	victim := units[app+"_v1.web.1"]

	// Load through the router, recording when each failure happened.
	var ok, failed atomic.Int64
	var firstFail, lastFail atomic.Int64
	stop := make(chan struct{})
	var wg sync.WaitGroup
	t0 := time.Now()
	for _, keepAlive := range []bool{true, false} {
		client := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{DisableKeepAlives: !keepAlive}}
		wg.Go(func() {
			for i := 0; i < 100000; i++ {
				select {
				case <-stop:
					return
				case <-time.After(10 * time.Millisecond):
				}
				req, _ := http.NewRequest(http.MethodGet, "http://"+routerAddr+"/", nil)
				req.Host = app + ".example.test"
				resp, err := client.Do(req)
				if err == nil {
					_, _ = io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
				}
				if err != nil || resp.StatusCode != 200 {
					at := int64(time.Since(t0))
					failed.Add(1)
					firstFail.CompareAndSwap(0, at)
					lastFail.Store(at)
					continue
				}
				ok.Add(1)
			}
		})
	}
	time.Sleep(time.Second)
	killed := time.Now()
	_ = procs["agent "+victim].Process.Kill()
	_ = procs["publisher "+victim].Process.Kill()
	// Its containers die with it. They are removed too: on separate
	// machines the dead host's containers are not on the others' engines,
	// but here the hosts share one, and its container names would stay taken.
	list, _ := dcli.ListContainers(docker.ListContainersOptions{Filters: map[string][]string{"label": {keys.LabelHost + "=" + victim}}})
	for _, c := range list {
		_ = dcli.RemoveContainer(docker.RemoveContainerOptions{ID: c.ID, Force: true})
	}
	var routesGone, servingAgain time.Duration
	testenv.Eventually(t, 40*time.Second, func() bool {
		r, _ := cptest.Routes(ctx, cli, app)
		onVictim := false
		for _, addr := range r {
			if strings.HasPrefix(addr, victim+":") {
				onVictim = true
			}
		}
		if !onVictim && routesGone == 0 {
			routesGone = time.Since(killed)
		}
		if !onVictim && len(r) == 2 {
			servingAgain = time.Since(killed)
			return true
		}
		return false
	}, "the dead host's unit serving elsewhere")
	time.Sleep(2 * time.Second)
	close(stop)
	wg.Wait()
	t.Logf("host %s killed: routes gone after %s, 2 units serving again after %s; %d ok, %d failed", victim, routesGone.Round(time.Millisecond), servingAgain.Round(time.Millisecond), ok.Load(), failed.Load())
	if routesGone > 15*time.Second {
		t.Errorf("the dead host's routes lasted %s (budget 15 s)", routesGone)
	}
	if servingAgain > 30*time.Second {
		t.Errorf("serving elsewhere after %s (budget 30 s)", servingAgain)
	}
	if n := failed.Load(); n > 0 {
		from, to := time.Duration(firstFail.Load()), time.Duration(lastFail.Load())
		t.Logf("%d failed requests, from %s to %s after the start of the load (killed at %s)", n, from.Round(time.Millisecond), to.Round(time.Millisecond), killed.Sub(t0).Round(time.Millisecond))
		if from < killed.Sub(t0) || to > killed.Sub(t0)+routesGone+time.Second {
			t.Errorf("failures outside the window between the kill and the routes' removal")
		}
	}
	if ok.Load() < 100 {
		t.Errorf("only %d requests succeeded", ok.Load())
	}
	for name, cmd := range procs {
		if strings.Contains(name, victim) {
			continue
		}
		if err := cmd.Process.Signal(syscall.Signal(0)); err != nil {
			b, _ := logs.Load(name)
			t.Errorf("%s died: %s", name, b.(*bytes.Buffer).String())
		}
	}
}
