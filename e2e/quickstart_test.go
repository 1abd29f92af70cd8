package e2e

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"fmt"
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
	gossh "golang.org/x/crypto/ssh"

	"github.com/deis/dataplane/pkg/keys"
	"github.com/deis/dataplane/pkg/testenv"
	"github.com/deis/dataplane/pkg/testenv/testcert"
)

// TestQuickstartWithTheDeisBinary is the README's quickstart as a user
// types it, with the real deis binary, git and ssh, on `make run`:
// register, keys:add, create, git push of a Procfile app, the app through
// the router, logs with its output and the lifecycle events, config:set,
// scale, domains:add with certs:add (HTTPS with that certificate), run,
// releases, rollback, destroy.
func TestQuickstartWithTheDeisBinary(t *testing.T) {
	if testing.Short() {
		t.Skip("builds every binary and needs Docker")
	}
	dcli := testenv.Docker(t)
	if err := testenv.EnsureBusyboxImage(dcli); err != nil {
		t.Fatal(err)
	}
	dp := startDevplane(t, "127.0.0.79")
	home := t.TempDir()
	work := filepath.Join(t.TempDir(), "quick")
	if err := os.MkdirAll(filepath.Join(home, ".ssh"), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(work, 0o755); err != nil {
		t.Fatal(err)
	}
	env := append(os.Environ(), "HOME="+home, "GIT_AUTHOR_NAME=t", "GIT_AUTHOR_EMAIL=t@example.test", "GIT_COMMITTER_NAME=t",
		"GIT_COMMITTER_EMAIL=t@example.test", "GIT_TERMINAL_PROMPT=0",
		"GIT_SSH_COMMAND=ssh -F /dev/null -i "+filepath.Join(home, ".ssh", "id_ed25519")+" -o IdentitiesOnly=yes -o UserKnownHostsFile=/dev/null -o StrictHostKeyChecking=no -o ConnectTimeout=10")
	run := func(name string, args ...string) (string, error) {
		cmd := exec.Command(name, args...)
		cmd.Dir, cmd.Env = work, env
		b, err := cmd.CombinedOutput()
		return string(b), err
	}
	deis := func(args ...string) string {
		t.Helper()
		out, err := run(filepath.Join(dp.bin, "deis"), args...)
		if err != nil {
			t.Fatalf("deis %s: %v\n%s", strings.Join(args, " "), err, out)
		}
		return out
	}
	// The user's key.
	pub, priv, _ := ed25519.GenerateKey(rand.Reader)
	block, _ := gossh.MarshalPrivateKey(priv, "dev")
	if err := os.WriteFile(filepath.Join(home, ".ssh", "id_ed25519"), pem.EncodeToMemory(block), 0o600); err != nil {
		t.Fatal(err)
	}
	spub, _ := gossh.NewPublicKey(pub)
	_ = os.WriteFile(filepath.Join(home, ".ssh", "id_ed25519.pub"), []byte(strings.TrimSpace(string(gossh.MarshalAuthorizedKey(spub)))+" dev@laptop\n"), 0o644)

	controller := "http://" + dp.host + ":" + dp.controller
	waitHTTP(t, controller+"/v1/", 401) // the v1 client's probe
	deis("register", controller, "--username=dev", "--password=pw", "--email=dev@example.test")
	deis("keys:add", filepath.Join(home, ".ssh", "id_ed25519.pub"))
	procfile := "web: mkdir -p /www && echo \"hello $GREETING from $HOSTNAME\" > /www/index.html && echo started web && exec httpd -f -p $PORT -h /www\n"
	_ = os.WriteFile(filepath.Join(work, "Procfile"), []byte(procfile), 0o644)
	for _, args := range [][]string{{"init", "-q", "-b", "master"}, {"add", "-A"}, {"commit", "-qm", "first"}} {
		if out, err := run("git", args...); err != nil {
			t.Fatalf("git %v: %v %s", args, err, out)
		}
	}
	app := fmt.Sprintf("quick%d", os.Getpid()%100000)
	if out := deis("create", app); !strings.Contains(out, "Git remote deis added") {
		t.Fatalf("create: %s", out)
	}
	// v1's remote names port 2222; this test's router listens elsewhere.
	if out, err := run("git", "remote", "set-url", "deis", fmt.Sprintf("ssh://git@%s:%s/%s.git", dp.host, dp.ssh, app)); err != nil {
		t.Fatalf("%v %s", err, out)
	}
	var push string
	var err error
	for i := 0; i < 20; i++ { // the builder's key watch may lag keys:add by a moment
		push, err = run("git", "push", "deis", "master")
		if err == nil || !strings.Contains(push, "Permission denied") {
			break
		}
		time.Sleep(500 * time.Millisecond)
	}
	if err != nil || !strings.Contains(push, "deployed to Deis") {
		t.Fatalf("git push: %v\n%s", err, push)
	}
	get := func(path string) (int, string) {
		req, _ := http.NewRequest("GET", "http://"+dp.host+":"+dp.http+path, nil)
		req.Host = app + ".localhost"
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return 0, err.Error()
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, strings.TrimSpace(string(b))
	}
	if code, body := get("/"); code != 200 || !strings.HasPrefix(body, "hello  from") {
		t.Fatalf("the app after the push: %d %q", code, body)
	}
	deis("config:set", "GREETING=world", "DEIS_STOP_TIMEOUT=2")
	if code, body := get("/"); code != 200 || !strings.HasPrefix(body, "hello world from") {
		t.Fatalf("the app after config:set: %d %q", code, body)
	}
	if out := deis("scale", "web=3"); strings.Count(out, " up (v") != 3 {
		t.Fatalf("scale: %s", out)
	}
	seen := map[string]bool{}
	for i := 0; i < 60 && len(seen) < 3; i++ {
		if code, body := get("/"); code == 200 {
			seen[body] = true
		}
	}
	if len(seen) != 3 {
		t.Errorf("requests reached %d containers after web=3, want 3: %v", len(seen), seen)
	}
	var logs string
	testenv.Eventually(t, 20*time.Second, func() bool {
		logs = deis("logs")
		return strings.Contains(logs, app+"[web.1]: started web") && strings.Contains(logs, app+"[deis-controller]: dev scaled containers web=3")
	}, "deis logs shows the app's output and the lifecycle events:\n%s", logs)

	// A custom domain with its certificate: HTTPS through the router.
	ca := testcert.NewCA(t)
	cert, key := ca.Issue(t, "www.quick.example")
	_ = os.WriteFile(filepath.Join(work, "cert.pem"), []byte(cert), 0o600)
	_ = os.WriteFile(filepath.Join(work, "key.pem"), []byte(key), 0o600)
	deis("domains:add", "www.quick.example")
	deis("certs:add", filepath.Join(work, "cert.pem"), filepath.Join(work, "key.pem"))
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM([]byte(ca.PEM()))
	var httpsBody string
	testenv.Eventually(t, 20*time.Second, func() bool {
		client := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{DialTLSContext: func(ctx context.Context, network, _ string) (net.Conn, error) {
			d := tls.Dialer{Config: &tls.Config{RootCAs: pool, ServerName: "www.quick.example"}}
			return d.DialContext(ctx, network, dp.host+":"+dp.https)
		}}}
		resp, err := client.Get("https://www.quick.example/")
		if err != nil {
			return false
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		httpsBody = string(b)
		return resp.StatusCode == 200 && strings.HasPrefix(httpsBody, "hello world from")
	}, "HTTPS with the app's certificate (last body %q)", httpsBody)

	if out := deis("run", "echo", "ran with $GREETING"); !strings.Contains(out, "ran with world") {
		t.Errorf("run: %s", out)
	}
	if out := deis("releases"); !strings.Contains(out, "dev added DEIS_STOP_TIMEOUT, GREETING") {
		t.Errorf("releases: %s", out)
	}
	deis("rollback")
	if code, body := get("/"); code != 200 || !strings.HasPrefix(body, "hello  from") {
		t.Errorf("after the rollback (to the push's release, before GREETING): %d %q", code, body)
	}
	deis("destroy", "--confirm="+app)
	if code, _ := get("/"); code != 404 {
		t.Errorf("after destroy: %d, want 404", code)
	}
	list, _ := dcli.ListContainers(docker.ListContainersOptions{All: true, Filters: map[string][]string{"label": {keys.LabelApp + "=" + app}}})
	if len(list) != 0 {
		t.Errorf("%d containers of the destroyed app left", len(list))
	}
}
