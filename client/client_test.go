package client_test

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/json"
	"log/slog"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	gossh "golang.org/x/crypto/ssh"

	"github.com/deis/dataplane/agent/runtime"
	"github.com/deis/dataplane/client"
	"github.com/deis/dataplane/controller"
	"github.com/deis/dataplane/internal/cptest"
	"github.com/deis/dataplane/pkg/keys"
	"github.com/deis/dataplane/pkg/testenv"
)

// env is a controller on a real etcd with agents on the FAKE runtime, and
// a home directory for the CLI's settings.
type env struct {
	t    *testing.T
	url  string
	home string
	dir  string
	cli  *clientv3.Client

	catch func() (<-chan os.Signal, func()) // the CLI's CatchInterrupt
	path  string                            // $PATH for the CLI; "" is the test's
}

func start(t *testing.T) *env {
	t.Helper()
	e := testenv.StartEtcd(t)
	cli := e.Client()
	log := slog.New(slog.DiscardHandler)
	c := cptest.New(cli, log)
	c.RT.Behave = func(s runtime.RunSpec) runtime.FakeBehaviour {
		if s.Labels[keys.LabelType] == "run" {
			code := 0
			if strings.Contains(s.Command, "exit 3") {
				code = 3
			}
			return runtime.FakeBehaviour{ExitAfter: 20 * time.Millisecond, ExitCode: code, Output: "ran: " + s.Command + "\n"}
		}
		if slices.Contains(s.Env, "CRASH=1") {
			return runtime.FakeBehaviour{ExitAfter: 20 * time.Millisecond, ExitCode: 3, Output: "boom\n"}
		}
		return runtime.FakeBehaviour{}
	}
	t.Cleanup(c.Close)
	c.StartHost("127.0.0.2", nil)
	c.StartScheduler("s1")
	e.Put(keys.PlatformDomain, "example.test")
	lease, err := cli.Grant(context.Background(), 10)
	if err != nil {
		t.Fatal(err)
	}
	ka, _ := cli.KeepAlive(context.Background(), lease.ID)
	go func() {
		for range ka {
		}
	}()
	api := controller.New(controller.Config{LockWait: time.Second, DeployWait: 15 * time.Second}, cli, func() clientv3.LeaseID { return lease.ID }, log, nil)
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	go func() { _ = api.Run(ctx) }()
	srv := httptest.NewServer(api)
	t.Cleanup(srv.Close)
	home := t.TempDir()
	dir := filepath.Join(t.TempDir(), "myproject")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	return &env{t: t, url: srv.URL, home: home, dir: dir, cli: cli}
}

// deis runs the CLI and returns its exit status, stdout and stderr.
func (v *env) deis(args ...string) (int, string, string) {
	var out, errb bytes.Buffer
	c := &client.CLI{Stdout: &out, Stderr: &errb, Stdin: strings.NewReader(""), Dir: v.dir, CatchInterrupt: v.catch, Env: func(k string) string {
		switch k {
		case "HOME":
			return v.home
		case "DEIS_PROFILE":
			return ""
		case "PATH":
			if v.path != "" {
				return v.path
			}
		}
		return os.Getenv(k)
	}}
	code := c.Run(args)
	return code, out.String(), errb.String()
}

func (v *env) ok(args ...string) string {
	v.t.Helper()
	code, out, errs := v.deis(args...)
	if code != 0 {
		v.t.Fatalf("deis %s: exit %d\n%s%s", strings.Join(args, " "), code, out, errs)
	}
	return out
}

