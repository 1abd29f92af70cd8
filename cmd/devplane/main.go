// Command devplane is `make run`: the whole platform on one machine in one
// command. It starts an embedded etcd, sets the platform domain, then runs
// the sibling binaries (router, logger, controller with the scheduler, and,
// when a Docker engine answers, logspout, builder, and per host an agent and
// a publisher) on unprivileged ports, prints where each listens and how to
// try it, and stops everything on Ctrl-C or SIGTERM. With --hosts N the
// hosts are simulated on 127.0.0.2, 127.0.0.3, ...
package main

import (
	"bufio"
	"context"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	dockerlib "github.com/fsouza/go-dockerclient"
	"go.etcd.io/etcd/server/v3/embed"
	"go.uber.org/zap"

	"github.com/deis/dataplane/pkg/daemon"
	"github.com/deis/dataplane/pkg/dockerx"
	"github.com/deis/dataplane/pkg/etcdutil"
	"github.com/deis/dataplane/pkg/keys"
)

type child struct {
	name   string
	args   []string
	info   string
	health string // URL that answers once the daemon has bound its ports
	// host is set on a simulated host's agent and publisher when there are
	// several hosts: its death is that host's death, which the scheduler
	// handles (and tests cause on purpose), not the plane's.
	host string
}

func main() { os.Exit(run()) }

