package etcdutil_test

import (
	"context"
	"flag"
	"net/url"
	"os"
	"path/filepath"
	"testing"
	"time"

	"go.etcd.io/etcd/server/v3/embed"
	"go.uber.org/zap"

	"github.com/deis/dataplane/pkg/daemon"
	"github.com/deis/dataplane/pkg/etcdutil"
	"github.com/deis/dataplane/pkg/testenv"
	"github.com/deis/dataplane/pkg/testenv/testcert"
)

// TestDaemonFlagsReachATLSEtcd: an etcd that serves https and requires a
// client certificate, reached through the common flags every daemon takes
// (--etcd https://..., --etcd-cacert, --etcd-cert, --etcd-key); without the
// client certificate it refuses.
func TestDaemonFlagsReachATLSEtcd(t *testing.T) {
	if testing.Short() {
		t.Skip("needs etcd: skipped by -short")
	}
	t.Parallel()
	dir := t.TempDir()
	ca := testcert.NewCA(t)
	write := func(name, data string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(data), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	caFile := write("ca.pem", ca.PEM())
	sc, sk := ca.IssueIP(t, "127.0.0.1")
	srvCert, srvKey := write("server.pem", sc), write("server-key.pem", sk)
	cc, ck := ca.IssueClient(t, "router")
	cliCert, cliKey := write("client.pem", cc), write("client-key.pem", ck)

	client := url.URL{Scheme: "https", Host: testenv.FreeAddr(t)}
	peer := url.URL{Scheme: "http", Host: testenv.FreeAddr(t)}
	cfg := embed.NewConfig()
	cfg.Dir = filepath.Join(dir, "etcd")
	cfg.ListenClientUrls, cfg.AdvertiseClientUrls = []url.URL{client}, []url.URL{client}
	cfg.ListenPeerUrls, cfg.AdvertisePeerUrls = []url.URL{peer}, []url.URL{peer}
	cfg.InitialCluster = cfg.Name + "=" + peer.String()
	cfg.ClientTLSInfo.CertFile, cfg.ClientTLSInfo.KeyFile = srvCert, srvKey
	cfg.ClientTLSInfo.TrustedCAFile = caFile
	cfg.ClientTLSInfo.ClientCertAuth = true
	cfg.LogLevel = "error"
	cfg.ZapLoggerBuilder = embed.NewZapLoggerBuilder(zap.NewNop())
	srv, err := embed.StartEtcd(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.Close)
	select {
	case <-srv.Server.ReadyNotify():
	case <-time.After(30 * time.Second):
		t.Fatal("etcd not ready")
	}

	connect := func(args ...string) error {
		var common daemon.Common
		fs := flag.NewFlagSet("test", flag.ContinueOnError)
		common.Register(fs)
		if err := fs.Parse(append([]string{"--etcd", client.String()}, args...)); err != nil {
			return err
		}
		if err := common.Validate(); err != nil {
			return err
		}
		cli, err := etcdutil.Connect(common.Etcd, etcdutil.WithTLS(common.EtcdTLS))
		if err != nil {
			return err
		}
		defer cli.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
		defer cancel()
		_, err = cli.Put(ctx, "/deis/platform/domain", "tls.example")
		return err
	}
	if err := connect("--etcd-cacert", caFile, "--etcd-cert", cliCert, "--etcd-key", cliKey); err != nil {
		t.Fatalf("with the CA and a client certificate: %v", err)
	}
	if err := connect("--etcd-cacert", caFile); err == nil {
		t.Fatal("etcd requiring client certificates accepted a client without one")
	}
	if err := connect("--etcd-cert", cliCert); err == nil {
		t.Fatal("--etcd-cert without --etcd-key was accepted")
	}
}