// TestQuickstartThroughTheCLI drives the commands a new user types, each
// checked on its output and exit status.
func TestQuickstartThroughTheCLI(t *testing.T) {
	t.Parallel()
	v := start(t)
	if code, _, errs := v.deis("apps"); code != 1 || !strings.Contains(errs, "Not logged in. Use 'deis login' or 'deis register' to get started.") {
		t.Fatalf("apps before login: %d %q", code, errs)
	}
	out := v.ok("register", v.url, "--username=alice", "--password=s3cret", "--email=a@example.test")
	if !strings.Contains(out, "Registered alice") || !strings.Contains(out, "Logged in as alice") {
		t.Fatalf("register: %q", out)
	}
	st, err := os.Stat(filepath.Join(v.home, ".deis", "client.json"))
	dst, _ := os.Stat(filepath.Join(v.home, ".deis"))
	if err != nil || st.Mode().Perm() != 0o600 || dst.Mode().Perm() != 0o700 {
		t.Fatalf("settings file: %v %v %v", st, dst, err)
	}
	var s client.Settings
	data, _ := os.ReadFile(filepath.Join(v.home, ".deis", "client.json"))
	if json.Unmarshal(data, &s) != nil || s.Username != "alice" || s.Token == "" || s.Controller != v.url || !s.SSLVerify {
		t.Fatalf("settings: %s", data)
	}
	if out := v.ok("whoami"); !strings.Contains(out, "You are alice at "+v.url) {
		t.Fatalf("whoami: %q", out)
	}
	// A git repository whose remote names the app.
	for _, args := range [][]string{{"init", "-q"}} {
		cmd := exec.Command("git", args...)
		cmd.Dir = v.dir
		if b, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("git %v: %v %s", args, err, b)
		}
	}
	if out := v.ok("create", "webapp"); !strings.Contains(out, "created webapp") || !strings.Contains(out, "Git remote deis added") {
		t.Fatalf("create: %q", out)
	}
	cmd := exec.Command("git", "remote", "get-url", "deis")
	cmd.Dir = v.dir
	if b, _ := cmd.Output(); !strings.Contains(string(b), ":2222/webapp.git") {
		t.Errorf("git remote: %q", b)
	}
	if out := v.ok("apps"); !strings.Contains(out, "=== Apps\nwebapp\n") {
		t.Errorf("apps: %q", out)
	}
	// The app comes from the git remote from here on.
	_, out, errs := v.deis("pull", "example/webapp:v1", "--procfile=web: serve")
	if !strings.Contains(out, "done, v2") || !strings.Contains(errs, "Using app webapp (from git remote deis)") {
		t.Fatalf("pull: %q %q", out, errs)
	}
	if out := v.ok("config:set", "FOO=bar", "MULTI=a=b"); !strings.Contains(out, "v3") {
		t.Errorf("config:set: %q", out)
	}
	if out := v.ok("config"); !strings.Contains(out, "=== webapp Config") || !strings.Contains(out, "FOO    bar") || !strings.Contains(out, "MULTI  a=b") {
		t.Errorf("config: %q", out)
	}
	if out := v.ok("limits:set", "web=64M"); !strings.Contains(out, "Applying limits...\n") || !strings.Contains(out, "done in") {
		t.Errorf("limits:set: %q", out)
	}
	if out := v.ok("limits"); !strings.Contains(out, "web  64M") || !strings.Contains(out, "--- CPU\nUnlimited") {
		t.Errorf("limits: %q", out)
	}
	v.ok("limits:unset", "web")
	if out := v.ok("tags:set", "dataPlane=true"); !strings.Contains(out, "Applying tags") {
		t.Errorf("tags:set: %q", out)
	}
	if out := v.ok("tags"); !strings.Contains(out, "dataPlane  true") {
		t.Errorf("tags: %q", out)
	}
	v.ok("tags:unset", "dataPlane")
	if out := v.ok("scale", "web=2"); !strings.Contains(out, "Scaling processes... but first, coffee!") || !strings.Contains(out, "web.2 up (v7)") {
		t.Errorf("scale: %q", out)
	}
	if out := v.ok("ps"); !strings.Contains(out, "=== webapp Processes\n--- web:\nweb.1 up (v7)\nweb.2 up (v7)") {
		t.Errorf("ps: %q", out)
	}
	if out := v.ok("releases"); !strings.Contains(out, "=== webapp Releases") || !strings.Contains(out, "v3\t") || !strings.Contains(out, "alice added FOO, MULTI") || !strings.Contains(out, "alice changed limits for memory") {
		t.Errorf("releases: %q", out)
	}
	if out := v.ok("rollback", "v2"); !strings.Contains(out, "Rolling back to v2...\n") || !strings.Contains(out, "done, v8") {
		t.Errorf("rollback: %q", out)
	}
	if out := v.ok("run", "echo", "hi"); out != "ran: echo hi\n" {
		t.Errorf("run: %q", out)
	}
	if code, _, _ := v.deis("run", "exit 3"); code != 3 {
		t.Errorf("run exits with the command's status: %d", code)
	}
	v.ok("domains:add", "www.example.org")
	if out := v.ok("domains"); !strings.Contains(out, "www.example.org") {
		t.Errorf("domains: %q", out)
	}
	pub, _, _ := ed25519.GenerateKey(rand.Reader)
	spub, _ := gossh.NewPublicKey(pub)
	keyFile := filepath.Join(v.home, "id.pub")
	_ = os.WriteFile(keyFile, []byte(strings.TrimSpace(string(gossh.MarshalAuthorizedKey(spub)))+" alice@laptop\n"), 0o644)
	v.ok("keys:add", keyFile)
	if out := v.ok("keys"); !strings.Contains(out, "alice@laptop ssh-ed25519 AAAA...") {
		t.Errorf("keys: %q", out)
	}
	// Errors: "Error:", the status line, the fields; exit 1.
	code, _, errs := v.deis("scale", "nope=1")
	if code != 1 || !strings.Contains(errs, "Error:\n400 Bad Request\ndetail: Container type nope does not exist") {
		t.Errorf("a refused scale: %d %q", code, errs)
	}
	if code, _, errs := v.deis("frobnicate"); code != 1 || !strings.Contains(errs, "Found no matching command, try 'deis help'") {
		t.Errorf("unknown command: %d %q", code, errs)
	}
	if out := v.ok("help", "config:set"); !strings.Contains(out, "Usage: deis config:set") {
		t.Errorf("help: %q", out)
	}
	if code, _, _ := v.deis("destroy", "--confirm=wrong"); code != 1 {
		t.Errorf("destroy with a wrong confirmation went on")
	}
	_, out, errs = v.deis("destroy", "--confirm=webapp")
	if !strings.Contains(out, "Destroying webapp... done") || !strings.Contains(errs, "Using app webapp (from git remote deis)") {
		t.Errorf("destroy: %q %q", out, errs)
	}
	if code, _, _ := v.deis("info", "-a", "webapp"); code != 1 {
		t.Errorf("info after destroy succeeded")
	}
	if out := v.ok("auth:regenerate"); !strings.Contains(out, "Token regenerated") {
		t.Errorf("regenerate: %q", out)
	}
	v.ok("whoami") // the new token was saved
	v.ok("logout")
	if code, _, _ := v.deis("whoami"); code != 1 {
		t.Errorf("whoami after logout succeeded")
	}
	if out := v.ok("login", v.url, "--username=alice", "--password=s3cret"); !strings.Contains(out, "Logged in as alice") {
		t.Errorf("login: %q", out)
	}
	if code, _, errs := v.deis("login", "http://127.0.0.1:1", "--username=a", "--password=b"); code != 1 || !strings.Contains(errs, "cannot reach the controller") {
		t.Errorf("login to nothing: %d %q", code, errs)
	}
}
