package e2e

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	docker "github.com/fsouza/go-dockerclient"

	"github.com/deis/dataplane/pkg/keys"
	"github.com/deis/dataplane/pkg/testenv"
	"github.com/deis/dataplane/pkg/testenv/testcert"
)

// TestBackupAndRestoreThePlatform: a platform with two users and three
// apps (one pushed with git and scaled to 3, one with a custom domain and
// its certificate, one with config), its logs in the logger's file store
// → deisctl backup → etcd and the data directories wiped (a lost machine)
// → deisctl restore onto a fresh etcd, then the platform started on it:
// the apps answer through the router with the same certificate and
// config, the users log in, their SSH key pushes, `deis logs` shows the
// lines from before the backup.
func TestBackupAndRestoreThePlatform(t *testing.T) {
	if testing.Short() {
		t.Skip("builds every binary and needs Docker")
	}
	dcli := testenv.Docker(t)
	if err := testenv.EnsureBusyboxImage(dcli); err != nil {
		t.Fatal(err)
	}
	const host = "127.0.0.88"
	removeContainers := func() {
		list, _ := dcli.ListContainers(docker.ListContainersOptions{All: true, Filters: map[string][]string{"label": {keys.LabelHost + "=" + host}}})
		for _, c := range list {
			_ = dcli.RemoveContainer(docker.RemoveContainerOptions{ID: c.ID, Force: true})
		}
	}
	t.Cleanup(removeContainers)
	bin := build(t, "etcd", "devplane", "deis", "deisctl")
	deisctl := func(endpoint string, args ...string) string {
		t.Helper()
		out, err := exec.Command(filepath.Join(bin, "deisctl"), append([]string{"--etcd", endpoint}, args...)...).CombinedOutput()
		if err != nil {
			t.Fatalf("deisctl %s: %v\n%s", strings.Join(args, " "), err, out)
		}
		return string(out)
	}

	// The platform before: its own etcd process, its data directory.
	etcd1 := startEtcdCluster(t, bin, 1)
	data := t.TempDir()
	deisctl(endpoints(etcd1), "config", "logs", "set", "storageAdapterType=file")
	dp := startDevplaneOn(t, host, "--etcd", endpoints(etcd1), "--data-dir", data)
	p := newPusher(t, dp) // dev, the first user: admin; app one
	p.commit("web: mkdir -p /www && echo \"one $HOSTNAME\" > /www/index.html && echo one booted && exec httpd -f -p $PORT -h /www\n")
	p.push("done, " + p.app + ":v2 deployed")
	p.deis("scale", "web=3")
	p.deis("create", "two", "--no-remote")
	p.deis("pull", "deis/busybox:latest", "-a", "two", "--procfile=web: mkdir -p /www && echo two > /www/index.html && exec httpd -f -p $PORT -h /www")
	p.deis("domains:add", "www.two.example", "-a", "two")
	ca := testcert.NewCA(t)
	cert, key := ca.Issue(t, "www.two.example")
	_ = os.WriteFile(filepath.Join(p.dir, "two.crt"), []byte(cert), 0o600)
	_ = os.WriteFile(filepath.Join(p.dir, "two.key"), []byte(key), 0o600)
	p.deis("certs:add", filepath.Join(p.dir, "two.crt"), filepath.Join(p.dir, "two.key"))
	p.deis("create", "three", "--no-remote")
	p.deis("pull", "deis/busybox:latest", "-a", "three", "--procfile=web: mkdir -p /www && echo \"three says $MOTTO\" > /www/index.html && exec httpd -f -p $PORT -h /www")
	p.deis("config:set", "MOTTO=restored", "-a", "three")
	p.run("sh", "-c", "HOME=$(mktemp -d) "+filepath.Join(dp.bin, "deis")+" register http://"+dp.host+":"+dp.controller+" --username=ann --password=ann-pw --email=ann@example.test")
	checkApps(t, dp, ca)
	var logs string
	testenv.Eventually(t, 20*time.Second, func() bool {
		logs = p.deis("logs", "-a", p.app)
		return strings.Contains(logs, "one booted")
	}, "the app's lines in the logs before the backup:\n%s", logs)

	archive := filepath.Join(t.TempDir(), "platform.tgz")
	out := deisctl(endpoints(etcd1), "backup", archive, "--logs-dir", filepath.Join(data, "logs"), "--repos-dir", filepath.Join(data, "repos"))
	t.Log(strings.TrimSpace(out))

	// The machine is lost: the platform, its containers, etcd and the data.
	dp.stop()
	removeContainers()
	for _, m := range etcd1 {
		m.kill()
	}
	if err := os.RemoveAll(data); err != nil {
		t.Fatal(err)
	}

	// A fresh etcd, the restore, then the platform on it.
	etcd2 := startEtcdCluster(t, bin, 1)
	data2 := t.TempDir()
	out = deisctl(endpoints(etcd2), "restore", archive, "--logs-dir", filepath.Join(data2, "logs"), "--repos-dir", filepath.Join(data2, "repos"))
	t.Log(strings.TrimSpace(out))
	dp2 := startDevplaneOn(t, host, "--etcd", endpoints(etcd2), "--data-dir", data2)
	p.dp = dp2
	testenv.Eventually(t, 60*time.Second, func() bool {
		return appAnswers(dp2, p.app, "one ") && appAnswers(dp2, "two", "two") && appAnswers(dp2, "three", "three says restored")
	}, "the restored apps never answered through the router")
	checkApps(t, dp2, ca)
	// The users log in with their passwords; dev's key pushes.
	p.deis("login", "http://"+dp2.host+":"+dp2.controller, "--username=dev", "--password=pw")
	p.run("sh", "-c", "HOME=$(mktemp -d) "+filepath.Join(dp2.bin, "deis")+" login http://"+dp2.host+":"+dp2.controller+" --username=ann --password=ann-pw")
	if out := p.deis("ps", "-a", p.app); strings.Count(out, " up (v") != 3 {
		t.Errorf("app one after the restore: %s", out)
	}
	testenv.Eventually(t, 20*time.Second, func() bool {
		logs = p.deis("logs", "-a", p.app)
		return strings.Contains(logs, "one booted") && strings.Contains(logs, "dev scaled containers web=3")
	}, "deis logs after the restore shows the lines from before:\n%s", logs)
	p.run("git", "remote", "set-url", "deis", "ssh://git@"+dp2.host+":"+dp2.ssh+"/"+p.app+".git")
	p.commit("web: mkdir -p /www && echo \"one again $HOSTNAME\" > /www/index.html && exec httpd -f -p $PORT -h /www\n")
	p.push("deployed to Deis")
	if !appAnswers(dp2, p.app, "one again") {
		t.Error("the push after the restore is not served")
	}
}

