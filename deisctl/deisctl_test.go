package deisctl_test

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/deis/dataplane/deisctl"
	"github.com/deis/dataplane/pkg/keys"
	"github.com/deis/dataplane/pkg/testenv"
	"github.com/deis/dataplane/pkg/testenv/testcert"
)

func run(t *testing.T, cli *clientv3.Client, args ...string) (string, error) {
	t.Helper()
	var out, errb bytes.Buffer
	c := &deisctl.CLI{Stdout: &out, Stderr: &errb, Etcd: cli}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	err := c.Run(ctx, args)
	return out.String() + errb.String(), err
}

func get(t *testing.T, cli *clientv3.Client, key string) (string, bool) {
	t.Helper()
	resp, err := cli.Get(context.Background(), key)
	if err != nil {
		t.Fatal(err)
	}
	if len(resp.Kvs) == 0 {
		return "", false
	}
	return string(resp.Kvs[0].Value), true
}

// TestConfigRefusesWhatTheDaemonsWouldRefuse: each value goes through the
// parser its daemon uses; a refused change writes nothing at all.
func TestConfigRefusesWhatTheDaemonsWouldRefuse(t *testing.T) {
	t.Parallel()
	cli := testenv.StartEtcd(t).Client()
	for _, bad := range []struct {
		args []string
		says string
	}{
		{[]string{"config", "router", "set", "bodySize=abc"}, `/deis/router/bodySize="abc"`},
		{[]string{"config", "router", "set", "connectTimeout=5s", "bodySize=abc"}, "bodySize"},
		{[]string{"config", "router", "set", "bodysize=1m"}, "unknown router setting (did you mean /deis/router/bodySize?)"},
		{[]string{"config", "router", "set", "gzipCompLevel=12"}, "from 1 to 9"},
		{[]string{"config", "platform", "set", "domain=not a domain"}, "domain"},
		{[]string{"config", "controller", "set", "registrationMode=maybe"}, "want one of enabled, disabled, admin_only"},
		{[]string{"config", "logs", "set", "storageAdapterType=disk"}, "want memory, memory:N or file"},
		{[]string{"config", "logs", "set", "drain=ftp://x"}, "drain"},
		{[]string{"config", "builder", "set", "sshPrivateKey=/nonexistent"}, "read from a file"},
		{[]string{"config", "nosuch", "get"}, "unknown component"},
	} {
		out, err := run(t, cli, bad.args...)
		if err == nil || !strings.Contains(err.Error(), bad.says) {
			t.Errorf("%v: %v %s, want an error saying %q", bad.args, err, out, bad.says)
		}
	}
	resp, _ := cli.Get(context.Background(), "/deis/", clientv3.WithPrefix(), clientv3.WithCountOnly())
	if resp.Count != 0 {
		t.Fatalf("refused changes wrote %d keys", resp.Count)
	}
	if _, err := run(t, cli, "config", "router", "set", "bodySize=10m", "connectTimeout=5s"); err != nil {
		t.Fatal(err)
	}
	if v, _ := get(t, cli, "/deis/router/bodySize"); v != "10m" {
		t.Errorf("bodySize = %q", v)
	}
	if out, err := run(t, cli, "config", "router", "get", "bodySize"); err != nil || out != "10m\n" {
		t.Errorf("get: %q %v", out, err)
	}
	if out, err := run(t, cli, "config", "router", "get"); err != nil || out != "bodySize=10m\nconnectTimeout=5s\n" {
		t.Errorf("get all: %q %v", out, err)
	}
	if _, err := run(t, cli, "config", "router", "rm", "connectTimeout"); err != nil {
		t.Fatal(err)
	}
	if _, ok := get(t, cli, "/deis/router/connectTimeout"); ok {
		t.Error("rm left the key")
	}
	// File-valued settings: the certificate and key are read from files
	// and must make a pair.
	ca := testcert.NewCA(t)
	cert, key := ca.Issue(t, "*.example.test")
	_, otherKey := ca.Issue(t, "other.example.test")
	dir := t.TempDir()
	for name, data := range map[string]string{"cert.pem": cert, "key.pem": key, "other.pem": otherKey} {
		_ = os.WriteFile(filepath.Join(dir, name), []byte(data), 0o600)
	}
	if _, err := run(t, cli, "config", "router", "set", "sslCert="+filepath.Join(dir, "cert.pem"), "sslKey="+filepath.Join(dir, "other.pem")); err == nil || !strings.Contains(err.Error(), "sslCert and sslKey") {
		t.Errorf("a mismatched pair: %v", err)
	}
	if _, err := run(t, cli, "config", "router", "set", "sslCert="+filepath.Join(dir, "cert.pem"), "sslKey="+filepath.Join(dir, "key.pem")); err != nil {
		t.Fatal(err)
	}
	if v, _ := get(t, cli, "/deis/router/sslCert"); v != cert {
		t.Errorf("sslCert holds %q, want the file's PEM", v)
	}
	if _, err := run(t, cli, "config", "platform", "set", "domain=example.test", "enablePlacementOptions=true"); err != nil {
		t.Fatal(err)
	}
}

