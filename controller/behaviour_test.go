package controller_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/deis/dataplane/agent/runtime"
	"github.com/deis/dataplane/controller"
	"github.com/deis/dataplane/logger"
	"github.com/deis/dataplane/pkg/daemon"
	"github.com/deis/dataplane/pkg/keys"
	"github.com/deis/dataplane/pkg/testenv"
	"github.com/deis/dataplane/pkg/testenv/testcert"
)

// TestLifecycleEventsReachTheLogs: what users do to an app is told in its
// log, as Deis v1 did: `deis logs` shows "<app>[deis-controller]: ...".
func TestLifecycleEventsReachTheLogs(t *testing.T) {
	t.Parallel()
	v := startCfg(t, func(v *env, cfg *controller.Config) {
		l, err := logger.New(logger.Config{SyslogAddr: "127.0.0.1:0", Host: "127.0.0.1", LogRoot: t.TempDir()}, v.cli, slog.New(slog.DiscardHandler), daemon.NewMetrics())
		if err != nil {
			t.Fatal(err)
		}
		admin, err := logger.NewAdmin(l, "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		t.Cleanup(cancel)
		go func() { _ = admin.Run(ctx) }()
		go func() { _ = l.Run(ctx) }()
		_, port, _ := net.SplitHostPort(admin.Addr())
		cfg.LoggerHTTPPort = atoi(port)
	})
	alice := v.user("alice")
	testenv.Eventually(t, 10*time.Second, func() bool {
		r, _ := v.cli.Get(context.Background(), keys.LogsHost)
		return len(r.Kvs) > 0
	}, "the logger announced itself")
	v.do(alice, "POST", "/v1/apps/", map[string]string{"id": "evented"})
	v.build("evented")
	v.do(alice, "POST", "/v1/apps/evented/config/", map[string]any{"values": map[string]string{"FOO": "1"}})
	v.do(alice, "POST", "/v1/apps/evented/scale/", map[string]int{"web": 2})
	var body string
	testenv.Eventually(t, 10*time.Second, func() bool {
		a := v.do(alice, "GET", "/v1/apps/evented/logs?log_lines=50", nil)
		body = string(a.body)
		return a.status == 200 && strings.Contains(body, "alice scaled containers web=2")
	}, "the lifecycle events in the app's log (got %q)", body)
	for _, want := range []string{"evented[deis-controller]: alice created initial release", "evented[deis-controller]: alice added FOO"} {
		if !strings.Contains(body, want) {
			t.Errorf("log lacks %q:\n%s", want, body)
		}
	}
	// deis logs -f: the stream shows what happens next.
	req, _ := http.NewRequest("GET", v.url+"/v1/apps/evented/logs?follow=true&log_lines=1", nil)
	req.Header.Set("Authorization", "token "+alice)
	resp, err := http.DefaultClient.Do(req)
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("follow: %v %v", resp, err)
	}
	defer resp.Body.Close()
	lines := make(chan string, 64)
	go func() {
		sc := bufio.NewScanner(resp.Body)
		for sc.Scan() {
			lines <- sc.Text()
		}
		close(lines)
	}()
	time.Sleep(200 * time.Millisecond) // the follower is registered at the logger
	v.do(alice, "POST", "/v1/apps/evented/scale/", map[string]int{"web": 1})
	deadline := time.After(10 * time.Second)
	for {
		select {
		case l, ok := <-lines:
			if !ok {
				t.Fatal("the follow stream ended")
			}
			if strings.Contains(l, "alice scaled containers web=1") {
				return
			}
		case <-deadline:
			t.Fatal("the scale event never came through the follow stream")
		}
	}
}

func atoi(s string) int {
	n := 0
	for _, c := range s {
		n = n*10 + int(c-'0')
	}
	return n
}

// TestBusyAppAnswers409: a mutating call that cannot take the app's lock
// within its wait answers 409 naming the holder.
func TestBusyAppAnswers409(t *testing.T) {
	t.Parallel()
	v := start(t)
	alice := v.user("alice")
	v.do(alice, "POST", "/v1/apps/", map[string]string{"id": "busy"})
	v.build("busy")
	v.e.Put(keys.AppLock("busy"), "carol scale since 2026-11-30T10:00:00Z")
	start := time.Now()
	a := v.do(alice, "POST", "/v1/apps/busy/scale/", map[string]int{"web": 2})
	if a.status != 409 || !strings.Contains(string(a.body), "carol scale since") {
		t.Fatalf("busy app: %d %s, want 409 naming the holder", a.status, a.body)
	}
	if took := time.Since(start); took < 900*time.Millisecond {
		t.Errorf("answered 409 after %s, without waiting for the lock", took)
	}
	if _, err := v.cli.Delete(context.Background(), keys.AppLock("busy")); err != nil {
		t.Fatal(err)
	}
	if a := v.do(alice, "POST", "/v1/apps/busy/scale/", map[string]int{"web": 2}); a.status != 204 {
		t.Fatalf("after the holder left: %d %s", a.status, a.body)
	}
}

