package e2e

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/pem"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	gossh "golang.org/x/crypto/ssh"

	"github.com/deis/dataplane/pkg/testenv"
)

// etcdMember is one etcd process of a test cluster (bin/etcd).
type etcdMember struct {
	name, client, peer, dir string
	cmd                     *exec.Cmd
	out                     *testenv.SyncBuffer
}

// startEtcdCluster runs n etcd processes on loopback as one cluster and
// waits until it has a leader.
func startEtcdCluster(t *testing.T, bin string, n int) []*etcdMember {
	t.Helper()
	var ms []*etcdMember
	var initial []string
	for i := range n {
		m := &etcdMember{name: fmt.Sprintf("m%d", i+1), client: "http://" + testenv.FreeAddr(t), peer: "http://" + testenv.FreeAddr(t), dir: filepath.Join(t.TempDir(), "etcd")}
		ms = append(ms, m)
		initial = append(initial, m.name+"="+m.peer)
	}
	for _, m := range ms {
		m.start(t, bin, strings.Join(initial, ","))
	}
	t.Cleanup(func() {
		for _, m := range ms {
			m.kill()
		}
	})
	cli := clusterClient(t, ms)
	testenv.Eventually(t, 30*time.Second, func() bool {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		_, err := cli.Put(ctx, "/test/ready", "1")
		return err == nil
	}, "the etcd cluster never took a write")
	return ms
}

func (m *etcdMember) start(t *testing.T, bin, initial string) {
	t.Helper()
	m.out = &testenv.SyncBuffer{}
	m.cmd = exec.Command(filepath.Join(bin, "etcd"), "--name", m.name, "--data-dir", m.dir,
		"--listen-client-urls", m.client, "--listen-peer-urls", m.peer, "--initial-cluster", initial)
	m.cmd.Stdout, m.cmd.Stderr = m.out, m.out
	if err := m.cmd.Start(); err != nil {
		t.Fatal(err)
	}
}

func (m *etcdMember) kill() {
	if m.cmd != nil && m.cmd.Process != nil {
		_ = m.cmd.Process.Signal(syscall.SIGKILL)
		_ = m.cmd.Wait()
	}
}

func endpoints(ms []*etcdMember) string {
	var eps []string
	for _, m := range ms {
		eps = append(eps, m.client)
	}
	return strings.Join(eps, ",")
}

func clusterClient(t *testing.T, ms []*etcdMember) *clientv3.Client {
	t.Helper()
	cli, err := clientv3.New(clientv3.Config{Endpoints: strings.Split(endpoints(ms), ","), DialTimeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cli.Close() })
	return cli
}

