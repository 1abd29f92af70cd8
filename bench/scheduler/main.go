// Command scheduler-bench measures the control plane against a real etcd
// process (bin/etcd at -etcd), and writes bench/out/scheduler.md and .csv:
//
//   - cold convergence of 10 agents × 100 apps × 5 units (FAKE runtime and
//     FAKE publishers: 500 containers do not fit this machine), and a
//     50-unit deploy on the converged cluster;
//   - etcd writes per minute while nothing changes (target: none; lease
//     keep-alives are not writes);
//   - a dead host's units serving elsewhere, p50/p95 over -deaths runs
//     (fake runtime: the dead host's containers live on, as in a partition);
//   - the real agent binary's RSS and CPU with -units real containers.
//
// Every measured run is repeated (-runs) and reported as median with the
// spread.
package main

import (
	"bufio"
	"context"
	"flag"
	"fmt"
	"log"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"

	docker "github.com/fsouza/go-dockerclient"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/deis/dataplane/internal/cptest"
	"github.com/deis/dataplane/pkg/dockerx"
	"github.com/deis/dataplane/pkg/etcdutil"
	"github.com/deis/dataplane/pkg/keys"
	"github.com/deis/dataplane/pkg/release"
	"github.com/deis/dataplane/pkg/testenv"
	"github.com/deis/dataplane/pkg/unit"
	"github.com/deis/dataplane/scheduler"
)

