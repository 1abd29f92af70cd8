package e2e

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	docker "github.com/fsouza/go-dockerclient"
	clientv3 "go.etcd.io/etcd/client/v3"
	gossh "golang.org/x/crypto/ssh"

	"github.com/deis/dataplane/pkg/etcdutil"
	"github.com/deis/dataplane/pkg/keys"
	"github.com/deis/dataplane/pkg/testenv"
)

// TestMakeRunPushServesTheApp is `make run` as a new user meets it: the
// whole platform from devplane; register, add a key and create the app
// through the controller's API; a git push through the router's port
// builds a Procfile app on the stack image, waits for the scheduler to run
// it, prints a URL that works, and the app answers through the router;
// config:set and a scale to 2 deploy; a rollback; destroy removes every key
// of the app and its containers; Ctrl-C stops everything.
func TestMakeRunPushServesTheApp(t *testing.T) {
	if testing.Short() {
		t.Skip("builds every binary and needs Docker")
	}
	dcli := testenv.Docker(t)
	if err := testenv.EnsureBusyboxImage(dcli); err != nil {
		t.Fatal(err)
	}
	// A host address of its own: the agent owns every container labelled
	// with it, and other tests share this Docker engine.
	dp := startDevplane(t, "127.0.0.77")
	host, etcdPort, httpPort, sshPort, ctlPort, stop, out := dp.host, dp.etcd, dp.http, dp.ssh, dp.controller, dp.stop, dp.out
	cli, err := etcdutil.Connect([]string{"http://127.0.0.1:" + etcdPort})
	if err != nil {
		t.Fatal(err)
	}
	defer cli.Close()
	ctx := context.Background()
	app := fmt.Sprintf("pushed%d", os.Getpid()%100000)
	dir := t.TempDir()
	pub, priv, _ := ed25519.GenerateKey(rand.Reader)
	block, _ := gossh.MarshalPrivateKey(priv, "dev")
	keyFile := filepath.Join(dir, "id_dev")
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(block), 0o600); err != nil {
		t.Fatal(err)
	}
	spub, _ := gossh.NewPublicKey(pub)
	// As a developer would: register, add the key, create the app, all
	// through the controller's API.
	api := func(token, method, path string, body any) (int, string) {
		var rd io.Reader
		if body != nil {
			b, _ := json.Marshal(body)
			rd = bytes.NewReader(b)
		}
		req, _ := http.NewRequest(method, "http://"+host+":"+ctlPort+path, rd)
		req.Header.Set("Content-Type", "application/json")
		if token != "" {
			req.Header.Set("Authorization", "token "+token)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatalf("%s %s: %v\ndevplane said:\n%s", method, path, err, out.String())
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	mustAPI := func(want int, token, method, path string, body any) string {
		t.Helper()
		code, b := api(token, method, path, body)
		if code != want {
			t.Fatalf("%s %s: %d %s, want %d", method, path, code, b, want)
		}
		return b
	}
	mustAPI(201, "", "POST", "/v1/auth/register/", map[string]string{"username": "dev", "password": "pw", "email": "dev@example.test"})
	var login struct{ Token string }
	_ = json.Unmarshal([]byte(mustAPI(200, "", "POST", "/v1/auth/login/", map[string]string{"username": "dev", "password": "pw"})), &login)
	tok := login.Token
	mustAPI(201, tok, "POST", "/v1/keys/", map[string]string{"id": "dev@laptop", "public": string(gossh.MarshalAuthorizedKey(spub))})
	mustAPI(201, tok, "POST", "/v1/apps/", map[string]string{"id": app})
	work := filepath.Join(dir, "app")
	gitEnv := append(os.Environ(), "GIT_AUTHOR_NAME=t", "GIT_AUTHOR_EMAIL=t@example.test", "GIT_COMMITTER_NAME=t",
		"GIT_COMMITTER_EMAIL=t@example.test", "GIT_TERMINAL_PROMPT=0", "HOME="+dir,
		"GIT_SSH_COMMAND=ssh -F /dev/null -i "+keyFile+" -o IdentitiesOnly=yes -o IdentityAgent=none -o UserKnownHostsFile=/dev/null -o StrictHostKeyChecking=no -o ConnectTimeout=10")
	git := func(args ...string) (string, error) {
		c := exec.Command("git", args...)
		c.Dir, c.Env = work, gitEnv
		b, err := c.CombinedOutput()
		return string(b), err
	}
	if err := os.MkdirAll(work, 0o755); err != nil {
		t.Fatal(err)
	}
	procfile := "web: mkdir -p /www && echo hello from $HOSTNAME > /www/index.html && exec httpd -f -p $PORT -h /www\n"
	if err := os.WriteFile(filepath.Join(work, "Procfile"), []byte(procfile), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, args := range [][]string{{"init", "-q", "-b", "master"}, {"add", "-A"}, {"commit", "-qm", "first"}} {
		if o, err := git(args...); err != nil {
			t.Fatalf("git %v: %v\n%s", args, err, o)
		}
	}
	remote := fmt.Sprintf("ssh://git@%s:%s/%s.git", host, sshPort, app)
	// The builder's key watch may lag the put by a moment: retry a refusal.
	var pushOut string
	for i := 0; i < 20; i++ {
		pushOut, err = git("push", remote, "master")
		if err == nil || !strings.Contains(pushOut, "Permission denied") {
			break
		}
		time.Sleep(500 * time.Millisecond)
	}
	if err != nil {
		t.Fatalf("push: %v\n%s\ndevplane:\n%s", err, pushOut, out.String())
	}
	url := fmt.Sprintf("http://%s.localhost:%s", app, httpPort)
	if !strings.Contains(pushOut, "done, "+app+":v2 deployed to Deis") || !strings.Contains(pushOut, url) {
		t.Fatalf("push output lacks the deploy line or the URL %s:\n%s", url, pushOut)
	}
	get := func() (int, string) {
		req, _ := http.NewRequest(http.MethodGet, "http://"+host+":"+httpPort+"/", nil)
		req.Host = app + ".localhost"
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return 0, err.Error()
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	// The push returned only once the app was routed: it answers now.
	if code, body := get(); code != 200 || !strings.HasPrefix(body, "hello from ") {
		t.Fatalf("right after the push: %d %q", code, body)
	}
	mustAPI(201, tok, "POST", "/v1/apps/"+app+"/config/", map[string]any{"values": map[string]string{"GREETING": "hi", "DEIS_STOP_TIMEOUT": "2"}}) // httpd as PID 1 ignores SIGTERM
	mustAPI(204, tok, "POST", "/v1/apps/"+app+"/scale/", map[string]int{"web": 2})
	seen := map[string]bool{}
	testenv.Eventually(t, 30*time.Second, func() bool {
		if code, body := get(); code == 200 {
			seen[body] = true
		}
		return len(seen) == 2
	}, "requests reach two containers after web=2 (saw %v)", seen)
	// A push whose app crashes on boot: the push fails naming the cause,
	// and v3 keeps serving.
	if err := os.WriteFile(filepath.Join(work, "Procfile"), []byte("web: echo cannot start: no database >&2; exit 3\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, args := range [][]string{{"add", "-A"}, {"commit", "-qm", "broken"}} {
		if o, err := git(args...); err != nil {
			t.Fatalf("git %v: %v\n%s", args, err, o)
		}
	}
	badOut, err := git("push", remote, "master")
	if err == nil || !strings.Contains(badOut, "v4 failed to deploy") || !strings.Contains(badOut, "exited with code 3") || !strings.Contains(badOut, "keeps serving v3") {
		t.Fatalf("a crashing push: err %v\n%s", err, badOut)
	}
	if code, body := get(); code != 200 || !strings.HasPrefix(body, "hello from ") {
		t.Errorf("after the failed push: %d %q", code, body)
	}
	// Rollback to the push's release, then destroy: every key goes, and the
	// containers with it.
	if b := mustAPI(201, tok, "POST", "/v1/apps/"+app+"/releases/rollback/", map[string]int{"version": 2}); !strings.Contains(b, `"version":5`) {
		t.Errorf("rollback answered %s, want v5 (v4 failed and keeps its number)", b)
	}
	if code, body := get(); code != 200 || !strings.HasPrefix(body, "hello from ") {
		t.Errorf("after the rollback: %d %q", code, body)
	}
	mustAPI(204, tok, "DELETE", "/v1/apps/"+app+"/?wait=true", nil)
	for _, prefix := range []string{keys.AppPrefix(app), keys.ConfigPrefixFor(app), keys.ServicePrefixFor(app), keys.Deploy(app)} {
		if r, err := cli.Get(ctx, prefix, clientv3.WithPrefix(), clientv3.WithCountOnly()); err != nil || r.Count != 0 {
			t.Errorf("after destroy, %s still holds %d keys (%v)", prefix, r.Count, err)
		}
	}
	testenv.Eventually(t, 20*time.Second, func() bool {
		l, _ := dcli.ListContainers(docker.ListContainersOptions{All: true, Filters: map[string][]string{"label": {keys.LabelApp + "=" + app}}})
		return len(l) == 0
	}, "the destroyed app's containers removed")
	if code, _ := get(); code != 404 {
		t.Errorf("after destroy the router answers %d, want 404", code)
	}
	stop()
	list, _ := dcli.ListContainers(docker.ListContainersOptions{All: true, Filters: map[string][]string{"label": {keys.LabelHost + "=" + host}}})
	if len(list) != 0 {
		t.Errorf("%d app containers left after devplane stopped", len(list))
	}

}

// devplane is `make run` started by a test, with every port its own.
type devplane struct {
	host, etcd, http, https, ssh, controller string
	bin                                      string
	out                                      *testenv.SyncBuffer
	stop                                     func()
}

// startDevplane runs bin/devplane on host (an address no other test uses)
// with every port its own, and waits for its banner; stop (also run at
// cleanup) sends SIGINT.
func startDevplane(t *testing.T, host string) *devplane {
	t.Helper()
	port := func() string { a := testenv.FreeAddr(t); return a[strings.LastIndexByte(a, ':')+1:] }
	dp := &devplane{host: host, etcd: port(), http: port(), https: port(), ssh: port(), controller: port()}
	health := port()
	return runDevplane(t, dp, health, "--etcd-port", dp.etcd, "--etcd-peer-port", port(), "--http-port", dp.http, "--https-port", dp.https, "--ssh-port", dp.ssh,
		"--health-port", health, "--syslog-port", port(), "--logger-http-port", port(), "--logspout-port", port(),
		"--publisher-port", port(), "--builder-port", port(), "--builder-health-port", port(),
		"--controller-port", dp.controller, "--agent-port", port())
}

// runDevplane starts bin/devplane --host dp.host with args and waits for
// the router's health on healthPort and the banner.
func runDevplane(t *testing.T, dp *devplane, healthPort string, args ...string) *devplane {
	t.Helper()
	dp.bin = build(t, "devplane", "router", "logger", "logspout", "publisher", "builder", "controller", "agent", "deis")
	dp.out = &testenv.SyncBuffer{}
	cmd := exec.Command(filepath.Join(dp.bin, "devplane"), append([]string{"--host", dp.host}, args...)...)
	cmd.Stdout, cmd.Stderr = dp.out, dp.out
	cmd.Env = append(os.Environ(), "TMPDIR="+t.TempDir())
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	stopped := false
	dp.stop = func() {
		if stopped {
			return
		}
		stopped = true
		_ = cmd.Process.Signal(syscall.SIGINT)
		done := make(chan error, 1)
		go func() { done <- cmd.Wait() }()
		select {
		case <-done:
		case <-time.After(40 * time.Second):
			_ = cmd.Process.Kill()
			t.Errorf("devplane did not stop\n%s", dp.out.String())
		}
	}
	t.Cleanup(dp.stop)
	waitHTTP(t, fmt.Sprintf("http://%s:%s/health-check", dp.host, healthPort), 200)
	testenv.Eventually(t, 30*time.Second, func() bool { return strings.Contains(dp.out.String(), "Ctrl-C stops everything") }, "devplane banner")
	return dp
}