// TestPlatformSurvivesLosingAnEtcdMember runs `make run` on a real
// 3-member etcd cluster (three etcd processes). Under requests through the
// router every 20 ms and an app that logs a numbered line every 100 ms,
// the etcd leader is killed, a git push deploys during the outage, and the
// member comes back: no request fails, no log line is lost.
func TestPlatformSurvivesLosingAnEtcdMember(t *testing.T) {
	if testing.Short() {
		t.Skip("builds every binary and needs Docker")
	}
	dcli := testenv.Docker(t)
	if err := testenv.EnsureBusyboxImage(dcli); err != nil {
		t.Fatal(err)
	}
	bin := build(t, "etcd", "devplane", "deis")
	ms := startEtcdCluster(t, bin, 3)
	cli := clusterClient(t, ms)
	dp := startDevplaneOn(t, "127.0.0.86", "--etcd", endpoints(ms))
	p := newPusher(t, dp)
	p.commit("web: (i=0; while true; do i=$((i+1)); echo tick $HOSTNAME $i; sleep 0.1; done) & mkdir -p /www && echo v-one > /www/index.html && exec httpd -f -p $PORT -h /www\n")
	p.push("done, " + p.app + ":v2 deployed")

	load := startLoad(t, dp, p.app)
	time.Sleep(2 * time.Second)
	leader := etcdLeader(t, cli, ms)
	t.Logf("killing etcd member %s (the leader)", leader.name)
	leader.kill()
	killed := time.Now()
	p.commit("web: (i=0; while true; do i=$((i+1)); echo tick $HOSTNAME $i; sleep 0.1; done) & mkdir -p /www && echo v-two > /www/index.html && exec httpd -f -p $PORT -h /www\n")
	p.push("done, " + p.app + ":v3 deployed")
	t.Logf("git push deployed v3 %s after the member died", time.Since(killed).Round(100*time.Millisecond))
	var initial []string
	for _, m := range ms {
		initial = append(initial, m.name+"="+m.peer)
	}
	leader.start(t, bin, strings.Join(initial, ","))
	testenv.Eventually(t, 30*time.Second, func() bool {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		st, err := cli.Status(ctx, leader.client)
		return err == nil && st.RaftIndex > 0
	}, "the restarted member never answered")
	time.Sleep(2 * time.Second)
	ok, failed, bodies := load.stop()
	t.Logf("%d requests ok, %d failed; bodies %v", ok, failed, bodies)
	if failed != 0 {
		t.Errorf("%d requests failed while an etcd member was down", failed)
	}
	if !bodies["v-one"] || !bodies["v-two"] {
		t.Errorf("the app did not move from v-one to v-two under load: %v", bodies)
	}
	// No log line lost: each container's ticks are consecutive.
	time.Sleep(2 * time.Second) // the last lines' way through logspout and the logger
	logs := p.deis("logs", "-n", "100000")
	ticks := regexp.MustCompile(`tick (\S+) (\d+)`).FindAllStringSubmatch(logs, -1)
	byHost := map[string][]int{}
	for _, m := range ticks {
		n, _ := strconv.Atoi(m[2])
		byHost[m[1]] = append(byHost[m[1]], n)
	}
	if len(byHost) < 2 {
		t.Fatalf("ticks of %d containers in the logs, want the two releases':\n%s", len(byHost), tail(logs, 20))
	}
	total := 0
	for h, ns := range byHost {
		total += len(ns)
		if ns[0] != 1 {
			t.Errorf("container %s: its first line in the log is tick %d, want 1", h, ns[0])
		}
		for i := 1; i < len(ns); i++ {
			if ns[i] != ns[i-1]+1 {
				t.Errorf("container %s: tick %d follows tick %d: lines lost or reordered", h, ns[i], ns[i-1])
				break
			}
		}
	}
	t.Logf("%d numbered log lines from %d containers, none missing", total, len(byHost))
}

func etcdLeader(t *testing.T, cli *clientv3.Client, ms []*etcdMember) *etcdMember {
	t.Helper()
	for _, m := range ms {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		st, err := cli.Status(ctx, m.client)
		cancel()
		if err == nil && st.Leader == st.Header.MemberId {
			return m
		}
	}
	t.Fatal("no etcd member says it leads")
	return nil
}

// startDevplaneOn runs make run's devplane on host with ports of its own
// and extra flags.
func startDevplaneOn(t *testing.T, host string, extra ...string) *devplane {
	t.Helper()
	port := func() string { a := testenv.FreeAddr(t); return a[strings.LastIndexByte(a, ':')+1:] }
	dp := &devplane{host: host, etcd: port(), http: port(), https: port(), ssh: port(), controller: port()}
	health := port()
	return runDevplane(t, dp, health, append([]string{"--etcd-port", dp.etcd, "--etcd-peer-port", port(), "--http-port", dp.http, "--https-port", dp.https, "--ssh-port", dp.ssh,
		"--health-port", health, "--syslog-port", port(), "--logger-http-port", port(), "--logspout-port", port(),
		"--publisher-port", port(), "--builder-port", port(), "--builder-health-port", port(),
		"--controller-port", dp.controller, "--agent-port", port()}, extra...)...)
}

// pusher is a developer with the deis CLI, a key and a git repository of
// one app on a devplane.
type pusher struct {
	t        *testing.T
	dp       *devplane
	app, dir string
	env      []string
}

