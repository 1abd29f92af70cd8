package e2e

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	docker "github.com/fsouza/go-dockerclient"

	"github.com/deis/dataplane/pkg/keys"
	"github.com/deis/dataplane/pkg/testenv"
)

// TestReadmeQuickstartOneHost runs every line of README.md's quickstart, in
// order, in one shell, as a person types them after `make run`: the real
// deis binary, git, ssh, openssl, curl and Docker, on make run's own ports.
func TestReadmeQuickstartOneHost(t *testing.T) {
	runReadmeQuickstart(t, 1)
}

// TestReadmeQuickstartThreeHosts is the same on `make run HOSTS=3`; after
// `deis scale web=3` it kills one host (its agent, its publisher and its
// containers) while a client requests the app, and checks that the app is
// served again within the scheduler's budget.
func TestReadmeQuickstartThreeHosts(t *testing.T) {
	runReadmeQuickstart(t, 3)
}

// quickstartLines is the README's quickstart block.
func quickstartLines(t *testing.T) []string {
	t.Helper()
	data, err := os.ReadFile("../README.md")
	if err != nil {
		t.Fatal(err)
	}
	_, after, ok := strings.Cut(string(data), "## Quickstart\n")
	if !ok {
		t.Fatal("README.md has no Quickstart section")
	}
	_, block, ok := strings.Cut(after, "```sh\n")
	block, _, ok2 := strings.Cut(block, "```")
	if !ok || !ok2 {
		t.Fatal("README.md's Quickstart has no sh block")
	}
	var lines []string
	for _, l := range strings.Split(block, "\n") {
		if strings.TrimSpace(l) != "" {
			lines = append(lines, l)
		}
	}
	return lines
}

// check is what a quickstart line must print; retry marks a line that only
// reads, which may be run again while the platform catches up (logs).
type check struct {
	want  []string
	retry bool
}

