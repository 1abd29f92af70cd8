package publisher_test

import (
	"context"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	docker "github.com/fsouza/go-dockerclient"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/deis/dataplane/pkg/testenv"
	"github.com/deis/dataplane/publisher"
)

func appName(prefix string) string { return fmt.Sprintf("%s%d", prefix, rand.IntN(1e9)) }

func run(t *testing.T, p *publisher.Publisher) (stop func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { _ = p.Run(ctx); close(done) }()
	var once sync.Once
	stop = func() {
		once.Do(func() {
			cancel()
			select {
			case <-done:
			case <-time.After(15 * time.Second):
				t.Error("publisher did not stop within 15s")
			}
		})
	}
	t.Cleanup(stop)
	return stop
}

func newPublisher(t *testing.T, e *testenv.Etcd, cli *docker.Client, host string) *publisher.Publisher {
	return publisher.New(publisher.Config{Host: host, TTL: 3 * time.Second, Reconcile: 2 * time.Second}, cli, e.Client(), slog.New(slog.DiscardHandler), nil)
}

func value(t *testing.T, cli *clientv3.Client, key string) (string, bool) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	resp, err := cli.Get(ctx, key)
	if err != nil || len(resp.Kvs) == 0 {
		return "", false
	}
	return string(resp.Kvs[0].Value), true
}

func hostPort(c *docker.Container) string {
	return c.NetworkSettings.Ports["8080/tcp"][0].HostPort
}

// TestPublishAndKill: the key appears within 1s of the port accepting, and
// is gone within 1s of docker kill.
func TestPublishAndKill(t *testing.T) {
	t.Parallel()
	cli := testenv.Docker(t)
	e := testenv.StartEtcd(t)
	ec := e.Client()
	p := newPublisher(t, e, cli, "127.0.0.1")
	run(t, p)
	app := appName("pub")
	name := app + "_v1.web.1"
	c := testenv.RunContainer(t, cli, testenv.HTTPDOptions(name, nil))
	addr := "127.0.0.1:" + hostPort(c)
	key := "/deis/services/" + app + "/" + name
	// Time from the port accepting to the key being visible.
	testenv.Eventually(t, 10*time.Second, func() bool {
		conn, err := net.DialTimeout("tcp", addr, 100*time.Millisecond)
		if err == nil {
			conn.Close()
		}
		return err == nil
	}, "container port never accepted")
	accepting := time.Now()
	testenv.Eventually(t, time.Second, func() bool { v, ok := value(t, ec, key); return ok && v == addr }, "key %s not published within 1s of the port accepting", key)
	t.Logf("published %v after the port accepted", time.Since(accepting))

	if err := cli.KillContainer(docker.KillContainerOptions{ID: c.ID}); err != nil {
		t.Fatal(err)
	}
	killed := time.Now()
	testenv.Eventually(t, time.Second, func() bool { _, ok := value(t, ec, key); return !ok }, "key still present 1s after docker kill")
	t.Logf("unpublished %v after kill", time.Since(killed))
}

func TestNeverListeningAndFailingHealthURLStayOut(t *testing.T) {
	t.Parallel()
	cli := testenv.Docker(t)
	e := testenv.StartEtcd(t)
	ec := e.Client()
	p := newPublisher(t, e, cli, "127.0.0.1")
	run(t, p)
	silent := appName("silent")
	testenv.RunContainer(t, cli, testenv.HTTPDOptions(silent+"_v1.web.1", nil, "sleep", "3600"))
	sick := appName("sick")
	e.Put("/deis/config/"+sick+"/healthcheck_url", "/missing-page")
	testenv.RunContainer(t, cli, testenv.HTTPDOptions(sick+"_v1.web.1", nil))
	well := appName("well")
	e.Put("/deis/config/"+well+"/healthcheck_url", "/index.html")
	testenv.RunContainer(t, cli, testenv.HTTPDOptions(well+"_v1.web.1", nil))
	testenv.Eventually(t, 10*time.Second, func() bool { _, ok := value(t, ec, "/deis/services/"+well+"/"+well+"_v1.web.1"); return ok }, "healthy app never published")
	// Give the others the same time and more: they must stay out.
	time.Sleep(2 * time.Second)
	for _, k := range []string{"/deis/services/" + silent + "/" + silent + "_v1.web.1", "/deis/services/" + sick + "/" + sick + "_v1.web.1"} {
		if v, ok := value(t, ec, k); ok {
			t.Errorf("%s published as %s although not ready", k, v)
		}
	}
}