// run is main; it returns the exit status instead of exiting, so that the
// deferred cleanup (the data directory, etcd) always runs.
func run() int {
	var (
		dataDir, domain, binDir, host, docker string
		external                              string
		etcdPort, peerPort                    int
		httpPort, httpsPort, sshPort, health  int
		syslogPort, logHTTP, webPort, pubPort int
		builderPort, builderHealth            int
		controllerPort, agentPort, hosts      int
	)
	fs := flag.NewFlagSet("devplane", flag.ExitOnError)
	fs.StringVar(&dataDir, "data-dir", "", "etcd and logger data directory (default: a new temporary directory)")
	fs.StringVar(&domain, "domain", "localhost", "platform domain: apps are served at <app>.<domain> (*.localhost resolves to loopback without DNS setup, RFC 6761)")
	fs.StringVar(&binDir, "bin", "", "directory of the daemon binaries (default: next to this binary)")
	fs.StringVar(&host, "host", "127.0.0.1", "address published for this host")
	fs.StringVar(&docker, "docker", daemon.Env("DOCKER_HOST", daemon.DefaultDocker), "Docker engine")
	fs.IntVar(&etcdPort, "etcd-port", 2379, "etcd client port")
	fs.StringVar(&external, "etcd", "", "comma-separated endpoints of an etcd cluster to use instead of the embedded etcd (a 3-member cluster, an etcd grpc-proxy)")
	fs.IntVar(&peerPort, "etcd-peer-port", 2380, "etcd peer port")
	fs.IntVar(&httpPort, "http-port", 8080, "router HTTP port")
	fs.IntVar(&httpsPort, "https-port", 8443, "router HTTPS port")
	fs.IntVar(&sshPort, "ssh-port", 2222, "router TCP port forwarded to the builder")
	fs.IntVar(&health, "health-port", 9090, "router health port")
	fs.IntVar(&syslogPort, "syslog-port", 5514, "logger syslog port (UDP and TCP)")
	fs.IntVar(&logHTTP, "logger-http-port", 8088, "logger HTTP API port")
	fs.IntVar(&webPort, "logspout-port", 8000, "logspout HTTP port")
	fs.IntVar(&pubPort, "publisher-port", 9091, "publisher health port")
	fs.IntVar(&builderPort, "builder-port", 2223, "builder SSH port")
	fs.IntVar(&builderHealth, "builder-health-port", 9092, "builder health port")
	fs.IntVar(&controllerPort, "controller-port", 8001, "controller API port")
	fs.IntVar(&agentPort, "agent-port", 9093, "agent health port (on each simulated host's address)")
	fs.IntVar(&hosts, "hosts", 1, "hosts to simulate: 1 runs the agent and publisher on --host; N > 1 on 127.0.0.2 ... 127.0.0.<N+1>")
	daemon.Parse(fs, os.Args[1:], func() error { // --version, and one line for a bad flag
		if hosts < 1 || hosts > 50 {
			return fmt.Errorf("--hosts: %d must be between 1 and 50", hosts)
		}
		return nil
	})

	if binDir == "" {
		exe, _ := os.Executable()
		binDir = filepath.Dir(exe)
	}
	tempData := false
	if dataDir == "" {
		d, err := os.MkdirTemp("", "devplane-")
		if err != nil {
			return fail("temporary directory: %v", err)
		}
		dataDir, tempData = d, true
		defer os.RemoveAll(d)
	}
	ctx, stop := daemon.SignalContext()
	defer stop()

	endpoint := fmt.Sprintf("http://127.0.0.1:%d", etcdPort)
	if external == "" {
		etcd, err := startEtcd(filepath.Join(dataDir, "etcd"), etcdPort, peerPort)
		if err != nil {
			return fail("etcd: %v", err)
		}
		defer etcd.Close()
	} else {
		endpoint = external
	}
	eps, err := daemon.ParseEndpoints(endpoint)
	if err != nil {
		return fail("--etcd: %v", err)
	}
	cli, err := etcdutil.Connect(eps)
	if err != nil {
		return fail("etcd client: %v", err)
	}
	pctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	_, err = cli.Put(pctx, keys.PlatformDomain, domain)
	cancel()
	cli.Close()
	if err != nil {
		return fail("set %s: %v", keys.PlatformDomain, err)
	}

	common := []string{"--etcd", endpoint, "--host", host, "--docker", docker}
	addr := func(p int) string { return fmt.Sprintf("%s:%d", host, p) }
	children := []child{
		{name: "router", args: []string{"--http-addr", addr(httpPort), "--https-addr", addr(httpsPort), "--ssh-addr", addr(sshPort), "--health-addr", addr(health)},
			info:   fmt.Sprintf("router     http://127.0.0.1:%d  https://127.0.0.1:%d  tcp 127.0.0.1:%d  health http://127.0.0.1:%d/health-check", httpPort, httpsPort, sshPort, health),
			health: fmt.Sprintf("http://127.0.0.1:%d/health-check", health)},
		{name: "logger", args: []string{"--syslog-addr", addr(syslogPort), "--http-addr", addr(logHTTP), "--log-root", filepath.Join(dataDir, "logs")},
			info:   fmt.Sprintf("logger     syslog udp+tcp 127.0.0.1:%d  logs http://127.0.0.1:%d/<app>", syslogPort, logHTTP),
			health: fmt.Sprintf("http://127.0.0.1:%d/healthz", logHTTP)},
		{name: "controller", args: []string{"--http-addr", addr(controllerPort), "--logger-http-port", fmt.Sprint(logHTTP)},
			info:   fmt.Sprintf("controller http://127.0.0.1:%d (scheduler leader)  http://deis.%s:%d through the router", controllerPort, domain, httpPort),
			health: fmt.Sprintf("http://127.0.0.1:%d/healthz", controllerPort)},
	}
	dcli, err := dockerx.Connect(docker)
	dockerUp := err == nil && dcli.PingWithContext(ctx) == nil
	var hostAddrs []string
	if dockerUp {
		hostAddrs = []string{host}
		if hosts > 1 {
			hostAddrs = hostAddrs[:0]
			for i := range hosts {
				hostAddrs = append(hostAddrs, fmt.Sprintf("127.0.0.%d", i+2))
			}
		}
		for _, h := range hostAddrs {
			// Each simulated host is an address of its own: the same ports
			// on every one, as on separate machines.
			at := func(p int) string { return fmt.Sprintf("%s:%d", h, p) }
			scoped := ""
			if hosts > 1 {
				scoped = h
			}
			children = append(children,
				child{"publisher", []string{"--host", h, "--health-addr", at(pubPort)}, fmt.Sprintf("publisher  host %s  health http://%s/healthz", h, at(pubPort)), fmt.Sprintf("http://%s/healthz", at(pubPort)), scoped},
				child{"agent", []string{"--host", h, "--health-addr", at(agentPort)}, fmt.Sprintf("agent      host %s  health http://%s/healthz", h, at(agentPort)), fmt.Sprintf("http://%s/healthz", at(agentPort)), scoped},
			)
		}
		children = append(children,
			child{name: "logspout", args: []string{"--web-addr", addr(webPort), "--state-dir", filepath.Join(dataDir, "logspout")}, info: fmt.Sprintf("logspout   http://127.0.0.1:%d/healthz", webPort), health: fmt.Sprintf("http://127.0.0.1:%d/healthz", webPort)},
			child{name: "builder", args: []string{"--ssh-addr", addr(builderPort), "--health-addr", addr(builderHealth), "--repo-root", filepath.Join(dataDir, "repos")}, info: fmt.Sprintf("builder    ssh 127.0.0.1:%d  health http://127.0.0.1:%d/healthz", builderPort, builderHealth), health: fmt.Sprintf("http://127.0.0.1:%d/healthz", builderHealth)},
		)
	}

	// The daemons listen on --host (127.0.0.1 unless given): what they
	// announce in etcd is where they are.
	for i := range children {
		children[i].info = strings.ReplaceAll(children[i].info, "127.0.0.1:", host+":")
		children[i].health = strings.ReplaceAll(children[i].health, "127.0.0.1:", host+":")
	}
	fmt.Printf("devplane: etcd at %s, platform domain %s, data in %s\n", endpoint, domain, dataDir)
	var wg sync.WaitGroup
	type death struct {
		c   child
		err error
	}
	died := make(chan death, len(children))
	var procs []*exec.Cmd
	var started []child
	for _, c := range children {
		path := filepath.Join(binDir, c.name)
		if _, err := os.Stat(path); err != nil {
			fmt.Printf("devplane: skipping %s: %s not built (run make build)\n", c.name, path)
			continue
		}
		cmd := exec.Command(path, append(append([]string{}, common...), c.args...)...)
		cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
		stdout, _ := cmd.StdoutPipe()
		stderr, _ := cmd.StderrPipe()
		if err := cmd.Start(); err != nil {
			fmt.Printf("devplane: cannot start %s: %v\n", c.name, err)
			continue
		}
		procs = append(procs, cmd)
		wg.Go(func() { prefix(c.name, stdout) })
		wg.Go(func() { prefix(c.name, stderr) })
		go func() { died <- death{c, cmd.Wait()} }()
		if c.host != "" {
			fmt.Printf("devplane: %s of host %s is pid %d\n", c.name, c.host, cmd.Process.Pid)
		}
		started = append(started, c)
	}
	// The banner comes once every daemon listens: what it tells to type
	// then works.
	for _, c := range started {
		if answers(ctx, c.health, 20*time.Second) {
			fmt.Println("  " + c.info)
		} else if ctx.Err() == nil {
			fmt.Printf("  %-10s did not answer %s within 20s; see its log above\n", c.name, c.health)
		}
	}
	if !dockerUp {
		fmt.Println("devplane: no Docker engine answers; agent, publisher, logspout and builder not started (scripts/setup.sh starts one)")
	}
	remotePort := ""
	if sshPort != 2222 {
		remotePort = fmt.Sprintf("  (this router's SSH port is %d: git remote set-url deis ssh://git@127.0.0.1:%d/myapp.git)\n", sshPort, sshPort)
	}
	fmt.Printf(strings.ReplaceAll(`
Try it, in another terminal (README.md "Quickstart" has every step):
  export PATH=%s:$PATH
  deis register http://deis.%s:%d
  deis keys:add ~/.ssh/id_ed25519.pub
  cd <your app's git repository> && deis create myapp && git push deis master
%s  curl http://myapp.%s:%d/
  deis scale web=3 && deis logs
Ctrl-C stops everything.
`, "127.0.0.1", host), binDir, domain, httpPort, remotePort, domain, httpPort)

	exitCode := 0
wait:
	for {
		select {
		case <-ctx.Done():
			break wait
		case d := <-died:
			if d.c.host != "" {
				// One simulated host down out of several: the scheduler
				// moves its units, as it would for a real machine.
				fmt.Printf("devplane: %s of host %s exited: %v; that host is down, the others go on\n", d.c.name, d.c.host, d.err)
				continue
			}
			// A shared daemon that dies takes the plane down: a
			// half-running plane would mislead whoever tries it.
			fmt.Printf("devplane: %s exited: %v; stopping everything\n", d.c.name, d.err)
			exitCode = 1
			break wait
		}
	}
	for _, p := range procs {
		if p.Process != nil {
			_ = p.Process.Signal(syscall.SIGTERM)
		}
	}
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(15 * time.Second):
		for _, p := range procs {
			if p.Process != nil {
				_ = syscall.Kill(-p.Process.Pid, syscall.SIGKILL)
			}
		}
	}
	if tempData && dockerUp {
		// The plane's state went with its temporary directory: app
		// containers its agents ran would be orphans, so they go too.
		for _, h := range hostAddrs {
			list, _ := dcli.ListContainers(dockerlib.ListContainersOptions{All: true, Filters: map[string][]string{"label": {keys.LabelHost + "=" + h}}})
			for _, c := range list {
				_ = dcli.RemoveContainer(dockerlib.RemoveContainerOptions{ID: c.ID, Force: true})
			}
			if len(list) > 0 {
				fmt.Printf("devplane: removed %d app containers of host %s\n", len(list), h)
			}
		}
	}
	fmt.Println("devplane: stopped")
	return exitCode
}