func runReadmeQuickstart(t *testing.T, hosts int) {
	if testing.Short() {
		t.Skip("builds every binary and needs Docker")
	}
	dcli := testenv.Docker(t)
	if err := testenv.EnsureBusyboxImage(dcli); err != nil {
		t.Fatal(err)
	}
	lines := quickstartLines(t)
	// The outputs that show each step did its job, by line and occurrence.
	checks := map[string][]check{
		"deis register":             {{want: []string{"Registered me", "Logged in as me"}}},
		"deis keys:add":             {{want: []string{"done"}}},
		"deis create hello":         {{want: []string{"created hello", "Git remote deis added", "ssh://git@127.0.0.1:2222/hello.git"}}},
		"git push deis master":      {{want: []string{"done, hello:v2 deployed to Deis", "http://hello.localhost:8080"}}, {want: []string{"Building Docker image static", "done, static:v2 deployed to Deis"}}},
		"curl http://hello.":        {{want: []string{"hello  from"}}, {want: []string{"hello world from"}}, {want: []string{"hello  from"}}},
		"deis logs":                 {{want: []string{"hello[web.1]: started", "hello[deis-controller]: me deployed"}, retry: true}},
		"deis config:set":           {{want: []string{"Creating config...", " up (v3)", ", v3"}}},
		"deis scale web=3":          {{want: []string{"web.2 up (v3)", "web.3 up (v3)", "done in"}}},
		"deis ps":                   {{want: []string{"web.1 up (v3)", "web.2 up (v3)", "web.3 up (v3)"}, retry: true}},
		"deis domains:add":          {{want: []string{"done"}}},
		"deis certs:add":            {{want: []string{"hello.example.com"}}},
		"curl --resolve":            {{want: []string{"hello world from"}, retry: true}},
		"deis run":                  {{want: []string{"world"}}},
		"deis releases":             {{want: []string{"me added GREETING", "v3\t"}}},
		"deis rollback":             {{want: []string{"Rolling back to the previous release...", "done, v4"}}},
		"deis destroy":              {{want: []string{"Destroying hello... done"}}},
		"curl -i http://hello.":     {{want: []string{"404"}}},
		"curl http://static.":       {{want: []string{"hello from a Dockerfile"}}},
		"git add Dockerfile":        {{want: []string{"created static", "Git remote deis added"}}},
		"openssl req":               {{}},
		"mkdir -p -m 700 ~/.ssh":    {{}},
		"export PATH=":              {{}},
		"mkdir -p ~/hello":          {{}},
		"mkdir -p ~/static":         {{}},
		"echo 'web:":                {{}},
		"printf 'FROM":              {{}},
		"git add Procfile":          {{}},
		"make run":                  {{}},
	}
	checkFor := func(line string, seen map[string]int) check {
		best := ""
		for prefix := range checks {
			if strings.HasPrefix(line, prefix) && len(prefix) > len(best) {
				best = prefix
			}
		}
		if best == "" {
			t.Fatalf("README quickstart line %q has no check in this test: add one", line)
		}
		n := seen[best]
		seen[best]++
		if n >= len(checks[best]) {
			return checks[best][len(checks[best])-1]
		}
		return checks[best][n]
	}

	if lines[0] != "make run                      # terminal 1, in this repository; leave it running" {
		t.Fatalf("the quickstart starts with %q; this test starts the platform for that line", lines[0])
	}
	// `make run` (HOSTS=3): bin/devplane on its default ports.
	dp := &devplane{host: "127.0.0.1", http: "8080", https: "8443", ssh: "2222", controller: "8001"}
	var args []string
	if hosts > 1 {
		args = []string{"--hosts", strconv.Itoa(hosts)}
	}
	runDevplane(t, dp, "9090", args...)

	// The second terminal: a shell in a copy of "this repository" whose
	// bin/ is the binaries built for the test, a home of its own.
	home, repo := t.TempDir(), t.TempDir()
	if err := os.Symlink(dp.bin, filepath.Join(repo, "bin")); err != nil {
		t.Fatal(err)
	}
	sh := startShell(t, repo, append(os.Environ(), "HOME="+home,
		"GIT_AUTHOR_NAME=me", "GIT_AUTHOR_EMAIL=me@example.com", "GIT_COMMITTER_NAME=me", "GIT_COMMITTER_EMAIL=me@example.com",
		// ssh reads the key from the passwd entry's home, not $HOME; and the
		// first push's host key question has no one to answer it here.
		"GIT_SSH_COMMAND=ssh -F /dev/null -i "+filepath.Join(home, ".ssh", "id_ed25519")+" -o IdentitiesOnly=yes -o UserKnownHostsFile=/dev/null -o StrictHostKeyChecking=no -o ConnectTimeout=10"))
	waitHTTP(t, "http://127.0.0.1:8001/v1/", 401) // the controller leads and answers
	testenv.Eventually(t, 20*time.Second, func() bool {
		req, _ := http.NewRequest("GET", "http://127.0.0.1:8080/v1/", nil)
		req.Host = "deis.localhost" // what `deis register http://deis.localhost:8080` reaches
		resp, err := appClient.Do(req)
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == 401
	}, "the router never reached the controller at deis.localhost")

	seen := map[string]int{}
	for _, line := range lines[1:] {
		c := checkFor(line, seen)
		var out string
		var rc int
		for attempt := 0; ; attempt++ {
			out, rc = sh.run(t, line, 3*time.Minute)
			if rc == 0 && contains(out, c.want) || !c.retry || attempt >= 30 {
				break
			}
			time.Sleep(time.Second)
		}
		if rc != 0 || !contains(out, c.want) {
			t.Fatalf("README quickstart line\n  %s\nexited %d, want 0 and %q in its output:\n%s\n--- make run:\n%s", line, rc, c.want, out, tail(dp.out.String(), 60))
		}
		t.Logf("ok: %s", line)
		switch {
		case strings.HasPrefix(line, "deis scale web=3"):
			spread(t)
		case strings.HasPrefix(line, "deis ps") && hosts > 1:
			killOneHost(t, dcli, dp, "v3") // config:set made v3
		}
	}
	list, _ := dcli.ListContainers(docker.ListContainersOptions{All: true, Filters: map[string][]string{"label": {keys.LabelApp + "=hello"}}})
	if len(list) != 0 {
		t.Errorf("%d containers of the destroyed app left", len(list))
	}
}

func contains(out string, want []string) bool {
	for _, w := range want {
		if !strings.Contains(out, w) {
			return false
		}
	}
	return true
}

