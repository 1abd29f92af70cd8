package scheduler_test

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/deis/dataplane/internal/cptest"
	"github.com/deis/dataplane/pkg/keys"
	"github.com/deis/dataplane/pkg/release"
	"github.com/deis/dataplane/pkg/testenv"
	"github.com/deis/dataplane/pkg/unit"
	"github.com/deis/dataplane/scheduler"
)

var hosts3 = []string{"127.0.0.2", "127.0.0.3", "127.0.0.4"}

func testLog(t *testing.T) *slog.Logger {
	if testing.Verbose() {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelInfo})).With("test", t.Name())
	}
	return slog.New(slog.DiscardHandler)
}

// newCluster starts etcd, one scheduler and an agent with a fake publisher
// on each host.
func newCluster(t *testing.T, hosts ...string) (*cptest.Cluster, *testenv.Etcd) {
	t.Helper()
	e := testenv.StartEtcd(t)
	c := cptest.New(e.Client(), testLog(t))
	t.Cleanup(c.Close)
	for _, h := range hosts {
		c.StartHost(h, nil)
	}
	c.StartScheduler("s1")
	return c, e
}

func wait(t *testing.T, c *cptest.Cluster, app string, rev int64) unit.Deploy {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	d, err := scheduler.Wait(ctx, c.Etcd, app, rev, nil)
	if err != nil {
		t.Fatalf("wait for the deploy of %s at rev %d: %v", app, rev, err)
	}
	return d
}

