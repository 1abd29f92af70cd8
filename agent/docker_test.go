package agent_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	docker "github.com/fsouza/go-dockerclient"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/deis/dataplane/agent"
	"github.com/deis/dataplane/agent/runtime"
	"github.com/deis/dataplane/internal/cptest"
	"github.com/deis/dataplane/pkg/keys"
	"github.com/deis/dataplane/pkg/release"
	"github.com/deis/dataplane/pkg/testenv"
	"github.com/deis/dataplane/pkg/unit"
	"github.com/deis/dataplane/publisher"
	"github.com/deis/dataplane/router"
	"github.com/deis/dataplane/scheduler"
)

// platform is the real data plane and control plane on one Docker engine:
// etcd, a router, a scheduler, and per simulated host (127.0.0.2, ...) an
// agent driving Docker and a publisher.
type platform struct {
	t      *testing.T
	e      *testenv.Etcd
	cli    *clientv3.Client
	docker *docker.Client
	router string // HTTP address
	domain string
	log    *slog.Logger
}

// testLog is the platform's log: on stderr with -v, else kept and shown
// only if the test fails (the agents' account of what they did is most of
// a failure's story).
func testLog(t *testing.T) *slog.Logger {
	if testing.Verbose() {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelInfo})).With("test", t.Name())
	}
	var buf testenv.SyncBuffer
	t.Cleanup(func() {
		if t.Failed() {
			const tail = 32 << 10
			out := buf.String()
			if len(out) > tail {
				out = "...\n" + out[len(out)-tail:]
			}
			t.Logf("the platform's log:\n%s", out)
		}
	})
	return slog.New(slog.NewTextHandler(&buf, &slog.HandlerOptions{Level: slog.LevelInfo}))
}

func run(t *testing.T, what string, f func(ctx context.Context) error) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := f(ctx); err != nil && ctx.Err() == nil {
			t.Errorf("%s: %v", what, err)
		}
	}()
	t.Cleanup(func() { cancel(); <-done })
}

// hostSeq numbers the simulated hosts of the tests in this process.
var hostSeq atomic.Int32

// hostsFor returns n simulated host addresses that no other test uses:
// an agent owns every container labelled with its host, so two tests on
// one engine must never share a host address.
func hostsFor(n int) []string {
	block := 100 + hostSeq.Add(1)
	var out []string
	for i := range n {
		out = append(out, fmt.Sprintf("127.%d.%d.%d", block, os.Getpid()%250, 2+i))
	}
	return out
}

func startPlatform(t *testing.T, n int) *platform {
	t.Helper()
	hosts := hostsFor(n)
	dcli := testenv.Docker(t)
	e := testenv.StartEtcd(t)
	p := &platform{t: t, e: e, cli: e.Client(), docker: dcli, domain: "example.test", log: testLog(t)}
	e.Put(keys.PlatformDomain, p.domain)
	// Registered first, so it runs last: no container of this test survives it.
	t.Cleanup(func() { p.removeContainers() })
	r, err := router.New(router.Config{HTTPAddr: "127.0.0.1:0", Host: "127.0.0.1", Grace: time.Second}, p.cli, p.log.With("c", "router"))
	if err != nil {
		t.Fatal(err)
	}
	run(t, "router", r.Run)
	p.router = r.Addr("http")
	for _, h := range hosts {
		cfg := agent.Config{Host: h, Labels: map[string]string{"dataPlane": "true"}, Drain: time.Second, StopTimeout: 2 * time.Second, Reconcile: 2 * time.Second, TTL: 3 * time.Second}
		a := agent.New(cfg, runtime.NewDocker(dcli, p.log), p.cli, p.log.With("c", "agent", "host", h), nil)
		run(t, "agent "+h, a.Run)
		pub := publisher.New(publisher.Config{Host: h, TTL: 5 * time.Second}, dcli, p.cli, p.log.With("c", "publisher", "host", h), nil)
		run(t, "publisher "+h, pub.Run)
	}
	s := scheduler.New(scheduler.Config{ID: "s1", Session: 3 * time.Second, Tick: 200 * time.Millisecond, MinReadyRouted: time.Second, Deadline: 20 * time.Second, Grace: 2 * time.Second}, p.cli, p.log.With("c", "scheduler"), nil)
	run(t, "scheduler", s.Run)
	return p
}

