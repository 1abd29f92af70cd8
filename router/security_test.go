package router_test

import (
	"bufio"
	"crypto/tls"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/deis/dataplane/pkg/testenv"
	"github.com/deis/dataplane/pkg/testenv/testcert"
)

// raw sends b on a new connection to addr and reads one response.
func raw(t *testing.T, addr, b string) (*http.Response, string) {
	t.Helper()
	conn, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.WriteString(conn, b); err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatalf("reading the response to %q: %v", b, err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	return resp, string(body)
}

// TestH3ProxyHeaderFromUntrustedPeerIgnored: with proxyProtocol on, a client
// that reaches the router directly (not from proxyRealIpCidr) used to claim
// any source in its PROXY header, passing whitelists and having its own
// X-Forwarded-For/-Proto trusted. Its header is now read and ignored.
func TestH3ProxyHeaderFromUntrustedPeerIgnored(t *testing.T) {
	t.Parallel()
	e := testenv.StartEtcd(t)
	backend := echoBackend(t, "b")
	e.Put("/deis/services/wl/wl_v1.web.1", hostport(backend))
	e.Put("/deis/services/open/open_v1.web.1", hostport(backend))
	e.Put("/deis/config/wl/deis_whitelist", "9.9.9.9")
	e.Put("/deis/router/proxyProtocol", "true") // proxyRealIpCidr stays 10.0.0.0/8
	h := startRouter(t, e)
	h.waitRoute("wl", 1)
	h.waitRoute("open", 1)
	testenv.Eventually(t, 5*time.Second, func() bool { return h.r.Proxy().Table().Settings.ProxyProtocol }, "proxyProtocol not applied")

	if resp, _ := raw(t, h.http, "PROXY TCP4 9.9.9.9 127.0.0.1 1111 80\r\nGET /wl HTTP/1.1\r\nHost: wl.x\r\nConnection: close\r\n\r\n"); resp.StatusCode != 403 {
		t.Fatalf("spoofed PROXY source passed the whitelist: %d, want 403", resp.StatusCode)
	}
	resp, body := raw(t, h.http, "PROXY TCP4 10.1.2.3 127.0.0.1 1111 80\r\nGET / HTTP/1.1\r\nHost: open.x\r\nX-Forwarded-For: 9.9.9.9\r\nX-Forwarded-Proto: https\r\nConnection: close\r\n\r\n")
	if resp.StatusCode != 200 {
		t.Fatalf("GET through PROXY: %d %s", resp.StatusCode, body)
	}
	if !strings.Contains(body, `"X-Forwarded-For":"127.0.0.1"`) || !strings.Contains(body, `"X-Forwarded-Proto":"http"`) {
		t.Fatalf("a spoofed trusted PROXY source made the router trust the client's headers: %s", body)
	}
}

// TestL1ZeroTimeoutKeepsRouting: with defaultTimeout=0 in etcd every request
// used to get 502; the setting is refused and routing goes on.
func TestL1ZeroTimeoutKeepsRouting(t *testing.T) {
	t.Parallel()
	e := testenv.StartEtcd(t)
	backend := echoBackend(t, "b")
	e.Put("/deis/services/zt/zt_v1.web.1", hostport(backend))
	e.Put("/deis/router/defaultTimeout", "0")
	e.Put("/deis/router/connectTimeout", "0")
	h := startRouter(t, e)
	h.waitRoute("zt", 1)
	for i := 0; i < 3; i++ {
		if resp, body := h.get("zt.x", "/", nil); resp.StatusCode != 200 {
			t.Fatalf("request %d with defaultTimeout=0 in etcd: %d %s", i, resp.StatusCode, body)
		}
	}
}

// servedCN is the subject CN the router's HTTPS listener presents for
// serverName, or "" when the handshake fails.
func servedCN(t *testing.T, addr, serverName string) string {
	t.Helper()
	conn, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", addr, &tls.Config{ServerName: serverName, InsecureSkipVerify: true})
	if err != nil {
		return ""
	}
	defer conn.Close()
	return conn.ConnectionState().PeerCertificates[0].Subject.CommonName
}

// TestH4TenantCertCannotClaimPlatformNames: real handshakes against the
// router after a tenant uploads a certificate whose SANs name the platform
// domain, the controller and another tenant's domain; then a garbage
// sslCert keeps the platform certificate (M4).
func TestH4TenantCertCannotClaimPlatformNames(t *testing.T) {
	t.Parallel()
	e := testenv.StartEtcd(t)
	ca := testcert.NewCA(t)
	e.Put("/deis/platform/domain", "local.deis.example")
	pc, pk := ca.Issue(t, "platform", "*.local.deis.example", "local.deis.example")
	e.Put("/deis/router/sslCert", pc)
	e.Put("/deis/router/sslKey", pk)
	e.Put("/deis/domains/appb.com", "appb")
	e.Put("/deis/domains/shop.example.org", "shop")
	ec, ek := ca.Issue(t, "appb.com", "appb.com", "*.local.deis.example", "deis.local.deis.example", "shop.example.org")
	e.Put("/deis/certs/appb.com/cert", ec)
	e.Put("/deis/certs/appb.com/key", ek)
	h := startRouter(t, e)
	testenv.Eventually(t, 5*time.Second, func() bool { return servedCN(t, h.tls, "appb.com") == "appb.com" }, "tenant cert not served for its own name")
	for name, want := range map[string]string{"appa.local.deis.example": "platform", "deis.local.deis.example": "platform", "shop.example.org": ""} {
		if got := servedCN(t, h.tls, name); got != want {
			t.Errorf("%s served %q, want %q", name, got, want)
		}
	}
	e.Put("/deis/router/sslCert", "-----BEGIN CERTIFICATE-----garbage")
	time.Sleep(500 * time.Millisecond) // a table build passes
	if got := servedCN(t, h.tls, "appa.local.deis.example"); got != "platform" {
		t.Fatalf("after a garbage sslCert the platform domain is served %q", got)
	}
}
