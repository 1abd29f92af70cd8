package router_test

import (
	"bufio"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/deis/dataplane/internal/race"
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

// recorder is an app that records, per path, how its request body ended.
type recorder struct {
	mu     sync.Mutex
	bodies map[string]string // path -> "complete N" or "error: ..."
	srv    *httptest.Server
}

func newRecorder(t *testing.T) *recorder {
	rec := &recorder{bodies: map[string]string{}}
	rec.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, err := io.ReadAll(r.Body)
		rec.mu.Lock()
		if err != nil {
			rec.bodies[r.URL.Path] = "error: " + err.Error()
		} else {
			rec.bodies[r.URL.Path] = fmt.Sprintf("complete %d", len(b))
		}
		rec.mu.Unlock()
		fmt.Fprintf(w, "got %d bytes\n", len(b))
	}))
	t.Cleanup(rec.srv.Close)
	return rec
}

func (r *recorder) body(path string) (string, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	v, ok := r.bodies[path]
	return v, ok
}

// TestM1UpgradeWithoutSwitchingIsNotATunnel: "Connection: Upgrade" answered
// 200 by the app used to turn the connection into a raw pipe, so the next
// request skipped bodySize, header rewriting and the access log.
func TestM1UpgradeWithoutSwitchingIsNotATunnel(t *testing.T) {
	t.Parallel()
	e := testenv.StartEtcd(t)
	backend := echoBackend(t, "b")
	e.Put("/deis/services/up/up_v1.web.1", hostport(backend))
	e.Put("/deis/router/bodySize", "1k")
	h := startRouter(t, e)
	h.waitRoute("up", 1)
	testenv.Eventually(t, 5*time.Second, func() bool { return h.r.Proxy().Table().Settings.BodySize == 1024 }, "bodySize not applied")
	conn, err := net.Dial("tcp", h.http)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(10 * time.Second))
	br := bufio.NewReader(conn)
	fmt.Fprint(conn, "GET /ws HTTP/1.1\r\nHost: up.x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n")
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatal(err)
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	if resp.StatusCode != 200 {
		t.Fatalf("upgrade answered %d by the app: got %d", 200, resp.StatusCode)
	}
	fmt.Fprint(conn, "POST /admin HTTP/1.1\r\nHost: up.x\r\nX-Forwarded-For: 9.9.9.9\r\nContent-Length: 5000\r\n\r\n"+strings.Repeat("A", 5000))
	resp, err = http.ReadResponse(br, nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusRequestEntityTooLarge {
		t.Fatalf("second request on the connection: %d, want 413 (the connection became a tunnel)", resp.StatusCode)
	}
}

// TestM2AbortedChunkedUploadNeverLooksComplete: a client that closed its
// connection between two chunks used to have its upload completed by the
// router (0\r\n\r\n), so the app took a truncated body for whole.
func TestM2AbortedChunkedUploadNeverLooksComplete(t *testing.T) {
	t.Parallel()
	e := testenv.StartEtcd(t)
	rec := newRecorder(t)
	e.Put("/deis/services/upl/upl_v1.web.1", hostport(rec.srv))
	h := startRouter(t, e)
	h.waitRoute("upl", 1)
	for _, tc := range []struct{ path, sent string }{
		{"/small", "5\r\nhello\r\n"},
		{"/big", strings.Repeat(fmt.Sprintf("%x\r\n%s\r\n", 64<<10, strings.Repeat("z", 64<<10)), 20)}, // 1.25 MiB: past the prefill, streamed
	} {
		conn, err := net.Dial("tcp", h.http)
		if err != nil {
			t.Fatal(err)
		}
		fmt.Fprintf(conn, "POST %s HTTP/1.1\r\nHost: upl.x\r\nTransfer-Encoding: chunked\r\n\r\n%s", tc.path, tc.sent)
		time.Sleep(500 * time.Millisecond)
		conn.Close()
	}
	time.Sleep(time.Second)
	for _, p := range []string{"/small", "/big"} {
		if got, _ := rec.body(p); strings.HasPrefix(got, "complete") {
			t.Errorf("%s: the app got an aborted upload as %q", p, got)
		}
	}
	// A whole chunked upload still arrives whole.
	resp, body := raw(t, h.http, "POST /whole HTTP/1.1\r\nHost: upl.x\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n")
	if got, _ := rec.body("/whole"); resp.StatusCode != 200 || got != "complete 11" {
		t.Fatalf("whole chunked upload: %d %q, app saw %q", resp.StatusCode, body, got)
	}
}