// removeContainers removes every container this test's hosts ran.
func (p *platform) removeContainers() {
	list, _ := p.docker.ListContainers(docker.ListContainersOptions{All: true, Filters: map[string][]string{"label": {keys.LabelApp + "=" + appOf(p.t)}}})
	for _, c := range list {
		_ = p.docker.RemoveContainer(docker.RemoveContainerOptions{ID: c.ID, Force: true})
	}
}

// appOf is the test's app name: unique per test, so tests sharing the
// engine never touch each other's containers.
func appOf(t *testing.T) string {
	n := strings.ToLower(strings.TrimPrefix(t.Name(), "Test"))
	n = strings.Map(func(r rune) rune {
		if r >= 'a' && r <= 'z' || r >= '0' && r <= '9' {
			return r
		}
		return '-'
	}, n)
	if len(n) > 40 {
		n = n[:40]
	}
	return strings.Trim(n, "-") + fmt.Sprintf("-%d", os.Getpid()%10000)
}

// webCommand serves VERSION on $PORT after boot seconds.
func webCommand(boot int) string {
	return fmt.Sprintf("sleep %d; mkdir -p /www && echo \"v$VERSION\" > /www/index.html && exec httpd -f -p $PORT -h /www", boot)
}

// release writes a release of the busybox stack image with procfile and
// config, and returns its version and revision.
func (p *platform) release(app string, procfile, config map[string]string) (int, int64) {
	p.t.Helper()
	ctx := context.Background()
	if err := cptest.CreateApp(ctx, p.cli, app, "tester"); err != nil {
		p.t.Fatal(err)
	}
	rel, err := release.Write(ctx, p.cli, app, func(cur *release.Release, _ map[string]string) (*release.Release, error) {
		return &release.Release{Image: testenv.BusyboxImage, Procfile: procfile, Config: config, User: "tester", Summary: "test"}, nil
	})
	if err != nil {
		p.t.Fatal(err)
	}
	// The live config follows the release, as the controller writes it.
	for k, v := range config {
		if _, err := p.cli.Put(ctx, keys.Config(app, k), v); err != nil {
			p.t.Fatal(err)
		}
	}
	resp, err := p.cli.Get(ctx, keys.AppCurrentRelease(app))
	if err != nil {
		p.t.Fatal(err)
	}
	return rel.Version, resp.Kvs[0].ModRevision
}

func (p *platform) wait(app string, rev int64) unit.Deploy {
	p.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	d, err := scheduler.Wait(ctx, p.cli, app, rev, nil)
	if err != nil {
		p.t.Fatalf("wait for %s at rev %d: %v", app, rev, err)
	}
	return d
}

func (p *platform) scale(app string, s map[string]int) int64 {
	p.t.Helper()
	rev, err := cptest.Scale(context.Background(), p.cli, app, s)
	if err != nil {
		p.t.Fatal(err)
	}
	return rev
}

// load sends requests through the router to app until stopped: half on
// one keep-alive connection, half each on a new connection. It counts
// non-2xx answers and connection errors, and which bodies it saw.
type load struct {
	ok, bad, connErr atomic.Int64
	mu               sync.Mutex
	bodies           map[string]int
	samples          []string
	stop             chan struct{}
	done             sync.WaitGroup
}

func (p *platform) startLoad(app string) *load {
	l := &load{bodies: map[string]int{}, stop: make(chan struct{})}
	host := app + "." + p.domain
	for _, keepAlive := range []bool{true, false} {
		client := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{DisableKeepAlives: !keepAlive, MaxIdleConnsPerHost: 1}}
		l.done.Go(func() {
			for i := 0; i < 100000; i++ { // bounded; stopped long before
				select {
				case <-l.stop:
					return
				case <-time.After(10 * time.Millisecond): // ~100 req/s each
				}
				req, _ := http.NewRequest(http.MethodGet, "http://"+p.router+"/", nil)
				req.Host = host
				resp, err := client.Do(req)
				if err != nil {
					l.connErr.Add(1)
					l.note("error: " + err.Error())
					continue
				}
				body, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				if resp.StatusCode/100 != 2 {
					l.bad.Add(1)
					l.note(fmt.Sprintf("%d %s", resp.StatusCode, strings.TrimSpace(string(body))))
					continue
				}
				l.ok.Add(1)
				l.mu.Lock()
				l.bodies[strings.TrimSpace(string(body))]++
				l.mu.Unlock()
			}
		})
	}
	return l
}

func (l *load) note(s string) {
	l.mu.Lock()
	if len(l.samples) < 5 {
		l.samples = append(l.samples, s)
	}
	l.mu.Unlock()
}

