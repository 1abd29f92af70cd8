package controller_test

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/deis/dataplane/agent/runtime"
	"github.com/deis/dataplane/controller"
	"github.com/deis/dataplane/internal/cptest"
	"github.com/deis/dataplane/pkg/keys"
	"github.com/deis/dataplane/pkg/release"
	"github.com/deis/dataplane/pkg/testenv"
)

var update = flag.Bool("update", false, "rewrite the golden files under testdata/golden")

// env is a controller in front of a real etcd and a control plane whose
// agents run on the FAKE runtime (agent/runtime.Fake).
type env struct {
	t   *testing.T
	e   *testenv.Etcd
	cli *clientv3.Client
	c   *cptest.Cluster
	url string
	log *slog.Logger         // the controller's, when a test reads it
	reg *prometheus.Registry // the controller's metrics, when a test reads them
}

func start(t *testing.T) *env { return startCfg(t, nil) }

// startCfg starts an env; tune may change the controller's config (it
// runs after the etcd and control plane are up, before the API starts).
func startCfg(t *testing.T, tune func(*env, *controller.Config)) *env {
	t.Helper()
	e := testenv.StartEtcd(t)
	cli := e.Client()
	log := slog.New(slog.DiscardHandler)
	c := cptest.New(cli, log)
	// A fake run prints its command and exits 0.
	c.RT.Behave = func(s runtime.RunSpec) runtime.FakeBehaviour {
		if s.Labels[keys.LabelType] == "run" {
			return runtime.FakeBehaviour{ExitAfter: 20 * time.Millisecond, Output: s.Command + "\n"}
		}
		return runtime.FakeBehaviour{}
	}
	t.Cleanup(c.Close)
	c.StartHost("127.0.0.2", nil)
	c.StartHost("127.0.0.3", nil)
	c.StartScheduler("s1")
	e.Put(keys.PlatformDomain, "example.test")
	lease, err := cli.Grant(context.Background(), 10)
	if err != nil {
		t.Fatal(err)
	}
	ka, err := cli.KeepAlive(context.Background(), lease.ID)
	if err != nil {
		t.Fatal(err)
	}
	go func() {
		for range ka {
		}
	}()
	v := &env{t: t, e: e, cli: cli, c: c}
	cfg := controller.Config{LockWait: time.Second, DeployWait: 15 * time.Second}
	if tune != nil {
		tune(v, &cfg)
	}
	if v.log != nil {
		log = v.log
	}
	var reg prometheus.Registerer // nil unless a test reads the metrics
	if v.reg != nil {
		reg = v.reg
	}
	api := controller.New(cfg, cli, func() clientv3.LeaseID { return lease.ID }, log, reg)
	// The mirror runs as in production: calls authenticate from it.
	mctx, stopMirror := context.WithCancel(context.Background())
	t.Cleanup(stopMirror)
	go func() { _ = api.Run(mctx) }()
	srv := httptest.NewServer(api)
	t.Cleanup(srv.Close)
	v.url = srv.URL
	return v
}

type answer struct {
	status int
	header http.Header
	body   []byte
}

func (a answer) json(t *testing.T) any {
	t.Helper()
	var v any
	if len(a.body) > 0 {
		if err := json.Unmarshal(a.body, &v); err != nil {
			t.Fatalf("answer is not JSON: %v: %q", err, a.body)
		}
	}
	return v
}

func (v *env) do(token, method, path string, body any) answer {
	v.t.Helper()
	var rd io.Reader
	switch b := body.(type) {
	case nil:
	case json.RawMessage: // sent as is, malformed or not
		rd = bytes.NewReader(b)
	default:
		data, err := json.Marshal(b)
		if err != nil {
			v.t.Fatalf("encode the request body: %v", err)
		}
		rd = bytes.NewReader(data)
	}
	req, _ := http.NewRequest(method, v.url+path, rd)
	req.Header.Set("Content-Type", "application/json")
	if token != "" {
		req.Header.Set("Authorization", "token "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		v.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	// Go's client canonicalises what it reads; the spelling on the wire is
	// checked by TestVersionHeaderSpelledExactly.
	if got := resp.Header.Get("DEIS_API_VERSION"); got != "1.7" {
		v.t.Errorf("%s %s: DEIS_API_VERSION header %q, want 1.7", method, path, got)
	}
	return answer{resp.StatusCode, resp.Header, b}
}

// user registers name and logs in; it returns the token.
func (v *env) user(name string) string {
	v.t.Helper()
	if a := v.do("", "POST", "/v1/auth/register/", map[string]string{"username": name, "password": "pw-" + name, "email": name + "@example.test"}); a.status != 201 {
		v.t.Fatalf("register %s: %d %s", name, a.status, a.body)
	}
	a := v.do("", "POST", "/v1/auth/login/", map[string]string{"username": name, "password": "pw-" + name})
	if a.status != 200 {
		v.t.Fatalf("login %s: %d %s", name, a.status, a.body)
	}
	var tok struct{ Token string }
	_ = json.Unmarshal(a.body, &tok)
	return tok.Token
}

// build gives app a release with an image, as a push would.
func (v *env) build(app string) {
	v.t.Helper()
	rel, rev, err := release.WriteWith(context.Background(), v.cli, app, func(cur *release.Release, config map[string]string) (*release.Release, []clientv3.Op, error) {
		return &release.Release{Image: "img:" + app, Procfile: map[string]string{"web": "serve", "worker": "work"}, Config: config, SHA: "0123456789abcdef", User: "builder", Summary: "builder deployed 0123456"}, nil, nil
	})
	if err != nil {
		v.t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	_ = rel
	if _, err := cptestWait(ctx, v.cli, app, rev); err != nil {
		v.t.Fatal(err)
	}
}

// shape replaces every value by its JSON type, keeping object keys and the
// shape of the first array element: what the golden files pin down.
func shape(v any) any {
	switch x := v.(type) {
	case map[string]any:
		out := map[string]any{}
		for k, e := range x {
			out[k] = shape(e)
		}
		return out
	case []any:
		if len(x) == 0 {
			return []any{}
		}
		return []any{shape(x[0])}
	case string:
		return "string"
	case float64:
		return "number"
	case bool:
		return "bool"
	case nil:
		return "null"
	}
	return fmt.Sprintf("%T", v)
}

// golden compares name's calls (method, path, status, answer shape) with
// testdata/golden/<name>.json.
func golden(t *testing.T, name string, calls []map[string]any) {
	t.Helper()
	got, _ := json.MarshalIndent(calls, "", "  ")
	got = append(got, '\n')
	path := filepath.Join("testdata", "golden", name+".json")
	if *update {
		_ = os.MkdirAll(filepath.Dir(path), 0o755)
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test ./controller -update to create it)", err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("%s differs from %s (go test ./controller -update rewrites it after a deliberate change):\n%s", name, path, diffLines(string(want), string(got)))
	}
}

func diffLines(want, got string) string {
	w, g := strings.Split(want, "\n"), strings.Split(got, "\n")
	var out []string
	for i := 0; i < max(len(w), len(g)); i++ {
		var a, b string
		if i < len(w) {
			a = w[i]
		}
		if i < len(g) {
			b = g[i]
		}
		if a != b {
			out = append(out, fmt.Sprintf("line %d: want %q, got %q", i+1, a, b))
		}
		if len(out) > 20 {
			break
		}
	}
	return strings.Join(out, "\n")
}
