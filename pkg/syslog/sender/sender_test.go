package sender

import (
	"bufio"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"fmt"
	"io"
	"log/slog"
	"math/big"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/deis/dataplane/pkg/syslog/format"
	"github.com/deis/dataplane/pkg/syslog/framing"
	"github.com/deis/dataplane/pkg/testenv"
)

func TestParseURL(t *testing.T) {
	t.Parallel()
	c, err := ParseURL("syslog+tls://logs5.papertrailapp.com:12345?framing=newline&format=rfc3164&filter.name=web*")
	if err != nil || c.Transport != TLS || c.Framing != framing.NonTransparent || c.Format != format.RFC3164 || c.Addr != "logs5.papertrailapp.com:12345" || c.Params.Get("filter.name") != "web*" || c.TLS.ServerName != "logs5.papertrailapp.com" {
		t.Fatalf("ParseURL = %+v, %v", c, err)
	}
	if c, _ := ParseURL("syslog://127.0.0.1:514"); c.Transport != UDP || c.MaxSize != DefaultUDPMax {
		t.Fatalf("udp = %+v", c)
	}
	for _, bad := range []string{"http://x:1", "syslog://nohost", "syslog+tcp://h:0", "syslog+tcp://h:1?framing=weird", "syslog+tcp://h:1?format=json", "::"} {
		if _, err := ParseURL(bad); err == nil {
			t.Errorf("ParseURL(%q): want error", bad)
		}
	}
}

func run(t *testing.T, s *Sender) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { _ = s.Run(ctx); close(done) }()
	t.Cleanup(func() { cancel(); <-done })
}

// TestTLSWithGeneratedCA ships octet-counted messages over TLS to a
// listener whose certificate is signed by a CA made here; a sender that
// does not trust the CA must not deliver.
func TestTLSWithGeneratedCA(t *testing.T) {
	t.Parallel()
	pool, serverCfg := testCA(t)
	ln, err := tls.Listen("tcp", "127.0.0.1:0", serverCfg)
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	got := make(chan string, 10)
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				r := bufio.NewReader(c)
				for {
					var n int
					if _, err := fmt.Fscanf(r, "%d ", &n); err != nil {
						return
					}
					b := make([]byte, n)
					if _, err := io.ReadFull(r, b); err != nil {
						return
					}
					got <- string(b)
				}
			}()
		}
	}()
	cfg, err := ParseURL("syslog+tls://" + ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	untrusted := New(cfg, slog.New(slog.DiscardHandler))
	run(t, untrusted)
	untrusted.TrySend([]byte("<14>1 - h app web.1 - - must not arrive"))
	testenv.Eventually(t, 5*time.Second, func() bool { return untrusted.Err() != nil }, "untrusted TLS did not fail")
	if !strings.Contains(untrusted.Err().Error(), "certificate") {
		t.Fatalf("error does not name the certificate problem: %v", untrusted.Err())
	}

	cfg.TLS.RootCAs = pool
	cfg.TLS.ServerName = "127.0.0.1"
	s := New(cfg, slog.New(slog.DiscardHandler))
	run(t, s)
	for i := range 3 {
		if err := s.Send(context.Background(), []byte(fmt.Sprintf("<14>1 - h app web.1 - - tls %d", i))); err != nil {
			t.Fatal(err)
		}
	}
	for i := range 3 {
		select {
		case m := <-got:
			if m != fmt.Sprintf("<14>1 - h app web.1 - - tls %d", i) {
				t.Fatalf("got %q", m)
			}
		case <-time.After(5 * time.Second):
			t.Fatalf("message %d not received over TLS", i)
		}
	}
}

func TestUDPTruncatesAndQueueDrops(t *testing.T) {
	t.Parallel()
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	cfg, _ := ParseURL("syslog://" + pc.LocalAddr().String())
	cfg.QueueSize = 1
	s := New(cfg, slog.New(slog.DiscardHandler))
	// Not running yet: the second message cannot be queued.
	if !s.TrySend([]byte(strings.Repeat("a", 5000))) || s.TrySend([]byte("x")) || s.Dropped.Load() != 1 {
		t.Fatalf("queue policy: dropped=%d", s.Dropped.Load())
	}
	run(t, s)
	buf := make([]byte, 65536)
	_ = pc.SetReadDeadline(time.Now().Add(5 * time.Second))
	n, _, err := pc.ReadFrom(buf)
	if err != nil || n != DefaultUDPMax || s.Truncated.Load() != 1 {
		t.Fatalf("UDP datagram of %d bytes (%v), truncated=%d", n, err, s.Truncated.Load())
	}
}

func FuzzParseURL(f *testing.F) {
	for _, s := range []string{"syslog://h:1", "syslog+tls://a.b:6514?framing=octet", "syslog+tcp://[::1]:514?format=rfc3164", "x://", "syslog://h:99999"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		c, err := ParseURL(s)
		if err == nil && (c.Addr == "" || c.MaxSize <= 0) {
			t.Fatalf("accepted %q as %+v", s, c)
		}
	})
}

func testCA(t *testing.T) (*x509.CertPool, *tls.Config) {
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "test ca"}, NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign}
	der, _ := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	caCert, _ := x509.ParseCertificate(der)
	leafKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	leaf := &x509.Certificate{SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "127.0.0.1"}, IPAddresses: []net.IP{net.ParseIP("127.0.0.1")}, NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}
	lder, _ := x509.CreateCertificate(rand.Reader, leaf, caCert, &leafKey.PublicKey, key)
	pool := x509.NewCertPool()
	pool.AddCert(caCert)
	return pool, &tls.Config{Certificates: []tls.Certificate{{Certificate: [][]byte{lder}, PrivateKey: leafKey}}}
}
