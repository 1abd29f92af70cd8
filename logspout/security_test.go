package logspout_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"

	"testing"
	"time"

	docker "github.com/fsouza/go-dockerclient"

	"github.com/deis/dataplane/logspout"
	"github.com/deis/dataplane/pkg/testenv"
)

func postRoute(t *testing.T, base, uri string) (int, string) {
	t.Helper()
	body, _ := json.Marshal(map[string]string{"uri": uri})
	resp, err := http.Post(base+"/routes", "application/json", bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// TestH2DeadAPIRouteDoesNotHaltShipping: a route added through the API to a
// destination that accepts but never reads used to fill its queue and then
// stop every container's shipping to the platform logger. Now API routes
// drop (and count) what they cannot queue: the logger gets every line.
// Also: the number of API routes is capped (409), and GET /routes shows
// route URLs without their credentials (L11).
func TestH2DeadAPIRouteDoesNotHaltShipping(t *testing.T) {
	t.Parallel()
	cli := testenv.Docker(t)
	e := testenv.StartEtcd(t)
	lg := startLogger(t, e)
	// A destination that accepts connections and never reads.
	sink, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sink.Close() })
	go func() {
		var held []net.Conn
		for {
			c, err := sink.Accept()
			if err != nil {
				for _, c := range held {
					c.Close()
				}
				return
			}
			held = append(held, c)
		}
	}()
	l, err := logspout.New(logspout.Config{Host: "127.0.0.1", StateDir: t.TempDir(), MaxRoutes: 2}, cli, e.Client(), slog.New(slog.DiscardHandler), nil)
	if err != nil {
		t.Fatal(err)
	}
	runShipper(t, l)
	api := httptest.NewServer(http.HandlerFunc(l.ServeRoutes))
	t.Cleanup(api.Close)
	// One route nothing answers on, one that accepts and never reads.
	if code, body := postRoute(t, api.URL, "syslog+tcp://127.0.0.1:1"); code != 201 {
		t.Fatalf("POST /routes: %d %s", code, body)
	}
	if code, body := postRoute(t, api.URL, "syslog+tcp://papertrail:s3cret@"+sink.Addr().String()+"?token=abc123&filter.name=nobody"); code != 201 {
		t.Fatalf("POST /routes: %d %s", code, body)
	}
	if code, body := postRoute(t, api.URL, "syslog+tcp://"+sink.Addr().String()); code != http.StatusConflict {
		t.Fatalf("third route with --max-routes 2: %d %s, want 409", code, body)
	}
	resp, err := http.Get(api.URL + "/routes")
	if err != nil {
		t.Fatal(err)
	}
	listed, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if bytes.Contains(listed, []byte("s3cret")) || bytes.Contains(listed, []byte("abc123")) {
		t.Fatalf("GET /routes shows credentials: %s", listed)
	}

	// More lines than a route's queue (10,000) holds.
	const n = 15000
	app := fmt.Sprintf("spew%d", rand.IntN(1e9))
	testenv.RunContainer(t, cli, docker.CreateContainerOptions{Name: app + "_v1.web.1", Config: &docker.Config{Cmd: []string{"sh", "-c", fmt.Sprintf("seq 1 %d | sed 's/^/line /'; sleep 3600", n)}}})
	testenv.Eventually(t, 60*time.Second, func() bool { return len(lines(t, lg, app)) >= n }, "the logger did not get all %d lines while an API route was stuck", n)
	requireOnce(t, texts(lines(t, lg, app)), n, "logger, with a stuck API route")
}

// TestM10BadRoutesFileDoesNotStopLogspout: an empty or cut routes.json (a
// crash during a rename without fsync) used to make New fail, so logspout
// crash-looped and the host shipped nothing. Now it starts without those
// routes and moves the file aside.
func TestM10BadRoutesFileDoesNotStopLogspout(t *testing.T) {
	t.Parallel()
	e := testenv.StartEtcd(t)
	for _, bad := range []string{"", `[{"id":"abc","uri":"syslog+tcp://10.0.0.1:5`, "not json"} {
		state := t.TempDir()
		if err := os.WriteFile(filepath.Join(state, "routes.json"), []byte(bad), 0o600); err != nil {
			t.Fatal(err)
		}
		l, err := logspout.New(logspout.Config{Host: "127.0.0.1", StateDir: state}, nil, e.Client(), slog.New(slog.DiscardHandler), nil)
		if err != nil {
			t.Fatalf("routes.json %q: New failed: %v", bad, err)
		}
		if n := len(l.Routes()); n != 0 {
			t.Fatalf("routes.json %q: %d routes loaded", bad, n)
		}
		aside, _ := filepath.Glob(filepath.Join(state, "routes.json.bad-*"))
		if len(aside) != 1 {
			t.Fatalf("routes.json %q: not moved aside (%v)", bad, aside)
		}
		if b, _ := os.ReadFile(aside[0]); string(b) != bad {
			t.Fatalf("the file moved aside lost its content: %q", b)
		}
	}
}

func runShipper(t *testing.T, l *logspout.Logspout) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { _ = l.Run(ctx); close(done) }()
	t.Cleanup(func() {
		cancel()
		select {
		case <-done:
		case <-time.After(15 * time.Second):
			t.Error("logspout did not stop")
		}
	})
}