// TestBackupIsOneConsistentSnapshotUnderWrites: while a writer changes two
// keys together, again and again, the backup holds them equal (one etcd
// revision); the restore onto a fresh etcd brings back every key but the
// leased ones, and the data directories.
func TestBackupIsOneConsistentSnapshotUnderWrites(t *testing.T) {
	t.Parallel()
	src := testenv.StartEtcd(t).Client()
	ctx := context.Background()
	for k, v := range map[string]string{
		keys.User("alice"): `{"password":"x"}`, keys.AppOwner("web"): "alice", keys.AppScale("web"): `{"web":3}`,
		keys.CertPEM("www.example.test"): "PEM", keys.PlatformDomain: "example.test", "/deis/router/bodySize": "1m",
	} {
		if _, err := src.Put(ctx, k, v); err != nil {
			t.Fatal(err)
		}
	}
	lease, _ := src.Grant(ctx, 60)
	_, _ = src.Put(ctx, keys.Host("10.0.0.9"), "{}", clientv3.WithLease(lease.ID))
	logs, repos := t.TempDir(), t.TempDir()
	_ = os.WriteFile(filepath.Join(logs, "web.log"), []byte("old line 1\nold line 2\n"), 0o644)
	_ = os.MkdirAll(filepath.Join(repos, "web.git", "refs"), 0o755)
	_ = os.WriteFile(filepath.Join(repos, "web.git", "HEAD"), []byte("ref: refs/heads/master\n"), 0o644)

	var writes atomic.Int64
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			v := fmt.Sprint(i)
			if _, err := src.Txn(ctx).Then(clientv3.OpPut("/deis/test/a", v), clientv3.OpPut("/deis/test/b", v)).Commit(); err == nil {
				writes.Add(1)
			}
		}
	})
	testenv.Eventually(t, 10*time.Second, func() bool { return writes.Load() > 50 }, "the writer writes")
	archive := filepath.Join(t.TempDir(), "deis.tgz")
	out, err := run(t, src, "backup", archive, "--logs-dir", logs, "--repos-dir", repos)
	before := writes.Load()
	time.Sleep(100 * time.Millisecond)
	close(stop)
	wg.Wait()
	if err != nil {
		t.Fatalf("backup: %v %s", err, out)
	}
	if writes.Load() == before {
		t.Fatal("the writer did not write during and after the backup")
	}
	st, _ := os.Stat(archive)
	if st.Mode().Perm() != 0o600 {
		t.Errorf("the archive is %v: it holds password hashes", st.Mode().Perm())
	}

	dst := testenv.StartEtcd(t).Client()
	logs2, repos2 := filepath.Join(t.TempDir(), "logs"), filepath.Join(t.TempDir(), "repos")
	if out, err := run(t, dst, "restore", archive, "--logs-dir", logs2, "--repos-dir", repos2); err != nil {
		t.Fatalf("restore: %v %s", err, out)
	}
	a, _ := get(t, dst, "/deis/test/a")
	b, _ := get(t, dst, "/deis/test/b")
	if a == "" || a != b {
		t.Errorf("the backup is not one snapshot: a=%q b=%q", a, b)
	}
	t.Logf("backup taken while the writer was at %d of %d writes; a=b=%s", before, writes.Load(), a)
	for _, k := range []string{keys.User("alice"), keys.AppOwner("web"), keys.AppScale("web"), keys.CertPEM("www.example.test"), keys.PlatformDomain, "/deis/router/bodySize"} {
		want, _ := get(t, src, k)
		if got, ok := get(t, dst, k); !ok || got != want {
			t.Errorf("%s restored as %q, want %q", k, got, want)
		}
	}
	if _, ok := get(t, dst, keys.Host("10.0.0.9")); ok {
		t.Error("a leased key (a live agent's announcement) was restored")
	}
	if data, _ := os.ReadFile(filepath.Join(logs2, "web.log")); string(data) != "old line 1\nold line 2\n" {
		t.Errorf("logs restored as %q", data)
	}
	if data, _ := os.ReadFile(filepath.Join(repos2, "web.git", "HEAD")); string(data) != "ref: refs/heads/master\n" {
		t.Errorf("repos restored as %q", data)
	}
	// Once users or apps exist, a second restore is refused (and with
	// --force allowed).
	if _, err := run(t, dst, "restore", archive); err == nil || !strings.Contains(err.Error(), "fresh cluster") {
		t.Errorf("restore over a platform: %v", err)
	}
	if _, err := run(t, dst, "restore", archive, "--force"); err != nil {
		t.Errorf("restore --force: %v", err)
	}
}

