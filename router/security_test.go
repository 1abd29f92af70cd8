package router_test

import (
	"bufio"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/deis/dataplane/pkg/testenv"
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