// finish stops the load and fails the test on any error.
func (l *load) finish(t *testing.T, what string) map[string]int {
	t.Helper()
	close(l.stop)
	l.done.Wait()
	t.Logf("%s: %d ok, %d non-2xx, %d connection errors, bodies %v", what, l.ok.Load(), l.bad.Load(), l.connErr.Load(), l.bodies)
	if l.bad.Load() != 0 || l.connErr.Load() != 0 {
		t.Errorf("%s: %d non-2xx and %d connection errors under load (want 0); first: %v", what, l.bad.Load(), l.connErr.Load(), l.samples)
	}
	if l.ok.Load() < 20 {
		t.Errorf("%s: only %d requests succeeded: the load did not run", what, l.ok.Load())
	}
	return l.bodies
}

func (p *platform) get(app string) (int, string) {
	req, _ := http.NewRequest(http.MethodGet, "http://"+p.router+"/", nil)
	req.Host = app + "." + p.domain
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, err.Error()
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, strings.TrimSpace(string(b))
}

// TestZeroDowntimeUnderLoad runs the control plane for real (Docker,
// publishers, router) on three simulated hosts, an app ready 3 s after its
// start, and keeps requests going through the router (keep-alive and new
// connections) during a deploy of web=3, a bad release, scale 1→5→1, a
// rolling restart and a rollback: not one request may fail.
func TestZeroDowntimeUnderLoad(t *testing.T) {
	t.Parallel()
	p := startPlatform(t, 3)
	app := appOf(t)
	web := map[string]string{"web": webCommand(3)}
	_, rev := p.release(app, web, map[string]string{"VERSION": "1"})
	if d := p.wait(app, rev); d.State != unit.Succeeded {
		t.Fatalf("first deploy: %+v", d)
	}
	testenv.Eventually(t, 10*time.Second, func() bool { code, body := p.get(app); return code == 200 && body == "v1" }, "the app answers v1 through the router")
	if d := p.wait(app, p.scale(app, map[string]int{"web": 3})); d.State != unit.Succeeded {
		t.Fatalf("scale to 3: %+v", d)
	}

	t.Run("deploy", func(t *testing.T) {
		l := p.startLoad(app)
		start := time.Now()
		_, rev := p.release(app, web, map[string]string{"VERSION": "2"})
		d := p.wait(app, rev)
		took := time.Since(start)
		bodies := l.finish(t, "deploy v1→v2")
		if d.State != unit.Succeeded || d.To.Release != 2 {
			t.Fatalf("deploy: %+v", d)
		}
		for b := range bodies {
			if b != "v1" && b != "v2" {
				t.Errorf("answer %q is from neither release", b)
			}
		}
		// 3 × (boot 3 s + minReady 1 s + drain 1 s) + 10 s.
		if took > 25*time.Second {
			t.Errorf("deploy took %s", took)
		}
		t.Logf("deploy of 3 units took %s", took.Round(time.Millisecond))
	})

	t.Run("bad release", func(t *testing.T) {
		l := p.startLoad(app)
		v, rev := p.release(app, map[string]string{"web": "echo cannot boot: no database >&2; exit 3"}, map[string]string{"VERSION": "3"})
		d := p.wait(app, rev)
		l.finish(t, "crashing release")
		if d.State != unit.Failed || !strings.Contains(d.Msg, "exited with code 3") || !strings.Contains(d.Msg, "no database") {
			t.Fatalf("bad release: %+v; want failed with the exit code and the last output", d)
		}
		cur, _ := p.cli.Get(context.Background(), keys.AppCurrentRelease(app))
		if string(cur.Kvs[0].Value) != "2" {
			t.Errorf("release = %s after v%d failed, want 2", cur.Kvs[0].Value, v)
		}
		testenv.Eventually(t, 20*time.Second, func() bool {
			list, _ := p.docker.ListContainers(docker.ListContainersOptions{All: true, Filters: map[string][]string{"label": {keys.LabelApp + "=" + app, keys.LabelVersion + "=v3"}}})
			return len(list) == 0
		}, "no container of the failed release left")
	})

	t.Run("scale 1-5-1", func(t *testing.T) {
		l := p.startLoad(app)
		for _, n := range []int{1, 5, 1} {
			if d := p.wait(app, p.scale(app, map[string]int{"web": n})); d.State != unit.Succeeded {
				t.Fatalf("scale to %d: %+v", n, d)
			}
		}
		l.finish(t, "scale 1→5→1")
	})

	t.Run("restart", func(t *testing.T) {
		before := p.containerIDs(app)
		l := p.startLoad(app)
		resp, err := p.cli.Put(context.Background(), keys.AppRestart(app), `{"user":"tester"}`)
		if err != nil {
			t.Fatal(err)
		}
		d := p.wait(app, resp.Header.Revision)
		l.finish(t, "restart")
		if d.State != unit.Succeeded {
			t.Fatalf("restart: %+v", d)
		}
		testenv.Eventually(t, 20*time.Second, func() bool { return len(p.containerIDs(app)) == 1 }, "the surge container is gone")
		for name, id := range p.containerIDs(app) {
			if before[name] == id {
				t.Errorf("%s kept its container %s", name, id)
			}
		}
	})

	t.Run("rollback", func(t *testing.T) {
		l := p.startLoad(app)
		v1, err := release.Get(context.Background(), p.cli, app, 1)
		if err != nil {
			t.Fatal(err)
		}
		_, rev := p.release(app, v1.Procfile, v1.Config)
		d := p.wait(app, rev)
		l.finish(t, "rollback to v1's image and config")
		if d.State != unit.Succeeded {
			t.Fatalf("rollback: %+v", d)
		}
		if code, body := p.get(app); code != 200 || body != "v1" {
			t.Errorf("after the rollback: %d %q", code, body)
		}
	})

	t.Run("scale to 0", func(t *testing.T) {
		if d := p.wait(app, p.scale(app, map[string]int{"web": 0})); d.State != unit.Succeeded {
			t.Fatalf("scale to 0: %+v", d)
		}
		testenv.Eventually(t, 10*time.Second, func() bool { code, _ := p.get(app); return code == http.StatusServiceUnavailable }, "503 after web=0")
	})
}