func tail(s string, n int) string {
	lines := strings.Split(s, "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// spread checks that requests reach the three containers of web=3.
func spread(t *testing.T) {
	t.Helper()
	seen := map[string]bool{}
	for i := 0; i < 90 && len(seen) < 3; i++ {
		if code, body := getApp("hello"); code == 200 {
			seen[body] = true
		}
	}
	if len(seen) != 3 {
		t.Errorf("requests reached %d containers after web=3, want 3: %v", len(seen), seen)
	}
}

var appClient = &http.Client{Timeout: 2 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}

func getApp(app string) (int, string) {
	req, _ := http.NewRequest("GET", "http://127.0.0.1:8080/", nil)
	req.Host = app + ".localhost"
	resp, err := appClient.Do(req)
	if err != nil {
		return 0, err.Error()
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, strings.TrimSpace(string(b))
}

// killOneHost kills the agent and the publisher of a host that runs a
// unit of hello, and removes that host's containers (a machine lost with
// everything on it), while a client requests the app every 50 ms. The
// dead host's routes must go within 15 s (lease + grace), and web=3 must
// run on the two other hosts within 30 s (docs/scheduler.md's budget).
func killOneHost(t *testing.T, dcli *docker.Client, dp *devplane, release string) {
	t.Helper()
	current := docker.ListContainersOptions{Filters: map[string][]string{"label": {keys.LabelApp + "=hello", keys.LabelVersion + "=" + release, keys.LabelType + "=web"}}}
	list, err := dcli.ListContainers(current)
	if err != nil || len(list) != 3 {
		t.Fatalf("hello's web containers of %s: %v %d, want 3", release, err, len(list))
	}
	victim := list[0].Labels[keys.LabelHost]
	pids := regexp.MustCompile(`devplane: (agent|publisher) of host ` + regexp.QuoteMeta(victim) + ` is pid (\d+)`).FindAllStringSubmatch(dp.out.String(), -1)
	if len(pids) != 2 {
		t.Fatalf("devplane did not say the pids of host %s's agent and publisher: %v", victim, pids)
	}
	type result struct {
		at   time.Time
		code int
	}
	ctx, cancel := context.WithCancel(context.Background())
	results := make(chan result, 4096)
	done := make(chan struct{})
	go func() {
		defer close(done)
		for ctx.Err() == nil && len(results) < cap(results) {
			code, _ := getApp("hello")
			results <- result{time.Now(), code}
			time.Sleep(50 * time.Millisecond)
		}
	}()
	time.Sleep(time.Second)
	killed := time.Now()
	for _, m := range pids {
		pid, _ := strconv.Atoi(m[2])
		if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
			t.Fatalf("kill %s %d: %v", m[1], pid, err)
		}
	}
	gone, _ := dcli.ListContainers(docker.ListContainersOptions{All: true, Filters: map[string][]string{"label": {keys.LabelHost + "=" + victim}}})
	for _, c := range gone {
		_ = dcli.RemoveContainer(docker.RemoveContainerOptions{ID: c.ID, Force: true})
	}
	t.Logf("killed host %s (agent, publisher, %d containers)", victim, len(gone))
	var moved time.Duration
	testenv.Eventually(t, 45*time.Second, func() bool {
		l, _ := dcli.ListContainers(current)
		n := 0
		for _, c := range l {
			if c.Labels[keys.LabelHost] != victim {
				n++
			}
		}
		if code, _ := getApp("hello"); n == 3 && code == 200 {
			moved = time.Since(killed)
			return true
		}
		return false
	}, "web=3 never ran again on the hosts left")
	time.Sleep(2 * time.Second)
	cancel()
	<-done
	close(results)
	var lastFail time.Time
	failed, total := 0, 0
	for r := range results {
		total++
		if r.code != 200 {
			failed++
			lastFail = r.at
		}
	}
	servedAgain := time.Duration(0)
	if failed > 0 {
		servedAgain = lastFail.Sub(killed)
	}
	t.Logf("host %s killed: %d of %d requests failed, the last %s after the kill; web=3 again on the other hosts after %s", victim, failed, total, servedAgain.Round(100*time.Millisecond), moved.Round(100*time.Millisecond))
	if servedAgain > 15*time.Second {
		t.Errorf("requests failed until %s after the kill (budget 15 s: lease + grace)", servedAgain)
	}
	if moved > 30*time.Second {
		t.Errorf("web=3 ran again on the other hosts after %s (budget 30 s)", moved)
	}
}

// shell is one bash process that runs lines as a person types them: cd
// and exports carry over from line to line.
type shell struct {
	in  io.WriteCloser
	out *bufio.Reader
	seq int
}

func startShell(t *testing.T, dir string, env []string) *shell {
	t.Helper()
	cmd := exec.Command("bash", "--norc", "--noprofile")
	cmd.Dir, cmd.Env = dir, env
	in, _ := cmd.StdinPipe()
	pr, pw := io.Pipe()
	cmd.Stdout, cmd.Stderr = pw, pw
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		in.Close()
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		pw.Close()
	})
	return &shell{in: in, out: bufio.NewReader(pr)}
}

// run types line (its stdin from /dev/null: nothing here answers prompts)
// and returns what it printed and its exit status.
func (s *shell) run(t *testing.T, line string, timeout time.Duration) (string, int) {
	t.Helper()
	s.seq++
	marker := fmt.Sprintf("__quickstart_rc_%d=", s.seq)
	fmt.Fprintf(s.in, "{ %s\n} </dev/null\necho; echo \"%s$?\"\n", line, marker)
	type answer struct {
		out string
		rc  int
	}
	got := make(chan answer, 1)
	go func() {
		var b strings.Builder
		for {
			l, err := s.out.ReadString('\n')
			if strings.HasPrefix(l, marker) {
				rc, _ := strconv.Atoi(strings.TrimSpace(strings.TrimPrefix(l, marker)))
				got <- answer{b.String(), rc}
				return
			}
			b.WriteString(l)
			if err != nil {
				got <- answer{b.String(), -1}
				return
			}
		}
	}()
	select {
	case a := <-got:
		return a.out, a.rc
	case <-time.After(timeout):
		t.Fatalf("README quickstart line %q did not finish within %s", line, timeout)
		return "", -1
	}
}