func newPusher(t *testing.T, dp *devplane) *pusher {
	t.Helper()
	home, dir := t.TempDir(), t.TempDir()
	_ = os.MkdirAll(filepath.Join(home, ".ssh"), 0o700)
	pub, priv, _ := ed25519.GenerateKey(rand.Reader)
	block, _ := gossh.MarshalPrivateKey(priv, "dev")
	_ = os.WriteFile(filepath.Join(home, ".ssh", "id_ed25519"), pem.EncodeToMemory(block), 0o600)
	spub, _ := gossh.NewPublicKey(pub)
	_ = os.WriteFile(filepath.Join(home, ".ssh", "id_ed25519.pub"), []byte(strings.TrimSpace(string(gossh.MarshalAuthorizedKey(spub)))+" dev@laptop\n"), 0o644)
	p := &pusher{t: t, dp: dp, app: fmt.Sprintf("e%d", os.Getpid()%100000), dir: dir,
		env: append(os.Environ(), "HOME="+home, "GIT_AUTHOR_NAME=t", "GIT_AUTHOR_EMAIL=t@example.test", "GIT_COMMITTER_NAME=t", "GIT_COMMITTER_EMAIL=t@example.test",
			"GIT_SSH_COMMAND=ssh -F /dev/null -i "+filepath.Join(home, ".ssh", "id_ed25519")+" -o IdentitiesOnly=yes -o UserKnownHostsFile=/dev/null -o StrictHostKeyChecking=no -o ConnectTimeout=10")}
	waitHTTP(t, "http://"+dp.host+":"+dp.controller+"/v1/", 401)
	p.deis("register", "http://"+dp.host+":"+dp.controller, "--username=dev", "--password=pw", "--email=dev@example.test")
	p.deis("keys:add", filepath.Join(home, ".ssh", "id_ed25519.pub"))
	p.run("git", "init", "-q", "-b", "master")
	p.deis("create", p.app)
	p.run("git", "remote", "set-url", "deis", fmt.Sprintf("ssh://git@%s:%s/%s.git", dp.host, dp.ssh, p.app))
	return p
}