// TestFailedDeployAnswers503: a release that crashes answers 503 with the
// cause; it is listed as failed; rollback without a version skips it.
func TestFailedDeployAnswers503(t *testing.T) {
	t.Parallel()
	v := start(t)
	v.c.RT.Behave = func(s runtime.RunSpec) runtime.FakeBehaviour {
		if strings.HasPrefix(s.Image, "crash") {
			return runtime.FakeBehaviour{ExitAfter: 30 * time.Millisecond, ExitCode: 4, Output: "no DATABASE_URL\n"}
		}
		if s.Labels[keys.LabelType] == "run" {
			return runtime.FakeBehaviour{ExitAfter: 20 * time.Millisecond}
		}
		return runtime.FakeBehaviour{}
	}
	alice := v.user("alice")
	v.do(alice, "POST", "/v1/apps/", map[string]string{"id": "failing"})
	if a := v.do(alice, "POST", "/v1/apps/failing/builds/", map[string]any{"image": "good:1", "procfile": map[string]string{"web": "serve"}}); a.status != 201 || a.header.Get("Deis-Release") != "2" {
		t.Fatalf("good build: %d %s (Deis-Release %q)", a.status, a.body, a.header.Get("Deis-Release"))
	}
	a := v.do(alice, "POST", "/v1/apps/failing/builds/", map[string]any{"image": "crash:1", "procfile": map[string]string{"web": "serve"}})
	if a.status != 503 || !strings.Contains(string(a.body), "exited with code 4") || !strings.Contains(string(a.body), "no DATABASE_URL") {
		t.Fatalf("crashing build: %d %s, want 503 with the cause", a.status, a.body)
	}
	a = v.do(alice, "GET", "/v1/apps/failing/releases/", nil)
	var list struct{ Results []map[string]any }
	_ = json.Unmarshal(a.body, &list)
	if len(list.Results) != 3 || list.Results[0]["version"] != float64(3) || !strings.HasSuffix(list.Results[0]["summary"].(string), " (failed)") || list.Results[0]["failed"] == nil {
		t.Fatalf("releases after the failure: %s", a.body)
	}
	if list.Results[1]["failed"] != nil {
		t.Errorf("v2 is marked failed: %v", list.Results[1])
	}
	// v4 good again; a rollback without a version skips the failed v3.
	if a := v.do(alice, "POST", "/v1/apps/failing/builds/", map[string]any{"image": "good:2", "procfile": map[string]string{"web": "serve"}}); a.status != 201 || a.header.Get("Deis-Release") != "4" {
		t.Fatalf("good build after the failure: %d %s (Deis-Release %q: max + 1)", a.status, a.body, a.header.Get("Deis-Release"))
	}
	a = v.do(alice, "POST", "/v1/apps/failing/releases/rollback/", nil)
	if a.status != 201 || !strings.Contains(string(a.body), `"version":5`) {
		t.Fatalf("rollback: %d %s", a.status, a.body)
	}
	a = v.do(alice, "GET", "/v1/apps/failing/releases/v5/", nil)
	if !strings.Contains(string(a.body), "alice rolled back to v2") {
		t.Errorf("rollback without a version must skip the failed v3: %s", a.body)
	}
	if a := v.do(alice, "POST", "/v1/apps/failing/releases/rollback/", map[string]int{"version": 1}); a.status != 400 {
		t.Errorf("rollback to v1, which has no build: %d %s, want 400", a.status, a.body)
	}
}

// TestRegistrationModes: enabled (default), admin_only (an admin's token),
// disabled (403).
func TestRegistrationModes(t *testing.T) {
	t.Parallel()
	v := start(t)
	root := v.user("root")
	v.e.Put(keys.ControllerRegistrationMode, "admin_only")
	body := map[string]string{"username": "eve", "password": "x"}
	if a := v.do("", "POST", "/v1/auth/register/", body); a.status != 403 {
		t.Errorf("admin_only without a token: %d", a.status)
	}
	if a := v.do(root, "POST", "/v1/auth/register/", body); a.status != 201 || strings.Contains(string(a.body), `"is_superuser":true`) {
		t.Errorf("admin_only with an admin's token: %d %s (and not an admin)", a.status, a.body)
	}
	v.e.Put(keys.ControllerRegistrationMode, "disabled")
	if a := v.do(root, "POST", "/v1/auth/register/", map[string]string{"username": "mallory", "password": "x"}); a.status != 403 || !strings.Contains(string(a.body), "Registration is disabled") {
		t.Errorf("disabled: %d %s", a.status, a.body)
	}
}

