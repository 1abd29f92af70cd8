package client_test

import (
	"bytes"
	"context"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/deis/dataplane/pkg/keys"
	"github.com/deis/dataplane/pkg/testenv"
)

// loggedIn is an env with alice registered and app "webapp" on a build.
func loggedIn(t *testing.T) *env {
	t.Helper()
	v := start(t)
	v.ok("register", v.url, "--username=alice", "--password=s3cret", "--email=a@example.test")
	v.ok("create", "webapp", "--no-remote")
	v.ok("pull", "example/webapp:v1", "--procfile=web: serve", "-a", "webapp")
	return v
}

// TestChangesShowEachUnitAndFailWithTheCause: scale, config:set, restart
// and rollback print each unit as it changes state, then the outcome; a
// release that crashes exits 1 with the cause.
func TestChangesShowEachUnitAndFailWithTheCause(t *testing.T) {
	t.Parallel()
	v := loggedIn(t)
	out := v.ok("scale", "web=3", "-a", "webapp")
	for _, want := range []string{"  web.2 up (v2) on 127.0.0.2\n", "  web.3 up (v2) on 127.0.0.2\n", "done in "} {
		if !strings.Contains(out, want) {
			t.Errorf("scale: no %q in\n%s", want, out)
		}
	}
	out = v.ok("config:set", "A=1", "-a", "webapp")
	for _, want := range []string{"Creating config...\n", "  web.1 up (v3) on 127.0.0.2\n", "  web.1 removed (v2)\n", ", v3\n"} {
		if !strings.Contains(out, want) {
			t.Errorf("config:set: no %q in\n%s", want, out)
		}
	}
	if out := v.ok("ps:restart", "web.2", "-a", "webapp"); !strings.Contains(out, " up (v3) on 127.0.0.2\n") {
		t.Errorf("ps:restart: %s", out)
	}
	// The cause comes with the failure. The unit's own lines show only
	// when a 500 ms poll falls before the scheduler judges it (under the
	// race detector often none does), so they are not asserted here.
	code, out, errs := v.deis("config:set", "CRASH=1", "-a", "webapp")
	if code != 1 || !strings.Contains(errs, "503 Service Unavailable") || !strings.Contains(errs, "webapp_v4.web.1 on 127.0.0.2 crashed: exited with code 3") {
		t.Errorf("a crashing release: exit %d\n%s\n%s", code, out, errs)
	}
	if out := v.ok("ps", "-a", "webapp"); strings.Count(out, " up (v3)") != 3 {
		t.Errorf("after the failed release the app runs v3 still: %s", out)
	}
	if out := v.ok("rollback", "v2", "-a", "webapp"); !strings.Contains(out, "  web.3 up (v5) on 127.0.0.2") {
		t.Errorf("rollback: %s", out)
	}
}

// TestInterruptedChangeStays: Ctrl-C while the deploy rolls out exits 130,
// says the change stays, and the platform finishes it.
func TestInterruptedChangeStays(t *testing.T) {
	t.Parallel()
	v := loggedIn(t)
	ctrlC := make(chan os.Signal, 1)
	v.catch = func() (<-chan os.Signal, func()) { return ctrlC, func() {} }
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	w := v.cli.Watch(ctx, keys.AppScale("webapp"))
	type result struct {
		code      int
		out, errs string
	}
	done := make(chan result, 1)
	go func() {
		code, out, errs := v.deis("scale", "web=5", "-a", "webapp")
		done <- result{code, out, errs}
	}()
	select {
	case <-w: // the controller wrote the new scale: the deploy is under way
	case <-ctx.Done():
		t.Fatal("the scale never reached etcd")
	}
	ctrlC <- os.Interrupt
	r := <-done
	if r.code != 130 || !strings.Contains(r.errs, "Interrupted. The change was sent and stays") || !strings.Contains(r.errs, "deis ps -a webapp") {
		t.Fatalf("Ctrl-C: exit %d\n%s\n%s", r.code, r.out, r.errs)
	}
	var ps string
	testenv.Eventually(t, 20*time.Second, func() bool {
		_, ps, _ = v.deis("ps", "-a", "webapp")
		return strings.Count(ps, " up (v2)") == 5
	}, "the interrupted scale went on to 5 units: %s", ps)
}

