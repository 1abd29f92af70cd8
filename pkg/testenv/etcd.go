// Package testenv gives integration tests the real parts they run against:
// an embedded etcd server on free loopback ports that can be stopped and
// restarted mid-test, and a Docker engine with a locally imported busybox
// image. Nothing here is a mock.
package testenv

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/server/v3/embed"
	"go.uber.org/zap"

	"github.com/deis/dataplane/pkg/etcdutil"
)

// Etcd is a real etcd server embedded in the test process.
type Etcd struct {
	t        testing.TB
	dir      string
	client   url.URL
	peer     url.URL
	mu       sync.Mutex
	server   *embed.Etcd
	Endpoint string // http://127.0.0.1:port, stable across restarts
}

// StartEtcd starts an embedded etcd on free loopback ports and stops it when
// the test ends. Under -short (make test-short) the test is skipped.
func StartEtcd(t testing.TB) *Etcd {
	t.Helper()
	if testing.Short() {
		t.Skip("needs etcd: skipped by -short")
	}
	e := &Etcd{t: t, dir: t.TempDir()}
	// FreeAddr's ports are free when chosen; a parallel test (or Docker
	// publishing a container) may take one before etcd binds it: then
	// choose again. Restarts keep the ports (the Endpoint stays).
	var err error
	for attempt := 0; attempt < 5; attempt++ {
		e.client = url.URL{Scheme: "http", Host: FreeAddr(t)}
		e.peer = url.URL{Scheme: "http", Host: FreeAddr(t)}
		e.Endpoint = e.client.String()
		if err = e.startOnce(); err == nil || !addrInUse(err) {
			break
		}
		e.dir = t.TempDir() // a fresh data directory for the next try
	}
	if err != nil {
		t.Fatalf("start embedded etcd: %v", err)
	}
	t.Cleanup(e.Stop)
	return e
}

func addrInUse(err error) bool {
	return errors.Is(err, syscall.EADDRINUSE) || strings.Contains(err.Error(), "address already in use")
}

func (e *Etcd) start() error { return e.startWithin(10 * time.Second) }

func (e *Etcd) startOnce() error { return e.startWithin(0) }

// startWithin starts etcd, retrying a bind that fails for up to retry
// (after a restart the old socket can linger briefly).
func (e *Etcd) startWithin(retry time.Duration) error {
	cfg := embed.NewConfig()
	cfg.Name = "test"
	cfg.Dir = e.dir
	cfg.ListenClientUrls = []url.URL{e.client}
	cfg.AdvertiseClientUrls = []url.URL{e.client}
	cfg.ListenPeerUrls = []url.URL{e.peer}
	cfg.AdvertisePeerUrls = []url.URL{e.peer}
	cfg.InitialCluster = cfg.Name + "=" + e.peer.String()
	cfg.LogLevel = "error"
	cfg.ZapLoggerBuilder = embed.NewZapLoggerBuilder(zap.NewNop())
	var (
		srv *embed.Etcd
		err error
	)
	for deadline := time.Now().Add(retry); ; {
		srv, err = embed.StartEtcd(cfg)
		if err == nil || time.Now().After(deadline) {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if err != nil {
		return err
	}
	select {
	case <-srv.Server.ReadyNotify():
	case <-time.After(30 * time.Second):
		srv.Close()
		return fmt.Errorf("etcd not ready after 30s")
	}
	e.mu.Lock()
	e.server = srv
	e.mu.Unlock()
	return nil
}

// Stop stops the server, keeping its data for Restart. Safe to call twice.
func (e *Etcd) Stop() {
	e.mu.Lock()
	srv := e.server
	e.server = nil
	e.mu.Unlock()
	if srv != nil {
		srv.Close()
	}
}

// Restart stops the server and starts it again on the same ports and data.
func (e *Etcd) Restart() {
	e.t.Helper()
	e.Stop()
	if err := e.start(); err != nil {
		e.t.Fatalf("restart embedded etcd: %v", err)
	}
}

// Start starts a stopped server again (after Stop) on the same ports.
func (e *Etcd) Start() {
	e.t.Helper()
	if err := e.start(); err != nil {
		e.t.Fatalf("start embedded etcd: %v", err)
	}
}

// Client returns a new client closed at the end of the test.
func (e *Etcd) Client() *clientv3.Client {
	e.t.Helper()
	cli, err := etcdutil.Connect([]string{e.Endpoint})
	if err != nil {
		e.t.Fatalf("etcd client: %v", err)
	}
	e.t.Cleanup(func() { cli.Close() })
	return cli
}

// Put writes key=value or fails the test.
func (e *Etcd) Put(key, value string) {
	e.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	cli := e.Client()
	if _, err := cli.Put(ctx, key, value); err != nil {
		e.t.Fatalf("etcd put %s: %v", key, err)
	}
}

// Compact compacts the history up to the current revision.
func (e *Etcd) Compact() {
	e.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	cli := e.Client()
	resp, err := cli.Get(ctx, "compact-probe")
	if err != nil {
		e.t.Fatalf("etcd get for compaction: %v", err)
	}
	if _, err := cli.Compact(ctx, resp.Header.Revision, clientv3.WithCompactPhysical()); err != nil {
		e.t.Fatalf("etcd compact: %v", err)
	}
}

// FreeAddr returns a 127.0.0.1:port that was free when asked.
func FreeAddr(t testing.TB) string {
	t.Helper()
	return FreeAddrOn(t, "127.0.0.1")
}

// FreeAddrOn is FreeAddr on another loopback address (127.0.0.0/8). A test
// that stops a server and starts it again on the same port uses one of its
// own: between the two, a parallel test binding 127.0.0.1:0, or Docker
// publishing a container there, could take the port.
func FreeAddrOn(t testing.TB, ip string) string {
	t.Helper()
	ln, err := net.Listen("tcp", net.JoinHostPort(ip, "0"))
	if err != nil {
		t.Fatalf("find free port: %v", err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// Eventually polls cond every 20ms until it is true or timeout passes, then
// fails the test with msg.
func Eventually(t testing.TB, timeout time.Duration, cond func() bool, msg string, args ...any) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("after %v: "+msg, append([]any{timeout}, args...)...)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// Getenv-style switch shared by the Docker helpers.
func requireDocker() bool { return os.Getenv("REQUIRE_DOCKER") == "1" }