// answers reports whether url answers HTTP (any status) within d.
func answers(ctx context.Context, url string, d time.Duration) bool {
	client := &http.Client{Timeout: time.Second}
	for deadline := time.Now().Add(d); time.Now().Before(deadline) && ctx.Err() == nil; time.Sleep(50 * time.Millisecond) {
		if resp, err := client.Get(url); err == nil {
			resp.Body.Close()
			return true
		}
	}
	return false
}

func prefix(name string, r io.Reader) {
	s := bufio.NewScanner(r)
	s.Buffer(make([]byte, 64<<10), 1<<20)
	for s.Scan() {
		fmt.Printf("[%s] %s\n", name, s.Text())
	}
}

func startEtcd(dir string, clientPort, peerPort int) (*embed.Etcd, error) {
	cfg := embed.NewConfig()
	cfg.Dir = dir
	cu, _ := url.Parse(fmt.Sprintf("http://127.0.0.1:%d", clientPort))
	pu, _ := url.Parse(fmt.Sprintf("http://127.0.0.1:%d", peerPort))
	cfg.ListenClientUrls, cfg.AdvertiseClientUrls = []url.URL{*cu}, []url.URL{*cu}
	cfg.ListenPeerUrls, cfg.AdvertisePeerUrls = []url.URL{*pu}, []url.URL{*pu}
	cfg.InitialCluster = cfg.Name + "=" + pu.String()
	cfg.ZapLoggerBuilder = embed.NewZapLoggerBuilder(zap.NewNop())
	srv, err := embed.StartEtcd(cfg)
	if err != nil {
		return nil, err
	}
	select {
	case <-srv.Server.ReadyNotify():
		return srv, nil
	case <-time.After(30 * time.Second):
		srv.Close()
		return nil, fmt.Errorf("not ready after 30s")
	}
}

// fail prints why the plane cannot start; run returns its status.
func fail(format string, args ...any) int {
	fmt.Fprintf(os.Stderr, "devplane: "+format+"\n", args...)
	return 1
}
