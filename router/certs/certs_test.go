package certs

import (
	"crypto/tls"
	"crypto/x509"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/deis/dataplane/pkg/testenv/testcert"
)

func newCA(t testing.TB) *testcert.CA { return testcert.NewCA(t) }

// serveHandshakes runs TLS handshakes (TLS 1.2 and up) with the
// certificates getCert chooses on a loopback port until the test ends,
// and returns its address.
func serveHandshakes(t *testing.T, getCert func(*tls.ClientHelloInfo) (*tls.Certificate, error)) string {
	t.Helper()
	ln, err := tls.Listen("tcp", "127.0.0.1:0", &tls.Config{MinVersion: tls.VersionTLS12, GetCertificate: getCert})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			conn, err := ln.Accept()
			if err != nil {
				return
			}
			go func() { _ = conn.(*tls.Conn).Handshake(); conn.Close() }()
		}
	}()
	return ln.Addr().String()
}

func TestSelection(t *testing.T) {
	t.Parallel()
	ca := newCA(t)
	kvs := map[string]string{}
	put := func(domain string, sans ...string) {
		c, k := ca.Issue(t, domain, sans...)
		kvs["/deis/certs/"+domain+"/cert"] = c
		kvs["/deis/certs/"+domain+"/key"] = k
	}
	put("www.shop.com", "shop.com")
	kvs["/deis/domains/www.shop.com"] = "shop"
	kvs["/deis/domains/shop.com"] = "shop" // the SAN counts: same app
	put("*.example.com")
	put("api.example.com")
	kvs["/deis/certs/broken.com/cert"] = "not a pem"
	kvs["/deis/certs/broken.com/key"] = "nope"
	kvs["/deis/certs/half.com/cert"] = "x"
	pc, pk := ca.Issue(t, "*.local.deis.example", "local.deis.example")

	s, errs := Build(kvs, "local.deis.example", pc, pk, nil)
	if len(errs) != 2 {
		t.Fatalf("want 2 errors (broken, half), got %v", errs)
	}
	for _, tc := range []struct {
		name, wantCN string
	}{
		{"www.shop.com", "www.shop.com"},
		{"SHOP.com.", "www.shop.com"}, // SAN, case and trailing dot
		{"api.example.com", "api.example.com"},
		{"a.example.com", "*.example.com"},
		{"myapp.local.deis.example", "*.local.deis.example"},
		{"local.deis.example", "*.local.deis.example"},
		{"a.b.example.com", ""}, // wildcard covers one label only
		{"example.com", ""},
		{"other.com", ""}, // never another app's or the platform cert
		{"broken.com", ""},
		{"", ""},
	} {
		c, ok := s.Get(tc.name)
		if tc.wantCN == "" {
			if ok {
				t.Errorf("Get(%q) = %s, want none", tc.name, c.Leaf.Subject.CommonName)
			}
			continue
		}
		if !ok || c.Leaf.Subject.CommonName != tc.wantCN {
			t.Errorf("Get(%q) = %v, want %s", tc.name, ok, tc.wantCN)
		}
	}
}

// TestRealHandshake runs crypto/tls on both ends over loopback.
func TestRealHandshake(t *testing.T) {
	t.Parallel()
	ca := newCA(t)
	c, k := ca.Issue(t, "app.example.com")
	s, errs := Build(map[string]string{"/deis/certs/app.example.com/cert": c, "/deis/certs/app.example.com/key": k}, "", "", "", nil)
	if len(errs) != 0 {
		t.Fatal(errs)
	}
	addr := serveHandshakes(t, func(h *tls.ClientHelloInfo) (*tls.Certificate, error) {
		if c, ok := s.Get(h.ServerName); ok {
			return c, nil
		}
		return nil, nil // no certificate: the handshake fails
	})
	dial := func(name string) error {
		conn, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", addr, &tls.Config{ServerName: name, RootCAs: ca.Pool})
		if err == nil {
			conn.Close()
		}
		return err
	}
	if err := dial("app.example.com"); err != nil {
		t.Fatalf("handshake for a covered name: %v", err)
	}
	if err := dial("unknown.example.com"); err == nil {
		t.Fatal("handshake for an uncovered name succeeded")
	}
}

