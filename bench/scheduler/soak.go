package main

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net"
	"strconv"
	"strings"
	"syscall"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/deis/dataplane/agent/runtime"
	"github.com/deis/dataplane/internal/cptest"
	"github.com/deis/dataplane/pkg/keys"
	"github.com/deis/dataplane/pkg/unit"
	"github.com/deis/dataplane/scheduler"
)

// soak is the chaos run of CONTROL-PLANE.md row 16 (Deis v1's chaos
// scheduler idea, deis/deis#1913): for d, random releases (some crashing),
// scales, restarts, agent and leader kills, etcd stalls (SIGSTOP of the
// etcd process etcdPid) and container create failures, on 5 agents with
// the FAKE runtime. It checks the invariants every 2 s and at the end, and
// returns the violations found.
func soak(cli *clientv3.Client, etcdPid int, d time.Duration, seed uint64) (ops map[string]int, violations []string) {
	rng := rand.New(rand.NewPCG(seed, seed^0x5eed))
	c := cptest.New(cli, slog.New(slog.DiscardHandler))
	c.Agent, c.Sched = cptest.FastAgent, cptest.FastScheduler
	c.Sched.Deadline = 10 * time.Second
	c.RT.Behave = func(s runtime.RunSpec) runtime.FakeBehaviour {
		if strings.HasPrefix(s.Image, "crash") {
			return runtime.FakeBehaviour{ExitAfter: 100 * time.Millisecond, ExitCode: 1, Output: "crashed on purpose\n"}
		}
		return runtime.FakeBehaviour{}
	}
	failCreate := func(runtime.RunSpec) error {
		if rng.IntN(100) < 3 {
			return fmt.Errorf("injected create failure")
		}
		return nil
	}
	c.RT.FailCreate = failCreate
	hosts := []string{"127.0.50.2", "127.0.50.3", "127.0.50.4", "127.0.50.5", "127.0.50.6"}
	for _, h := range hosts {
		c.StartHost(h, nil)
	}
	c.StartScheduler("s1")
	c.StartScheduler("s2")
	defer c.Close()
	ctx := context.Background()
	apps := []string{}
	for i := 0; i < 10; i++ {
		app := fmt.Sprintf("chaos%d", i)
		apps = append(apps, app)
		_, _, _ = cptest.Release(ctx, cli, app, "img:0", map[string]string{"web": "serve", "worker": "work"}, nil)
	}
	ops = map[string]int{}
	down := map[string]bool{}
	deadline := time.Now().Add(d)
	nextCheck := time.Now().Add(2 * time.Second)
	suspect := map[string]int{}
	for time.Now().Before(deadline) {
		app := apps[rng.IntN(len(apps))]
		switch op := rng.IntN(100); {
		case op < 25:
			img := fmt.Sprintf("img:%d", rng.IntN(1000))
			if rng.IntN(10) == 0 {
				img = "crash:" + img
			}
			_, _, _ = cptest.Release(ctx, cli, app, img, map[string]string{"web": "serve", "worker": "work"}, nil)
			ops["release"]++
		case op < 50:
			_, _ = cptest.Scale(ctx, cli, app, map[string]int{"web": rng.IntN(4), "worker": rng.IntN(2)})
			ops["scale"]++
		case op < 58:
			_, _ = cli.Put(ctx, keys.AppRestart(app), `{"user":"chaos"}`)
			ops["restart"]++
		case op < 66:
			h := hosts[rng.IntN(len(hosts))]
			if down[h] {
				c.StartAgent(h, nil)
				delete(down, h)
				ops["agent back"]++
			} else if len(down) < 2 {
				c.StopAgent(h)
				down[h] = true
				ops["agent kill"]++
			}
		case op < 70:
			for id, s := range c.Scheds {
				if s.Leading() {
					c.StopScheduler(id)
					c.StartScheduler(id)
					ops["leader kill"]++
					break
				}
			}
		case op < 72 && etcdPid > 0:
			stall := time.Duration(3+rng.IntN(10)) * time.Second
			_ = syscall.Kill(etcdPid, syscall.SIGSTOP)
			time.Sleep(stall)
			_ = syscall.Kill(etcdPid, syscall.SIGCONT)
			ops["etcd stall"]++
		}
		time.Sleep(time.Duration(100+rng.IntN(400)) * time.Millisecond)
		if time.Now().After(nextCheck) {
			nextCheck = time.Now().Add(2 * time.Second)
			for _, v := range check(c, cli, hosts, false) {
				suspect[v]++
				if suspect[v] == 3 { // the same violation over three checks: not a moment in flight
					violations = append(violations, v)
				}
			}
		}
	}
	// Calm: every agent back, no more faults; everything must converge.
	c.RT.FailCreate = nil
	for h := range down {
		c.StartAgent(h, nil)
	}
	revs := map[string]int64{}
	for _, app := range apps {
		_, revs[app], _ = cptest.Release(ctx, cli, app, "img:final", map[string]string{"web": "serve", "worker": "work"}, nil)
	}
	wctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	for _, app := range apps {
		if d, err := scheduler.Wait(wctx, cli, app, revs[app], nil); err != nil {
			violations = append(violations, fmt.Sprintf("%s: no outcome 2 min after the chaos stopped: %v (%+v)", app, err, d))
		}
	}
	time.Sleep(5 * time.Second)
	violations = append(violations, check(c, cli, hosts, true)...)
	for _, app := range apps {
		_, _ = cli.Delete(ctx, keys.AppPrefix(app), clientv3.WithPrefix())
	}
	for deadline := time.Now().Add(time.Minute); time.Now().Before(deadline) && c.RT.Running() > 0; time.Sleep(200 * time.Millisecond) {
	}
	if n := c.RT.Running(); n > 0 {
		violations = append(violations, fmt.Sprintf("%d containers still running a minute after every app was destroyed (orphans)", n))
	}
	return ops, violations
}