// TestConfigPullPush: config:pull writes .env (0600), refuses to replace
// it without --overwrite, and config:push sets what it holds.
func TestConfigPullPush(t *testing.T) {
	t.Parallel()
	v := loggedIn(t)
	v.ok("config:set", "PLAIN=x", "SPACED= a b ", "QUOTE=say \"hi\"", "-a", "webapp")
	if out := v.ok("config:pull", "-a", "webapp"); !strings.Contains(out, "Wrote 3 values of webapp to .env") {
		t.Fatalf("config:pull: %s", out)
	}
	envPath := filepath.Join(v.dir, ".env")
	st, err := os.Stat(envPath)
	if err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf(".env: %v %v", st, err)
	}
	if code, _, errs := v.deis("config:pull", "-a", "webapp"); code != 1 || !strings.Contains(errs, "--overwrite") {
		t.Errorf("config:pull over an existing .env: %d %q", code, errs)
	}
	data, _ := os.ReadFile(envPath)
	_ = os.WriteFile(envPath, append(data, []byte("# added here\nexport NEW='from file'\n")...), 0o600)
	v.ok("config:push", "-a", "webapp")
	out := v.ok("config", "-a", "webapp", "--oneline")
	if !strings.Contains(out, "NEW=from file") || !strings.Contains(out, "SPACED= a b ") || !strings.Contains(out, `QUOTE=say "hi"`) {
		t.Errorf("config after push: %q", out)
	}
	_ = os.WriteFile(filepath.Join(v.dir, "bad.env"), []byte("GOOD=1\nnot a pair\n"), 0o600)
	if code, _, errs := v.deis("config:push", "-p", "bad.env", "-a", "webapp"); code != 1 || !strings.Contains(errs, "line 2 is not KEY=value") {
		t.Errorf("config:push of a bad file: %d %q", code, errs)
	}
	if out := v.ok("config", "-a", "webapp", "--oneline"); strings.Contains(out, "GOOD=") {
		t.Errorf("a refused file set a value: %q", out)
	}
}

// TestListsSayWhatTheyLeftOut: -l shows "(shown of total)" in the header.
func TestListsSayWhatTheyLeftOut(t *testing.T) {
	t.Parallel()
	v := loggedIn(t)
	v.ok("create", "second", "--no-remote")
	v.ok("create", "third", "--no-remote")
	if out := v.ok("apps", "-l", "2"); !strings.HasPrefix(out, "=== Apps (2 of 3)\n") || strings.Count(out, "\n") != 3 {
		t.Errorf("apps -l 2: %q", out)
	}
	if out := v.ok("apps"); !strings.HasPrefix(out, "=== Apps\n") {
		t.Errorf("apps: %q", out)
	}
	if out := v.ok("releases", "-a", "webapp", "-l", "1"); !strings.HasPrefix(out, "=== webapp Releases (1 of 2)\nv2\t") {
		t.Errorf("releases -l 1: %q", out)
	}
}

// TestAppDetection: -a, then a git remote on the controller's host, then
// the directory's name.
func TestAppDetection(t *testing.T) {
	t.Parallel()
	v := loggedIn(t)
	v.ok("create", "myproject", "--no-remote")
	if _, _, errs := v.deis("config:set", "A=1"); !strings.Contains(errs, "Using app myproject (from the directory name)") {
		t.Errorf("no remote: %q", errs)
	}
	git := func(args ...string) {
		cmd := exec.Command("git", args...)
		cmd.Dir = v.dir
		if b, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("git %v: %v %s", args, err, b)
		}
	}
	git("init", "-q")
	git("remote", "add", "origin", "https://github.example/me/other.git") // not the controller's: ignored
	v.ok("git:remote", "-a", "webapp")
	if _, _, errs := v.deis("config:set", "A=1"); !strings.Contains(errs, "Using app webapp (from git remote deis)") {
		t.Errorf("with a deis remote: %q", errs)
	}
	if _, _, errs := v.deis("config:set", "A=2", "-a", "myproject"); !strings.Contains(errs, "Using app myproject (from -a)") {
		t.Errorf("-a: %q", errs)
	}
}

// TestGitRemoteForLocalhostIsLoopback: ssh does not resolve .localhost
// names, so the remote names 127.0.0.1 for them (and detection still works).
func TestGitRemoteForLocalhostIsLoopback(t *testing.T) {
	t.Parallel()
	v := start(t)
	port := v.url[strings.LastIndex(v.url, ":")+1:]
	v.ok("register", "http://deis.localhost:"+port, "--username=alice", "--password=s3cret", "--email=a@example.test")
	cmd := exec.Command("git", "init", "-q")
	cmd.Dir = v.dir
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("git init: %v %s", err, b)
	}
	if out := v.ok("create", "loop"); !strings.Contains(out, "ssh://git@127.0.0.1:2222/loop.git") {
		t.Fatalf("create: %s", out)
	}
	if out := v.ok("info"); !strings.Contains(out, "=== loop Application") {
		t.Errorf("the app from the 127.0.0.1 remote: %s", out)
	}
}