func BenchmarkGet(b *testing.B) {
	ca := newCA(b)
	c, k := ca.Issue(b, "*.example.com")
	s, _ := Build(map[string]string{"/deis/certs/*.example.com/cert": c, "/deis/certs/*.example.com/key": k}, "", "", "", nil)
	b.ReportAllocs()
	for b.Loop() {
		if _, ok := s.Get("www.example.com"); !ok {
			b.Fatal("miss")
		}
	}
}

func FuzzGet(f *testing.F) {
	ca := newCA(f)
	c, k := ca.Issue(f, "*.example.com", "shop.com")
	s, _ := Build(map[string]string{"/deis/certs/*.example.com/cert": c, "/deis/certs/*.example.com/key": k}, "deis.example", "", "", nil)
	for _, n := range []string{"a.example.com", "shop.com", ".", "..", "*.example.com", "A.EXAMPLE.COM."} {
		f.Add(n)
	}
	f.Fuzz(func(t *testing.T, name string) {
		if cert, ok := s.Get(name); ok && cert == nil {
			t.Fatal("ok with nil certificate")
		}
	})
}

// TestH4TenantSANsClaimOnlyTheirOwnNames: a tenant's certificate whose SANs
// name the platform domain, the controller or another tenant's domain used
// to be served for all of them. It now covers only its own app's names, and
// a tenant wildcard under the platform domain never beats the platform
// certificate.
func TestH4TenantSANsClaimOnlyTheirOwnNames(t *testing.T) {
	t.Parallel()
	ca := newCA(t)
	evilC, evilK := ca.Issue(t, "appb.com", "appb.com", "www.appb.com", "*.local.deis.example", "deis.local.deis.example", "shop.example.org")
	wildC, wildK := ca.Issue(t, "*.local.deis.example")
	kvs := map[string]string{
		"/deis/certs/appb.com/cert": evilC, "/deis/certs/appb.com/key": evilK,
		"/deis/domains/appb.com":         "appb",
		"/deis/domains/www.appb.com":     "appb",
		"/deis/domains/shop.example.org": "shop", // another tenant's, without a cert
		// A tenant's wildcard stored under the platform domain.
		"/deis/certs/*.local.deis.example/cert": wildC, "/deis/certs/*.local.deis.example/key": wildK,
	}
	pc, pk := ca.Issue(t, "platform", "*.local.deis.example", "local.deis.example")
	s, _ := Build(kvs, "local.deis.example", pc, pk, nil)
	for name, want := range map[string]string{
		"appb.com":                "appb.com",
		"www.appb.com":            "appb.com", // a SAN the same app owns
		"appa.local.deis.example": "platform",
		"deis.local.deis.example": "platform",
		"shop.example.org":        "",
		"unclaimed.example.org":   "",
	} {
		c, ok := s.Get(name)
		switch {
		case want == "" && ok:
			t.Errorf("%s is served %s's certificate", name, c.Leaf.Subject.CommonName)
		case want != "" && (!ok || c.Leaf.Subject.CommonName != want):
			t.Errorf("Get(%q) = %v, want %s", name, ok, want)
		}
	}
}

// TestM4BadCertificateKeepsTheLastGoodOne: a garbage sslCert, or a
// per-domain cert updated before its key (rotation in two steps), used to
// drop the certificate. The last good pair is kept, with an error.
func TestM4BadCertificateKeepsTheLastGoodOne(t *testing.T) {
	t.Parallel()
	ca := newCA(t)
	pc, pk := ca.Issue(t, "platform", "*.local.deis.example")
	c1, k1 := ca.Issue(t, "shop.com")
	kvs := map[string]string{"/deis/certs/shop.com/cert": c1, "/deis/certs/shop.com/key": k1}
	good, errs := Build(kvs, "local.deis.example", pc, pk, nil)
	if len(errs) != 0 {
		t.Fatal(errs)
	}
	c2, _ := ca.Issue(t, "shop.com") // new cert, its key not written yet
	kvs["/deis/certs/shop.com/cert"] = c2
	s, errs := Build(kvs, "local.deis.example", "-----BEGIN CERTIFICATE-----garbage", pk, good)
	if len(errs) != 2 {
		t.Fatalf("want 2 errors (platform, shop.com), got %v", errs)
	}
	for _, name := range []string{"a.local.deis.example", "shop.com"} {
		c, ok := s.Get(name)
		old, _ := good.Get(name)
		if !ok || c != old {
			t.Errorf("%s lost its certificate after a bad update", name)
		}
	}
	// Without a last good value, a bad one is still skipped.
	if _, errs := Build(kvs, "local.deis.example", "garbage", pk, nil); len(errs) != 2 {
		t.Fatalf("without prev: %v", errs)
	}
}