// TestM3TrailersKeepThePoolInSync: after a chunked response with trailers,
// the next request on the pooled connection used to get 502 although the
// app had run it.
func TestM3TrailersKeepThePoolInSync(t *testing.T) {
	t.Parallel()
	e := testenv.StartEtcd(t)
	app := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/trailer" {
			w.Header().Set("Trailer", "X-Checksum")
			w.(http.Flusher).Flush() // chunked
			_, _ = io.WriteString(w, "body with a trailer\n")
			w.Header().Set("X-Checksum", "abc")
			return
		}
		if r.URL.Path == "/chunked" {
			w.(http.Flusher).Flush()
		}
		_, _ = io.WriteString(w, "ok "+r.URL.Path+"\n")
	}))
	t.Cleanup(app.Close)
	e.Put("/deis/services/tr/tr_v1.web.1", hostport(app))
	h := startRouter(t, e)
	h.waitRoute("tr", 1)
	for _, p := range []string{"/chunked", "/x1", "/trailer", "/x2", "/x3", "/trailer", "/trailer", "/x4"} {
		if resp, body := h.get("tr.x", p, nil); resp.StatusCode != 200 {
			t.Fatalf("GET %s: %d %q", p, resp.StatusCode, body)
		}
	}
}

// TestM9SlowBodyHoldsNoAppConnection: a body sent slowly used to be
// streamed to the app, holding one of its connections for up to
// defaultTimeout (1300 s). Bodies up to 1 MiB are now read before the app
// is contacted, and bodyTimeout bounds the wait between reads.
func TestM9SlowBodyHoldsNoAppConnection(t *testing.T) {
	t.Parallel()
	e := testenv.StartEtcd(t)
	rec := newRecorder(t)
	e.Put("/deis/services/slow/slow_v1.web.1", hostport(rec.srv))
	e.Put("/deis/router/bodySize", "0")
	e.Put("/deis/router/bodyTimeout", "1s")
	h := startRouter(t, e)
	h.waitRoute("slow", 1)
	testenv.Eventually(t, 5*time.Second, func() bool { return h.r.Proxy().Table().Settings.BodyTimeout == time.Second }, "bodyTimeout not applied")
	conn, err := net.Dial("tcp", h.http)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	fmt.Fprintf(conn, "POST /slow HTTP/1.1\r\nHost: slow.x\r\nContent-Length: 200000\r\n\r\n%s", strings.Repeat("s", 100000))
	_ = conn.SetReadDeadline(time.Now().Add(10 * time.Second))
	sent := time.Now()
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatalf("no answer to a stalled body: %v", err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusRequestTimeout || time.Since(sent) > 5*time.Second {
		t.Fatalf("stalled body: %d after %v, want 408 after about 1s", resp.StatusCode, time.Since(sent))
	}
	if got, ok := rec.body("/slow"); ok {
		t.Fatalf("the app was contacted for a body still arriving: %q", got)
	}
	// Bodies past the prefill still stream whole.
	big := strings.Repeat("b", 3<<20)
	req, _ := http.NewRequest(http.MethodPost, "http://"+h.http+"/big", strings.NewReader(big))
	req.Host = "slow.x"
	resp2, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp2.Body.Close()
	if got, _ := rec.body("/big"); resp2.StatusCode != 200 || got != fmt.Sprintf("complete %d", len(big)) {
		t.Fatalf("3 MiB body: %d, app saw %q", resp2.StatusCode, got)
	}
}

// TestL2AbsoluteFormRoutesOnTheURI: "GET http://other/x" with "Host: app"
// used to be routed by Host but reach the app with Host: other.
func TestL2AbsoluteFormRoutesOnTheURI(t *testing.T) {
	t.Parallel()
	e := testenv.StartEtcd(t)
	backend := echoBackend(t, "b")
	e.Put("/deis/services/abs/abs_v1.web.1", hostport(backend))
	h := startRouter(t, e)
	h.waitRoute("abs", 1)
	if resp, _ := raw(t, h.http, "GET http://anything.example/x HTTP/1.1\r\nHost: abs.x\r\nConnection: close\r\n\r\n"); resp.StatusCode != 404 {
		t.Fatalf("absolute URI naming no app, Host naming one: %d, want 404", resp.StatusCode)
	}
	resp, body := raw(t, h.http, "GET http://abs.x/x?y=1 HTTP/1.1\r\nHost: evil.example\r\nConnection: close\r\n\r\n")
	if resp.StatusCode != 200 || !strings.Contains(body, `"host":"abs.x"`) {
		t.Fatalf("absolute URI naming the app: %d %s", resp.StatusCode, body)
	}
}

// TestL3HTTP10ClientsGetNoChunks: an HTTP/1.0 client used to get a chunked
// response, whose framing it shows as body bytes.
func TestL3HTTP10ClientsGetNoChunks(t *testing.T) {
	t.Parallel()
	e := testenv.StartEtcd(t)
	app := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.(http.Flusher).Flush() // chunked to the router
		_, _ = io.WriteString(w, strings.Repeat("c", 70000))
	}))
	t.Cleanup(app.Close)
	e.Put("/deis/services/old/old_v1.web.1", hostport(app))
	h := startRouter(t, e)
	h.waitRoute("old", 1)
	conn, err := net.Dial("tcp", h.http)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(10 * time.Second))
	fmt.Fprint(conn, "GET / HTTP/1.0\r\nHost: old.x\r\n\r\n")
	all, _ := io.ReadAll(conn)
	head, body, _ := strings.Cut(string(all), "\r\n\r\n")
	if strings.Contains(strings.ToLower(head), "transfer-encoding") || body != strings.Repeat("c", 70000) {
		t.Fatalf("HTTP/1.0 response: head %q, body %d bytes (%.20q...)", head, len(body), body)
	}
}

