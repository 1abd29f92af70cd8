// Package e2e tests what an operator runs: the built binaries, `make
// run`'s devplane, and docker-compose.yml.
package e2e

import (
	"bytes"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/deis/dataplane/pkg/testenv"
)

var (
	buildOnce sync.Once
	buildDir  string
	buildErr  error
)

// build compiles every command once per test binary into a shared
// directory (the names only document what a test uses).
func build(t *testing.T, names ...string) string {
	t.Helper()
	buildOnce.Do(func() {
		buildDir, buildErr = os.MkdirTemp("", "deploy-bin-")
		if buildErr != nil {
			return
		}
		cmd := exec.Command("go", "build", "-o", buildDir+"/", "../cmd/...")
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
		if out, err := cmd.CombinedOutput(); err != nil {
			buildErr = fmt.Errorf("go build ../cmd/...: %v\n%s", err, out)
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	for _, n := range names {
		if _, err := os.Stat(filepath.Join(buildDir, n)); err != nil {
			t.Fatalf("binary %s not built: %v", n, err)
		}
	}
	return buildDir
}

func TestMain(m *testing.M) {
	code := m.Run()
	if buildDir != "" {
		os.RemoveAll(buildDir)
	}
	os.Exit(code)
}

func waitHTTP(t *testing.T, url string, want int) string {
	t.Helper()
	var body string
	testenv.Eventually(t, 20*time.Second, func() bool {
		resp, err := http.Get(url)
		if err != nil {
			return false
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		body = string(b)
		return resp.StatusCode == want
	}, "GET %s never answered %d (last body %q)", url, want, body)
	return body
}

func stopClean(t *testing.T, name string, cmd *exec.Cmd, out *bytes.Buffer) {
	t.Helper()
	_ = cmd.Process.Signal(syscall.SIGTERM)
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("%s did not exit cleanly on SIGTERM: %v\n%s", name, err, out)
		}
	case <-time.After(20 * time.Second):
		_ = cmd.Process.Kill()
		t.Errorf("%s still running 20s after SIGTERM", name)
	}
}

// TestEveryDaemonStartsServesHealthAndStops runs each binary against a real
// etcd: /healthz and /metrics answer, SIGHUP leaves it running and serving
// (it used to kill every daemon with status 129), SIGTERM stops it with
// status 0.
func TestEveryDaemonStartsServesHealthAndStops(t *testing.T) {
	if testing.Short() {
		t.Skip("builds every binary")
	}
	e := testenv.StartEtcd(t)
	bin := build(t, "router", "logger", "logspout", "publisher", "builder", "agent", "controller")
	docker := os.Getenv("DOCKER_HOST")
	if docker == "" {
		docker = "unix:///var/run/docker.sock"
	}
	common := []string{"--etcd", e.Endpoint, "--host", "127.0.0.1", "--docker", docker, "--log-level", "warn"}
	for _, tc := range []struct {
		name   string
		flags  []string
		health string
	}{
		{"router", []string{"--http-addr", testenv.FreeAddr(t), "--https-addr", testenv.FreeAddr(t), "--ssh-addr", testenv.FreeAddr(t)}, "--health-addr"},
		{"logger", []string{"--syslog-addr", testenv.FreeAddr(t), "--log-root", t.TempDir()}, "--http-addr"},
		{"logspout", []string{"--state-dir", t.TempDir()}, "--web-addr"},
		{"publisher", nil, "--health-addr"},
		{"builder", []string{"--ssh-addr", testenv.FreeAddr(t), "--repo-root", t.TempDir()}, "--health-addr"},
		// A host of its own: its units and status keys are its alone.
		{"agent", []string{"--host", "127.0.0.99"}, "--health-addr"},
		{"controller", nil, "--http-addr"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			admin := testenv.FreeAddr(t)
			var out bytes.Buffer
			cmd := exec.Command(filepath.Join(bin, tc.name), append(append(append([]string{}, common...), tc.flags...), tc.health, admin)...)
			cmd.Stdout, cmd.Stderr = &out, &out
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			waitHTTP(t, "http://"+admin+"/metrics", 200)
			resp, err := http.Get("http://" + admin + "/healthz")
			if err != nil || (resp.StatusCode != 200 && resp.StatusCode != 503) {
				t.Fatalf("/healthz: %v %v", resp, err)
			}
			resp.Body.Close()
			if err := cmd.Process.Signal(syscall.SIGHUP); err != nil {
				t.Fatal(err)
			}
			time.Sleep(300 * time.Millisecond)
			if err := cmd.Process.Signal(syscall.Signal(0)); err != nil {
				t.Fatalf("%s died on SIGHUP:\n%s", tc.name, out.String())
			}
			waitHTTP(t, "http://"+admin+"/metrics", 200)
			stopClean(t, tc.name, cmd, &out)
		})
	}
}

// TestBadFlagsStopWithOneLine checks the contract: a bad value stops the
// daemon at start with a one-line error naming the flag.
func TestBadFlagsStopWithOneLine(t *testing.T) {
	if testing.Short() {
		t.Skip("builds binaries")
	}
	bin := build(t, "router", "logger", "publisher", "etcd", "agent")
	for _, tc := range []struct{ name, flag, value string }{
		{"router", "--etcd", "not-a-url"},
		{"router", "--grace", "forever"},
		{"logger", "--log-level", "shouty"},
		{"publisher", "--ttl", "1ms"},
		{"etcd", "--log-level", "bogus"}, // etcd's logger used to panic
		{"router", "--access-log=maybe", ""},
		{"agent", "--labels", "dataPlane"},
		{"agent", "--keep-releases", "0"},
	} {
		args := []string{tc.flag, tc.value}
		if tc.value == "" {
			args = args[:1]
		}
		out, err := exec.Command(filepath.Join(bin, tc.name), args...).CombinedOutput()
		ee, ok := err.(*exec.ExitError)
		if !ok || ee.ExitCode() != 2 {
			t.Errorf("%s %s %s: exit %v, want 2", tc.name, tc.flag, tc.value, err)
		}
		lines := strings.Split(strings.TrimSpace(string(out)), "\n")
		if len(lines) != 1 || !strings.Contains(lines[0], strings.TrimLeft(strings.SplitN(tc.flag, "=", 2)[0], "-")) {
			t.Errorf("%s %s %s: want one line naming the flag, got %q", tc.name, tc.flag, tc.value, out)
		}
	}
}

// TestDevplane is `make run`: it comes up, the router answers
// /health-check, and Ctrl-C (SIGINT) stops everything cleanly.
func TestDevplane(t *testing.T) {
	if testing.Short() {
		t.Skip("builds every binary")
	}
	bin := build(t, "devplane", "router", "logger", "logspout", "publisher", "builder", "controller", "agent")
	port := func() string { a := testenv.FreeAddr(t); return a[strings.LastIndexByte(a, ':')+1:] }
	health, logHTTP := port(), port()
	var out bytes.Buffer
	// No --data-dir: devplane makes one in TMPDIR and must remove it on
	// stop (it used to leave about 120 MB there each run).
	tmp := t.TempDir()
	cmd := exec.Command(filepath.Join(bin, "devplane"), "--host", "127.0.0.78",
		"--etcd-port", port(), "--etcd-peer-port", port(), "--http-port", port(), "--https-port", port(), "--ssh-port", port(),
		"--health-port", health, "--syslog-port", port(), "--logger-http-port", logHTTP, "--logspout-port", port(),
		"--publisher-port", port(), "--builder-port", port(), "--builder-health-port", port(),
		"--controller-port", port(), "--agent-port", port())
	cmd.Stdout, cmd.Stderr = &out, &out
	cmd.Env = append(os.Environ(), "TMPDIR="+tmp)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	if body := waitHTTP(t, fmt.Sprintf("http://127.0.0.78:%s/health-check", health), 200); !strings.Contains(body, "OK") {
		t.Fatalf("health-check body %q", body)
	}
	waitHTTP(t, fmt.Sprintf("http://127.0.0.78:%s/healthz", logHTTP), 200)
	_ = cmd.Process.Signal(syscall.SIGINT)
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("devplane exit: %v\n%s", err, out.String())
		}
	case <-time.After(30 * time.Second):
		_ = cmd.Process.Kill()
		t.Fatalf("devplane did not stop\n%s", out.String())
	}
	if !strings.Contains(out.String(), "devplane: stopped") {
		t.Fatalf("no clean stop message:\n%s", out.String())
	}
	if left, _ := os.ReadDir(tmp); len(left) != 0 {
		t.Fatalf("devplane left %d entries in TMPDIR (%s...)", len(left), left[0].Name())
	}
}

// TestVersionFlag: every daemon prints its version with --version and
// exits 0, without needing etcd or Docker.
func TestVersionFlag(t *testing.T) {
	if testing.Short() {
		t.Skip("builds binaries")
	}
	names := []string{"router", "logger", "logspout", "publisher", "builder", "agent", "controller", "etcd", "devplane"}
	bin := build(t, names...)
	for _, name := range names {
		out, err := exec.Command(filepath.Join(bin, name), "--version").CombinedOutput()
		if err != nil || !strings.HasPrefix(string(out), name+" ") || strings.Count(string(out), "\n") != 1 {
			t.Errorf("%s --version: %v %q", name, err, out)
		}
	}
}
