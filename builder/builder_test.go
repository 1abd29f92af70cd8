package builder_test

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"log/slog"
	mrand "math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	gossh "golang.org/x/crypto/ssh"

	"github.com/deis/dataplane/builder"
	"github.com/deis/dataplane/pkg/keys"
	"github.com/deis/dataplane/pkg/testenv"
	"github.com/deis/dataplane/router"
)

var hookBin string // the builder binary, run by git as the pre-receive hook

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "builder-bin-")
	if err != nil {
		panic(err)
	}
	hookBin = filepath.Join(dir, "builder")
	if out, err := exec.Command("go", "build", "-o", hookBin, "github.com/deis/dataplane/cmd/builder").CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "build the builder binary: %v\n%s", err, out)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// env is one builder on a real etcd and Docker, and what the git client
// needs to reach it.
type env struct {
	t          *testing.T
	e          *testenv.Etcd
	b          *builder.Builder
	addr       string
	dir        string
	knownHosts string
}

func start(t *testing.T, opts ...func(*builder.Config)) *env {
	t.Helper()
	cli := testenv.Docker(t)
	for _, tool := range []string{"git", "ssh"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Fatalf("%s is not installed (scripts/setup.sh installs it): %v", tool, err)
		}
	}
	e := testenv.StartEtcd(t)
	e.Put(keys.PlatformDomain, "example.test")
	dir := t.TempDir()
	ctx, cancel := context.WithCancel(context.Background())
	cfg := builder.Config{
		SSHAddr: "127.0.0.1:0", Host: "127.0.0.1", RepoRoot: filepath.Join(dir, "repos"),
		StackImage: testenv.BusyboxImage, HookBin: hookBin, LockTTL: 3 * time.Second,
		DeployTimeout: -1, // no control plane here: the scheduler tests cover deploys
	}
	for _, o := range opts {
		o(&cfg)
	}
	b, err := builder.New(ctx, cfg, e.Client(), cli, slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug})), nil)
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { _ = b.Run(ctx); close(done) }()
	t.Cleanup(func() { cancel(); <-done })
	hk := b.HostPublicKey()
	_, port, _ := net.SplitHostPort(b.Addr())
	kh := filepath.Join(dir, "known_hosts")
	// The host key is checked strictly: it must be the one kept in etcd.
	line := fmt.Sprintf("[127.0.0.1]:%s %s", port, gossh.MarshalAuthorizedKey(hk))
	if err := os.WriteFile(kh, []byte(line), 0o600); err != nil {
		t.Fatal(err)
	}
	return &env{t: t, e: e, b: b, addr: b.Addr(), dir: dir, knownHosts: kh}
}

// user makes a key pair for name; registered puts the public key in etcd.
func (v *env) user(name string, registered bool) (keyFile string) {
	v.t.Helper()
	pub, priv, _ := ed25519.GenerateKey(rand.Reader)
	block, err := gossh.MarshalPrivateKey(priv, name)
	if err != nil {
		v.t.Fatal(err)
	}
	keyFile = filepath.Join(v.dir, "id_"+name)
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(block), 0o600); err != nil {
		v.t.Fatal(err)
	}
	if registered {
		spub, _ := gossh.NewPublicKey(pub)
		v.e.Put(keys.BuilderUserKey(name, builder.Fingerprint(spub)), string(gossh.MarshalAuthorizedKey(spub)))
		// The key reaches the builder through its etcd watch.
		_, port, _ := net.SplitHostPort(v.addr)
		testenv.Eventually(v.t, 10*time.Second, func() bool {
			return exec.Command("sh", "-c", v.sshCommand(keyFile)+" -p "+port+" git@127.0.0.1 ping").Run() == nil
		}, "the builder never accepted %s's new key", name)
	}
	return keyFile
}

func (v *env) app(name, owner string) {
	v.e.Put(keys.AppOwner(name), owner)
}

