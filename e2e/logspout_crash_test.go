package e2e

import (
	"bytes"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	docker "github.com/fsouza/go-dockerclient"

	"github.com/deis/dataplane/pkg/testenv"
)

// TestLogspoutSurvivesSIGKILL: the binaries, a real container. The logger
// stops, so lines queue inside logspout; logspout is then killed with
// SIGKILL, and the logger and logspout start again. Every line arrives:
// the cursor had not moved past what no route had written.
func TestLogspoutSurvivesSIGKILL(t *testing.T) {
	if testing.Short() {
		t.Skip("builds every binary")
	}
	cli := testenv.Docker(t)
	e := testenv.StartEtcd(t)
	bin := build(t, "logger", "logspout")
	// The file store keeps what the first logger stored across its restart.
	e.Put("/deis/logs/storageAdapterType", "file")
	logRoot := t.TempDir()
	// On an address of its own: the logger leaves its ports while stopped.
	syslogAddr, httpAddr := testenv.FreeAddrOn(t, "127.0.0.73"), testenv.FreeAddrOn(t, "127.0.0.73")
	host, port, _ := net.SplitHostPort(syslogAddr)
	e.Put("/deis/logs/host", host)
	e.Put("/deis/logs/port", port)
	common := []string{"--etcd", e.Endpoint, "--host", "127.0.0.1", "--log-level", "warn"}
	var logs bytes.Buffer
	run := func(name string, args ...string) *exec.Cmd {
		cmd := exec.Command(filepath.Join(bin, name), append(append([]string{}, common...), args...)...)
		cmd.Stdout, cmd.Stderr = &logs, &logs
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
		return cmd
	}
	startLogger := func() *exec.Cmd {
		cmd := run("logger", "--syslog-addr", syslogAddr, "--http-addr", httpAddr, "--log-root", logRoot, "--host", host)
		waitHTTP(t, "http://"+httpAddr+"/healthz", 200)
		return cmd
	}
	state := t.TempDir()
	startLogspout := func() *exec.Cmd {
		web := testenv.FreeAddr(t)
		cmd := run("logspout", "--web-addr", web, "--state-dir", state)
		waitHTTP(t, "http://"+web+"/healthz", 200)
		return cmd
	}
	app := fmt.Sprintf("crash%d", rand.IntN(1e9))
	fetch := func() []string {
		resp, err := http.Get("http://" + httpAddr + "/logs/" + app + "?log_lines=100000")
		if err != nil {
			return nil
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != 200 {
			return nil
		}
		return strings.Split(strings.TrimSuffix(string(b), "\n"), "\n")
	}

	lg := startLogger()
	ls := startLogspout()
	const n = 2000
	script := fmt.Sprintf("for i in $(seq 1 %d); do echo line $i; if [ $((i %% 100)) = 0 ]; then sleep 0.1; fi; done; sleep 3600", n)
	testenv.RunContainer(t, cli, docker.CreateContainerOptions{Name: app + "_v1.web.1", Config: &docker.Config{Cmd: []string{"sh", "-c", script}}})
	testenv.Eventually(t, 20*time.Second, func() bool { return len(fetch()) >= 300 }, "no lines before the crash")
	before := fetch()
	stopClean(t, "logger", lg, &logs)
	time.Sleep(time.Second) // lines queue in logspout, unwritten
	_ = ls.Process.Kill()
	_ = ls.Wait()
	startLogger()
	startLogspout()
	var all []string
	testenv.Eventually(t, 60*time.Second, func() bool {
		all = fetch()
		return len(all) >= n
	}, "after the crash only %d of %d lines\n%s", len(all), n, &logs)
	time.Sleep(time.Second) // repeats would arrive now
	all = fetch()
	seen := map[string]int{}
	for _, l := range all {
		seen[l[strings.Index(l, "]: ")+3:]]++
	}
	dups := 0
	for i := 1; i <= n; i++ {
		switch c := seen[fmt.Sprintf("line %d", i)]; {
		case c == 0:
			t.Fatalf("line %d lost across the crash (%d lines stored before it)", i, len(before))
		case c > 1:
			dups++
		}
	}
	t.Logf("%d lines stored before the crash, %d in all, %d repeated", len(before), len(all), dups)
}