// TestL4ClientCannotNameItself: X-Real-IP, Forwarded and X-Forwarded-Host
// from an untrusted client (in any letter case) used to reach the app.
func TestL4ClientCannotNameItself(t *testing.T) {
	t.Parallel()
	e := testenv.StartEtcd(t)
	backend := echoBackend(t, "b")
	e.Put("/deis/services/who/who_v1.web.1", hostport(backend))
	h := startRouter(t, e)
	h.waitRoute("who", 1)
	_, body := raw(t, h.http, "GET / HTTP/1.1\r\nHost: who.x\r\nX-Real-IP: 6.6.6.6\r\nForwarded: for=7.7.7.7;proto=https\r\nX-Forwarded-Host: evil.example\r\nx-forwarded-for: 8.8.8.8\r\nConnection: close\r\n\r\n")
	for _, bad := range []string{"6.6.6.6", "7.7.7.7", "evil.example", "8.8.8.8"} {
		if strings.Contains(body, bad) {
			t.Errorf("the app got the client's %s: %s", bad, body)
		}
	}
	if !strings.Contains(body, `"X-Real-Ip":"127.0.0.1"`) {
		t.Errorf("X-Real-IP is not the client: %s", body)
	}
}

// TestL5UpgradeBodyIsStreamed: the body of an Upgrade request used to be
// read whole into memory (60 MB grew the router by 130 MiB with
// bodySize=0). It streams now: an 8 MiB body costs the router about the
// 1 MiB prefill.
func TestL5UpgradeBodyIsStreamed(t *testing.T) {
	// Not parallel: it measures the process's allocations.
	if race.Enabled {
		t.Skip("the race detector inflates allocations")
	}
	e := testenv.StartEtcd(t)
	var got atomic.Int64
	app := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n, _ := io.Copy(io.Discard, r.Body)
		got.Store(n)
	}))
	t.Cleanup(app.Close)
	e.Put("/deis/services/upb/upb_v1.web.1", hostport(app))
	e.Put("/deis/router/bodySize", "0")
	h := startRouter(t, e)
	h.waitRoute("upb", 1)
	testenv.Eventually(t, 5*time.Second, func() bool { return h.r.Proxy().Table().Settings.BodySize == 0 }, "bodySize not applied")
	const size = 8 << 20
	req := []byte(fmt.Sprintf("POST /up HTTP/1.1\r\nHost: upb.x\r\nConnection: Upgrade\r\nUpgrade: something\r\nContent-Length: %d\r\n\r\n%s", size, strings.Repeat("u", size)))
	conn, err := net.Dial("tcp", h.http)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(20 * time.Second))
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	if _, err := conn.Write(req); err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	runtime.ReadMemStats(&after)
	if resp.StatusCode != 200 || got.Load() != size {
		t.Fatalf("upgrade POST: %d, app got %d of %d bytes", resp.StatusCode, got.Load(), size)
	}
	if grew := after.TotalAlloc - before.TotalAlloc; grew > 6<<20 {
		t.Fatalf("an 8 MiB upgrade body allocated %d MiB in the router's process", grew>>20)
	}
}

// TestUpgradeRespectsEjection: WebSocket upgrades choose backends with the
// request path's policy: an ejected backend is not dialled again while a
// healthy one remains (the upgrade path had its own loop, which ignored
// ejection).
func TestUpgradeRespectsEjection(t *testing.T) {
	t.Parallel()
	e := testenv.StartEtcd(t)
	good := echoBackend(t, "good")
	dead := testenv.FreeAddr(t) // nothing listens here
	e.Put("/deis/services/wsej/wsej_v1.web.1", hostport(good))
	e.Put("/deis/services/wsej/wsej_v1.web.2", dead)
	h := startRouter(t, e)
	h.waitRoute("wsej", 2)
	for range 10 { // until the dead one is ejected
		h.get("wsej.x", "/", nil)
	}
	ejected := func() bool {
		for _, b := range h.r.Proxy().Table().Apps["wsej"].Backends {
			if b.Addr == dead && !b.Available(time.Now().UnixNano()) {
				return true
			}
		}
		return false
	}
	if !ejected() {
		t.Fatal("dead backend was not ejected")
	}
	connectErrors := func() string {
		_, body := raw(t, h.health, "GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
		for _, l := range strings.Split(body, "\n") {
			if strings.HasPrefix(l, `router_upstream_errors_total{kind="connect"}`) {
				return l
			}
		}
		return ""
	}
	before := connectErrors()
	if before == "" {
		t.Fatal("no connect errors counted while the dead backend was being ejected")
	}
	for i := range 10 {
		resp, _ := raw(t, h.http, "GET /ws HTTP/1.1\r\nHost: wsej.x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n")
		if resp.StatusCode != 200 {
			t.Fatalf("upgrade %d: %d", i, resp.StatusCode)
		}
	}
	if after := connectErrors(); after != before {
		t.Fatalf("upgrades dialled the ejected backend: %q then %q", before, after)
	}
}