// sshCommand is what git runs: OpenSSH with only this key, the builder's
// host key pinned, and no user configuration.
func (v *env) sshCommand(keyFile string) string {
	return fmt.Sprintf("ssh -F /dev/null -i %s -o IdentitiesOnly=yes -o IdentityAgent=none -o UserKnownHostsFile=%s -o StrictHostKeyChecking=yes -o PreferredAuthentications=publickey,keyboard-interactive -o ConnectTimeout=10", keyFile, v.knownHosts)
}

func (v *env) remote(app string) string {
	_, port, _ := net.SplitHostPort(v.addr)
	return fmt.Sprintf("ssh://git@127.0.0.1:%s/%s.git", port, app)
}

// repo makes a git working tree with files and one commit.
func (v *env) repo(files map[string]string) string {
	v.t.Helper()
	dir, err := os.MkdirTemp(v.dir, "work-")
	if err != nil {
		v.t.Fatal(err)
	}
	v.git(dir, "", "init", "--quiet", "-b", "master")
	v.commit(dir, files, "first")
	return dir
}

func (v *env) commit(dir string, files map[string]string, msg string) {
	v.t.Helper()
	for name, body := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(body), 0o644); err != nil {
			v.t.Fatal(err)
		}
	}
	v.git(dir, "", "add", "-A")
	v.git(dir, "", "commit", "--quiet", "-m", msg)
}

