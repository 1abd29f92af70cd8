package e2e

import (
	"bytes"
	"crypto/tls"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/deis/dataplane/pkg/testenv"
	"github.com/deis/dataplane/pkg/testenv/testcert"
)

// TestSIGHUPReloadsLoggerCertificate: the logger's syslog TLS certificate
// is read again from --tls-cert/--tls-key on SIGHUP (a renewal without a
// restart), and a bad file on HUP keeps the one in use.
func TestSIGHUPReloadsLoggerCertificate(t *testing.T) {
	if testing.Short() {
		t.Skip("builds binaries")
	}
	e := testenv.StartEtcd(t)
	bin := build(t, "logger")
	ca := testcert.NewCA(t)
	dir := t.TempDir()
	certFile, keyFile := filepath.Join(dir, "tls.crt"), filepath.Join(dir, "tls.key")
	write := func(cn string) {
		c, k := ca.Issue(t, cn, "127.0.0.1")
		if err := os.WriteFile(certFile, []byte(c), 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(keyFile, []byte(k), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	write("first")
	tlsAddr, httpAddr := testenv.FreeAddr(t), testenv.FreeAddr(t)
	var out bytes.Buffer
	cmd := exec.Command(filepath.Join(bin, "logger"), "--etcd", e.Endpoint, "--host", "127.0.0.1", "--log-level", "info",
		"--syslog-addr", testenv.FreeAddr(t), "--syslog-tls-addr", tlsAddr, "--tls-cert", certFile, "--tls-key", keyFile,
		"--http-addr", httpAddr, "--log-root", t.TempDir())
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer stopClean(t, "logger", cmd, &out)
	waitHTTP(t, "http://"+httpAddr+"/healthz", 200)
	served := func() string {
		c, err := tls.DialWithDialer(&net.Dialer{Timeout: 3 * time.Second}, "tcp", tlsAddr, &tls.Config{InsecureSkipVerify: true})
		if err != nil {
			return "handshake failed: " + err.Error()
		}
		defer c.Close()
		return c.ConnectionState().PeerCertificates[0].Subject.CommonName
	}
	if got := served(); got != "first" {
		t.Fatalf("served %q before the renewal", got)
	}
	write("renewed")
	if err := cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	testenv.Eventually(t, 5*time.Second, func() bool { return served() == "renewed" }, "the renewed certificate is not served after SIGHUP (got %q)\n%s", served(), &out)
	if err := os.WriteFile(keyFile, []byte("garbage"), 0o600); err != nil {
		t.Fatal(err)
	}
	_ = cmd.Process.Signal(syscall.SIGHUP)
	time.Sleep(300 * time.Millisecond)
	if got := served(); got != "renewed" {
		t.Fatalf("after a HUP with a bad key file the logger serves %q", got)
	}
}
