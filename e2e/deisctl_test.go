package e2e

import (
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/deis/dataplane/pkg/testenv"
)

// TestDeisctlStatusNamesAStoppedComponent: deisctl status shows a running
// router and logger ok, then names the router down at once when it is
// killed (its announcement outlives it by a TTL; the probe does not), and
// exits 1.
func TestDeisctlStatusNamesAStoppedComponent(t *testing.T) {
	if testing.Short() {
		t.Skip("builds every binary")
	}
	e := testenv.StartEtcd(t)
	bin := build(t, "router", "logger", "deisctl")
	common := []string{"--etcd", e.Endpoint, "--host", "127.0.0.1", "--log-level", "warn"}
	router := exec.Command(filepath.Join(bin, "router"), append(common, "--http-addr", testenv.FreeAddr(t), "--https-addr", testenv.FreeAddr(t),
		"--ssh-addr", testenv.FreeAddr(t), "--health-addr", testenv.FreeAddr(t))...)
	logger := exec.Command(filepath.Join(bin, "logger"), append(common, "--syslog-addr", testenv.FreeAddr(t), "--log-root", t.TempDir(), "--http-addr", testenv.FreeAddr(t))...)
	for _, c := range []*exec.Cmd{router, logger} {
		if err := c.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = c.Process.Kill(); _ = c.Wait() })
	}
	status := func() (string, error) {
		out, err := exec.Command(filepath.Join(bin, "deisctl"), "--etcd", e.Endpoint, "status").CombinedOutput()
		return string(out), err
	}
	// Each daemon ok, with its version, from its own announcement and
	// /healthz (a router answers 503 until its first table is in), beside
	// its service endpoint.
	daemonOK := func(out, c string) bool {
		return regexp.MustCompile(`(?m)^`+c+` +127\.0\.0\.1 +ok +\S+, up since .*/healthz answers 200`).MatchString(out) &&
			regexp.MustCompile(`(?m)^`+c+` .* ok +accepts connections`).MatchString(out)
	}
	var out string
	for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		out, _ = status()
		if daemonOK(out, "router") && daemonOK(out, "logger") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("deisctl status never showed the router and the logger ok, with their versions:\n%s", out)
		}
	}
	if !regexp.MustCompile(`(?m)^controller .* missing .*no controller announces`).MatchString(out) {
		t.Errorf("status does not name the missing controller:\n%s", out)
	}
	_ = router.Process.Signal(syscall.SIGKILL)
	_ = router.Wait()
	out, err := status()
	if err == nil || !strings.Contains(out, "unhealthy") || !regexp.MustCompile(`(?m)^router .* down .*connection refused`).MatchString(out) {
		t.Errorf("status right after the router was killed: %v\n%s", err, out)
	}
}