func main() {
	etcd := flag.String("etcd", "http://127.0.0.1:12579", "etcd endpoint")
	runs := flag.Int("runs", 3, "repetitions of each convergence measurement")
	deaths := flag.Int("deaths", 20, "host deaths measured")
	units := flag.Int("units", 100, "real containers under one agent for its RSS and CPU")
	idle := flag.Duration("idle", time.Minute, "quiet period over which etcd writes and agent CPU are measured")
	bin := flag.String("bin", "bin", "directory of the built binaries")
	out := flag.String("out", "bench/out", "where scheduler.md and scheduler.csv go")
	soakFor := flag.Duration("soak", 0, "run only the chaos soak, this long (CONTROL-PLANE.md row 16)")
	etcdPid := flag.Int("etcd-pid", 0, "pid of the etcd process, frozen now and then by the soak")
	flag.Parse()
	cli, err := etcdutil.Connect([]string{*etcd})
	must(err)
	if *soakFor > 0 {
		seed := uint64(time.Now().UnixNano())
		start := time.Now()
		ops, violations := soak(cli, *etcdPid, *soakFor, seed)
		report := fmt.Sprintf("## Scheduler chaos soak\n\n`bench/chaos/run.sh` (`go run ./bench/scheduler -soak`), %s. ", time.Now().UTC().Format("2006-01-02")) + fmt.Sprintf("%s of random operations and faults (seed %d): %v. Invariants (checked every 2 s, a violation counted when it holds over three checks, and at the end): every route backed by a running, non-draining container; no deploy running without progress for 60 s; every change reaching an outcome after the chaos; on each host the running containers equal its units; no orphan after every app is destroyed.\n\n", time.Since(start).Round(time.Second), seed, ops)
		if len(violations) == 0 {
			report += "Violations: none.\n"
		} else {
			report += fmt.Sprintf("Violations (%d):\n\n", len(violations))
			for _, v := range violations {
				report += "- " + v + "\n"
			}
		}
		fmt.Print(report)
		must(os.WriteFile(filepath.Join(*out, "chaos.md"), []byte(report), 0o644))
		must(os.WriteFile(filepath.Join(*out, "chaos.csv"), []byte(fmt.Sprintf("chart,series,value,unit\nscheduler_chaos_violations,%s soak,%d,violations\n", *soakFor, len(violations))), 0o644))
		if len(violations) > 0 {
			os.Exit(1)
		}
		return
	}
	log := slog.New(slog.DiscardHandler)
	var md strings.Builder
	var csv strings.Builder
	csv.WriteString("chart,series,value,unit\n")
	fmt.Fprintf(&md, "## Scheduler and agent\n\n`bench/scheduler/run.sh` (`go run ./bench/scheduler`), real etcd process, %s. Production timings (10 s host lease, 4 s grace, 2 s minReady) unless said. Rows marked (F) run agents on the fake runtime with fake publishers.\n\n", time.Now().UTC().Format("2006-01-02"))
	fmt.Fprintf(&md, "| measure | median | spread (min–max) | runs | target | peers (as cited in CONTROL-PLANE.md) |\n| --- | ---: | ---: | ---: | --- | --- |\n")

	// 1. Cold convergence and a 50-unit deploy.
	var cold, deploy50 []time.Duration
	var idleWrites int64
	for r := 0; r < *runs; r++ {
		c := cptest.New(cli, log)
		c.Agent, c.Sched = cptest.FastAgent, scheduler.Config{}
		c.Agent.TTL, c.Agent.Reconcile, c.Agent.Drain = 10*time.Second, 10*time.Second, time.Second
		var hosts []string
		for i := 0; i < 10; i++ {
			h := fmt.Sprintf("127.0.%d.%d", 20+r, 2+i)
			hosts = append(hosts, h)
			c.StartHost(h, nil)
		}
		c.StartScheduler("bench")
		prefix := fmt.Sprintf("cold%d-", r)
		start := time.Now()
		revs := writeApps(cli, prefix, 100, 5, "img:1")
		waitAll(cli, revs, 5*time.Minute)
		cold = append(cold, time.Since(start))
		log.Info("cold", "took", cold[len(cold)-1])
		if r == 0 {
			before := revision(cli)
			time.Sleep(*idle)
			idleWrites = revision(cli) - before
		}
		start = time.Now()
		revs = map[string]int64{}
		for i := 0; i < 10; i++ {
			app := fmt.Sprintf("%s%03d", prefix, i)
			revs[app] = writeRelease(cli, app, "img:2")
		}
		waitAll(cli, revs, 5*time.Minute)
		deploy50 = append(deploy50, time.Since(start))
		cleanup(cli, prefix)
		c.Close()
		wipe(cli, hosts)
	}
	fmt.Fprintf(&md, "| (F) cold convergence, 10 agents × 100 apps × 5 units (500 units, every route written) | %s | %s | %d | ≤ 30 s | — |\n", med(cold), spread(cold), len(cold))
	fmt.Fprintf(&md, "| (F) 50-unit rolling deploy (10 apps × web=5, surge 1 each) | %s | %s | %d | ≤ 2 min | — |\n", med(deploy50), spread(deploy50), len(deploy50))
	perMin := float64(idleWrites) / idle.Minutes()
	fmt.Fprintf(&md, "| (F) etcd writes while idle, 500 units on 10 agents | %.1f/min | — | 1 | lease keep-alives only (0 writes) | — |\n", perMin)
	fmt.Fprintf(&csv, "scheduler_cold_convergence_s,500 units on 10 agents,%.2f,s\nscheduler_deploy_50_units_s,10 apps x 5 units,%.2f,s\nscheduler_idle_writes_per_min,500 units,%.1f,writes/min\n", med(cold).Seconds(), med(deploy50).Seconds(), perMin)

	// 2. Dead host → serving elsewhere.
	var routesGone, serving []time.Duration
	{
		c := cptest.New(cli, log)
		c.Agent, c.Sched = cptest.FastAgent, scheduler.Config{}
		c.Agent.TTL, c.Agent.Reconcile, c.Agent.Drain = 10*time.Second, 10*time.Second, time.Second
		hosts := []string{"127.0.30.2", "127.0.30.3", "127.0.30.4", "127.0.30.5"}
		for _, h := range hosts {
			c.StartHost(h, nil)
		}
		c.StartScheduler("bench")
		app := "death"
		revs := map[string]int64{app: writeRelease(cli, app, "img:1")}
		waitAll(cli, revs, time.Minute)
		rev, _ := cptest.Scale(context.Background(), cli, app, map[string]int{"web": 3})
		waitAll(cli, map[string]int64{app: rev}, time.Minute)
		for i := 0; i < *deaths; i++ {
			u, _ := cptest.Units(context.Background(), cli, app)
			victim := ""
			for _, h := range u {
				victim = h
				break
			}
			killed := time.Now()
			c.StopAgent(victim)
			c.StopPublisher(victim)
			var gone time.Duration
			for deadline := time.Now().Add(2 * time.Minute); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
				r, _ := cptest.Routes(context.Background(), cli, app)
				onVictim := false
				for _, addr := range r {
					if strings.HasPrefix(addr, victim+":") {
						onVictim = true
					}
				}
				if !onVictim && gone == 0 {
					gone = time.Since(killed)
				}
				if !onVictim && len(r) == 3 {
					break
				}
			}
			serving = append(serving, time.Since(killed))
			routesGone = append(routesGone, gone)
			c.StartHost(victim, nil)
			time.Sleep(3 * time.Second) // it cleans its stale container up
		}
		cleanup(cli, app)
		c.Close()
		wipe(cli, hosts)
	}
	fmt.Fprintf(&md, "| (F) dead host: its routes gone | %s (p95 %s) | %s | %d | ≤ 15 s | — |\n", med(routesGone), pct(routesGone, 95), spread(routesGone), len(routesGone))
	fmt.Fprintf(&md, "| (F) dead host: its units serving elsewhere | %s (p95 %s) | %s | %d | p95 ≤ 30 s | fleet ≈ 30 s + start; Nomad ≈ 20–30 s + start; Kubernetes ≈ 5 min 40 s |\n", med(serving), pct(serving, 95), spread(serving), len(serving))
	fmt.Fprintf(&csv, "scheduler_dead_host_s,ours p50,%.2f,s\nscheduler_dead_host_s,ours p95,%.2f,s\nscheduler_dead_host_s,fleet (cited),30,s\nscheduler_dead_host_s,Kubernetes (cited),340,s\n", med(serving).Seconds(), pct(serving, 95).Seconds())

	// 3. The real agent with real containers.
	if *units > 0 {
		rss, cpu, startAll := agentFootprint(cli, *bin, *etcd, *units, *idle)
		fmt.Fprintf(&md, "| agent RSS with %d running units (real Docker) | %.1f MB | — | 1 | < 50 MB | — |\n", *units, rss)
		fmt.Fprintf(&md, "| agent CPU while idle with %d units, over %s | %.2f %% of a core | — | 1 | < 1 %% | — |\n", *units, *idle, cpu)
		fmt.Fprintf(&md, "| %d real units started by one agent, from the scale write to all `up` | %s | — | 1 | — | — |\n", *units, startAll.Round(time.Millisecond))
		fmt.Fprintf(&csv, "agent_rss_mb,%d units,%.1f,MB\nagent_idle_cpu_pct,%d units,%.2f,%%\n", *units, rss, *units, cpu)
	}
	md.WriteString("\n")
	must(os.WriteFile(filepath.Join(*out, "scheduler.md"), []byte(md.String()), 0o644))
	must(os.WriteFile(filepath.Join(*out, "scheduler.csv"), []byte(csv.String()), 0o644))
	fmt.Print(md.String())
}