// TestLoginSlowedDownAndSecretsKeptOut: repeated failed logins are slowed
// down; no password, token or key reaches the logs or /metrics.
func TestLoginSlowedDownAndSecretsKeptOut(t *testing.T) {
	t.Parallel()
	var logs bytes.Buffer
	reg := prometheus.NewRegistry()
	v := startCfg(t, func(v *env, _ *controller.Config) {
		v.log = slog.New(slog.NewTextHandler(&syncWriter{w: &logs}, &slog.HandlerOptions{Level: slog.LevelDebug}))
		v.reg = reg
	})
	tok := v.user("alice")
	for i := 0; i < 3; i++ {
		if a := v.do("", "POST", "/v1/auth/login/", map[string]string{"username": "alice", "password": "guess-secret"}); a.status != 400 {
			t.Fatalf("wrong password: %d", a.status)
		}
	}
	start := time.Now()
	v.do("", "POST", "/v1/auth/login/", map[string]string{"username": "alice", "password": "guess-secret"})
	if took := time.Since(start); took < 900*time.Millisecond {
		t.Errorf("the 4th failed login answered in %s; repeated failures must be slowed down", took)
	}
	ca := testcert.NewCA(t)
	cert, key := ca.Issue(t, "secret.example.com")
	v.do(tok, "POST", "/v1/certs/", map[string]string{"certificate": cert, "key": key})
	v.do(tok, "POST", "/v1/certs/", map[string]string{"certificate": cert, "key": "garbage " + key[30:80]})
	v.do(tok, "POST", "/v1/auth/passwd/", map[string]string{"password": "pw-alice", "new_password": "new-secret"})
	if n, _ := testutil.GatherAndCount(reg); n == 0 {
		t.Fatal("no metrics gathered: the secrets check would be empty")
	}
	if logs.Len() == 0 {
		t.Fatal("nothing logged: the secrets check would be empty")
	}
	var dump strings.Builder
	mfs, _ := reg.Gather()
	for _, mf := range mfs {
		dump.WriteString(mf.String())
	}
	for _, secret := range []string{"pw-alice", "guess-secret", "new-secret", tok, key[40:80]} {
		if strings.Contains(logs.String(), secret) || strings.Contains(dump.String(), secret) {
			t.Errorf("a secret (%.12q...) reached the logs or the metrics", secret)
		}
	}
}

// TestPagination: page_size and page, with absolute next and previous.
func TestPagination(t *testing.T) {
	t.Parallel()
	v := start(t)
	alice := v.user("alice")
	for _, id := range []string{"a1", "a2", "a3", "a4", "a5"} {
		v.do(alice, "POST", "/v1/apps/", map[string]string{"id": id})
	}
	var p struct {
		Count          int
		Next, Previous *string
		Results        []map[string]any
	}
	a := v.do(alice, "GET", "/v1/apps/?page_size=2", nil)
	_ = json.Unmarshal(a.body, &p)
	if p.Count != 5 || len(p.Results) != 2 || p.Next == nil || p.Previous != nil || !strings.HasPrefix(*p.Next, v.url+"/v1/apps/?") {
		t.Fatalf("page 1: %s", a.body)
	}
	req, _ := http.NewRequest("GET", *p.Next, nil)
	req.Header.Set("Authorization", "token "+alice)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	p.Next, p.Previous = nil, nil
	_ = json.Unmarshal(b, &p)
	if len(p.Results) != 2 || p.Results[0]["id"] != "a3" || p.Previous == nil || p.Next == nil {
		t.Fatalf("page 2: %s", b)
	}
	a = v.do(alice, "GET", "/v1/apps/?page_size=2&page=3", nil)
	p.Next = nil
	_ = json.Unmarshal(a.body, &p)
	if len(p.Results) != 1 || p.Next != nil {
		t.Fatalf("page 3: %s", a.body)
	}
	if a := v.do(alice, "GET", "/v1/apps/?page_size=2&page=9", nil); a.status != 404 {
		t.Errorf("a page past the end: %d", a.status)
	}
}

// TestCertsAddTakesAnECDSAAndAnRSAPair: one upload may hold an ECDSA and an
// RSA certificate for the same names (the router prefers the ECDSA one);
// a pair whose certificates name different hosts is refused, and nothing
// is written.
func TestCertsAddTakesAnECDSAAndAnRSAPair(t *testing.T) {
	t.Parallel()
	v := start(t)
	tok := v.user("alice")
	ca := testcert.NewCA(t)
	ec, ecKey := ca.Issue(t, "dual.example.com")
	rc, rcKey := ca.IssueRSA(t, "dual.example.com")
	if a := v.do(tok, "POST", "/v1/certs/", map[string]string{"certificate": rc + ec, "key": ecKey + rcKey}); a.status != 201 {
		t.Fatalf("dual upload: %d %s", a.status, a.body)
	}
	resp, err := v.cli.Get(context.Background(), keys.CertPEM("dual.example.com"))
	if err != nil || len(resp.Kvs) != 1 || string(resp.Kvs[0].Value) != rc+ec {
		t.Fatalf("stored certificate: %v %v", resp, err)
	}
	other, otherKey := ca.IssueRSA(t, "other.example.com")
	a := v.do(tok, "POST", "/v1/certs/", map[string]string{"certificate": ec + other, "key": ecKey + otherKey, "common_name": "mixed.example.com"})
	if a.status != 400 || !strings.Contains(string(a.body), "name different hosts") {
		t.Fatalf("mismatched pair: %d %s", a.status, a.body)
	}
	if resp, _ := v.cli.Get(context.Background(), keys.CertPEM("mixed.example.com")); len(resp.Kvs) != 0 {
		t.Fatal("a refused upload was written")
	}
}
