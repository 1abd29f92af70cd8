package daemon_test

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/deis/dataplane/pkg/daemon"
	"github.com/deis/dataplane/pkg/health"
	"github.com/deis/dataplane/pkg/testenv"
)

func status(t *testing.T, url, token string) int {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, url, nil)
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode
}

// TestInternalAPIsNeedTheTokenOrLoopback: without a token only loopback
// clients pass (app containers come through the Docker bridge); with one,
// everyone needs it; /healthz stays open for load balancers.
func TestInternalAPIsNeedTheTokenOrLoopback(t *testing.T) {
	t.Parallel()
	open := http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write([]byte("secret logs")) })

	noToken := daemon.NewAuth("", slog.New(slog.DiscardHandler), nil)
	bridge := httptest.NewRequest(http.MethodGet, "/routes", nil)
	bridge.RemoteAddr = "172.17.0.5:40000" // an app container through docker0
	if noToken.Allowed(bridge) {
		t.Fatal("a non-loopback client passed while no token is set")
	}
	for _, addr := range []string{"127.0.0.1:1", "127.9.9.9:1", "[::1]:1"} {
		r := httptest.NewRequest(http.MethodGet, "/routes", nil)
		r.RemoteAddr = addr
		if !noToken.Allowed(r) {
			t.Errorf("loopback client %s refused while no token is set", addr)
		}
	}
	rec := httptest.NewRecorder()
	noToken.Wrap(open).ServeHTTP(rec, bridge)
	if rec.Code != http.StatusUnauthorized || strings.Contains(rec.Body.String(), "secret") {
		t.Fatalf("refused request: got %d %q", rec.Code, rec.Body.String())
	}

	var h health.Registry
	a, err := daemon.NewAdmin("127.0.0.1:0", &h, daemon.NewMetrics(), daemon.NewAuth("s3cret", slog.New(slog.DiscardHandler), nil))
	if err != nil {
		t.Fatal(err)
	}
	a.Mux.Handle("/logs", a.Guard(open))
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() { _ = a.Run(ctx) }()
	base := "http://" + a.Addr()
	for _, tc := range []struct {
		path, token string
		want        int
	}{
		{"/logs", "", 401}, {"/logs", "wrong", 401}, {"/logs", "s3cret", 200},
		{"/metrics", "", 401}, {"/metrics", "s3cret", 200},
		{"/healthz", "", 200},
	} {
		if got := status(t, base+tc.path, tc.token); got != tc.want {
			t.Errorf("GET %s with token %q: %d, want %d", tc.path, tc.token, got, tc.want)
		}
	}
}

// TestAPITokenFromEtcd: the token set in etcd applies live; a flag wins.
func TestAPITokenFromEtcd(t *testing.T) {
	t.Parallel()
	e := testenv.StartEtcd(t)
	auth := daemon.NewAuth("", slog.New(slog.DiscardHandler), nil)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- auth.Watch(ctx, e.Client()) }()
	e.Put("/deis/platform/apiToken", "from-etcd")
	testenv.Eventually(t, 5*time.Second, func() bool { return auth.Token() == "from-etcd" }, "etcd token not picked up")
	r := httptest.NewRequest(http.MethodGet, "/", nil)
	r.RemoteAddr = "127.0.0.1:1"
	if auth.Allowed(r) {
		t.Fatal("a loopback client without the token passed once a token is set")
	}
	r.Header.Set("Authorization", "Bearer from-etcd")
	if !auth.Allowed(r) {
		t.Fatal("the etcd token was refused")
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Watch returned %v after cancel", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Watch did not return after cancel")
	}
	if got := daemon.NewAuth("flag", slog.New(slog.DiscardHandler), nil).Token(); got != "flag" {
		t.Fatalf("flag token = %q", got)
	}
}

// TestL12InternalServersCloseIdleConnections: the admin and log API
// servers set only ReadHeaderTimeout, so Go never closed an idle keep-alive
// connection. Every internal server comes from NewServer, with
// IdleTimeout; shortened here, the server closes an idle connection.
func TestL12InternalServersCloseIdleConnections(t *testing.T) {
	t.Parallel()
	srv := daemon.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write([]byte("ok")) }))
	if srv.IdleTimeout != daemon.IdleTimeout || srv.ReadHeaderTimeout != daemon.ReadHeaderTimeout || srv.IdleTimeout <= 0 {
		t.Fatalf("NewServer: idle %v, read header %v", srv.IdleTimeout, srv.ReadHeaderTimeout)
	}
	srv.IdleTimeout = 500 * time.Millisecond
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = srv.Serve(ln) }()
	defer srv.Close()
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	fmt.Fprint(c, "GET / HTTP/1.1\r\nHost: x\r\n\r\n")
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := http.ReadResponse(bufio.NewReader(c), nil); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	if _, err := io.ReadAll(c); err != nil {
		t.Fatalf("idle keep-alive connection still open after %v: %v", time.Since(start), err)
	}
}