func (p *pusher) run(name string, args ...string) string {
	p.t.Helper()
	cmd := exec.Command(name, args...)
	cmd.Dir, cmd.Env = p.dir, p.env
	out, err := cmd.CombinedOutput()
	if err != nil {
		p.t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
	return string(out)
}

func (p *pusher) deis(args ...string) string {
	p.t.Helper()
	return p.run(filepath.Join(p.dp.bin, "deis"), args...)
}

func (p *pusher) commit(procfile string) {
	p.t.Helper()
	_ = os.WriteFile(filepath.Join(p.dir, "Procfile"), []byte(procfile), 0o644)
	p.run("git", "add", "-A")
	p.run("git", "commit", "-qm", "change")
}

// push pushes master and checks the output says want; the builder's key
// watch may lag keys:add by a moment.
func (p *pusher) push(want string) {
	p.t.Helper()
	var out []byte
	var err error
	for i := 0; i < 20; i++ {
		cmd := exec.Command("git", "push", "deis", "master")
		cmd.Dir, cmd.Env = p.dir, p.env
		out, err = cmd.CombinedOutput()
		if err == nil || !bytes.Contains(out, []byte("Permission denied")) {
			break
		}
		time.Sleep(500 * time.Millisecond)
	}
	if err != nil || !bytes.Contains(out, []byte(want)) {
		p.t.Fatalf("git push: %v, want %q:\n%s\n--- make run:\n%s", err, want, out, tail(p.dp.out.String(), 40))
	}
}

// load requests the app through the router every 20 ms until stop.
type load struct {
	stopc  chan struct{}
	wg     sync.WaitGroup
	mu     sync.Mutex
	ok     int
	failed int
	bodies map[string]bool
	last   []string
}

func startLoad(t *testing.T, dp *devplane, app string) *load {
	l := &load{stopc: make(chan struct{}), bodies: map[string]bool{}}
	client := &http.Client{Timeout: 5 * time.Second}
	l.wg.Go(func() {
		for i := 0; i < 100000; i++ {
			select {
			case <-l.stopc:
				return
			case <-time.After(20 * time.Millisecond):
			}
			req, _ := http.NewRequest("GET", "http://"+dp.host+":"+dp.http+"/", nil)
			req.Host = app + ".localhost"
			resp, err := client.Do(req)
			l.mu.Lock()
			if err != nil {
				l.failed++
				l.last = append(l.last, err.Error())
			} else {
				b, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				if resp.StatusCode == 200 {
					l.ok++
					l.bodies[strings.TrimSpace(string(b))] = true
				} else {
					l.failed++
					l.last = append(l.last, resp.Status)
				}
			}
			l.mu.Unlock()
		}
	})
	t.Cleanup(func() { _, _, _ = l.stop() })
	return l
}

func (l *load) stop() (ok, failed int, bodies map[string]bool) {
	select {
	case <-l.stopc:
	default:
		close(l.stopc)
	}
	l.wg.Wait()
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.ok, l.failed, l.bodies
}

// TestPlatformThroughAnEtcdGRPCProxy runs every daemon of `make run`
// against `etcd grpc-proxy` (the v3 form of Deis v1's etcd proxies on hosts
// outside the cluster), in front of a 3-member cluster: a push deploys and
// serves, a scale rolls out (watches and leases through the proxy), and
// deisctl status through the proxy sees every component.
func TestPlatformThroughAnEtcdGRPCProxy(t *testing.T) {
	if testing.Short() {
		t.Skip("builds every binary and needs Docker")
	}
	dcli := testenv.Docker(t)
	if err := testenv.EnsureBusyboxImage(dcli); err != nil {
		t.Fatal(err)
	}
	bin := build(t, "etcd", "devplane", "deis", "deisctl")
	ms := startEtcdCluster(t, bin, 3)
	proxyAddr := testenv.FreeAddr(t)
	proxyOut := &testenv.SyncBuffer{}
	proxy := exec.Command(filepath.Join(bin, "etcd"), "grpc-proxy", "start", "--endpoints", endpoints(ms), "--listen-addr", proxyAddr)
	proxy.Stdout, proxy.Stderr = proxyOut, proxyOut
	if err := proxy.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = proxy.Process.Kill(); _ = proxy.Wait() })
	dp := startDevplaneOn(t, "127.0.0.87", "--etcd", "http://"+proxyAddr)
	p := newPusher(t, dp)
	p.commit("web: mkdir -p /www && echo through-the-proxy > /www/index.html && exec httpd -f -p $PORT -h /www\n")
	p.push("done, " + p.app + ":v2 deployed")
	if out := p.deis("scale", "web=2"); !strings.Contains(out, "web.2 up (v2)") {
		t.Errorf("scale through the proxy: %s", out)
	}
	load := startLoad(t, dp, p.app)
	time.Sleep(time.Second)
	ok, failed, bodies := load.stop()
	if ok == 0 || failed != 0 || !bodies["through-the-proxy"] {
		t.Errorf("the app through the router: %d ok, %d failed, %v", ok, failed, bodies)
	}
	cmd := exec.Command(filepath.Join(bin, "deisctl"), "--etcd", "http://"+proxyAddr, "status")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Errorf("deisctl status through the proxy: %v\n%s", err, out)
	}
	for _, c := range []string{"controller", "router", "logger", "builder", "agent"} {
		if !regexp.MustCompile(`(?m)^` + c + ` .* ok `).Match(out) {
			t.Errorf("deisctl status does not show %s ok:\n%s", c, out)
		}
	}
	if !strings.Contains(proxyOut.String(), "serving "+proxyAddr) {
		t.Errorf("the proxy did not say it serves: %s", proxyOut.String())
	}
}
