package tcpproxy_test

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/pem"
	"io"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	gliderssh "github.com/gliderlabs/ssh"
	gossh "golang.org/x/crypto/ssh"

	"github.com/deis/dataplane/router/table"
	"github.com/deis/dataplane/router/tcpproxy"
)

func serve(t *testing.T, target func() *table.Target) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := tcpproxy.New(target, slog.New(slog.DiscardHandler), nil)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { _ = s.Serve(ctx, ln); close(done) }()
	t.Cleanup(func() {
		cancel()
		sctx, c2 := context.WithTimeout(context.Background(), 2*time.Second)
		defer c2()
		_ = s.Shutdown(sctx)
		<-done
	})
	return ln.Addr().String()
}

// TestRealSSHThroughProxy runs the OpenSSH client through the proxy to an
// SSH server (gliderlabs/ssh with a generated host key), as `git push` to
// the router's port 2222 does, and checks output and exit status.
func TestRealSSHThroughProxy(t *testing.T) {
	t.Parallel()
	if _, err := exec.LookPath("ssh"); err != nil {
		t.Skip("OpenSSH client not installed (scripts/setup.sh installs openssh-client)")
	}
	_, hostPriv, _ := ed25519.GenerateKey(rand.Reader)
	signer, err := gossh.NewSignerFromKey(hostPriv)
	if err != nil {
		t.Fatal(err)
	}
	clientPub, clientPriv, _ := ed25519.GenerateKey(rand.Reader)
	clientSSHPub, _ := gossh.NewPublicKey(clientPub)
	srv := &gliderssh.Server{
		Handler: func(s gliderssh.Session) {
			io.WriteString(s, "pong "+strings.Join(s.Command(), " ")+"\n")
			_ = s.Exit(3)
		},
		PublicKeyHandler: func(_ gliderssh.Context, key gliderssh.PublicKey) bool {
			return gliderssh.KeysEqual(key, clientSSHPub)
		},
	}
	srv.AddHostKey(signer)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { srv.Close() })

	proxy := serve(t, func() *table.Target {
		return &table.Target{Addr: ln.Addr().String(), ConnectTimeout: time.Second, IdleTimeout: 10 * time.Second}
	})
	dir := t.TempDir()
	block, err := gossh.MarshalPrivateKey(clientPriv, "")
	if err != nil {
		t.Fatal(err)
	}
	keyFile := filepath.Join(dir, "id")
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(block), 0o600); err != nil {
		t.Fatal(err)
	}
	host, port, _ := net.SplitHostPort(proxy)
	cmd := exec.Command("ssh", "-p", port, "-i", keyFile, "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null",
		"-o", "BatchMode=yes", "-o", "LogLevel=ERROR", "git@"+host, "ping", "hello")
	out, err := cmd.Output()
	ee, ok := err.(*exec.ExitError)
	if !ok || ee.ExitCode() != 3 {
		t.Fatalf("ssh through the proxy: exit %v, want status 3 passed through", err)
	}
	if string(out) != "pong ping hello\n" {
		t.Fatalf("ssh output %q", out)
	}
}

func TestHalfCloseIdleAndNoTarget(t *testing.T) {
	t.Parallel()
	// An echo server that answers after its input ends: needs half-close.
	echo, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer echo.Close()
	go func() {
		for {
			c, err := echo.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				data, _ := io.ReadAll(c)
				c.Write(append([]byte("got:"), data...))
			}()
		}
	}()
	var target atomic.Pointer[table.Target]
	proxy := serve(t, target.Load)

	// No builder announced: the connection is closed.
	c, err := net.Dial("tcp", proxy)
	if err != nil {
		t.Fatal(err)
	}
	_ = c.SetReadDeadline(time.Now().Add(3 * time.Second))
	if n, err := c.Read(make([]byte, 1)); err == nil || n != 0 {
		t.Fatal("connection without a target stayed open")
	}
	c.Close()

	target.Store(&table.Target{Addr: echo.Addr().String(), ConnectTimeout: time.Second, IdleTimeout: 300 * time.Millisecond})
	c, err = net.Dial("tcp", proxy)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.Write([]byte("data"))
	c.(*net.TCPConn).CloseWrite()
	_ = c.SetReadDeadline(time.Now().Add(3 * time.Second))
	got, _ := io.ReadAll(c)
	if string(got) != "got:data" {
		t.Fatalf("half-close: got %q", got)
	}

	// Idle: a silent connection is closed after the idle timeout.
	c2, err := net.Dial("tcp", proxy)
	if err != nil {
		t.Fatal(err)
	}
	defer c2.Close()
	start := time.Now()
	_ = c2.SetReadDeadline(time.Now().Add(5 * time.Second))
	_, _ = io.ReadAll(c2)
	if el := time.Since(start); el > 3*time.Second {
		t.Fatalf("idle connection closed after %v, want about 300ms", el)
	}
}

// TestPipeIdleIsBothWays: a stream where only one side talks stays open
// past the idle timeout; silence both ways closes both connections.
func TestPipeIdleIsBothWays(t *testing.T) {
	t.Parallel()
	pair := func() (net.Conn, net.Conn) {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer ln.Close()
		c, err := net.Dial("tcp", ln.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		s, err := ln.Accept()
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close(); s.Close() })
		return c, s
	}
	client, proxyIn := pair()
	proxyOut, app := pair()
	done := make(chan struct{})
	go func() { tcpproxy.Pipe(proxyIn, proxyOut, 300*time.Millisecond); close(done) }()
	// The app pushes every 100 ms for 1 s; the client never sends.
	got := make(chan int, 1)
	go func() {
		buf := make([]byte, 64)
		n := 0
		_ = client.SetReadDeadline(time.Now().Add(5 * time.Second))
		for n < 10 {
			k, err := client.Read(buf)
			n += k
			if err != nil {
				break
			}
		}
		got <- n
	}()
	for range 10 {
		if _, err := app.Write([]byte("x")); err != nil {
			t.Fatalf("the pipe closed while the app was pushing: %v", err)
		}
		time.Sleep(100 * time.Millisecond)
	}
	if n := <-got; n != 10 {
		t.Fatalf("client got %d of 10 pushed bytes", n)
	}
	select {
	case <-done:
	case <-time.After(3 * time.Second):
		t.Fatal("silence both ways did not close the pipe")
	}
}