// TestUnreachableControllerIsOneLine: no controller → one line, exit 1.
func TestUnreachableControllerIsOneLine(t *testing.T) {
	t.Parallel()
	v := start(t)
	v.ok("register", v.url, "--username=alice", "--password=s3cret", "--email=a@example.test")
	settings := filepath.Join(v.home, ".deis", "client.json")
	data, _ := os.ReadFile(settings)
	_ = os.WriteFile(settings, bytes.ReplaceAll(data, []byte(v.url), []byte("http://127.0.0.1:1")), 0o600)
	code, out, errs := v.deis("apps")
	if code != 1 || out != "" || strings.Count(errs, "\n") != 1 || !strings.Contains(errs, "cannot reach the controller at http://127.0.0.1:1") {
		t.Errorf("unreachable: exit %d stdout %q stderr %q", code, out, errs)
	}
}

// TestVersionMismatchWarnsOnce: a controller of another API version gets
// v1's warning on stderr, once, and the command still runs.
func TestVersionMismatchWarnsOnce(t *testing.T) {
	t.Parallel()
	v := start(t)
	v.ok("register", v.url, "--username=alice", "--password=s3cret", "--email=a@example.test")
	front := httptest.NewServer(proxyTo(t, v.url, func(h http.Header) { h.Set("DEIS_API_VERSION", "9.9") }))
	defer front.Close()
	v.ok("create", "webapp", "--no-remote")
	settings := filepath.Join(v.home, ".deis", "client.json")
	data, _ := os.ReadFile(settings)
	_ = os.WriteFile(settings, bytes.ReplaceAll(data, []byte(v.url), []byte(front.URL)), 0o600)
	code, _, errs := v.deis("info", "-a", "webapp") // three calls: app, containers, domains
	if code != 0 || strings.Count(errs, "Client and server API versions do not match (1.7 vs 9.9)") != 1 {
		t.Errorf("mismatch: exit %d %q", code, errs)
	}
}

// TestPluginsRunFromPath: an unknown command runs deis-<name> from PATH
// with the remaining arguments and its exit status.
func TestPluginsRunFromPath(t *testing.T) {
	t.Parallel()
	v := start(t)
	bin := t.TempDir()
	_ = os.WriteFile(filepath.Join(bin, "deis-hello"), []byte("#!/bin/sh\necho \"hello $*\"\nexit 7\n"), 0o755)
	v.path = bin + string(os.PathListSeparator) + os.Getenv("PATH")
	code, out, _ := v.deis("hello", "there", "-x")
	if code != 7 || out != "hello there -x\n" {
		t.Errorf("plugin: exit %d %q", code, out)
	}
}

// TestTLSIsVerifiedByDefault: a controller whose certificate the system
// does not trust is refused with a clear line; --ssl-verify=false goes on
// and is remembered, with a warning on each command.
func TestTLSIsVerifiedByDefault(t *testing.T) {
	t.Parallel()
	v := start(t)
	front := httptest.NewTLSServer(proxyTo(t, v.url, nil))
	defer front.Close()
	code, _, errs := v.deis("register", front.URL, "--username=alice", "--password=s3cret", "--email=a@example.test")
	if code != 1 || !strings.Contains(errs, "certificate") {
		t.Fatalf("register against an untrusted certificate: exit %d %q", code, errs)
	}
	if _, err := os.Stat(filepath.Join(v.home, ".deis", "client.json")); err == nil {
		t.Errorf("a refused register wrote settings")
	}
	v.ok("register", front.URL, "--username=alice", "--password=s3cret", "--email=a@example.test", "--ssl-verify=false")
	code, out, errs := v.deis("apps")
	if code != 0 || !strings.Contains(out, "=== Apps") || !strings.Contains(errs, "not verified") {
		t.Errorf("apps with ssl_verify false: exit %d %q %q", code, out, errs)
	}
}

// proxyTo forwards to the controller at target, with edit applied to each
// answer's headers.
func proxyTo(t *testing.T, target string, edit func(http.Header)) http.Handler {
	u, err := url.Parse(target)
	if err != nil {
		t.Fatal(err)
	}
	p := httputil.NewSingleHostReverseProxy(u)
	p.ModifyResponse = func(r *http.Response) error {
		if edit != nil {
			edit(r.Header)
		}
		return nil
	}
	return p
}