// containerIDs are app's running containers: name → ID.
func (p *platform) containerIDs(app string) map[string]string {
	list, _ := p.docker.ListContainers(docker.ListContainersOptions{Filters: map[string][]string{"label": {keys.LabelApp + "=" + app}}})
	out := map[string]string{}
	for _, c := range list {
		out[strings.TrimPrefix(c.Names[0], "/")] = c.ID
	}
	return out
}

// TestRunUnits: `deis run` as a run unit on a real engine: output and exit
// code come back, output is capped at its last 1 MiB, a client that leaves
// gets its container killed, and run units are never routed.
func TestRunUnits(t *testing.T) {
	t.Parallel()
	p := startPlatform(t, 1)
	app := appOf(t)
	_, rev := p.release(app, map[string]string{"web": webCommand(0)}, map[string]string{"VERSION": "1", "GREETING": "hello from config"})
	p.wait(app, rev)
	ctx := context.Background()
	rel, err := release.Get(ctx, p.cli, app, 1)
	if err != nil {
		t.Fatal(err)
	}
	lease, err := p.cli.Grant(ctx, 10)
	if err != nil {
		t.Fatal(err)
	}
	ka, _ := p.cli.KeepAlive(ctx, lease.ID)
	go func() {
		for range ka {
		}
	}()
	for _, tc := range []struct {
		cmd       string
		rc        int
		output    string
		truncated bool
	}{
		{"echo $GREETING; sleep 0.2; echo to stderr >&2", 0, "hello from config\nto stderr\n", false}, // stderr too (in time order)
		{"echo failing; exit 3", 3, "failing\n", false},
		{"head -c 1500000 /dev/zero | tr '\\0' a", 0, strings.Repeat("a", unit.MaxRunOutput), true},
	} {
		rctx, cancel := context.WithTimeout(ctx, time.Minute) // a lost run fails here, not at the test timeout
		res, err := scheduler.RunOnce(rctx, p.cli, lease.ID, app, rel, tc.cmd)
		cancel()
		if err != nil {
			t.Fatalf("run %q: %v", tc.cmd, err)
		}
		if res.RC != tc.rc || res.Output != tc.output || res.Truncated != tc.truncated {
			t.Errorf("run %q: rc %d, %d bytes of output (%.40q), truncated %v; want rc %d, %q, %v", tc.cmd, res.RC, len(res.Output), res.Output, res.Truncated, tc.rc, clipped(tc.output), tc.truncated)
		}
	}
	// A client that leaves: its run is killed.
	cctx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { _, err := scheduler.RunOnce(cctx, p.cli, lease.ID, app, rel, "sleep 300"); done <- err }()
	runs := func() int {
		list, _ := p.docker.ListContainers(docker.ListContainersOptions{All: true, Filters: map[string][]string{"label": {keys.LabelApp + "=" + app, keys.LabelType + "=run"}}})
		return len(list)
	}
	testenv.Eventually(t, 15*time.Second, func() bool { return runs() == 1 }, "the long run started")
	if r, _ := cptest.Routes(ctx, p.cli, app); len(r) != 1 {
		t.Errorf("routes during a run: %v; run units are never routed", r)
	}
	if u, _ := cptest.Units(ctx, p.cli, app); len(u) != 1 {
		t.Errorf("units during a run: %v; runs are not units", u)
	}
	cancel()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Errorf("abandoned run returned %v", err)
	}
	// Stop (1 s) and remove on the shared Docker engine: under make test's
	// parallel Docker load this took up to 20 s, 2 s alone.
	deadline := time.Now().Add(60 * time.Second)
	for runs() != 0 {
		if time.Now().After(deadline) {
			left, _ := p.cli.Get(ctx, keys.RunsAppPrefix(app), clientv3.WithPrefix(), clientv3.WithKeysOnly())
			list, _ := p.docker.ListContainers(docker.ListContainersOptions{All: true, Filters: map[string][]string{"label": {keys.LabelApp + "=" + app, keys.LabelType + "=run"}}})
			var state []string
			for _, c := range list {
				state = append(state, c.Names[0]+" "+c.State+" ("+c.Status+")")
			}
			t.Fatalf("after 1m0s: the abandoned run's container is still there: %v; run keys left in etcd: %d", state, left.Count)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func clipped(s string) string {
	if len(s) > 40 {
		return s[:40] + "..."
	}
	return s
}

// TestHealthCheckGatesDeploy: with HEALTHCHECK_URL, a new unit is routed
// only once the URL answers 200, so a slow-to-be-healthy release rolls in
// without a failed request; a release whose check never answers 200 fails
// at its deadline, naming what the check answered, and the old one serves.
func TestHealthCheckGatesDeploy(t *testing.T) {
	t.Parallel()
	p := startPlatform(t, 2)
	app := appOf(t)
	healthyAfter := func(secs int) map[string]string {
		return map[string]string{"web": fmt.Sprintf("mkdir -p /www && echo v$VERSION > /www/index.html && (sleep %d; echo ok > /www/health) & exec httpd -f -p $PORT -h /www", secs)}
	}
	cfg := func(v string) map[string]string {
		return map[string]string{"VERSION": v, "HEALTHCHECK_URL": "/health", "DEIS_DEPLOY_TIMEOUT": "8"}
	}
	_, rev := p.release(app, healthyAfter(0), cfg("1"))
	if d := p.wait(app, rev); d.State != unit.Succeeded {
		t.Fatalf("first deploy: %+v", d)
	}
	testenv.Eventually(t, 10*time.Second, func() bool { code, _ := p.get(app); return code == 200 }, "v1 answers")

	l := p.startLoad(app)
	start := time.Now()
	_, rev = p.release(app, healthyAfter(5), cfg("2"))
	var firstV2 atomic.Int64 // when v2 was first routed, after its release
	go func() {
		for i := 0; i < 400 && firstV2.Load() == 0; i++ {
			if r, _ := cptest.Routes(context.Background(), p.cli, app); r[app+"_v2.web.1"] != "" {
				firstV2.Store(int64(time.Since(start)))
			}
			time.Sleep(50 * time.Millisecond)
		}
	}()
	d := p.wait(app, rev)
	l.finish(t, "deploy with a health check healthy after 5 s")
	if d.State != unit.Succeeded {
		t.Fatalf("deploy: %+v", d)
	}
	if got := time.Duration(firstV2.Load()); got < 5*time.Second {
		t.Errorf("v2 was routed %s after its release, before its health check could answer 200 (5 s)", got)
	}

	l = p.startLoad(app)
	_, rev = p.release(app, healthyAfter(3600), cfg("3"))
	d = p.wait(app, rev)
	l.finish(t, "release whose health check never answers 200")
	if d.State != unit.Failed || !strings.Contains(d.Msg, "not ready after 8s") || !strings.Contains(d.Msg, "GET /health answered 404") {
		t.Fatalf("never healthy: %+v; want failed at the deadline naming the check's answer", d)
	}
	if code, body := p.get(app); code != 200 || body != "v2" {
		t.Errorf("after the failed release: %d %q, want v2 serving", code, body)
	}
}