// writeApps creates n apps with a release of image and web=units, and
// returns the revision each one's change landed at.
func writeApps(cli *clientv3.Client, prefix string, n, units int, image string) map[string]int64 {
	revs := map[string]int64{}
	for i := 0; i < n; i++ {
		app := fmt.Sprintf("%s%03d", prefix, i)
		writeRelease(cli, app, image)
		rev, err := cptest.Scale(context.Background(), cli, app, map[string]int{"web": units})
		must(err)
		revs[app] = rev
	}
	return revs
}

func writeRelease(cli *clientv3.Client, app, image string) int64 {
	_, rev, err := cptest.Release(context.Background(), cli, app, image, map[string]string{"web": "serve"}, nil)
	must(err)
	return rev
}

func waitAll(cli *clientv3.Client, revs map[string]int64, limit time.Duration) {
	ctx, cancel := context.WithTimeout(context.Background(), limit)
	defer cancel()
	for app, rev := range revs {
		d, err := scheduler.Wait(ctx, cli, app, rev, nil)
		if err != nil || d.State != unit.Succeeded {
			log.Fatalf("%s: %+v %v", app, d, err)
		}
	}
}

// cleanup destroys the apps with prefix and waits until their units are gone.
func cleanup(cli *clientv3.Client, prefix string) {
	ctx := context.Background()
	_, err := cli.Delete(ctx, keys.AppsPrefix+prefix, clientv3.WithPrefix())
	must(err)
	_, _ = cli.Delete(ctx, keys.ConfigPrefix+prefix, clientv3.WithPrefix())
	for deadline := time.Now().Add(2 * time.Minute); time.Now().Before(deadline); time.Sleep(200 * time.Millisecond) {
		resp, err := cli.Get(ctx, keys.UnitsPrefix, clientv3.WithPrefix(), clientv3.WithCountOnly())
		if err == nil && resp.Count == 0 {
			return
		}
	}
}

// wipe removes what stopped hosts leave on their leases' way out.
func wipe(cli *clientv3.Client, hosts []string) {
	for _, h := range hosts {
		_, _ = cli.Delete(context.Background(), keys.StatusHostPrefix(h), clientv3.WithPrefix())
		_, _ = cli.Delete(context.Background(), keys.Host(h))
	}
}