// TestRestoreRefusesEntriesThatLeaveTheirDirectory: a crafted archive
// cannot write outside --logs-dir.
func TestRestoreRefusesEntriesThatLeaveTheirDirectory(t *testing.T) {
	t.Parallel()
	cli := testenv.StartEtcd(t).Client()
	var buf bytes.Buffer
	gz := gzip.NewWriter(&buf)
	tw := tar.NewWriter(gz)
	_ = tw.WriteHeader(&tar.Header{Name: "deis.json", Mode: 0o600, Size: 2})
	_, _ = tw.Write([]byte("{}"))
	evil := "pwned\n"
	_ = tw.WriteHeader(&tar.Header{Name: "files/logs/../../escape.txt", Mode: 0o644, Size: int64(len(evil))})
	_, _ = tw.Write([]byte(evil))
	_ = tw.Close()
	_ = gz.Close()
	base := t.TempDir()
	logs := filepath.Join(base, "a", "logs")
	_, err := deisctl.Restore(context.Background(), cli, deisctl.Dirs{"logs": logs}, &buf, false)
	if err == nil || !strings.Contains(err.Error(), "leaves its directory") {
		t.Errorf("restore of ../: %v", err)
	}
	if _, err := os.Stat(filepath.Join(base, "escape.txt")); err == nil {
		t.Error("the entry was written outside the directory")
	}
}

// TestInstallWritesUnitsForThePlanes drives install and uninstall with a
// FAKE systemctl (a script that records its arguments): systemd cannot run
// in this test's container.
func TestInstallWritesUnitsForThePlanes(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	logFile := filepath.Join(dir, "systemctl.log")
	fake := filepath.Join(dir, "systemctl")
	_ = os.WriteFile(fake, []byte("#!/bin/sh\necho \"$@\" >> "+logFile+"\n"), 0o755)
	units, env := filepath.Join(dir, "units"), filepath.Join(dir, "env")
	var out bytes.Buffer
	c := &deisctl.CLI{Stdout: &out, Stderr: &out, Systemd: deisctl.Systemd{UnitDir: units, EnvDir: env, Systemctl: []string{fake}, Sysctl: []string{fake, "sysctl"}, SysctlDir: filepath.Join(dir, "sysctl.d")}}
	if err := c.Run(context.Background(), []string{"install", "stateless-platform", "--planes", "dataPlane,routerMesh"}); err != nil {
		t.Fatalf("install: %v %s", err, out.String())
	}
	entries, _ := os.ReadDir(units)
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	if strings.Join(names, " ") != "deis-agent.service deis-logspout.service deis-publisher.service deis-router.service" {
		t.Errorf("units for dataPlane,routerMesh: %v", names)
	}
	if data, _ := os.ReadFile(filepath.Join(env, "agent.env")); string(data) != "LABELS=dataPlane=true,routerMesh=true\n" {
		t.Errorf("agent.env: %q", data)
	}
	calls, _ := os.ReadFile(logFile)
	if !strings.Contains(string(calls), "sysctl -w net.ipv4.tcp_migrate_req=1\ndaemon-reload\nenable --now deis-router.service deis-publisher.service deis-logspout.service deis-agent.service\n") {
		t.Errorf("systemctl calls: %q", calls)
	}
	if err := c.Run(context.Background(), []string{"restart", "router"}); err != nil {
		t.Fatal(err)
	}
	if err := c.Run(context.Background(), []string{"uninstall", "router"}); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(units, "deis-router.service")); err == nil {
		t.Error("uninstall left the router's unit")
	}
	calls, _ = os.ReadFile(logFile)
	if !strings.Contains(string(calls), "restart deis-router.service\ndisable --now deis-router.service\ndaemon-reload\n") {
		t.Errorf("systemctl calls: %q", calls)
	}
	if err := c.Run(context.Background(), []string{"install", "platform", "--planes", "nowhere"}); err == nil || !strings.Contains(err.Error(), "unknown plane") {
		t.Errorf("a bad plane: %v", err)
	}
}

