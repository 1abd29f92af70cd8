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
	var out string
	testenv.Eventually(t, 20*time.Second, func() bool {
		out, _ = status()
		return regexp.MustCompile(`(?m)^router .* ok `).MatchString(out) && regexp.MustCompile(`(?m)^logger .* ok `).MatchString(out)
	}, "deisctl status never showed the router and the logger ok:\n%s", out)
	if !regexp.MustCompile(`(?m)^controller .* missing .*no controller announces`).MatchString(out) {
		t.Errorf("status does not name the missing controller:\n%s", out)
	}
	// Each daemon, with its version, from its own announcement and /healthz.
	for _, c := range []string{"router", "logger"} {
		if !regexp.MustCompile(`(?m)^` + c + ` +127\.0\.0\.1 +ok +\S+, up since .*/healthz answers 200`).MatchString(out) {
			t.Errorf("status does not show the %s daemon with its version:\n%s", c, out)
		}
	}
	_ = router.Process.Signal(syscall.SIGKILL)
	_ = router.Wait()
	out, err := status()
	if err == nil || !strings.Contains(out, "unhealthy") || !regexp.MustCompile(`(?m)^router .* down .*connection refused`).MatchString(out) {
		t.Errorf("status right after the router was killed: %v\n%s", err, out)
	}
}
