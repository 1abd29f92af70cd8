package builder

import (
	"context"
	"strings"
	"testing"

	"github.com/deis/dataplane/pkg/keys"
	"github.com/deis/dataplane/pkg/testenv"
)

func TestParseCommand(t *testing.T) {
	t.Parallel()
	for raw, want := range map[string][2]string{
		"git-receive-pack 'myapp.git'":  {"git-receive-pack", "myapp"},
		"git-receive-pack '/myapp.git'": {"git-receive-pack", "myapp"},
		"git-upload-pack '/my-app'":     {"git-upload-pack", "my-app"},
		`git receive-pack "a1.git"`:     {"git-receive-pack", "a1"},
		"ping":                          {"ping", ""},
		"  git-upload-pack 'x.git'  ":   {"git-upload-pack", "x"},
	} {
		verb, app, err := ParseCommand(raw)
		if err != nil || verb != want[0] || app != want[1] {
			t.Errorf("ParseCommand(%q) = %q, %q, %v; want %q, %q", raw, verb, app, err, want[0], want[1])
		}
	}
	for _, bad := range []string{"", "ls /", "git-receive-pack '../etc.git'", "git-receive-pack 'a/b.git'", "git-receive-pack 'Bad.git'",
		"git-receive-pack ''", "git-receive-pack '/etc/passwd'", "git-receive-pack 'app.git'; rm -rf /", "scp -t /tmp", "git-upload-archive 'a.git'"} {
		if verb, app, err := ParseCommand(bad); err == nil {
			t.Errorf("ParseCommand(%q) = %q, %q; want an error", bad, verb, app)
		}
	}
}

func FuzzParseCommand(f *testing.F) {
	for _, s := range []string{"git-receive-pack 'myapp.git'", "git-upload-pack '/a.git'", "ping", "git receive-pack \"x\"", "ls", "git-receive-pack '../../x.git'"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, raw string) {
		verb, app, err := ParseCommand(raw)
		if err != nil || verb == "ping" {
			return
		}
		if keys.ValidateAppName(app) != nil || strings.ContainsAny(app, "/.'\" ") {
			t.Fatalf("ParseCommand(%q) accepted app %q", raw, app)
		}
	})
}

func TestParseProcfile(t *testing.T) {
	t.Parallel()
	p, err := ParseProcfile([]byte("web: ./server --port $PORT\nworker: python worker.py\n"))
	if err != nil || p["web"] != "./server --port $PORT" || p["worker"] != "python worker.py" {
		t.Fatalf("YAML Procfile = %v, %v", p, err)
	}
	// Not YAML (": " inside a command), read as Heroku does.
	p, err = ParseProcfile([]byte("web: echo a: b\n# comment\n\nclock: sleep 1\n"))
	if err != nil || p["web"] != "echo a: b" || p["clock"] != "sleep 1" {
		t.Fatalf("plain Procfile = %v, %v", p, err)
	}
	for _, bad := range []string{"", "web:\n", "Web_Proc: x\n", "just text\n", "a.b: x\n", "web: a\nweb: b\n"} {
		if p, err := ParseProcfile([]byte(bad)); err == nil {
			t.Errorf("ParseProcfile(%q) = %v; want an error", bad, p)
		}
	}
}

// TestL13ProcfileIsReadLiterally: read as YAML, `&anchor ./server` became
// `./server`, `!tag ./server` lost its tag, `0x1F` became `31`, and a
// duplicate type silently won. Heroku reads each line literally.
func TestL13ProcfileIsReadLiterally(t *testing.T) {
	t.Parallel()
	for in, want := range map[string]string{
		"web: &anchor ./server\n":       "&anchor ./server",
		"web: !tag ./server\n":          "!tag ./server",
		"web: 0x1F\n":                   "0x1F",
		"web: 1e3\n":                    "1e3",
		"web: \"bundle exec puma\"\n":   "bundle exec puma",
		"web: 'python app.py'\n":        "python app.py",
		"web: sh -c 'echo \"a b\"'\n":   "sh -c 'echo \"a b\"'",
		"web: ./server # the web\n":     "./server # the web",
		"web:./server --port=$PORT\r\n": "./server --port=$PORT",
	} {
		p, err := ParseProcfile([]byte(in))
		if err != nil || p["web"] != want {
			t.Errorf("ParseProcfile(%q) = %q, %v; want %q", in, p["web"], err, want)
		}
	}
	if _, err := ParseProcfile([]byte("web: a\nworker: b\nweb: c\n")); err == nil || !strings.Contains(err.Error(), "twice") {
		t.Fatalf("duplicate process type: %v", err)
	}
}

func FuzzParseProcfile(f *testing.F) {
	for _, s := range []string{"web: ./server\n", "web: echo a: b\n", "a: 1\nb: true\n", "- x\n", "web: {a: b}\n"} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		p, err := ParseProcfile(data)
		if err != nil {
			return
		}
		if len(p) == 0 {
			t.Fatal("no error and no processes")
		}
		for name, cmd := range p {
			if keys.ValidateAppName(name) != nil || strings.TrimSpace(cmd) == "" {
				t.Fatalf("accepted process %q: %q", name, cmd)
			}
		}
	})
}

// TestHostKeySharedAndKept: every builder on one etcd presents the same
// host key, created once.
func TestHostKeySharedAndKept(t *testing.T) {
	t.Parallel()
	e := testenv.StartEtcd(t)
	ctx := context.Background()
	a, err := HostKey(ctx, e.Client())
	if err != nil {
		t.Fatal(err)
	}
	b, err := HostKey(ctx, e.Client())
	if err != nil {
		t.Fatal(err)
	}
	if string(a.PublicKey().Marshal()) != string(b.PublicKey().Marshal()) {
		t.Fatal("two builders got different host keys")
	}
	e.Put(keys.BuilderSSHHostKey, "not a key")
	if _, err := HostKey(ctx, e.Client()); err == nil || !strings.Contains(err.Error(), keys.BuilderSSHHostKey) {
		t.Fatalf("a bad stored key: err = %v, want one naming the key", err)
	}
}