func revision(cli *clientv3.Client) int64 {
	resp, err := cli.Get(context.Background(), "health-of-the-bench")
	must(err)
	return resp.Header.Revision
}

// agentFootprint runs bin/agent against the real engine with units
// containers of one app, and returns its RSS (MB) and idle CPU (% of one
// core over idle), and how long the units took to come up.
func agentFootprint(cli *clientv3.Client, bin, etcd string, units int, idle time.Duration) (float64, float64, time.Duration) {
	dcli, err := dockerx.Connect("unix:///var/run/docker.sock")
	must(err)
	must(testenv.EnsureBusyboxImage(dcli))
	host := "127.0.40.2"
	agent := exec.Command(filepath.Join(bin, "agent"), "--etcd", etcd, "--host", host, "--health-addr", host+":0", "--log-level", "warn")
	agent.Stderr = os.Stderr
	must(agent.Start())
	defer func() {
		_ = agent.Process.Kill()
		_ = agent.Wait()
		list, _ := dcli.ListContainers(docker.ListContainersOptions{All: true, Filters: map[string][]string{"label": {keys.LabelHost + "=" + host}}})
		for _, c := range list {
			_ = dcli.RemoveContainer(docker.RemoveContainerOptions{ID: c.ID, Force: true})
		}
	}()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	s := scheduler.New(scheduler.Config{ID: "bench"}, cli, slog.New(slog.DiscardHandler), nil)
	go func() { _ = s.Run(ctx) }()
	app := "agentbench"
	must(cptest.CreateApp(ctx, cli, app, "bench"))
	_, err = release.Write(ctx, cli, app, func(*release.Release, map[string]string) (*release.Release, error) {
		// A worker type: no route, so no publisher is needed to count it up.
		return &release.Release{Image: testenv.BusyboxImage, Procfile: map[string]string{"worker": "exec sleep 100000"}}, nil
	})
	must(err)
	start := time.Now()
	_, err = cptest.Scale(ctx, cli, app, map[string]int{"worker": units})
	must(err)
	for deadline := time.Now().Add(10 * time.Minute); ; time.Sleep(time.Second) {
		resp, err := cli.Get(ctx, keys.StatusHostPrefix(host), clientv3.WithPrefix())
		must(err)
		up := 0
		for _, kv := range resp.Kvs {
			if strings.Contains(string(kv.Value), `"state":"up"`) {
				up++
			}
		}
		if up >= units {
			break
		}
		if time.Now().After(deadline) {
			log.Fatalf("only %d of %d units up after 10 minutes", up, units)
		}
	}
	startAll := time.Since(start)
	time.Sleep(15 * time.Second) // settle: the last statuses, the first passes
	t0, c0 := time.Now(), cpuTicks(agent.Process.Pid)
	time.Sleep(idle)
	cpu := float64(cpuTicks(agent.Process.Pid)-c0) / 100 / time.Since(t0).Seconds() * 100
	rss := rssMB(agent.Process.Pid)
	_, _ = cli.Delete(ctx, keys.AppPrefix(app), clientv3.WithPrefix())
	return rss, cpu, startAll
}

// cpuTicks is utime+stime of pid in clock ticks (100 per second).
func cpuTicks(pid int) int64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	must(err)
	f := strings.Fields(string(b[strings.LastIndexByte(string(b), ')')+2:]))
	u, _ := strconv.ParseInt(f[11], 10, 64)
	s, _ := strconv.ParseInt(f[12], 10, 64)
	return u + s
}

func rssMB(pid int) float64 {
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	must(err)
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "VmRSS:"); ok {
			kb, _ := strconv.ParseFloat(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 64)
			return kb / 1024
		}
	}
	return 0
}

func sorted(d []time.Duration) []time.Duration {
	s := append([]time.Duration(nil), d...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	return s
}

func med(d []time.Duration) time.Duration { return pct(d, 50) }

func pct(d []time.Duration, p int) time.Duration {
	if len(d) == 0 {
		return 0
	}
	s := sorted(d)
	i := (len(s)*p + 99) / 100
	if i > 0 {
		i--
	}
	return s[min(i, len(s)-1)].Round(10 * time.Millisecond)
}

func spread(d []time.Duration) string {
	if len(d) == 0 {
		return "—"
	}
	s := sorted(d)
	return fmt.Sprintf("%s–%s", s[0].Round(10*time.Millisecond), s[len(s)-1].Round(10*time.Millisecond))
}

func must(err error) {
	if err != nil {
		log.Fatal(err)
	}
}