// appAnswers reports whether app answers 200 with a body that starts with
// prefix through dp's router.
func appAnswers(dp *devplane, app, prefix string) bool {
	req, _ := http.NewRequest("GET", "http://"+dp.host+":"+dp.http+"/", nil)
	req.Host = app + ".localhost"
	resp, err := appClient.Do(req)
	if err != nil {
		return false
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode == 200 && strings.HasPrefix(string(b), prefix)
}

// checkApps: app two over HTTPS with the certificate ca issued for its
// domain, three with its config.
func checkApps(t *testing.T, dp *devplane, ca *testcert.CA) {
	t.Helper()
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM([]byte(ca.PEM()))
	var body string
	testenv.Eventually(t, 30*time.Second, func() bool {
		client := &http.Client{Timeout: 3 * time.Second, Transport: &http.Transport{DialTLSContext: func(ctx context.Context, network, _ string) (net.Conn, error) {
			d := tls.Dialer{Config: &tls.Config{RootCAs: pool, ServerName: "www.two.example"}}
			return d.DialContext(ctx, network, dp.host+":"+dp.https)
		}}}
		resp, err := client.Get("https://www.two.example/")
		if err != nil {
			body = err.Error()
			return false
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		body = string(b)
		return resp.StatusCode == 200 && strings.HasPrefix(body, "two")
	}, "app two over HTTPS with its certificate: %s", body)
	testenv.Eventually(t, 30*time.Second, func() bool { return appAnswers(dp, "three", "three says restored") }, "app three with its config")
}