func (v *env) git(dir, keyFile string, args ...string) string {
	v.t.Helper()
	out, err := v.gitErr(dir, keyFile, args...)
	if err != nil {
		v.t.Fatalf("git %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return out
}

func (v *env) gitCmd(dir, keyFile string, args ...string) *exec.Cmd {
	cmd := exec.Command("git", args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "GIT_AUTHOR_NAME=t", "GIT_AUTHOR_EMAIL=t@example.test", "GIT_COMMITTER_NAME=t",
		"GIT_COMMITTER_EMAIL=t@example.test", "GIT_TERMINAL_PROMPT=0", "HOME="+v.dir)
	if keyFile != "" {
		cmd.Env = append(cmd.Env, "GIT_SSH_COMMAND="+v.sshCommand(keyFile))
	}
	return cmd
}

func (v *env) gitErr(dir, keyFile string, args ...string) (string, error) {
	out, err := v.gitCmd(dir, keyFile, args...).CombinedOutput()
	return string(out), err
}

func (v *env) release(app string, n int) *builder.Release {
	v.t.Helper()
	resp, err := v.e.Client().Get(context.Background(), keys.AppRelease(app, n))
	if err != nil {
		v.t.Fatal(err)
	}
	if len(resp.Kvs) == 0 {
		return nil
	}
	var r builder.Release
	if err := json.Unmarshal(resp.Kvs[0].Value, &r); err != nil {
		v.t.Fatalf("release %s v%d: %v: %s", app, n, err, resp.Kvs[0].Value)
	}
	return &r
}

func (v *env) current(app string) string {
	resp, err := v.e.Client().Get(context.Background(), keys.AppCurrentRelease(app))
	if err != nil || len(resp.Kvs) == 0 {
		return ""
	}
	return string(resp.Kvs[0].Value)
}

func appName(prefix string) string { return fmt.Sprintf("%s%d", prefix, mrand.IntN(1e9)) }

func cleanupImages(t *testing.T, app string) {
	cli := testenv.Docker(t)
	t.Cleanup(func() {
		imgs, _ := cli.ListImages(dockerListByApp(app))
		for _, img := range imgs {
			_ = cli.RemoveImage(img.ID)
		}
	})
}

// TestDockerfileAndStackApps pushes a Dockerfile app and a Procfile app
// twice each with the real git and ssh clients: releases v1 and v2, the
// build streamed back, the URL printed, and the repo can be cloned back.
func TestDockerfileAndStackApps(t *testing.T) {
	v := start(t)
	key := v.user("alice", true)

	web := appName("dock")
	cleanupImages(t, web)
	v.app(web, "alice")
	v.e.Put(keys.Config(web, "GREETING"), "hello")
	dir := v.repo(map[string]string{"Dockerfile": "FROM " + testenv.BusyboxImage + "\nCOPY . /app\nRUN echo built-in-docker\nCMD [\"sh\", \"-c\", \"echo hi\"]\n"})
	out := v.git(dir, key, "push", v.remote(web), "master")
	for _, want := range []string{"remote: -----> Building Docker image " + web + ":git-", "built-in-docker", "done, " + web + ":v1 released", "http://" + web + ".example.test"} {
		if !strings.Contains(out, want) {
			t.Fatalf("push output lacks %q:\n%s", want, out)
		}
	}
	sha := strings.TrimSpace(v.git(dir, "", "rev-parse", "HEAD"))
	r1 := v.release(web, 1)
	if r1 == nil || r1.Version != 1 || r1.Image != web+":git-"+sha[:8] || r1.SHA != sha || r1.User != "alice" || r1.Config["GREETING"] != "hello" || len(r1.Procfile) != 1 || r1.Created.IsZero() {
		t.Fatalf("release v1 = %+v", r1)
	}
	if _, ok := r1.Procfile["cmd"]; !ok {
		t.Fatalf("a Dockerfile app without a Procfile must get the cmd process: %v", r1.Procfile)
	}
	v.commit(dir, map[string]string{"Procfile": "web: sh -c 'echo web'\nclock: echo tick: tock\n"}, "procfile")
	out = v.git(dir, key, "push", v.remote(web), "master")
	if !strings.Contains(out, "done, "+web+":v2 released") || v.current(web) != "2" {
		t.Fatalf("second push: current release %q, output:\n%s", v.current(web), out)
	}
	if r2 := v.release(web, 2); r2 == nil || r2.Procfile["web"] != "sh -c 'echo web'" || r2.Procfile["clock"] != "echo tick: tock" {
		t.Fatalf("release v2 procfile = %+v", r2)
	}
	clone := filepath.Join(v.dir, "clone")
	v.git(v.dir, key, "clone", "--quiet", v.remote(web), clone)
	if got := strings.TrimSpace(v.git(clone, "", "rev-parse", "HEAD")); got != strings.TrimSpace(v.git(dir, "", "rev-parse", "HEAD")) {
		t.Fatalf("clone is at %s", got)
	}

	stack := appName("stack")
	cleanupImages(t, stack)
	v.app(stack, "alice")
	sdir := v.repo(map[string]string{"Procfile": "web: httpd -f -p 5000\nworker: sleep 1000\n", "index.html": "stack app\n"})
	out = v.git(sdir, key, "push", v.remote(stack), "master")
	if !strings.Contains(out, "on the stack image "+testenv.BusyboxImage) || !strings.Contains(out, "done, "+stack+":v1 released") {
		t.Fatalf("stack push output:\n%s", out)
	}
	r := v.release(stack, 1)
	if r == nil || r.Procfile["web"] != "httpd -f -p 5000" || r.Procfile["worker"] != "sleep 1000" {
		t.Fatalf("stack release = %+v", r)
	}
	img, err := testenv.Docker(t).InspectImage(r.Image)
	if err != nil {
		t.Fatalf("image %s: %v", r.Image, err)
	}
	if got := strings.Join(img.Config.Cmd, " "); got != "sh -c httpd -f -p 5000" || img.Config.WorkingDir != "/app" {
		t.Fatalf("stack image cmd %q, workdir %q", got, img.Config.WorkingDir)
	}
	v.commit(sdir, map[string]string{"index.html": "v2\n"}, "two")
	if out := v.git(sdir, key, "push", v.remote(stack), "master"); !strings.Contains(out, "done, "+stack+":v2 released") {
		t.Fatalf("second stack push:\n%s", out)
	}
}

// TestRefusals: each refusal is one clear line and a non-zero status.
func TestRefusals(t *testing.T) {
	v := start(t)
	alice := v.user("alice", true)
	bob := v.user("bob", true)
	carol := v.user("carol", true)
	mallory := v.user("mallory", false)
	app := appName("guard")
	cleanupImages(t, app)
	v.app(app, "alice")
	v.e.Put(keys.AppPerm(app, "carol"), "collaborator")
	dir := v.repo(map[string]string{"Dockerfile": "FROM " + testenv.BusyboxImage + "\n"})

	for _, tc := range []struct {
		name, key, remote, want string
	}{
		{"unknown key", mallory, v.remote(app), "no user has registered the key"},
		{"not a collaborator", bob, v.remote(app), "user bob may not push to " + app},
		{"no such app", alice, v.remote("nosuchapp"), "app nosuchapp does not exist"},
		{"bad repo name", alice, strings.Replace(v.remote(app), app+".git", "..%2Fetc.git", 1), "repository"},
		{"bad repo name 2", alice, strings.Replace(v.remote(app), app+".git", "Bad_Name.git", 1), "repository"},
	} {
		out, err := v.gitErr(dir, tc.key, "push", tc.remote, "master")
		if err == nil || !strings.Contains(out, tc.want) {
			t.Errorf("%s: push err=%v, want failure saying %q; output:\n%s", tc.name, err, tc.want, out)
		}
	}
	// Exec commands other than git's are refused; ping answers.
	ssh := func(key string, args ...string) (string, int) {
		_, port, _ := net.SplitHostPort(v.addr)
		cmd := exec.Command("sh", "-c", v.sshCommand(key)+" -p "+port+" git@127.0.0.1 "+strings.Join(args, " "))
		out, err := cmd.CombinedOutput()
		if ee, ok := err.(*exec.ExitError); ok {
			return string(out), ee.ExitCode()
		}
		return string(out), 0
	}
	if out, code := ssh(alice, "ping"); code != 0 || !strings.Contains(out, "pong alice") {
		t.Errorf("ping: %d %q", code, out)
	}
	if out, code := ssh(alice, "ls", "/"); code == 0 || !strings.Contains(out, "not allowed") {
		t.Errorf("ls: %d %q", code, out)
	}
	// Garbage instead of git's protocol: git's error, a non-zero status,
	// and the push lock is released.
	{
		_, port, _ := net.SplitHostPort(v.addr)
		cmd := exec.Command("sh", "-c", "head -c 4096 /dev/urandom | "+v.sshCommand(alice)+" -p "+port+" git@127.0.0.1 \"git-receive-pack '"+app+".git'\"")
		out, err := cmd.CombinedOutput()
		if err == nil {
			t.Errorf("garbage push exited 0: %q", out)
		}
		testenv.Eventually(t, 10*time.Second, func() bool {
			resp, err := v.e.Client().Get(context.Background(), keys.PushLock(app))
			return err == nil && len(resp.Kvs) == 0
		}, "the push lock outlived a garbage push")
	}
	// An admin may push to any app.
	dave := v.user("dave", true)
	v.e.Put(keys.Admin("dave"), "true")
	if out, err := v.gitErr(dir, dave, "push", "--dry-run", v.remote(app), "master"); err != nil {
		t.Errorf("admin push (dry run): %v\n%s", err, out)
	}
	// A collaborator may push.
	if out, err := v.gitErr(dir, carol, "push", v.remote(app), "master"); err != nil || !strings.Contains(out, "v1 released") {
		t.Fatalf("collaborator push: %v\n%s", err, out)
	}
	// A failing build: the cause is printed, git fails, no release is
	// written, and the commit is kept in the repository.
	v.commit(dir, map[string]string{"Dockerfile": "FROM " + testenv.BusyboxImage + "\nRUN echo about-to-fail && false\n"}, "broken")
	out, err := v.gitErr(dir, alice, "push", v.remote(app), "master")
	if err == nil || !strings.Contains(out, "build failed") || !strings.Contains(out, "about-to-fail") {
		t.Fatalf("failing build: err=%v, output:\n%s", err, out)
	}
	if v.current(app) != "1" || v.release(app, 2) != nil {
		t.Fatalf("a failed build wrote a release: current %q", v.current(app))
	}
	sha := strings.TrimSpace(v.git(dir, "", "rev-parse", "HEAD"))
	bare := filepath.Join(v.dir, "repos", app+".git")
	if got, err := exec.Command("git", "--git-dir", bare, "cat-file", "-t", sha).Output(); err != nil || strings.TrimSpace(string(got)) != "commit" {
		t.Fatalf("the failed push's commit %s is not kept in %s: %v %s", sha, bare, err, got)
	}
}

// TestPushLock: a second push to an app being built is told who holds the
// lock; another app builds meanwhile; a client killed mid-push releases
// the lock.
func TestPushLock(t *testing.T) {
	v := start(t)
	alice := v.user("alice", true)
	a, other := appName("lock"), appName("para")
	// A build that takes 4 s, never from Docker's cache: the engine is
	// shared, and a cached "RUN sleep 4" from an earlier run would finish
	// the first push before the second one could meet its lock.
	slowBuild := func(nonce string) string {
		return "FROM " + testenv.BusyboxImage + "\nRUN echo " + nonce + " && sleep 4\n"
	}
	slow := slowBuild(a)
	cleanupImages(t, a)
	cleanupImages(t, other)
	v.app(a, "alice")
	v.app(other, "alice")
	dirA := v.repo(map[string]string{"Dockerfile": slow})
	dirA2 := v.repo(map[string]string{"Dockerfile": slow, "x": "2"})
	dirO := v.repo(map[string]string{"Dockerfile": slow, "y": "3"})

	lockHeld := func() bool {
		resp, err := v.e.Client().Get(context.Background(), keys.PushLock(a))
		return err == nil && len(resp.Kvs) == 1
	}
	var wg sync.WaitGroup
	var firstOut, otherOut string
	var firstErr, otherErr error
	wg.Go(func() { firstOut, firstErr = v.gitErr(dirA, alice, "push", v.remote(a), "master") })
	testenv.Eventually(t, 20*time.Second, lockHeld, "the first push never took the lock")
	wg.Go(func() { otherOut, otherErr = v.gitErr(dirO, alice, "push", v.remote(other), "master") })
	out, err := v.gitErr(dirA2, alice, "push", v.remote(a), "master")
	if err == nil || !strings.Contains(out, a+" is locked by a push by alice since") {
		t.Fatalf("second push: err=%v, want a refusal naming the lock holder:\n%s", err, out)
	}
	wg.Wait()
	if firstErr != nil || !strings.Contains(firstOut, a+":v1 released") {
		t.Fatalf("first push: %v\n%s", firstErr, firstOut)
	}
	if otherErr != nil || !strings.Contains(otherOut, other+":v1 released") {
		t.Fatalf("parallel push to another app: %v\n%s", otherErr, otherOut)
	}
	if lockHeld() {
		t.Fatal("the lock outlived the push")
	}

	// Kill the client (git and its ssh) while the build runs.
	v.commit(dirA, map[string]string{"z": "4", "Dockerfile": slowBuild(a + "-again")}, "again")
	cmd := v.gitCmd(dirA, alice, "push", v.remote(a), "master")
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	var buf testenv.SyncBuffer
	cmd.Stdout, cmd.Stderr = &buf, &buf
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	testenv.Eventually(t, 20*time.Second, func() bool { return lockHeld() && strings.Contains(buf.String(), "Building") }, "the push never started building")
	_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
	_ = cmd.Wait()
	testenv.Eventually(t, 15*time.Second, func() bool { return !lockHeld() }, "the lock was not released after the client died")
	if v.current(a) != "1" {
		t.Fatalf("a killed push released: current %q", v.current(a))
	}
	if out, err := v.gitErr(dirA2, alice, "push", "--force", v.remote(a), "master"); err != nil || !strings.Contains(out, a+":v2 released") {
		t.Fatalf("push after the killed one: %v\n%s", err, out)
	}
}

// TestPushThroughRouter: the router's TCP port forwards to the builder it
// finds at /deis/builder/host,port.
func TestPushThroughRouter(t *testing.T) {
	v := start(t)
	alice := v.user("alice", true)
	app := appName("routed")
	cleanupImages(t, app)
	v.app(app, "alice")
	r, err := router.New(router.Config{SSHAddr: "127.0.0.1:0", Host: "127.0.0.1", Grace: time.Second}, v.e.Client(), slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { _ = r.Run(ctx); close(done) }()
	t.Cleanup(func() { cancel(); <-done })
	_, bport, _ := net.SplitHostPort(v.addr)
	_, rport, _ := net.SplitHostPort(r.Addr("ssh"))
	// The builder announced itself; the router's known_hosts entry is the
	// same shared host key.
	kh, _ := os.ReadFile(v.knownHosts)
	if err := os.WriteFile(v.knownHosts, append(kh, []byte(strings.Replace(string(kh), "]:"+bport, "]:"+rport, 1))...), 0o600); err != nil {
		t.Fatal(err)
	}
	dir := v.repo(map[string]string{"Dockerfile": "FROM " + testenv.BusyboxImage + "\n"})
	remote := strings.Replace(v.remote(app), ":"+bport+"/", ":"+rport+"/", 1)
	var out string
	testenv.Eventually(t, 20*time.Second, func() bool {
		out, err = v.gitErr(dir, alice, "push", remote, "master")
		return err == nil
	}, "push through the router failed: %v", err)
	if !strings.Contains(out, app+":v1 released") {
		t.Fatalf("push through the router:\n%s", out)
	}
}

// TestRegistryAndPrune: with /deis/registry set, images are pushed to the
// registry (Debian's docker-registry) and releases name them there; build
// images beyond the last KeepReleases releases are removed locally.
func TestRegistryAndPrune(t *testing.T) {
	registry, err := exec.LookPath("docker-registry")
	if err != nil {
		t.Fatalf("docker-registry is not installed (scripts/setup.sh installs it): %v", err)
	}
	v := start(t, func(c *builder.Config) { c.KeepReleases = 2 })
	regAddr := testenv.FreeAddr(t)
	conf := filepath.Join(v.dir, "registry.yml")
	if err := os.WriteFile(conf, []byte(fmt.Sprintf("version: 0.1\nlog:\n  level: error\nstorage:\n  filesystem:\n    rootdirectory: %s\nhttp:\n  addr: %s\n", filepath.Join(v.dir, "registry"), regAddr)), 0o644); err != nil {
		t.Fatal(err)
	}
	reg := exec.Command(registry, "serve", conf)
	var regOut bytes.Buffer
	reg.Stdout, reg.Stderr = &regOut, &regOut
	if err := reg.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = reg.Process.Kill(); _ = reg.Wait() })
	testenv.Eventually(t, 10*time.Second, func() bool {
		resp, err := http.Get("http://" + regAddr + "/v2/")
		if err == nil {
			resp.Body.Close()
		}
		return err == nil && resp.StatusCode == 200
	}, "docker-registry did not answer: %s", &regOut)
	host, port, _ := net.SplitHostPort(regAddr)
	v.e.Put(keys.RegistryHost, host)
	v.e.Put(keys.RegistryPort, port)

	alice := v.user("alice", true)
	app := appName("reg")
	cleanupImages(t, app)
	v.app(app, "alice")
	dir := v.repo(map[string]string{"Dockerfile": "FROM " + testenv.BusyboxImage + "\nCOPY . /app\n", "n": "1"})
	var shas []string
	for i := 1; i <= 3; i++ {
		if i > 1 {
			v.commit(dir, map[string]string{"n": fmt.Sprint(i)}, "next")
		}
		out := v.git(dir, alice, "push", v.remote(app), "master")
		if !strings.Contains(out, fmt.Sprintf("%s:v%d released", app, i)) || !strings.Contains(out, "Pushing to the registry "+regAddr) {
			t.Fatalf("push %d:\n%s", i, out)
		}
		shas = append(shas, strings.TrimSpace(v.git(dir, "", "rev-parse", "HEAD"))[:8])
	}
	if r := v.release(app, 3); r == nil || r.Image != regAddr+"/"+app+":git-"+shas[2] {
		t.Fatalf("release v3 image = %+v, want it in the registry", r)
	}
	resp, err := http.Get("http://" + regAddr + "/v2/" + app + "/tags/list")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	for _, sha := range shas {
		if !strings.Contains(string(body), "git-"+sha) {
			t.Fatalf("registry tags %s lack git-%s", body, sha)
		}
	}
	imgs, err := testenv.Docker(t).ListImages(dockerListByApp(app))
	if err != nil {
		t.Fatal(err)
	}
	var tags []string
	for _, img := range imgs {
		tags = append(tags, img.RepoTags...)
	}
	joined := strings.Join(tags, " ")
	if strings.Contains(joined, "git-"+shas[0]) || !strings.Contains(joined, "git-"+shas[1]) || !strings.Contains(joined, "git-"+shas[2]) {
		t.Fatalf("local build images after 3 releases with 2 kept: %v (releases %v)", tags, shas)
	}
}

// TestKeepAlive: the builder sends SSH keep-alive requests on an idle
// session, so idle timeouts in front do not cut long builds.
func TestKeepAlive(t *testing.T) {
	v := start(t, func(c *builder.Config) { c.KeepAlive = 200 * time.Millisecond })
	keyFile := v.user("alice", true)
	pem, _ := os.ReadFile(keyFile)
	signer, err := gossh.ParsePrivateKey(pem)
	if err != nil {
		t.Fatal(err)
	}
	var (
		c     gossh.Conn
		chans <-chan gossh.NewChannel
		reqs  <-chan *gossh.Request
	)
	// The key reaches the builder through its etcd watch: retry briefly.
	testenv.Eventually(t, 5*time.Second, func() bool {
		conn, err := net.Dial("tcp", v.addr)
		if err != nil {
			return false
		}
		c, chans, reqs, err = gossh.NewClientConn(conn, v.addr, &gossh.ClientConfig{User: "git", Auth: []gossh.AuthMethod{gossh.PublicKeys(signer)}, HostKeyCallback: gossh.InsecureIgnoreHostKey(), Timeout: 5 * time.Second})
		if err != nil {
			conn.Close()
		}
		return err == nil
	}, "could not log in with a registered key")
	defer c.Close()
	go func() {
		for ch := range chans {
			_ = ch.Reject(gossh.Prohibited, "no")
		}
	}()
	client := gossh.NewClient(c, nil, nil)
	sess, err := client.NewSession()
	if err != nil {
		t.Fatal(err)
	}
	defer sess.Close()
	stdin, _ := sess.StdinPipe() // keep the session open: run "ping" but never close stdin
	_ = stdin
	if err := sess.Start("ping"); err != nil {
		t.Fatal(err)
	}
	got := 0
	deadline := time.After(5 * time.Second)
	for got < 2 {
		select {
		case r := <-reqs:
			if r == nil {
				t.Fatalf("connection closed after %d keep-alives", got)
			}
			if r.Type == "keepalive@openssh.com" {
				got++
			}
			if r.WantReply {
				_ = r.Reply(false, nil)
			}
		case <-deadline:
			t.Fatalf("%d keep-alive requests in 5 s with a 200 ms interval", got)
		}
	}
}
