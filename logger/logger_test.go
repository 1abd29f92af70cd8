package logger_test

import (
	"bufio"
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/deis/dataplane/logger"
	"github.com/deis/dataplane/pkg/daemon"
	"github.com/deis/dataplane/pkg/testenv"
	"github.com/deis/dataplane/pkg/testenv/testcert"
)

type harness struct {
	t    *testing.T
	l    *logger.Logger
	api  string // the HTTP API (logger.NewAdmin, as main runs it)
	e    *testenv.Etcd
	stop func()
}

func start(t *testing.T, e *testenv.Etcd, root string) *harness {
	return startRotating(t, e, root, 4096)
}

func startRotating(t *testing.T, e *testenv.Etcd, root string, rotateBytes int64) *harness {
	return startWith(t, e, logger.Config{
		SyslogAddr: "127.0.0.1:0", Host: "127.0.0.1", LogRoot: root,
		RotateBytes: rotateBytes, RotateKeep: 2,
	})
}

func startWith(t *testing.T, e *testenv.Etcd, cfg logger.Config) *harness {
	t.Helper()
	l, err := logger.New(cfg, e.Client(), slog.New(slog.DiscardHandler), daemon.NewMetrics())
	if err != nil {
		t.Fatal(err)
	}
	admin, err := logger.NewAdmin(l, "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { _ = admin.Run(ctx) }()
	go func() { _ = admin.Auth.Watch(ctx, e.Client()) }()
	go func() { _ = l.Run(ctx); close(done) }()
	var once sync.Once
	h := &harness{t: t, l: l, api: admin.Addr(), e: e}
	h.stop = func() {
		once.Do(func() {
			cancel()
			select {
			case <-done:
			case <-time.After(10 * time.Second):
				t.Error("logger did not stop")
			}
		})
	}
	t.Cleanup(h.stop)
	return h
}

func (h *harness) get(path string) (int, string) {
	h.t.Helper()
	resp, err := http.Get("http://" + h.api + path)
	if err != nil {
		h.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func (h *harness) waitLines(app string, n int) []string {
	h.t.Helper()
	var lines []string
	testenv.Eventually(h.t, 10*time.Second, func() bool {
		code, body := h.get(fmt.Sprintf("/logs/%s?log_lines=%d", app, n+10))
		if code != 200 {
			return false
		}
		lines = strings.Split(strings.TrimSuffix(body, "\n"), "\n")
		return len(lines) >= n
	}, "app %s never had %d lines", app, n)
	return lines
}

func dialTCP(t *testing.T, addr string) net.Conn {
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func TestFramingsAndFormats(t *testing.T) {
	t.Parallel()
	e := testenv.StartEtcd(t)
	h := start(t, e, t.TempDir())
	octet := dialTCP(t, h.l.Addr("syslog"))
	for i := range 3 {
		m := fmt.Sprintf("<14>1 2026-11-23T03:00:0%dZ h1 shop web.1 - - octet %d", i, i)
		fmt.Fprintf(octet, "%d %s", len(m), m)
	}
	nl := dialTCP(t, h.l.Addr("syslog"))
	fmt.Fprintf(nl, "<13>Nov 23 03:00:00 h2 shop[cmd.1]: rfc3164 line\n")
	fmt.Fprintf(nl, "2026-11-23T03:00:05Z shop[web.2]: deis form\n")
	udp, err := net.Dial("udp", h.l.Addr("udp"))
	if err != nil {
		t.Fatal(err)
	}
	defer udp.Close()
	fmt.Fprintf(udp, "<14>1 2026-11-23T03:00:06Z h3 shop web.3 - - over udp")
	lines := h.waitLines("shop", 6)
	joined := strings.Join(lines, "\n")
	for _, want := range []string{
		"2026-11-23T03:00:00Z shop[web.1]: octet 0", "shop[web.1]: octet 2", "shop[cmd.1]: rfc3164 line",
		"2026-11-23T03:00:05Z shop[web.2]: deis form", "shop[web.3]: over udp",
	} {
		if !strings.Contains(joined, want) {
			t.Errorf("stored lines lack %q:\n%s", want, joined)
		}
	}
	if code, _ := h.get("/logs/nobody"); code != 204 {
		t.Errorf("app without logs: %d, want 204", code)
	}
	for _, bad := range []string{"/logs/Bad_App", "/logs/shop?log_lines=x", "/logs/shop?log_lines=0", "/shop?follow=maybe"} {
		if code, _ := h.get(bad); code != 400 {
			t.Errorf("GET %s: %d, want 400", bad, code)
		}
	}
	code, body := h.get("/shop?log_lines=2")
	if code != 200 || strings.Count(body, "\n") != 2 {
		t.Errorf("/shop?log_lines=2: %d %q", code, body)
	}
	req, _ := http.NewRequest(http.MethodDelete, "http://"+h.api+"/shop", nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil || resp.StatusCode != 204 {
		t.Fatalf("DELETE: %v %v", resp, err)
	}
	if code, _ := h.get("/logs/shop"); code != 204 {
		t.Errorf("after DELETE: %d, want 204", code)
	}
	// The logger announces where it listens.
	testenv.Eventually(t, 5*time.Second, func() bool {
		r, err := e.Client().Get(context.Background(), "/deis/logs/port")
		_, port, _ := net.SplitHostPort(h.l.Addr("syslog"))
		return err == nil && len(r.Kvs) == 1 && string(r.Kvs[0].Value) == port
	}, "/deis/logs/port not announced")
}

func TestBigMessagesAndGarbage(t *testing.T) {
	t.Parallel()
	e := testenv.StartEtcd(t)
	h := start(t, e, t.TempDir())
	c := dialTCP(t, h.l.Addr("syslog"))
	big := strings.Repeat("x", 64<<10)
	m := "<14>1 2026-11-23T03:00:00Z h big web.1 - - " + big
	fmt.Fprintf(c, "%d %s", len(m), m)
	// Malformed messages mixed with good ones: every good one is stored,
	// the bad ones are kept raw under the sender's address.
	w := bufio.NewWriter(dialTCP(t, h.l.Addr("syslog")))
	for i := range 200 {
		fmt.Fprintf(w, "<14>1 2026-11-23T03:00:00Z h mixed web.1 - - good %d\n", i)
		fmt.Fprintf(w, "\x00\x01 garbage %d <<<>>>\n", i)
	}
	w.Flush()
	lines := h.waitLines("big", 1)
	if !strings.HasSuffix(lines[0], big) {
		t.Fatalf("64 KiB message not intact (len %d)", len(lines[0]))
	}
	good := h.waitLines("mixed", 200)
	if len(good) != 200 {
		t.Fatalf("mixed: %d good lines stored, want 200", len(good))
	}
	raw := h.waitLines("127-0-0-1", 200)
	if len(raw) != 200 || !strings.Contains(raw[0], "garbage") {
		t.Fatalf("raw lines: %d %q", len(raw), raw[0])
	}
	// Broken framing closes only that connection.
	bad := dialTCP(t, h.l.Addr("syslog"))
	fmt.Fprintf(bad, "12 short")
	bad.(*net.TCPConn).CloseWrite()
	fmt.Fprintf(c, "%d %s", len("<14>1 - h big web.1 - - after"), "<14>1 - h big web.1 - - after")
	testenv.Eventually(t, 5*time.Second, func() bool {
		_, body := h.get("/logs/big?log_lines=5")
		return strings.Contains(body, "big[web.1]: after")
	}, "healthy connection affected by another's bad framing")
}

func TestUtilLinuxLoggerAndFollow(t *testing.T) {
	t.Parallel()
	if _, err := exec.LookPath("logger"); err != nil {
		t.Skip("util-linux logger not installed (scripts/setup.sh installs bsdutils)")
	}
	e := testenv.StartEtcd(t)
	h := start(t, e, t.TempDir())
	// Follow first, then send with the real logger(1) client.
	resp, err := http.Get("http://" + h.api + "/logs/ulapp?follow=true")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	host, port, _ := net.SplitHostPort(h.l.Addr("syslog"))
	for _, args := range [][]string{
		{"--tcp", "--octet-count", "--rfc5424", "-t", "ulapp", "via tcp octet"},
		{"--tcp", "--rfc5424", "-t", "ulapp", "via tcp newline"},
		{"--udp", "--rfc3164", "-t", "ulapp", "via udp 3164"},
	} {
		cmd := exec.Command("logger", append([]string{"--server", host, "--port", port}, args...)...)
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("logger %v: %v %s", args, err, out)
		}
	}
	r := bufio.NewReader(resp.Body)
	got := map[string]bool{}
	deadline := time.Now().Add(10 * time.Second)
	for len(got) < 3 && time.Now().Before(deadline) {
		line, err := r.ReadString('\n')
		if err != nil {
			t.Fatal(err)
		}
		for _, w := range []string{"via tcp octet", "via tcp newline", "via udp 3164"} {
			if strings.Contains(line, " ulapp") && strings.Contains(line, w) {
				got[w] = true
			}
		}
	}
	if len(got) != 3 {
		t.Fatalf("follow stream saw %v", got)
	}
	// And the real curl gets the stored lines.
	if out, err := exec.Command("curl", "-sf", "http://"+h.api+"/ulapp?log_lines=3").Output(); err != nil || strings.Count(string(out), " ulapp") != 3 {
		t.Fatalf("curl: %v %q", err, out)
	}
}

func TestFileStoreRotationRestartAndSwitch(t *testing.T) {
	t.Parallel()
	e := testenv.StartEtcd(t)
	root := t.TempDir()
	h := start(t, e, root)
	e.Put("/deis/logs/storageAdapterType", "file")
	testenv.Eventually(t, 5*time.Second, func() bool { return h.l.Store().Kind() == "file" }, "file adapter not applied")
	c := dialTCP(t, h.l.Addr("syslog"))
	for i := range 300 { // ~20 KiB: several rotations of 4 KiB
		m := fmt.Sprintf("<14>1 - h files web.1 - - line %03d", i)
		fmt.Fprintf(c, "%d %s", len(m), m)
	}
	testenv.Eventually(t, 10*time.Second, func() bool {
		_, body := h.get("/logs/files?log_lines=50")
		return strings.HasSuffix(strings.TrimSpace(body), "line 299")
	}, "line 299 never stored")
	if _, err := os.Stat(filepath.Join(root, "files.log.1")); err != nil {
		t.Fatalf("no rotation happened: %v", err)
	}
	if _, err := os.Stat(filepath.Join(root, "files.log.3")); err == nil {
		t.Fatal("more rotated files kept than --rotate-keep")
	}
	// Invalid adapter value: the file adapter stays.
	e.Put("/deis/logs/storageAdapterType", "tape")
	time.Sleep(300 * time.Millisecond)
	if h.l.Store().Kind() != "file" {
		t.Fatalf("invalid value replaced the adapter: %s", h.l.Store().Kind())
	}
	// Restart: lines are still readable.
	e.Put("/deis/logs/storageAdapterType", "file")
	h.stop()
	h2 := startRotating(t, e, root, 8<<20) // no rotation while counting below
	testenv.Eventually(t, 5*time.Second, func() bool { return h2.l.Store().Kind() == "file" }, "file adapter not applied after restart")
	if got := h2.waitLines("files", 50); !strings.HasSuffix(got[len(got)-1], "line 299") {
		t.Fatalf("after restart last line %q", got[len(got)-1])
	}
	// Switch to memory under load: every line lands in one store or the other.
	c2 := dialTCP(t, h2.l.Addr("syslog"))
	done := make(chan struct{})
	go func() {
		defer close(done)
		for i := range 2000 {
			m := fmt.Sprintf("<14>1 - h switch web.1 - - n%04d", i)
			fmt.Fprintf(c2, "%d %s", len(m), m)
		}
	}()
	e.Put("/deis/logs/storageAdapterType", "memory:5000")
	<-done
	testenv.Eventually(t, 5*time.Second, func() bool { return h2.l.Store().Kind() == "memory:5000" }, "memory adapter not applied")
	var fileLines []byte
	total := 0
	testenv.Eventually(t, 5*time.Second, func() bool {
		code, body := h2.get("/logs/switch?log_lines=5000")
		n := 0
		if code == 200 {
			n = strings.Count(body, "\n")
		}
		fileLines, _ = os.ReadFile(filepath.Join(root, "switch.log"))
		total = n + strings.Count(string(fileLines), "\n")
		return total == 2000
	}, "lines lost across the adapter switch: %d of 2000", total)
}

// TestDrainOutage runs a drain to a TCP listener that goes away and comes
// back: every line queued meanwhile arrives. (TLS drains: sender's tests.)
func TestDrainOutage(t *testing.T) {
	t.Parallel()
	e := testenv.StartEtcd(t)
	h := start(t, e, t.TempDir())
	plainAddr := testenv.FreeAddrOn(t, "127.0.0.72") // its own: the sink leaves its port for 10 s
	plain := newSink(t, plainAddr, nil)
	e.Put("/deis/logs/drain", "syslog+tcp://"+plainAddr)
	c := dialTCP(t, h.l.Addr("syslog"))
	send := func(from, to int) {
		for i := from; i < to; i++ {
			m := fmt.Sprintf("<14>1 - h drained web.1 - - msg %04d", i)
			fmt.Fprintf(c, "%d %s", len(m), m)
		}
	}
	time.Sleep(500 * time.Millisecond) // drains configured
	send(0, 100)
	testenv.Eventually(t, 5*time.Second, func() bool { return plain.count("drained") >= 100 }, "drain got %d of 100", plain.count("drained"))
	plain.close()
	send(100, 200) // while the drain endpoint is away, for 10 s
	time.Sleep(10 * time.Second)
	plain = newSink(t, plainAddr, nil)
	ok := false
	for deadline := time.Now().Add(15 * time.Second); time.Now().Before(deadline) && !ok; time.Sleep(50 * time.Millisecond) {
		ok = plain.count("drained") >= 100
	}
	if !ok {
		_, m := h.get("/metrics")
		for _, l := range strings.Split(m, "\n") {
			if strings.HasPrefix(l, "logger_") {
				t.Log(l)
			}
		}
		t.Fatalf("after the outage the drain got %d of 100 queued lines", plain.count("drained"))
	}
}

// sink is a syslog TCP receiver counting messages per app.
type sink struct {
	ln    net.Listener
	addr  string
	mu    sync.Mutex
	msgs  []string
	conns []net.Conn
}

func newSink(t *testing.T, addr string, cfg *tls.Config) *sink {
	var ln net.Listener
	var err error
	for i := 0; i < 50; i++ {
		if cfg != nil {
			ln, err = tls.Listen("tcp", addr, cfg)
		} else {
			ln, err = net.Listen("tcp", addr)
		}
		if err == nil {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if err != nil {
		t.Fatal(err)
	}
	s := &sink{ln: ln, addr: ln.Addr().String()}
	t.Cleanup(s.close)
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			s.mu.Lock()
			s.conns = append(s.conns, c)
			s.mu.Unlock()
			go func() {
				defer c.Close()
				r := bufio.NewReader(c)
				for {
					var n int
					if _, err := fmt.Fscanf(r, "%d ", &n); err != nil {
						return
					}
					buf := make([]byte, n)
					if _, err := io.ReadFull(r, buf); err != nil {
						return
					}
					s.mu.Lock()
					s.msgs = append(s.msgs, string(buf))
					s.mu.Unlock()
				}
			}()
		}
	}()
	return s
}

// close stops the receiver: listener and every open connection, as a
// crashed endpoint would.
func (s *sink) close() {
	s.ln.Close()
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, c := range s.conns {
		c.Close()
	}
}

func (s *sink) count(app string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := 0
	for _, m := range s.msgs {
		if strings.Contains(m, " "+app+" ") {
			n++
		}
	}
	return n
}

// TestTLSInput sends syslog over TLS to --syslog-tls-addr with a certificate
// signed by a CA made here.
func TestTLSInput(t *testing.T) {
	t.Parallel()
	e := testenv.StartEtcd(t)
	ca := testcert.NewCA(t)
	certPEM, keyPEM := ca.IssueIP(t, "127.0.0.1")
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "cert.pem"), []byte(certPEM), 0o600)
	os.WriteFile(filepath.Join(dir, "key.pem"), []byte(keyPEM), 0o600)
	h := startWith(t, e, logger.Config{
		SyslogAddr: "127.0.0.1:0", SyslogTLSAddr: "127.0.0.1:0", Host: "127.0.0.1",
		TLSCert: filepath.Join(dir, "cert.pem"), TLSKey: filepath.Join(dir, "key.pem"), LogRoot: dir,
	})
	c, err := tls.Dial("tcp", h.l.Addr("tls"), &tls.Config{RootCAs: ca.Pool, ServerName: "127.0.0.1"})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	m := "<14>1 - h secure web.1 - - over tls"
	fmt.Fprintf(c, "%d %s", len(m), m)
	if lines := h.waitLines("secure", 1); !strings.HasSuffix(lines[0], "secure[web.1]: over tls") {
		t.Fatalf("TLS line %q", lines[0])
	}
}
