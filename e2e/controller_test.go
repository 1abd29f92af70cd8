package e2e

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/deis/dataplane/pkg/keys"
	"github.com/deis/dataplane/pkg/testenv"
	"github.com/deis/dataplane/pkg/testenv/testcert"
)

// TestControllerThroughTheRouter: the router sends deis.<domain> to the
// controller the scheduler leader announces, over HTTP and HTTPS; a v1
// client's first calls (the probe, register, login) work through it.
func TestControllerThroughTheRouter(t *testing.T) {
	if testing.Short() {
		t.Skip("builds binaries")
	}
	t.Parallel()
	bin := build(t, "router", "controller")
	e := testenv.StartEtcd(t)
	e.Put(keys.PlatformDomain, "example.test")
	ca := testcert.NewCA(t)
	cert, key := ca.Issue(t, "*.example.test", "*.example.test")
	e.Put(keys.RouterSetting("sslCert"), cert)
	e.Put(keys.RouterSetting("sslKey"), key)
	httpAddr, httpsAddr := testenv.FreeAddr(t), testenv.FreeAddr(t)
	for _, c := range [][]string{
		{"router", "--host", "127.0.0.1", "--http-addr", httpAddr, "--https-addr", httpsAddr, "--ssh-addr", "", "--health-addr", testenv.FreeAddr(t)},
		{"controller", "--host", "127.0.0.1", "--http-addr", testenv.FreeAddr(t)},
	} {
		var out bytes.Buffer
		cmd := exec.Command(filepath.Join(bin, c[0]), append([]string{"--etcd", e.Endpoint, "--log-level", "warn"}, c[1:]...)...)
		cmd.Stdout, cmd.Stderr = &out, &out
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM([]byte(ca.PEM()))
	dial := func(addr string) func(ctx context.Context, network, a string) (net.Conn, error) {
		return func(ctx context.Context, network, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, network, addr)
		}
	}
	for _, tc := range []struct {
		scheme string
		client *http.Client
	}{
		{"http", &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{DialContext: dial(httpAddr)}}},
		{"https", &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{DialTLSContext: func(ctx context.Context, network, a string) (net.Conn, error) {
			d := tls.Dialer{Config: &tls.Config{RootCAs: pool, ServerName: "deis.example.test"}}
			return d.DialContext(ctx, network, httpsAddr)
		}}}},
	} {
		base := tc.scheme + "://deis.example.test"
		var resp *http.Response
		testenv.Eventually(t, 20*time.Second, func() bool {
			r, err := tc.client.Get(base + "/v1/")
			if err != nil {
				return false
			}
			r.Body.Close()
			resp = r
			return r.StatusCode == 401
		}, "%s: the probe GET /v1/ answers 401 through the router", tc.scheme)
		if resp.Header.Get("DEIS_API_VERSION") != "1.7" {
			t.Errorf("%s: DEIS_API_VERSION %q through the router", tc.scheme, resp.Header.Get("DEIS_API_VERSION"))
		}
		user := "u" + tc.scheme
		body := `{"username":"` + user + `","password":"pw","email":"u@example.test"}`
		r, err := tc.client.Post(base+"/v1/auth/register/", "application/json", strings.NewReader(body))
		if err != nil || r.StatusCode != 201 {
			t.Fatalf("%s register: %v %v", tc.scheme, r, err)
		}
		r.Body.Close()
		r, err = tc.client.Post(base+"/v1/auth/login/", "application/json", strings.NewReader(body))
		if err != nil || r.StatusCode != 200 {
			t.Fatalf("%s login: %v %v", tc.scheme, r, err)
		}
		var tok struct{ Token string }
		b, _ := io.ReadAll(r.Body)
		r.Body.Close()
		if json.Unmarshal(b, &tok) != nil || tok.Token == "" {
			t.Fatalf("%s login answer %q", tc.scheme, b)
		}
		req, _ := http.NewRequest("POST", base+"/v1/apps/", strings.NewReader(`{"id":"via-`+tc.scheme+`"}`))
		req.Header.Set("Authorization", "token "+tok.Token)
		req.Header.Set("Content-Type", "application/json")
		r, err = tc.client.Do(req)
		if err != nil || r.StatusCode != 201 {
			t.Fatalf("%s create app: %v %v", tc.scheme, r, err)
		}
		r.Body.Close()
	}
}