// routesOf returns app's routes, failing the test on error.
func routesOf(t *testing.T, c *cptest.Cluster, app string) map[string]string {
	t.Helper()
	r, err := cptest.Routes(context.Background(), c.Etcd, app)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func unitsOf(t *testing.T, c *cptest.Cluster, app string) map[string]string {
	t.Helper()
	u, err := cptest.Units(context.Background(), c.Etcd, app)
	if err != nil {
		t.Fatal(err)
	}
	return u
}

// watchServing samples app's routes until stop is closed and records the
// fewest seen once the first route appeared.
func watchServing(c *cptest.Cluster, app string, stop <-chan struct{}) <-chan int {
	out := make(chan int, 1)
	go func() {
		fewest, seen := 1<<30, false
		for {
			r, err := cptest.Routes(context.Background(), c.Etcd, app)
			if err == nil && (seen || len(r) > 0) {
				seen = true
				fewest = min(fewest, len(r))
			}
			select {
			case <-stop:
				out <- fewest
				return
			case <-time.After(20 * time.Millisecond):
			}
		}
	}()
	return out
}

// TestDeployScaleAndRollingDeploy: a first release gets web=1; scale to 3
// spreads one unit per host; a new release rolls surge-first, never with
// fewer routes than the scale; scale to 0 removes every unit.
func TestDeployScaleAndRollingDeploy(t *testing.T) {
	t.Parallel()
	c, _ := newCluster(t, hosts3...)
	ctx := context.Background()
	web := map[string]string{"web": "serve"}
	v, rev, err := cptest.Release(ctx, c.Etcd, "app", "img:1", web, nil)
	if err != nil || v != 1 {
		t.Fatalf("release: v%d, %v", v, err)
	}
	if d := wait(t, c, "app", rev); d.State != unit.Succeeded || d.To.Release != 1 || d.To.Scale["web"] != 1 {
		t.Fatalf("first deploy: %+v", d)
	}
	if r := routesOf(t, c, "app"); len(r) != 1 || r["app_v1.web.1"] == "" {
		t.Fatalf("routes after the first deploy: %v", r)
	}

	rev, err = cptest.Scale(ctx, c.Etcd, "app", map[string]int{"web": 3})
	if err != nil {
		t.Fatal(err)
	}
	if d := wait(t, c, "app", rev); d.State != unit.Succeeded || d.Kind != unit.KindScale {
		t.Fatalf("scale: %+v", d)
	}
	u := unitsOf(t, c, "app")
	onHost := map[string]int{}
	for _, h := range u {
		onHost[h]++
	}
	if len(u) != 3 || len(onHost) != 3 {
		t.Fatalf("web=3 on 3 hosts: units %v, want one per host", u)
	}

	stop := make(chan struct{})
	fewest := watchServing(c, "app", stop)
	_, rev, err = cptest.Release(ctx, c.Etcd, "app", "img:2", web, nil)
	if err != nil {
		t.Fatal(err)
	}
	d := wait(t, c, "app", rev)
	close(stop)
	if d.State != unit.Succeeded || d.Kind != unit.KindDeploy || d.From.Release != 1 || d.To.Release != 2 {
		t.Fatalf("rolling deploy: %+v", d)
	}
	if n := <-fewest; n < 3 {
		t.Errorf("routes fell to %d during the deploy; surge-first must keep 3", n)
	}
	u = unitsOf(t, c, "app")
	onHost = map[string]int{}
	for name, h := range u {
		onHost[h]++
		if !strings.HasPrefix(name, "app_v2.web.") {
			t.Errorf("unit %s left after the deploy", name)
		}
	}
	if len(u) != 3 || len(onHost) != 3 {
		t.Errorf("after the deploy: units %v, want one per host", u)
	}
	testenv.Eventually(t, 10*time.Second, func() bool { return len(routesOf(t, c, "app")) == 3 && c.RT.Running() == 3 }, "3 routes and 3 containers after the deploy (old ones stopped)")

	rev, err = cptest.Scale(ctx, c.Etcd, "app", map[string]int{"web": 0})
	if err != nil {
		t.Fatal(err)
	}
	if d := wait(t, c, "app", rev); d.State != unit.Succeeded {
		t.Fatalf("scale to 0: %+v", d)
	}
	testenv.Eventually(t, 10*time.Second, func() bool { return len(routesOf(t, c, "app")) == 0 && c.RT.Running() == 0 }, "no route and no container after web=0")
}

// TestBadReleaseConvergesBack: a release whose containers crash on boot,
// and one whose image does not exist, fail with the cause; the release
// goes back, is kept and marked failed, the old units serve throughout,
// and the next release is numbered after the failed one.
func TestBadReleaseConvergesBack(t *testing.T) {
	t.Parallel()
	c, _ := newCluster(t, hosts3[:2]...)
	c.RT.Behave = func(s runtimeSpec) fakeBehaviour {
		if s.Image == "crash:1" {
			return fakeBehaviour{ExitAfter: 50 * time.Millisecond, ExitCode: 3, Output: "boom: missing DATABASE_URL\n"}
		}
		return fakeBehaviour{}
	}
	c.RT.AddMissingImage("nosuch:1")
	ctx := context.Background()
	web := map[string]string{"web": "serve"}
	_, rev, _ := cptest.Release(ctx, c.Etcd, "app", "img:1", web, nil)
	wait(t, c, "app", rev)
	rev, _ = cptest.Scale(ctx, c.Etcd, "app", map[string]int{"web": 2})
	wait(t, c, "app", rev)

	for i, tc := range []struct{ image, cause string }{
		{"crash:1", "exited with code 3"},
		{"nosuch:1", "manifest unknown"},
	} {
		stop := make(chan struct{})
		fewest := watchServing(c, "app", stop)
		v, rev, err := cptest.Release(ctx, c.Etcd, "app", tc.image, web, nil)
		if err != nil {
			t.Fatal(err)
		}
		if want := 2 + 2*i; v != want {
			t.Errorf("%s: release v%d, want v%d (max+1, failed releases keep their number)", tc.image, v, want)
		}
		d := wait(t, c, "app", rev)
		close(stop)
		if d.State != unit.Failed || !strings.Contains(d.Msg, tc.cause) {
			t.Fatalf("%s: record %+v, want failed naming %q", tc.image, d, tc.cause)
		}
		if tc.image == "crash:1" && !strings.Contains(d.Msg, "missing DATABASE_URL") {
			t.Errorf("the cause should carry the last output: %q", d.Msg)
		}
		if n := <-fewest; n < 2 {
			t.Errorf("%s: routes fell to %d; the old release must serve throughout", tc.image, n)
		}
		get := func(k string) string {
			resp, err := c.Etcd.Get(ctx, k)
			if err != nil || len(resp.Kvs) == 0 {
				return ""
			}
			return string(resp.Kvs[0].Value)
		}
		if cur := get(keys.AppCurrentRelease("app")); cur != fmt.Sprint(v-1) {
			t.Errorf("%s: release = %s, want moved back to v%d", tc.image, cur, v-1)
		}
		if f := get(keys.AppFailed("app", v)); !strings.Contains(f, tc.cause) {
			t.Errorf("%s: failed/v%d = %q", tc.image, v, f)
		}
		testenv.Eventually(t, 10*time.Second, func() bool {
			u := unitsOf(t, c, "app")
			for name := range u {
				if !strings.HasPrefix(name, fmt.Sprintf("app_v%d.", v-1)) {
					return false
				}
			}
			return len(u) == 2
		}, "%s: only the old release's units left", tc.image)
		// The next good release follows the failed number.
		v2, rev2, _ := cptest.Release(ctx, c.Etcd, "app", "img:1", web, nil)
		if v2 != v+1 {
			t.Errorf("next release v%d, want v%d", v2, v+1)
		}
		if d := wait(t, c, "app", rev2); d.State != unit.Succeeded {
			t.Fatalf("good release after a failed one: %+v", d)
		}
	}
}

// TestHostDeathMovesUnits (fake runtime: the dead host's containers live
// on): an agent and its publisher die; after the grace period its routes
// are gone and its units run elsewhere; when it returns, its stale
// containers are stopped within one pass.
func TestHostDeathMovesUnits(t *testing.T) {
	t.Parallel()
	c, _ := newCluster(t, hosts3...)
	ctx := context.Background()
	_, rev, _ := cptest.Release(ctx, c.Etcd, "app", "img:1", map[string]string{"web": "serve"}, nil)
	wait(t, c, "app", rev)
	rev, _ = cptest.Scale(ctx, c.Etcd, "app", map[string]int{"web": 3})
	wait(t, c, "app", rev)
	dead := hosts3[0]
	killed := time.Now()
	c.StopAgent(dead)
	c.StopPublisher(dead)
	testenv.Eventually(t, 15*time.Second, func() bool {
		for _, addr := range routesOf(t, c, "app") {
			if strings.HasPrefix(addr, dead+":") {
				return false
			}
		}
		return true
	}, "routes to the dead host removed")
	routesGone := time.Since(killed)
	testenv.Eventually(t, 15*time.Second, func() bool {
		u := unitsOf(t, c, "app")
		for _, h := range u {
			if h == dead {
				return false
			}
		}
		return len(u) == 3 && len(routesOf(t, c, "app")) == 3
	}, "3 units serving on the live hosts")
	t.Logf("dead host: routes gone after %s, serving elsewhere after %s", routesGone.Round(time.Millisecond), time.Since(killed).Round(time.Millisecond))
	if n := c.RT.Running(); n != 4 {
		t.Errorf("%d containers running; want 3 + the dead host's one that lives on", n)
	}
	c.StartHost(dead, nil)
	testenv.Eventually(t, 10*time.Second, func() bool { return c.RT.Running() == 3 }, "the returning host stops its stale container")
	if u := unitsOf(t, c, "app"); len(u) != 3 {
		t.Errorf("units after the host returned: %v", u)
	}
}

// TestHostBackWithinGraceChangesNothing: an agent restarted within the
// grace period (an upgrade, an etcd hiccup) moves no unit.
func TestHostBackWithinGraceChangesNothing(t *testing.T) {
	t.Parallel()
	c, _ := newCluster(t, hosts3[:2]...)
	ctx := context.Background()
	_, rev, _ := cptest.Release(ctx, c.Etcd, "app", "img:1", map[string]string{"web": "serve"}, nil)
	wait(t, c, "app", rev)
	rev, _ = cptest.Scale(ctx, c.Etcd, "app", map[string]int{"web": 2})
	wait(t, c, "app", rev)
	before := unitsOf(t, c, "app")
	c.StopAgent(hosts3[0])
	c.StartAgent(hosts3[0], nil)
	time.Sleep(3 * c.Sched.Grace)
	after := unitsOf(t, c, "app")
	if fmt.Sprint(before) != fmt.Sprint(after) {
		t.Errorf("units moved: before %v, after %v", before, after)
	}
	if n := c.RT.Running(); n != 2 {
		t.Errorf("%d containers running, want the same 2", n)
	}
}

// TestRollingRestart: ps:restart replaces every container (new IDs)
// through a surge unit, never with fewer routes than the scale.
func TestRollingRestart(t *testing.T) {
	t.Parallel()
	c, _ := newCluster(t, hosts3...)
	ctx := context.Background()
	_, rev, _ := cptest.Release(ctx, c.Etcd, "app", "img:1", map[string]string{"web": "serve", "worker": "work"}, nil)
	wait(t, c, "app", rev)
	rev, _ = cptest.Scale(ctx, c.Etcd, "app", map[string]int{"web": 2, "worker": 1})
	wait(t, c, "app", rev)
	ids := func() map[string]string {
		out := map[string]string{}
		for _, h := range hosts3 {
			list, _ := c.RT.Host(h).List(ctx, h)
			for _, ct := range list {
				if ct.Running {
					out[ct.Name] = ct.ID
				}
			}
		}
		return out
	}
	before := ids()
	stop := make(chan struct{})
	fewest := watchServing(c, "app", stop)
	resp, err := c.Etcd.Put(ctx, keys.AppRestart("app"), `{"type":"web","user":"tester"}`)
	if err != nil {
		t.Fatal(err)
	}
	d := wait(t, c, "app", resp.Header.Revision)
	close(stop)
	if d.State != unit.Succeeded || d.Kind != unit.KindRestart {
		t.Fatalf("restart: %+v", d)
	}
	if n := <-fewest; n < 2 {
		t.Errorf("routes fell to %d during the restart", n)
	}
	testenv.Eventually(t, 5*time.Second, func() bool { return len(ids()) == 3 }, "the surge unit's container stopped")
	after := ids()
	for _, name := range []string{"app_v1.web.1", "app_v1.web.2"} {
		if before[name] == "" || after[name] == "" || before[name] == after[name] {
			t.Errorf("%s: container %q before, %q after; want a new one", name, before[name], after[name])
		}
	}
	if before["app_v1.worker.1"] != after["app_v1.worker.1"] {
		t.Errorf("the worker was restarted by a web restart")
	}
	if r, _ := c.Etcd.Get(ctx, keys.AppRestart("app")); len(r.Kvs) != 0 {
		t.Errorf("the restart request is still there")
	}
}

// TestDestroyWithHostDown: deleting the app's desired state removes every
// unit; a host that was down removes its containers when it returns.
func TestDestroyWithHostDown(t *testing.T) {
	t.Parallel()
	c, _ := newCluster(t, hosts3[:2]...)
	ctx := context.Background()
	_, rev, _ := cptest.Release(ctx, c.Etcd, "app", "img:1", map[string]string{"web": "serve"}, nil)
	wait(t, c, "app", rev)
	rev, _ = cptest.Scale(ctx, c.Etcd, "app", map[string]int{"web": 2})
	wait(t, c, "app", rev)
	c.StopAgent(hosts3[1])
	if _, err := c.Etcd.Delete(ctx, keys.AppPrefix("app"), clientv3WithPrefix()); err != nil {
		t.Fatal(err)
	}
	testenv.Eventually(t, 10*time.Second, func() bool { return len(unitsOf(t, c, "app")) == 0 }, "every unit key gone")
	testenv.Eventually(t, 10*time.Second, func() bool { return c.RT.Running() == 1 }, "the live host stopped its container")
	c.StartAgent(hosts3[1], nil)
	testenv.Eventually(t, 10*time.Second, func() bool { return c.RT.Running() == 0 }, "the returning host removed its container")
	if r, _ := c.Etcd.Get(ctx, keys.Deploy("app")); len(r.Kvs) != 0 {
		t.Errorf("the deploy record of a destroyed app is still there")
	}
}

// TestLeaderFailoverMidDeploy: two replicas; the leader is stopped in the
// middle of a deploy; the other takes over within the session TTL and
// completes it, with no duplicate unit.
func TestLeaderFailoverMidDeploy(t *testing.T) {
	t.Parallel()
	c, _ := newCluster(t, hosts3...)
	c.StartScheduler("s2")
	ctx := context.Background()
	web := map[string]string{"web": "serve"}
	_, rev, _ := cptest.Release(ctx, c.Etcd, "app", "img:1", web, nil)
	wait(t, c, "app", rev)
	rev, _ = cptest.Scale(ctx, c.Etcd, "app", map[string]int{"web": 3})
	wait(t, c, "app", rev)
	leader := ""
	testenv.Eventually(t, 5*time.Second, func() bool {
		for id, s := range c.Scheds {
			if s.Leading() {
				leader = id
			}
		}
		return leader != ""
	}, "a leader")
	_, rev, _ = cptest.Release(ctx, c.Etcd, "app", "img:2", web, nil)
	testenv.Eventually(t, 5*time.Second, func() bool {
		d, err := cptest.Deploy(ctx, c.Etcd, "app")
		return err == nil && d.Rev >= rev && d.Step != ""
	}, "the deploy under way")
	stopped := time.Now()
	c.StopScheduler(leader)
	other := map[string]string{"s1": "s2", "s2": "s1"}[leader]
	testenv.Eventually(t, 15*time.Second, func() bool { return c.Scheds[other].Leading() }, "the other replica leads")
	t.Logf("new leader after %s", time.Since(stopped).Round(time.Millisecond))
	if d := wait(t, c, "app", rev); d.State != unit.Succeeded || d.To.Release != 2 {
		t.Fatalf("deploy after failover: %+v", d)
	}
	u := unitsOf(t, c, "app")
	if len(u) != 3 {
		t.Errorf("units after failover: %v, want exactly 3", u)
	}
	for name := range u {
		if !strings.HasPrefix(name, "app_v2.web.") {
			t.Errorf("unit %s left", name)
		}
	}
}

// TestPlacementLabelsAndTags: with placement options on, units go only to
// dataPlane hosts with the app's tags; an unsatisfiable tag fails the
// deploy at once, naming the constraint, and places nothing.
func TestPlacementLabelsAndTags(t *testing.T) {
	t.Parallel()
	e := testenv.StartEtcd(t)
	c := cptest.New(e.Client(), testLog(t))
	t.Cleanup(c.Close)
	c.StartHost("127.0.0.2", map[string]string{"controlPlane": "true"})
	c.StartHost("127.0.0.3", map[string]string{"dataPlane": "true", "environ": "prod"})
	c.StartHost("127.0.0.4", map[string]string{"dataPlane": "true", "environ": "dev"})
	c.StartScheduler("s1")
	ctx := context.Background()
	e.Put(keys.PlatformPlacementOptions, "true")
	tagged := func(image string, tags map[string]string) int64 {
		_, err := release.Write(ctx, c.Etcd, "app", func(*release.Release, map[string]string) (*release.Release, error) {
			return &release.Release{Image: image, Procfile: map[string]string{"web": "x"}, Tags: tags}, nil
		})
		if err != nil {
			t.Fatal(err)
		}
		r, _ := c.Etcd.Get(ctx, keys.AppCurrentRelease("app"))
		return r.Kvs[0].ModRevision
	}
	if err := cptest.CreateApp(ctx, c.Etcd, "app", "o"); err != nil {
		t.Fatal(err)
	}
	wait(t, c, "app", tagged("img:1", map[string]string{"environ": "prod"}))
	rev, _ := cptest.Scale(ctx, c.Etcd, "app", map[string]int{"web": 3})
	if d := wait(t, c, "app", rev); d.State != unit.Succeeded {
		t.Fatalf("scale: %+v", d)
	}
	for name, h := range unitsOf(t, c, "app") {
		if h != "127.0.0.3" {
			t.Errorf("%s placed on %s; only 127.0.0.3 is dataPlane with environ=prod", name, h)
		}
	}
	start := time.Now()
	d := wait(t, c, "app", tagged("img:2", map[string]string{"environ": "staging"}))
	if d.State != unit.Failed || !strings.Contains(d.Msg, "no host with dataPlane=true and environ=staging") {
		t.Fatalf("unsatisfiable: %+v", d)
	}
	if took := time.Since(start); took > 3*time.Second {
		t.Errorf("an unsatisfiable placement took %s to fail; it must fail at once", took)
	}
	for name := range unitsOf(t, c, "app") {
		if !strings.HasPrefix(name, "app_v1.") {
			t.Errorf("half-applied: %s", name)
		}
	}
}

// TestGarbageKeysAreSkipped: unreadable keys in the scheduler's prefixes
// are skipped; the app they belong to is left as it runs, other apps are
// unaffected.
func TestGarbageKeysAreSkipped(t *testing.T) {
	t.Parallel()
	c, e := newCluster(t, hosts3[:2]...)
	ctx := context.Background()
	_, rev, _ := cptest.Release(ctx, c.Etcd, "victim", "img:1", map[string]string{"web": "x"}, nil)
	wait(t, c, "victim", rev)
	for k, v := range map[string]string{
		keys.Unit("127.0.0.2", "junk"):           "{",
		keys.Unit("127.0.0.2", "other_v1.web.1"): "not json",
		keys.Status("127.0.0.3", "x_v1.web.1"):   "[]",
		keys.Host("not-an-ip"):                   `{"addr":"nope"}`,
		keys.AppScale("victim"):                  "{{{",
		keys.AppsPrefix + "Bad_App/release":      "1",
		keys.AppCurrentRelease("norel"):          "abc",
		keys.AppRelease("broken", 1):             "garbage",
		keys.AppCurrentRelease("broken"):         "1",
		keys.Deploy("victim2"):                   "nope",
		keys.AppsPrefix + "victim/releases/vX":   "{}",
	} {
		e.Put(k, v)
	}
	_, rev, _ = cptest.Release(ctx, c.Etcd, "fine", "img:1", map[string]string{"web": "x"}, nil)
	if d := wait(t, c, "fine", rev); d.State != unit.Succeeded {
		t.Fatalf("an app next to garbage: %+v", d)
	}
	if u := unitsOf(t, c, "victim"); len(u) != 1 {
		t.Errorf("the app with an unreadable scale: units %v, want its one unit left running", u)
	}
}

// TestConcurrentChangesConverge: releases and scales written at once from
// several writers (a push, config changes, scale calls) end in the last
// release at the last scale, with every host running exactly its units.
func TestConcurrentChangesConverge(t *testing.T) {
	t.Parallel()
	c, _ := newCluster(t, hosts3...)
	ctx := context.Background()
	web := map[string]string{"web": "serve", "worker": "work"}
	_, rev, _ := cptest.Release(ctx, c.Etcd, "app", "img:0", web, nil)
	wait(t, c, "app", rev)
	var wg sync.WaitGroup
	for w := 0; w < 3; w++ {
		wg.Go(func() {
			for i := 0; i < 5; i++ {
				if _, _, err := cptest.Release(ctx, c.Etcd, "app", fmt.Sprintf("img:%d-%d", w, i), web, nil); err != nil {
					t.Error(err)
				}
				if _, err := cptest.Scale(ctx, c.Etcd, "app", map[string]int{"web": 1 + (w+i)%4, "worker": (w + i) % 2}); err != nil {
					t.Error(err)
				}
				time.Sleep(time.Duration(50*(w+1)) * time.Millisecond)
			}
		})
	}
	wg.Wait()
	rev, _ = cptest.Scale(ctx, c.Etcd, "app", map[string]int{"web": 3, "worker": 1})
	d := wait(t, c, "app", rev)
	if d.State != unit.Succeeded {
		t.Fatalf("after the storm: %+v", d)
	}
	cur, _ := c.Etcd.Get(ctx, keys.AppCurrentRelease("app"))
	last := string(cur.Kvs[0].Value)
	if last != "16" {
		t.Errorf("release = %s, want 16 (1 + 15 written)", last)
	}
	testenv.Eventually(t, 10*time.Second, func() bool {
		u := unitsOf(t, c, "app")
		if len(u) != 4 {
			return false
		}
		for name := range u {
			if !strings.HasPrefix(name, "app_v"+last+".") {
				return false
			}
		}
		// On every host, the running containers are exactly its units.
		for _, h := range hosts3 {
			list, _ := c.RT.Host(h).List(ctx, h)
			running := map[string]bool{}
			for _, ct := range list {
				if ct.Running {
					running[ct.Name] = true
				}
			}
			for name, uh := range u {
				if uh == h && !running[name] {
					return false
				}
			}
			for name := range running {
				if u[name] != h {
					return false
				}
			}
		}
		return true
	}, "the last release at the last scale, each host running exactly its units")
}

// TestReturningHostLeavesMovedRoutesAlone: a host that comes back after
// its units moved stops its stale containers without touching the routes
// of their replacements, which carry the same unit names.
func TestReturningHostLeavesMovedRoutesAlone(t *testing.T) {
	t.Parallel()
	c, _ := newCluster(t, hosts3[:2]...)
	ctx := context.Background()
	_, rev, _ := cptest.Release(ctx, c.Etcd, "app", "img:1", map[string]string{"web": "serve"}, nil)
	wait(t, c, "app", rev)
	victim := unitsOf(t, c, "app")["app_v1.web.1"]
	c.StopAgent(victim)
	c.StopPublisher(victim)
	testenv.Eventually(t, 15*time.Second, func() bool {
		r := routesOf(t, c, "app")
		return r["app_v1.web.1"] != "" && !strings.HasPrefix(r["app_v1.web.1"], victim+":")
	}, "the unit routed on the other host")
	moved := routesOf(t, c, "app")["app_v1.web.1"]
	c.StartHost(victim, nil)
	testenv.Eventually(t, 10*time.Second, func() bool { return c.RT.Running() == 1 }, "the returning host stopped its stale container")
	time.Sleep(time.Second)
	if r := routesOf(t, c, "app"); r["app_v1.web.1"] != moved {
		t.Fatalf("route after the host returned: %v, want %s kept", r, moved)
	}
}

// TestReleaseBeforeAnyAgentWaitsForOne: a release written the moment the
// platform starts, before any agent registered, waits for the first one
// (within the host grace of the scheduler's start) instead of failing;
// once the scheduler has led longer than that, no host at all fails the
// deploy at once, naming why.
func TestReleaseBeforeAnyAgentWaitsForOne(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	release := func(c *cptest.Cluster, app string) int64 {
		t.Helper()
		if err := cptest.CreateApp(ctx, c.Etcd, app, "o"); err != nil {
			t.Fatal(err)
		}
		_, rev, err := cptest.Release(ctx, c.Etcd, app, "img:1", map[string]string{"web": "x"}, nil)
		if err != nil {
			t.Fatal(err)
		}
		return rev
	}
	c, _ := newCluster(t) // a scheduler, no host yet
	rev := release(c, "early")
	time.Sleep(300 * time.Millisecond) // passes run meanwhile, with no host
	c.StartHost("127.0.0.2", nil)
	if d := wait(t, c, "early", rev); d.State != unit.Succeeded {
		t.Fatalf("a release pushed before the first agent registered: %+v", d)
	}

	lonely, _ := newCluster(t)
	time.Sleep(lonely.Sched.Grace + 500*time.Millisecond)
	if d := wait(t, lonely, "late", release(lonely, "late")); d.State != unit.Failed || !strings.Contains(d.Msg, "no host is alive") {
		t.Fatalf("no host long after the start: %+v", d)
	}
}