// TestECDSAPreferredRSAForTheRest: an entry holding an ECDSA and an RSA
// certificate (the chains in either order, the keys in any order) serves
// the ECDSA one to a client that can verify it and the RSA one to a
// client that offers only RSA suites, in real handshakes.
func TestECDSAPreferredRSAForTheRest(t *testing.T) {
	t.Parallel()
	ca := newCA(t)
	ec, ecKey := ca.Issue(t, "dual.example.com", "www.dual.example.com")
	rc, rcKey := ca.IssueRSA(t, "dual.example.com", "www.dual.example.com")
	s, errs := Build(map[string]string{
		"/deis/certs/dual.example.com/cert": rc + ca.PEM() + ec + ca.PEM(), // each chain with its intermediate
		"/deis/certs/dual.example.com/key":  ecKey + rcKey,
	}, "", "", "", nil)
	if len(errs) != 0 {
		t.Fatal(errs)
	}
	if c, _ := s.Get("dual.example.com"); c == nil || c.Leaf.PublicKeyAlgorithm != x509.ECDSA || len(c.Certificate) != 2 {
		t.Fatalf("Get: want the ECDSA chain of 2 first, got %+v", c)
	}
	addr := serveHandshakes(t, func(h *tls.ClientHelloInfo) (*tls.Certificate, error) {
		c, _ := s.For(h)
		return c, nil
	})
	served := func(cfg *tls.Config) x509.PublicKeyAlgorithm {
		t.Helper()
		cfg.ServerName, cfg.RootCAs = "dual.example.com", ca.Pool
		conn, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", addr, cfg)
		if err != nil {
			t.Fatalf("handshake: %v", err)
		}
		defer conn.Close()
		return conn.ConnectionState().PeerCertificates[0].PublicKeyAlgorithm
	}
	if got := served(&tls.Config{}); got != x509.ECDSA {
		t.Errorf("a client that verifies ECDSA got %v", got)
	}
	rsaOnly := &tls.Config{MaxVersion: tls.VersionTLS12, CipherSuites: []uint16{tls.TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256}}
	if got := served(rsaOnly); got != x509.RSA {
		t.Errorf("a client offering only RSA suites got %v", got)
	}
}

func TestDualCertificateMistakes(t *testing.T) {
	t.Parallel()
	ca := newCA(t)
	ec, ecKey := ca.Issue(t, "a.example.com")
	ec2, ec2Key := ca.Issue(t, "a.example.com")
	rc, rcKey := ca.IssueRSA(t, "a.example.com")
	rcOther, rcOtherKey := ca.IssueRSA(t, "b.example.com")
	for _, tc := range []struct{ name, cert, key, want string }{
		{"two ECDSA", ec + ec2, ecKey + ec2Key, "same key type"},
		{"different names", ec + rcOther, ecKey + rcOtherKey, "name different hosts"},
		{"a key without its certificate", ec, ecKey + rcKey, "matches no certificate"},
		{"three keys", ec + rc + ec2, ecKey + rcKey + ec2Key, "at most two"},
	} {
		if _, err := Parse(tc.cert, tc.key); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v, want an error saying %q", tc.name, err, tc.want)
		}
	}
	if certs, err := Parse(rc+ec, rcKey+ecKey); err != nil || len(certs) != 2 {
		t.Fatalf("a good pair: %v", err)
	}
}

// FuzzParse: whatever is uploaded, Parse returns one certificate, or two
// of different key types with the ECDSA one first, or an error.
func FuzzParse(f *testing.F) {
	ca := newCA(f)
	ec, ecKey := ca.Issue(f, "f.example.com")
	rc, rcKey := ca.IssueRSA(f, "f.example.com")
	f.Add(ec, ecKey)
	f.Add(rc+ec, rcKey+ecKey)
	f.Add(ec+rc, ecKey+ecKey)
	f.Add("", "")
	f.Fuzz(func(t *testing.T, cert, key string) {
		out, err := Parse(cert, key)
		if err != nil {
			return
		}
		switch {
		case len(out) == 1:
		case len(out) == 2 && out[0].Leaf.PublicKeyAlgorithm != x509.RSA && out[1].Leaf.PublicKeyAlgorithm == x509.RSA:
		default:
			t.Fatalf("Parse returned %d certificates", len(out))
		}
	})
}
