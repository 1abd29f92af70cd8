package controller_test

import (
	"crypto/ed25519"
	"crypto/rand"
	"fmt"
	"io"
	"net"
	"strings"
	"testing"

	gossh "golang.org/x/crypto/ssh"

	"github.com/deis/dataplane/pkg/testenv/testcert"
)

// call is one step of the golden scenario.
type call struct {
	name, token, method, path string
	body                      any
	want                      int
}

// TestGoldenEveryEndpoint drives every endpoint of DEIS-V1-API.md once,
// checks its status, DEIS_API_VERSION, that the path answers the same with
// and without its trailing slash, and pins the answer's JSON shape (field
// names and types) in testdata/golden/endpoints.json.
func TestGoldenEveryEndpoint(t *testing.T) {
	t.Parallel()
	v := start(t)
	if a := v.do("", "GET", "/v1/", nil); a.status != 401 {
		t.Fatalf("GET /v1/ without a token: %d, want 401", a.status)
	}
	alice := v.user("alice") // the first user: admin
	bob := v.user("bob")
	pub, _, _ := ed25519.GenerateKey(rand.Reader)
	spub, _ := gossh.NewPublicKey(pub)
	keyLine := strings.TrimSpace(string(gossh.MarshalAuthorizedKey(spub))) + " alice@laptop"
	ca := testcert.NewCA(t)
	certPEM, keyPEM := ca.Issue(t, "www.example.com")
	steps := []call{
		{"api root", alice, "GET", "/v1/", nil, 200},
		{"whoami list users", alice, "GET", "/v1/users/", nil, 200},
		{"create app", alice, "POST", "/v1/apps/", map[string]string{"id": "myapp"}, 201},
		{"create generated", alice, "POST", "/v1/apps/", map[string]string{}, 201},
		{"list apps", alice, "GET", "/v1/apps/", nil, 200},
		{"app info", alice, "GET", "/v1/apps/myapp/", nil, 200},
		{"scale before a build", alice, "POST", "/v1/apps/myapp/scale/", map[string]int{"web": 1}, 400},
		{"build from an image", alice, "POST", "/v1/apps/myapp/builds/", map[string]any{"image": "example/myapp:v1", "procfile": map[string]string{"web": "serve", "worker": "work"}}, 201},
		{"list builds", alice, "GET", "/v1/apps/myapp/builds/", nil, 200},
		{"config set", alice, "POST", "/v1/apps/myapp/config/", map[string]any{"values": map[string]string{"FOO": "bar", "HELLO": "world"}}, 201},
		{"config unset", alice, "POST", "/v1/apps/myapp/config/", map[string]any{"values": map[string]any{"HELLO": nil}}, 201},
		{"limits set", alice, "POST", "/v1/apps/myapp/config/", map[string]any{"memory": map[string]string{"web": "64M"}, "cpu": map[string]int{"web": 512}}, 201},
		{"tags set", alice, "POST", "/v1/apps/myapp/config/", map[string]any{"tags": map[string]string{"dataPlane": "true"}}, 201},
		{"bad config key", alice, "POST", "/v1/apps/myapp/config/", map[string]any{"values": map[string]string{"BAD-KEY": "x"}}, 400},
		{"config get", alice, "GET", "/v1/apps/myapp/config/", nil, 200},
		{"scale", alice, "POST", "/v1/apps/myapp/scale/", map[string]int{"web": 2, "worker": 1}, 204},
		{"scale unknown type", alice, "POST", "/v1/apps/myapp/scale/", map[string]int{"nope": 1}, 400},
		{"ps list", alice, "GET", "/v1/apps/myapp/containers/", nil, 200},
		{"ps list type", alice, "GET", "/v1/apps/myapp/containers/web/", nil, 200},
		{"ps list one", alice, "GET", "/v1/apps/myapp/containers/web/1/", nil, 200},
		{"restart one", alice, "POST", "/v1/apps/myapp/containers/web/1/restart/", nil, 200},
		{"restart type", alice, "POST", "/v1/apps/myapp/containers/worker/restart/", nil, 200},
		{"restart all", alice, "POST", "/v1/apps/myapp/containers/restart/", nil, 200},
		{"releases list", alice, "GET", "/v1/apps/myapp/releases/", nil, 200},
		{"release info", alice, "GET", "/v1/apps/myapp/releases/v1/", nil, 200},
		{"rollback to a release without a build", alice, "POST", "/v1/apps/myapp/releases/rollback/", map[string]int{"version": 1}, 400},
		{"rollback", alice, "POST", "/v1/apps/myapp/releases/rollback/", nil, 201},
		{"domains add", alice, "POST", "/v1/apps/myapp/domains/", map[string]string{"domain": "www.example.com"}, 201},
		{"domains add wildcard", alice, "POST", "/v1/apps/myapp/domains/", map[string]string{"domain": "*.example.com"}, 400},
		{"domains list", alice, "GET", "/v1/apps/myapp/domains/", nil, 200},
		{"certs add", alice, "POST", "/v1/certs/", map[string]string{"certificate": certPEM, "key": keyPEM}, 201},
		{"certs add again", alice, "POST", "/v1/certs/", map[string]string{"certificate": certPEM, "key": keyPEM}, 400},
		{"certs list", alice, "GET", "/v1/certs/", nil, 200},
		{"cert info", alice, "GET", "/v1/certs/www.example.com", nil, 200},
		{"keys add", alice, "POST", "/v1/keys/", map[string]string{"id": "alice@laptop", "public": keyLine}, 201},
		{"keys add again", bob, "POST", "/v1/keys/", map[string]string{"id": "bob@laptop", "public": keyLine}, 400},
		{"keys list", alice, "GET", "/v1/keys/", nil, 200},
		{"key info", alice, "GET", "/v1/keys/alice@laptop", nil, 200},
		{"perms add", alice, "POST", "/v1/apps/myapp/perms/", map[string]string{"username": "bob"}, 201},
		{"perms list", alice, "GET", "/v1/apps/myapp/perms/", nil, 200},
		{"admin perms list", alice, "GET", "/v1/admin/perms/", nil, 200},
		{"admin perms grant", alice, "POST", "/v1/admin/perms/", map[string]string{"username": "bob"}, 201},
		{"admin perms revoke", alice, "DELETE", "/v1/admin/perms/bob", nil, 204},
		{"run", alice, "POST", "/v1/apps/myapp/run/", map[string]string{"command": "echo hi"}, 200},
		{"logs without a logger", alice, "GET", "/v1/apps/myapp/logs/", nil, 500},
		{"passwd", bob, "POST", "/v1/auth/passwd/", map[string]string{"password": "pw-bob", "new_password": "new-pw"}, 200},
		{"passwd wrong", bob, "POST", "/v1/auth/passwd/", map[string]string{"password": "wrong", "new_password": "x"}, 400},
	}
	var record []map[string]any
	for _, s := range steps {
		a := v.do(s.token, s.method, s.path, s.body)
		if a.status != s.want {
			t.Errorf("%s: %s %s = %d %s, want %d", s.name, s.method, s.path, a.status, a.body, s.want)
			continue
		}
		if s.method == "GET" {
			bare := strings.TrimSuffix(s.path, "/")
			if b := v.do(s.token, s.method, bare, nil); b.status != a.status {
				t.Errorf("%s: %s without the trailing slash answers %d, with it %d", s.name, bare, b.status, a.status)
			}
		}
		record = append(record, map[string]any{"call": s.name, "method": s.method, "path": s.path, "status": a.status, "answer": shape(a.json(t))})
	}
	for _, s := range []call{
		{"perms remove", alice, "DELETE", "/v1/apps/myapp/perms/bob", nil, 204},
		{"key remove", alice, "DELETE", "/v1/keys/alice@laptop", nil, 204},
		{"cert remove", alice, "DELETE", "/v1/certs/www.example.com", nil, 204},
		{"domain remove", alice, "DELETE", "/v1/apps/myapp/domains/www.example.com", nil, 204},
		{"transfer", alice, "POST", "/v1/apps/myapp/", map[string]string{"owner": "bob"}, 200},
		{"destroy", bob, "DELETE", "/v1/apps/myapp/?wait=true", nil, 204},
		{"destroyed", bob, "GET", "/v1/apps/myapp/", nil, 404},
		{"cancel", bob, "DELETE", "/v1/auth/cancel/", nil, 204},
		{"regenerate", alice, "POST", "/v1/auth/tokens/", map[string]any{}, 200},
		{"old token refused", alice, "GET", "/v1/apps/", nil, 401},
	} {
		a := v.do(s.token, s.method, s.path, s.body)
		if a.status != s.want {
			t.Errorf("%s: %s %s = %d %s, want %d", s.name, s.method, s.path, a.status, a.body, s.want)
			continue
		}
		record = append(record, map[string]any{"call": s.name, "method": s.method, "path": s.path, "status": a.status, "answer": shape(a.json(t))})
	}
	golden(t, "endpoints", record)
}

// TestVersionHeaderSpelledExactly reads the raw answer: the v1 client looks
// for DEIS_API_VERSION spelled so, which Go's canonical form would change.
func TestVersionHeaderSpelledExactly(t *testing.T) {
	t.Parallel()
	v := start(t)
	conn, err := net.Dial("tcp", strings.TrimPrefix(v.url, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	fmt.Fprintf(conn, "GET /v1/ HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
	raw, _ := io.ReadAll(conn)
	if !strings.Contains(string(raw), "\r\nDEIS_API_VERSION: 1.7\r\n") || !strings.HasPrefix(string(raw), "HTTP/1.1 401") {
		t.Fatalf("raw answer lacks the exact header or the 401:\n%s", raw)
	}
}