// TestRollingRestartRouterAlternatesInstances drives rolling-restart with a
// FAKE systemctl (a script that records its arguments and answers
// is-active for the instance named in $ACTIVE): a new instance starts
// beside the running one before the old one stops. That the ports really
// pass between two routers without a refused connection is
// router.TestRestartUnderLoadLosesNothing.
func TestRollingRestartRouterAlternatesInstances(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	logFile := filepath.Join(dir, "systemctl.log")
	for _, c := range []struct {
		active string
		want   string
	}{
		{"deis-router.service", "start deis-router@a.service\nenable deis-router@a.service\nstop deis-router.service\ndisable deis-router.service\n"},
		{"deis-router@a.service", "start deis-router@b.service\nenable deis-router@b.service\nstop deis-router@a.service\ndisable deis-router@a.service\n"},
		{"deis-router@b.service", "start deis-router@a.service\nenable deis-router@a.service\nstop deis-router@b.service\ndisable deis-router@b.service\n"},
	} {
		_ = os.Remove(logFile)
		fake := filepath.Join(dir, "systemctl")
		_ = os.WriteFile(fake, []byte("#!/bin/sh\nif [ \"$1\" = is-active ]; then [ \"$3\" = \""+c.active+"\" ]; exit $?; fi\necho \"$@\" >> "+logFile+"\n"), 0o755)
		var out bytes.Buffer
		cli := &deisctl.CLI{Stdout: &out, Stderr: &out, Systemd: deisctl.Systemd{UnitDir: filepath.Join(dir, "units"), EnvDir: dir, Systemctl: []string{fake}, Sysctl: []string{fake, "sysctl"}, SysctlDir: filepath.Join(dir, "sysctl.d")}}
		_ = os.MkdirAll(filepath.Join(dir, "units"), 0o755)
		if err := cli.Run(context.Background(), []string{"rolling-restart", "router"}); err != nil {
			t.Fatalf("%s: %v %s", c.active, err, out.String())
		}
		calls, _ := os.ReadFile(logFile)
		if string(calls) != "daemon-reload\nsysctl -w net.ipv4.tcp_migrate_req=1\n"+c.want {
			t.Errorf("with %s running, systemctl got:\n%s\nwant:\ndaemon-reload\nsysctl -w net.ipv4.tcp_migrate_req=1\n%s", c.active, calls, c.want)
		}
		if conf, _ := os.ReadFile(filepath.Join(dir, "sysctl.d", "90-deis-router.conf")); !strings.Contains(string(conf), "net.ipv4.tcp_migrate_req = 1") {
			t.Errorf("sysctl.d: %q", conf)
		}
		if unit, err := os.ReadFile(filepath.Join(dir, "units", "deis-router@.service")); err != nil || !strings.Contains(string(unit), "Type=notify") {
			t.Errorf("the template unit: %v", err)
		}
	}
	var out bytes.Buffer
	cli := &deisctl.CLI{Stdout: &out, Stderr: &out}
	if err := cli.Run(context.Background(), []string{"rolling-restart", "logger"}); err == nil {
		t.Error("rolling-restart of the logger was accepted")
	}
}