// check returns the invariants broken now: a route not backed by a
// running, non-retiring container; a deploy running past its deadline;
// and, at the end, any host whose running containers differ from its units.
func check(c *cptest.Cluster, cli *clientv3.Client, hosts []string, final bool) []string {
	ctx := context.Background()
	var out []string
	resp, err := cli.Txn(ctx).Then(
		clientv3.OpGet(keys.ServicesPrefix, clientv3.WithPrefix()),
		clientv3.OpGet(keys.StatusPrefix, clientv3.WithPrefix()),
		clientv3.OpGet(keys.DeploysPrefix, clientv3.WithPrefix()),
		clientv3.OpGet(keys.UnitsPrefix, clientv3.WithPrefix(), clientv3.WithKeysOnly())).Commit()
	if err != nil {
		return nil // etcd stalled: nothing to check against
	}
	running := map[string]bool{} // host:port of running fake containers
	byHost := map[string]map[string]bool{}
	for _, h := range hosts {
		list, _ := c.RT.Host(h).List(ctx, h)
		byHost[h] = map[string]bool{}
		for _, ct := range list {
			if ct.Running {
				byHost[h][ct.Name] = true
				if ct.HostPort > 0 {
					running[net.JoinHostPort(h, strconv.Itoa(ct.HostPort))] = true
				}
			}
		}
	}
	status := map[string]unit.Status{}
	for _, kv := range resp.Responses[1].GetResponseRange().Kvs {
		var s unit.Status
		if json.Unmarshal(kv.Value, &s) == nil {
			status[strings.TrimPrefix(string(kv.Key), keys.StatusPrefix)] = s
		}
	}
	for _, kv := range resp.Responses[0].GetResponseRange().Kvs {
		addr := string(kv.Value)
		if !running[addr] {
			out = append(out, fmt.Sprintf("route %s = %s: no running container there", kv.Key, addr))
			continue
		}
		h, _, _ := net.SplitHostPort(addr)
		name := string(kv.Key)[strings.LastIndexByte(string(kv.Key), '/')+1:]
		if s, ok := status[h+"/"+name]; ok && s.Retiring() {
			out = append(out, fmt.Sprintf("route %s = %s: the unit is %s", kv.Key, addr, s.State))
		}
	}
	for _, kv := range resp.Responses[2].GetResponseRange().Kvs {
		var d unit.Deploy
		if json.Unmarshal(kv.Value, &d) == nil && d.State == unit.Running && time.Since(d.Updated) > 60*time.Second {
			out = append(out, fmt.Sprintf("deploy %s running, last step %s ago (%q)", d.ID, time.Since(d.Updated).Round(time.Second), d.Step))
		}
	}
	if final {
		units := map[string]map[string]bool{}
		for _, kv := range resp.Responses[3].GetResponseRange().Kvs {
			h, n, err := keys.ParseUnitKey(keys.UnitsPrefix, string(kv.Key))
			if err == nil {
				if units[h] == nil {
					units[h] = map[string]bool{}
				}
				units[h][n.String()] = true
			}
		}
		for _, h := range hosts {
			for name := range byHost[h] {
				if !units[h][name] {
					out = append(out, fmt.Sprintf("host %s runs %s, which is not assigned to it (orphan)", h, name))
				}
			}
			for name := range units[h] {
				if !byHost[h][name] {
					out = append(out, fmt.Sprintf("host %s does not run its unit %s", h, name))
				}
			}
		}
	}
	return out
}