func TestVersionGatingAndPause(t *testing.T) {
	t.Parallel()
	cli := testenv.Docker(t)
	e := testenv.StartEtcd(t)
	ec := e.Client()
	app := appName("ver")
	// Another host already serves release 3.
	e.Put("/deis/services/"+app+"/"+app+"_v3.web.1", "192.0.2.50:5000")
	p := newPublisher(t, e, cli, "127.0.0.1")
	run(t, p)
	testenv.RunContainer(t, cli, testenv.HTTPDOptions(app+"_v2.web.1", nil))
	c4 := testenv.RunContainer(t, cli, testenv.HTTPDOptions(app+"_v4.web.1", nil))
	k4 := "/deis/services/" + app + "/" + app + "_v4.web.1"
	testenv.Eventually(t, 10*time.Second, func() bool { _, ok := value(t, ec, k4); return ok }, "newer release never published")
	time.Sleep(500 * time.Millisecond)
	if _, ok := value(t, ec, "/deis/services/"+app+"/"+app+"_v2.web.1"); ok {
		t.Fatal("older release v2 published although v3 is live")
	}
	if v, _ := value(t, ec, "/deis/services/"+app+"/"+app+"_v3.web.1"); v != "192.0.2.50:5000" {
		t.Fatal("another host's key was touched")
	}
	if err := cli.PauseContainer(c4.ID); err != nil {
		t.Fatal(err)
	}
	testenv.Eventually(t, time.Second, func() bool { _, ok := value(t, ec, k4); return !ok }, "paused container still published")
	if err := cli.UnpauseContainer(c4.ID); err != nil {
		t.Fatal(err)
	}
	testenv.Eventually(t, 5*time.Second, func() bool { _, ok := value(t, ec, k4); return ok }, "unpaused container not published again")
}

// TestRestartsConverge restarts etcd, then the publisher (after a container
// died while it was down), and checks the keys are exactly the running,
// reachable containers, with nothing duplicated or stale.
func TestRestartsConverge(t *testing.T) {
	t.Parallel()
	cli := testenv.Docker(t)
	e := testenv.StartEtcd(t)
	ec := e.Client()
	app := appName("conv")
	stop := run(t, newPublisher(t, e, cli, "127.0.0.1"))
	c1 := testenv.RunContainer(t, cli, testenv.HTTPDOptions(app+"_v1.web.1", nil))
	c2 := testenv.RunContainer(t, cli, testenv.HTTPDOptions(app+"_v1.web.2", nil))
	k1, k2 := "/deis/services/"+app+"/"+app+"_v1.web.1", "/deis/services/"+app+"/"+app+"_v1.web.2"
	both := func() bool { _, a := value(t, ec, k1); _, b := value(t, ec, k2); return a && b }
	testenv.Eventually(t, 10*time.Second, both, "keys never published")

	e.Stop()
	time.Sleep(4 * time.Second) // longer than the 3s lease TTL
	e.Start()
	testenv.Eventually(t, 5*time.Second, both, "keys not back after etcd restart")

	// Publisher down; a container dies meanwhile; a stale key must go.
	stop()
	if _, ok := value(t, ec, k1); ok {
		t.Fatal("keys survive a clean publisher shutdown (lease not revoked)")
	}
	if err := cli.StopContainer(c2.ID, 1); err != nil {
		t.Fatal(err)
	}
	// Stale: as if left by a crashed publisher, on its own lease that no
	// one keeps alive any more.
	lease, err := ec.Grant(context.Background(), 3)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ec.Put(context.Background(), k2, "127.0.0.1:"+hostPort(c2), clientv3.WithLease(lease.ID)); err != nil {
		t.Fatal(err)
	}
	run(t, newPublisher(t, e, cli, "127.0.0.1"))
	testenv.Eventually(t, 10*time.Second, func() bool {
		v1, ok1 := value(t, ec, k1)
		_, ok2 := value(t, ec, k2)
		return ok1 && v1 == "127.0.0.1:"+hostPort(c1) && !ok2
	}, "after publisher restart: want only the running container's key")
	resp, err := ec.Get(context.Background(), "/deis/services/"+app+"/", clientv3.WithPrefix())
	if err != nil || len(resp.Kvs) != 1 {
		t.Fatalf("want exactly 1 key for %s, got %v (%v)", app, resp, err)
	}
}

func TestHostsDoNotTouchEachOther(t *testing.T) {
	t.Parallel()
	cli := testenv.Docker(t)
	e := testenv.StartEtcd(t)
	ec := e.Client()
	app := appName("hosts")
	other := "/deis/services/" + app + "/" + app + "_v1.web.9"
	e.Put(other, "192.0.2.77:31000") // published by a publisher on another host
	run(t, newPublisher(t, e, cli, "127.0.0.1"))
	testenv.RunContainer(t, cli, testenv.HTTPDOptions(app+"_v1.web.1", nil))
	testenv.Eventually(t, 10*time.Second, func() bool { _, ok := value(t, ec, "/deis/services/"+app+"/"+app+"_v1.web.1"); return ok }, "never published")
	time.Sleep(3 * time.Second) // a reconcile round passes
	if v, ok := value(t, ec, other); !ok || v != "192.0.2.77:31000" {
		t.Fatal("reconcile deleted another host's key")
	}
}

