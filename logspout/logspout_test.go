package logspout_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	docker "github.com/fsouza/go-dockerclient"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/deis/dataplane/logger"
	"github.com/deis/dataplane/logspout"
	"github.com/deis/dataplane/pkg/testenv"
)

func runLogspout(t *testing.T, e *testenv.Etcd, cli *docker.Client, state string) (stop func()) {
	_, stop = startLogspout(t, e, cli, state, nil)
	return stop
}

// startLogspout runs logspout with state under state (metrics into reg,
// which may be nil) until the test ends or stop is called.
func startLogspout(t *testing.T, e *testenv.Etcd, cli *docker.Client, state string, reg prometheus.Registerer) (*logspout.Logspout, func()) {
	t.Helper()
	l, err := logspout.New(logspout.Config{Host: "127.0.0.1", StateDir: state}, cli, e.Client(), slog.New(slog.DiscardHandler), reg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { _ = l.Run(ctx); close(done) }()
	var once sync.Once
	stop := func() {
		once.Do(func() {
			cancel()
			select {
			case <-done:
			case <-time.After(15 * time.Second):
				t.Error("logspout did not stop")
			}
		})
	}
	t.Cleanup(stop)
	return l, stop
}

// runningLogger is our real logger as its main runs it: the syslog
// listeners and the HTTP API (api, host:port).
type runningLogger struct {
	*logger.Logger
	api string
}

// runLogger starts a logger with syslog on syslogAddr and the API on
// httpAddr (port 0: any) until stop.
func runLogger(t *testing.T, e *testenv.Etcd, syslogAddr, httpAddr string) (lg *runningLogger, stop func(), err error) {
	host, _, _ := net.SplitHostPort(syslogAddr) // announced as /deis/logs/host
	l, err := logger.New(logger.Config{SyslogAddr: syslogAddr, Host: host, LogRoot: t.TempDir()}, e.Client(), slog.New(slog.DiscardHandler), nil)
	if err != nil {
		return nil, nil, err
	}
	admin, err := logger.NewAdmin(l, httpAddr)
	if err != nil {
		l.Close()
		return nil, nil, err
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { _ = admin.Run(ctx) }()
	go func() { _ = l.Run(ctx); close(done) }()
	return &runningLogger{Logger: l, api: admin.Addr()}, func() { cancel(); <-done }, nil
}

// startLogger runs our real logger (memory store, room for 100,000 lines
// per app) and announces it in etcd for logspout.
func startLogger(t *testing.T, e *testenv.Etcd) *runningLogger {
	t.Helper()
	e.Put("/deis/logs/storageAdapterType", "memory:100000")
	lg, stop, err := runLogger(t, e, "127.0.0.1:0", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(stop)
	host, port, _ := net.SplitHostPort(lg.Addr("syslog"))
	e.Put("/deis/logs/host", host)
	e.Put("/deis/logs/port", port)
	return lg
}

// texts counts each message text (what follows "]: ") in logger lines.
func texts(lines ...[]string) map[string]int {
	seen := map[string]int{}
	for _, ls := range lines {
		for _, l := range ls {
			if i := strings.Index(l, "]: "); i >= 0 {
				seen[l[i+3:]]++
			}
		}
	}
	return seen
}

// requireOnce fails unless "line 1" .. "line n" each arrived exactly once.
func requireOnce(t *testing.T, seen map[string]int, n int, where string) {
	t.Helper()
	for i := 1; i <= n; i++ {
		if c := seen[fmt.Sprintf("line %d", i)]; c != 1 {
			t.Fatalf("line %d arrived %d times (%s)", i, c, where)
		}
	}
}

func lines(t *testing.T, l *runningLogger, app string) []string {
	resp, err := http.Get("http://" + l.api + "/logs/" + app + "?log_lines=100000")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 {
		return nil
	}
	return strings.Split(strings.TrimSuffix(string(b), "\n"), "\n")
}

// TestEveryLineOnceAcrossRestart ships containers' stdout and stderr to our
// real logger (found in etcd), restarts logspout while the containers keep
// writing, and checks every line arrived exactly once; an ignored container
// is not shipped.
func TestEveryLineOnceAcrossRestart(t *testing.T) {
	t.Parallel()
	cli := testenv.Docker(t)
	e := testenv.StartEtcd(t)
	lg := startLogger(t, e)

	state := t.TempDir()
	stop := runLogspout(t, e, cli, state)
	app := fmt.Sprintf("spout%d", rand.IntN(1e9))
	ignored := fmt.Sprintf("quiet%d", rand.IntN(1e9))
	const n = 600
	script := fmt.Sprintf("head -c 65536 /dev/zero | tr '\\0' y; echo; for i in $(seq 1 %d); do echo out $i; echo err $i >&2; if [ $i = 200 ]; then sleep 2; fi; done; sleep 3600", n)
	testenv.RunContainer(t, cli, docker.CreateContainerOptions{Name: app + "_v1.web.1", Config: &docker.Config{Cmd: []string{"sh", "-c", script}}})
	testenv.RunContainer(t, cli, docker.CreateContainerOptions{Name: ignored + "_v1.web.1", Config: &docker.Config{Cmd: []string{"sh", "-c", "echo secret; sleep 3600"}, Env: []string{"LOGSPOUT=ignore"}}})
	// Restart logspout while the container is mid-way.
	testenv.Eventually(t, 20*time.Second, func() bool { return len(lines(t, lg, app)) >= 100 }, "no lines shipped")
	stop()
	runLogspout(t, e, cli, state)
	testenv.Eventually(t, 30*time.Second, func() bool { return len(lines(t, lg, app)) >= 2*n+1 }, "not all %d lines arrived", 2*n+1)
	time.Sleep(time.Second) // duplicates would arrive now
	got := lines(t, lg, app)
	seen := texts(got)
	for i := 1; i <= n; i++ {
		for _, s := range []string{"out", "err"} {
			if c := seen[fmt.Sprintf("%s %d", s, i)]; c != 1 {
				t.Fatalf("line %q arrived %d times (of %d lines total)", fmt.Sprintf("%s %d", s, i), c, len(got))
			}
		}
	}
	if seen[strings.Repeat("y", 65536)] != 1 {
		t.Fatalf("the 64 KiB line did not arrive whole and once (first line is %d bytes)", len(got[0]))
	}
	if !strings.Contains(got[0], app+"[web.1]: ") {
		t.Fatalf("line not attributed to app and process: %.80q", got[0])
	}
	if l := lines(t, lg, ignored); len(l) != 0 {
		t.Fatalf("ignored container shipped: %v", l)
	}
}

// TestLoggerOutageUnderLoad stops the logger for 10 s while a container
// keeps writing, then starts it again on the same port: every line arrives
// exactly once.
func TestLoggerOutageUnderLoad(t *testing.T) {
	t.Parallel()
	cli := testenv.Docker(t)
	e := testenv.StartEtcd(t)
	e.Put("/deis/logs/storageAdapterType", "memory:100000")
	// On an address of its own: the logger leaves its ports for 10 s.
	syslogAddr, httpAddr := testenv.FreeAddrOn(t, "127.0.0.71"), testenv.FreeAddrOn(t, "127.0.0.71")
	startLogger := func() (*runningLogger, func()) {
		for i := 0; i < 50; i++ { // the port may linger briefly after a stop
			lg, stop, err := runLogger(t, e, syslogAddr, httpAddr)
			if err == nil {
				return lg, stop
			}
			time.Sleep(100 * time.Millisecond)
		}
		t.Fatal("the logger could not bind its ports again")
		return nil, nil
	}
	lg, stopLogger := startLogger()
	host, port, _ := net.SplitHostPort(syslogAddr)
	e.Put("/deis/logs/host", host)
	e.Put("/deis/logs/port", port)
	runLogspout(t, e, cli, t.TempDir())
	app := fmt.Sprintf("outage%d", rand.IntN(1e9))
	const n = 3000
	script := fmt.Sprintf("for i in $(seq 1 %d); do echo line $i; if [ $((i %% 100)) = 0 ]; then sleep 0.1; fi; done; sleep 3600", n)
	testenv.RunContainer(t, cli, docker.CreateContainerOptions{Name: app + "_v1.web.1", Config: &docker.Config{Cmd: []string{"sh", "-c", script}}})
	testenv.Eventually(t, 20*time.Second, func() bool { return len(lines(t, lg, app)) >= 200 }, "no lines before the outage")
	before := lines(t, lg, app)
	stopLogger()
	time.Sleep(10 * time.Second)
	lg2, stop2 := startLogger()
	defer stop2()
	var after []string
	// Generous: under make test's race pass the machine is loaded, and the
	// backlog of 10 s is re-read from Docker.
	testenv.Eventually(t, 120*time.Second, func() bool {
		after = lines(t, lg2, app)
		return len(before)+len(after) >= n
	}, "after the outage only %d+%d of %d lines", len(before), len(after), n)
	time.Sleep(time.Second)
	after = lines(t, lg2, app)
	requireOnce(t, texts(before, after), n, fmt.Sprintf("%d before, %d after the outage", len(before), len(after)))
}

// TestBadInput: binary output, invalid UTF-8 and a 10 MB line are shipped
// (cut at 64 KiB) without harm and counted, and a container flooding its
// output does not starve a quiet one; every line of both arrives, also
// those Docker had not streamed yet when the flooding container exited
// (Docker may end a follow stream at exit before the reader caught up).
func TestBadInput(t *testing.T) {
	t.Parallel()
	cli := testenv.Docker(t)
	e := testenv.StartEtcd(t)
	lg := startLogger(t, e)
	reg := prometheus.NewRegistry()
	startLogspout(t, e, cli, t.TempDir(), reg)

	odd := fmt.Sprintf("odd%d", rand.IntN(1e9))
	script := `printf 'bin \001\002\033[0m\177 end\n'; printf 'bad \377\376 utf8\n'; head -c 10485760 /dev/zero | tr '\0' z; echo; echo after; sleep 3600`
	testenv.RunContainer(t, cli, docker.CreateContainerOptions{Name: odd + "_v1.web.1", Config: &docker.Config{Cmd: []string{"sh", "-c", script}}})
	flood := fmt.Sprintf("flood%d", rand.IntN(1e9))
	const floodLines = 50000
	testenv.RunContainer(t, cli, docker.CreateContainerOptions{Name: flood + "_v1.web.1", Config: &docker.Config{Cmd: []string{"sh", "-c", fmt.Sprintf("seq 1 %d", floodLines)}}})
	quiet := fmt.Sprintf("quiet%d", rand.IntN(1e9))
	testenv.RunContainer(t, cli, docker.CreateContainerOptions{Name: quiet + "_v1.web.1", Config: &docker.Config{Cmd: []string{"sh", "-c", "for i in 1 2 3 4 5; do echo quiet $i; sleep 0.2; done; sleep 3600"}}})

	tty := fmt.Sprintf("tty%d", rand.IntN(1e9))
	testenv.RunContainer(t, cli, docker.CreateContainerOptions{Name: tty + "_v1.web.1", Config: &docker.Config{Tty: true, Cmd: []string{"sh", "-c", "echo tty 1; echo tty 2 >&2; echo tty 3; sleep 3600"}}})
	testenv.Eventually(t, 30*time.Second, func() bool { return len(lines(t, lg, quiet)) == 5 }, "the quiet container's 5 lines did not arrive while another floods")
	testenv.Eventually(t, 30*time.Second, func() bool { return len(lines(t, lg, tty)) == 3 }, "the TTY container's 3 lines did not arrive")
	for i, l := range lines(t, lg, tty) {
		if !strings.HasSuffix(l, fmt.Sprintf("]: tty %d", i+1)) {
			t.Fatalf("TTY line %d = %q", i+1, l)
		}
	}
	testenv.Eventually(t, 60*time.Second, func() bool { return len(lines(t, lg, odd)) >= 4 }, "odd lines did not arrive")
	testenv.Eventually(t, 60*time.Second, func() bool { return len(lines(t, lg, flood)) >= floodLines }, "flood lines did not all arrive")
	got := lines(t, lg, odd)
	msgs := make([]string, len(got))
	for i, l := range got {
		msgs[i] = l[strings.Index(l, "]: ")+3:]
	}
	if len(msgs) != 4 || !strings.HasPrefix(msgs[0], "bin ") || !strings.HasPrefix(msgs[1], "bad ") || msgs[2] != strings.Repeat("z", 64<<10) || msgs[3] != "after" {
		short := make([]string, len(msgs))
		for i, s := range msgs {
			short[i] = fmt.Sprintf("%.40q (%d bytes)", s, len(s))
		}
		t.Fatalf("odd container's lines = %v; want bin, bad, 64 KiB of z, after", short)
	}
	seen := texts(lines(t, lg, flood))
	for i := 1; i <= floodLines; i++ {
		if c := seen[fmt.Sprint(i)]; c != 1 {
			t.Fatalf("flood line %d arrived %d times", i, c)
		}
	}
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	counted := map[string]float64{}
	for _, mf := range mfs {
		if mf.GetName() == "logspout_lines_odd_total" {
			for _, m := range mf.GetMetric() {
				counted[m.GetLabel()[0].GetValue()] = m.GetCounter().GetValue()
			}
		}
	}
	// Docker's json-file driver already replaces invalid UTF-8 with U+FFFD,
	// so that line reaches logspout as valid text (other drivers may not).
	if counted["truncated"] != 1 || counted["binary"] != 1 || counted["invalid_utf8"] > 1 {
		t.Fatalf("logspout_lines_odd_total = %v; want truncated and binary counted once each", counted)
	}
}

// TestLoggerMoves: when /deis/logs/* points at another logger, lines go
// there within 2 s, and between the two loggers every line arrives
// exactly once.
func TestLoggerMoves(t *testing.T) {
	t.Parallel()
	cli := testenv.Docker(t)
	e := testenv.StartEtcd(t)
	first := startLogger(t, e)
	runLogspout(t, e, cli, t.TempDir())
	app := fmt.Sprintf("moves%d", rand.IntN(1e9))
	const n = 1500
	script := fmt.Sprintf("for i in $(seq 1 %d); do echo line $i; if [ $((i %% 50)) = 0 ]; then sleep 0.1; fi; done; sleep 3600", n)
	testenv.RunContainer(t, cli, docker.CreateContainerOptions{Name: app + "_v1.web.1", Config: &docker.Config{Cmd: []string{"sh", "-c", script}}})
	testenv.Eventually(t, 20*time.Second, func() bool { return len(lines(t, first, app)) >= 200 }, "no lines at the first logger")
	// A second logger comes up (it announces itself in etcd too).
	second, stopSecond, err := runLogger(t, e, "127.0.0.1:0", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(stopSecond)
	_, port, _ := net.SplitHostPort(second.Addr("syslog"))
	e.Put("/deis/logs/port", port)
	testenv.Eventually(t, 2*time.Second, func() bool { return len(lines(t, second, app)) > 0 }, "no line at the new logger within 2 s")
	var a, b []string
	testenv.Eventually(t, 30*time.Second, func() bool {
		a, b = lines(t, first, app), lines(t, second, app)
		return len(a)+len(b) >= n
	}, "only %d+%d of %d lines", len(a), len(b), n)
	time.Sleep(time.Second)
	requireOnce(t, texts(lines(t, first, app), lines(t, second, app)), n, fmt.Sprintf("%d at the first logger, %d at the second", len(a), len(b)))
}

// TestUDPProtocol: /deis/logs/protocol=udp makes the logger route UDP.
func TestUDPProtocol(t *testing.T) {
	t.Parallel()
	cli := testenv.Docker(t)
	e := testenv.StartEtcd(t)
	lg := startLogger(t, e)
	e.Put("/deis/logs/protocol", "udp")
	ls, _ := startLogspout(t, e, cli, t.TempDir(), nil)
	testenv.Eventually(t, 10*time.Second, func() bool {
		r := ls.Routes()
		return len(r) == 1 && strings.HasPrefix(r[0].URL, "syslog://")
	}, "the logger route is not UDP: %+v", ls.Routes())
	app := fmt.Sprintf("udp%d", rand.IntN(1e9))
	testenv.RunContainer(t, cli, docker.CreateContainerOptions{Name: app + "_v1.web.1", Config: &docker.Config{Cmd: []string{"sh", "-c", "for i in 1 2 3 4 5; do echo udp $i; sleep 0.05; done; sleep 3600"}}})
	testenv.Eventually(t, 20*time.Second, func() bool { return len(lines(t, lg, app)) == 5 }, "UDP lines did not arrive: %v", lines(t, lg, app))
}