// TestH1BadHealthURLDoesNotCrashPublisher: a tenant's healthcheck_url that
// net/url rejects used to crash the publisher (nil request), dropping every
// route on the host. Now it is ignored with one warning, the app is
// published without the check, and other apps keep being published.
func TestH1BadHealthURLDoesNotCrashPublisher(t *testing.T) {
	t.Parallel()
	cli := testenv.Docker(t)
	e := testenv.StartEtcd(t)
	ec := e.Client()
	run(t, newPublisher(t, e, cli, "127.0.0.1"))
	for i, bad := range []string{"/%zz", "/a\x00b", "/x\ny"} {
		app := appName(fmt.Sprintf("badhc%d", i))
		e.Put("/deis/config/"+app+"/healthcheck_url", bad)
		testenv.RunContainer(t, cli, testenv.HTTPDOptions(app+"_v1.web.1", nil))
		testenv.Eventually(t, 10*time.Second, func() bool { _, ok := value(t, ec, "/deis/services/"+app+"/"+app+"_v1.web.1"); return ok }, "app with healthcheck_url %q never published", bad)
	}
	other := appName("bystander")
	testenv.RunContainer(t, cli, testenv.HTTPDOptions(other+"_v1.web.1", nil))
	testenv.Eventually(t, 10*time.Second, func() bool { _, ok := value(t, ec, "/deis/services/"+other+"/"+other+"_v1.web.1"); return ok }, "another tenant's app not published after a bad healthcheck_url")
}

func TestHealthURL(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"/healthz", "http://10.0.0.1:5000/healthz"},
		{"healthz?x=1", "http://10.0.0.1:5000/healthz?x=1"},
		{"//evil.example/x", "http://10.0.0.1:5000//evil.example/x"},
		{"/%zz", ""},
		{"/a\x7fb", ""},
		{"http://evil.example/", "http://10.0.0.1:5000/http://evil.example/"}, // a path like any other
	} {
		got, err := publisher.HealthURL("10.0.0.1:5000", tc.in)
		if tc.want == "" {
			if err == nil {
				t.Errorf("HealthURL(%q) = %q, want an error", tc.in, got)
			}
			continue
		}
		if err != nil || got != tc.want {
			t.Errorf("HealthURL(%q) = %q, %v; want %q", tc.in, got, err, tc.want)
		}
	}
}

// TestL6HealthCheckDoesNotFollowRedirects: an app whose health URL answers
// 302 to a host-local address must not make the publisher (on the host
// network) fetch that address, and a 302 is not healthy.
func TestL6HealthCheckDoesNotFollowRedirects(t *testing.T) {
	t.Parallel()
	cli := testenv.Docker(t)
	e := testenv.StartEtcd(t)
	ec := e.Client()
	var landed atomic.Int32
	landing := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { landed.Add(1) }))
	t.Cleanup(landing.Close)
	run(t, newPublisher(t, e, cli, "127.0.0.1"))
	app := appName("redir")
	e.Put("/deis/config/"+app+"/healthcheck_url", "/cgi-bin/r")
	script := "#!/bin/sh\nprintf 'HTTP/1.1 302 Found\\r\\nLocation: " + landing.URL + "/ssrf\\r\\nContent-Length: 0\\r\\n\\r\\n'\n"
	testenv.RunContainer(t, cli, testenv.HTTPDOptions(app+"_v1.web.1", nil, "sh", "-c",
		"mkdir -p /www/cgi-bin && printf \""+script+"\" > /www/cgi-bin/r && chmod +x /www/cgi-bin/r && exec httpd -f -p 8080 -h /www"))
	// The health URL is tried each second; give it several tries.
	time.Sleep(4 * time.Second)
	if n := landed.Load(); n != 0 {
		t.Fatalf("the publisher followed the app's redirect to a host-local URL %d times", n)
	}
	if v, ok := value(t, ec, "/deis/services/"+app+"/"+app+"_v1.web.1"); ok {
		t.Fatalf("published as %s although the health URL answered 302", v)
	}
}

// TestL7StaticBackendsSurvivePublisherStart: keys the publisher did not
// write (an operator's static backend with this host's address, another
// publisher sharing --host) are never deleted by its reconcile.
func TestL7StaticBackendsSurvivePublisherStart(t *testing.T) {
	t.Parallel()
	cli := testenv.Docker(t)
	e := testenv.StartEtcd(t)
	ec := e.Client()
	app := appName("static")
	static := "/deis/services/" + app + "/" + app + "_v1.web.1"
	e.Put(static, "127.0.0.1:17001")
	run(t, newPublisher(t, e, cli, "127.0.0.1"))
	time.Sleep(3 * time.Second) // start-up resync and one reconcile round (2s)
	if v, ok := value(t, ec, static); !ok || v != "127.0.0.1:17001" {
		t.Fatalf("the publisher deleted a static backend it never wrote (now %q, %v)", v, ok)
	}
}

func FuzzHealthURL(f *testing.F) {
	for _, s := range []string{"/healthz", "healthz?x=1", "/%zz", "//evil/x", "http://a/", "/a\x00b", " /x "} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, path string) {
		u, err := publisher.HealthURL("10.0.0.1:5000", path)
		if err != nil {
			return
		}
		if !strings.HasPrefix(u, "http://10.0.0.1:5000/") {
			t.Fatalf("HealthURL(%q) = %q: not on the container's address", path, u)
		}
		if _, err := http.NewRequest(http.MethodGet, u, nil); err != nil {
			t.Fatalf("HealthURL(%q) = %q, which net/http refuses: %v", path, u, err)
		}
	})
}
