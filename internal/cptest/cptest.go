// Package cptest runs a control plane in one process for tests and
// benchmarks: schedulers and agents on a real etcd, with agents on the FAKE
// runtime (agent/runtime.Fake) and FAKE publishers that publish what the
// fake runtime runs. It exists for what cannot run for real on one machine
// (hundreds of containers, a dead host whose containers live on); the
// control plane's tests with real Docker, publishers and router use the
// real parts instead.
package cptest

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net"
	"strconv"
	"strings"
	"sync"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/deis/dataplane/agent"
	"github.com/deis/dataplane/agent/runtime"
	"github.com/deis/dataplane/pkg/keys"
	"github.com/deis/dataplane/pkg/release"
	"github.com/deis/dataplane/pkg/unit"
	"github.com/deis/dataplane/scheduler"
)

// Cluster is a control plane under test. Its timings are short so that
// tests run in seconds; they keep the proportions of the defaults.
type Cluster struct {
	Etcd  *clientv3.Client
	RT    *runtime.Fake
	Log   *slog.Logger
	Agent agent.Config     // template for StartAgent (Host and Labels are set there)
	Sched scheduler.Config // template for StartScheduler (ID is set there)

	mu     sync.Mutex
	agents map[string]*proc
	pubs   map[string]*proc
	scheds map[string]*proc
	Scheds map[string]*scheduler.Scheduler
	Agents map[string]*agent.Agent
}

type proc struct {
	cancel context.CancelFunc
	done   chan struct{}
}

func (p *proc) stop() {
	p.cancel()
	<-p.done
}

// FastScheduler and FastAgent are the test timings.
var (
	FastScheduler = scheduler.Config{Session: 2 * time.Second, FullPass: time.Second, Tick: 100 * time.Millisecond, Grace: time.Second,
		MinReadyRouted: 300 * time.Millisecond, MinReadyOther: 500 * time.Millisecond, Deadline: 5 * time.Second}
	FastAgent = agent.Config{TTL: 2 * time.Second, Reconcile: time.Second, Drain: 200 * time.Millisecond, StopTimeout: time.Second,
		MinRestart: 100 * time.Millisecond, MaxRestart: time.Second}
)

// New returns an empty cluster on cli with the fast timings.
func New(cli *clientv3.Client, log *slog.Logger) *Cluster {
	return &Cluster{
		Etcd: cli, RT: runtime.NewFake(), Log: log, Agent: FastAgent, Sched: FastScheduler,
		agents: map[string]*proc{}, pubs: map[string]*proc{}, scheds: map[string]*proc{},
		Scheds: map[string]*scheduler.Scheduler{}, Agents: map[string]*agent.Agent{},
	}
}

func start(f func(ctx context.Context)) *proc {
	ctx, cancel := context.WithCancel(context.Background())
	p := &proc{cancel: cancel, done: make(chan struct{})}
	go func() { defer close(p.done); f(ctx) }()
	return p
}

// StartHost starts an agent and a fake publisher on host (an address on
// 127.0.0.0/8). labels nil: every plane.
func (c *Cluster) StartHost(host string, labels map[string]string) {
	c.StartAgent(host, labels)
	c.StartPublisher(host)
}

// StartAgent starts host's agent.
func (c *Cluster) StartAgent(host string, labels map[string]string) {
	if labels == nil {
		labels, _ = agent.ParseLabels(agent.DefaultLabels)
	}
	cfg := c.Agent
	cfg.Host, cfg.Labels = host, labels
	a := agent.New(cfg, c.RT.Host(host), c.Etcd, c.Log.With("host", host), nil)
	c.mu.Lock()
	c.agents[host] = start(func(ctx context.Context) { _ = a.Run(ctx) })
	c.Agents[host] = a
	c.mu.Unlock()
}

// StopAgent stops host's agent as a crash would: its containers live on
// and its lease expires on its own.
func (c *Cluster) StopAgent(host string) {
	c.mu.Lock()
	p := c.agents[host]
	delete(c.agents, host)
	delete(c.Agents, host)
	c.mu.Unlock()
	if p != nil {
		p.stop()
	}
}

// StartPublisher starts host's FAKE publisher: it routes every unit the
// fake runtime runs for an agent on host that is assigned, up and not
// retiring, as the real publisher does for Docker containers.
func (c *Cluster) StartPublisher(host string) {
	p := start(func(ctx context.Context) { c.publish(ctx, host) })
	c.mu.Lock()
	c.pubs[host] = p
	c.mu.Unlock()
}

// StopPublisher stops host's publisher as a crash would: its routes
// expire with its lease.
func (c *Cluster) StopPublisher(host string) {
	c.mu.Lock()
	p := c.pubs[host]
	delete(c.pubs, host)
	c.mu.Unlock()
	if p != nil {
		p.stop()
	}
}

// KillHost stops host's agent and publisher and every container on it.
func (c *Cluster) KillHost(host string) {
	c.StopAgent(host)
	c.StopPublisher(host)
	c.RT.KillHost(host)
}

// StartScheduler starts a scheduler replica named id.
func (c *Cluster) StartScheduler(id string) *scheduler.Scheduler {
	cfg := c.Sched
	cfg.ID = id
	s := scheduler.New(cfg, c.Etcd, c.Log.With("replica", id), nil)
	c.mu.Lock()
	c.scheds[id] = start(func(ctx context.Context) { _ = s.Run(ctx) })
	c.Scheds[id] = s
	c.mu.Unlock()
	return s
}

// StopScheduler stops a replica (it resigns leadership).
func (c *Cluster) StopScheduler(id string) {
	c.mu.Lock()
	p := c.scheds[id]
	delete(c.scheds, id)
	delete(c.Scheds, id)
	c.mu.Unlock()
	if p != nil {
		p.stop()
	}
}

// Close stops everything.
func (c *Cluster) Close() {
	c.mu.Lock()
	var all []*proc
	for _, m := range []map[string]*proc{c.scheds, c.agents, c.pubs} {
		for _, p := range m {
			all = append(all, p)
		}
	}
	c.mu.Unlock()
	for _, p := range all {
		p.stop()
	}
	c.RT.Close()
}

// publish is the fake publisher's loop.
func (c *Cluster) publish(ctx context.Context, host string) {
	var lease clientv3.LeaseID
	mine := map[string]string{}
	for ctx.Err() == nil {
		if lease == 0 {
			g, err := c.Etcd.Grant(ctx, 20) // the real publisher's TTL
			if err == nil {
				lease = g.ID
				mine = map[string]string{}
				ka, err := c.Etcd.KeepAlive(ctx, lease)
				if err == nil {
					go func() {
						for range ka {
						}
					}()
				}
			}
		}
		resp, err := c.Etcd.Txn(ctx).Then(
			clientv3.OpGet(keys.UnitsHostPrefix(host), clientv3.WithPrefix()),
			clientv3.OpGet(keys.StatusHostPrefix(host), clientv3.WithPrefix())).Commit()
		if err == nil && lease != 0 {
			want := map[string]string{}
			specs := map[string]unit.Spec{}
			for _, kv := range resp.Responses[0].GetResponseRange().Kvs {
				_, n, err := keys.ParseUnitKey(keys.UnitsPrefix, string(kv.Key))
				if err != nil {
					continue
				}
				if s, err := unit.ParseSpec(n, kv.Value); err == nil && s.Routed() {
					specs[n.String()] = s
				}
			}
			for _, kv := range resp.Responses[1].GetResponseRange().Kvs {
				_, n, err := keys.ParseUnitKey(keys.StatusPrefix, string(kv.Key))
				if err != nil {
					continue
				}
				var st unit.Status
				spec, ok := specs[n.String()]
				if !ok || json.Unmarshal(kv.Value, &st) != nil || st.State != unit.Up || st.Port == 0 || st.Generation != spec.Generation {
					continue
				}
				if c.answers(host, st.Port) {
					want[keys.Service(n.App, n.String())] = net.JoinHostPort(host, strconv.Itoa(st.Port))
				}
			}
			for k, v := range want {
				if mine[k] != v {
					if _, err := c.Etcd.Put(ctx, k, v, clientv3.WithLease(lease)); err == nil {
						mine[k] = v
					} else if strings.Contains(err.Error(), "requested lease not found") {
						lease = 0
					}
				}
			}
			for k, v := range mine {
				if _, ok := want[k]; !ok {
					// Only our own route, as the real publisher: a moved
					// unit's name may be published by another host now.
					if _, err := c.Etcd.Txn(ctx).If(clientv3.Compare(clientv3.Value(k), "=", v)).Then(clientv3.OpDelete(k)).Commit(); err == nil {
						delete(mine, k)
					}
				}
			}
		}
		select {
		case <-ctx.Done():
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// answers reports whether a fake container listens on host:port.
func (c *Cluster) answers(host string, port int) bool {
	conn, err := net.DialTimeout("tcp", net.JoinHostPort(host, strconv.Itoa(port)), 200*time.Millisecond)
	if err != nil {
		return false
	}
	conn.Close()
	return true
}

// CreateApp makes app exist (its owner key), as apps:create would.
func CreateApp(ctx context.Context, cli *clientv3.Client, app, owner string) error {
	_, err := cli.Put(ctx, keys.AppOwner(app), owner)
	return err
}

// Release writes a new release of app (creating the app) with image and
// procfile, keeping the live config plus extra, and returns its version and
// the revision it landed at.
func Release(ctx context.Context, cli *clientv3.Client, app, image string, procfile, extra map[string]string) (int, int64, error) {
	if err := CreateApp(ctx, cli, app, "tester"); err != nil {
		return 0, 0, err
	}
	for k, v := range extra {
		if _, err := cli.Put(ctx, keys.Config(app, k), v); err != nil {
			return 0, 0, err
		}
	}
	rel, err := release.Write(ctx, cli, app, func(cur *release.Release, config map[string]string) (*release.Release, error) {
		r := &release.Release{Image: image, Procfile: procfile, Config: config, User: "tester", Summary: "tester deployed " + image}
		if cur != nil {
			r.Memory, r.CPU, r.Tags = cur.Memory, cur.CPU, cur.Tags
		}
		return r, nil
	})
	if err != nil {
		return 0, 0, err
	}
	resp, err := cli.Get(ctx, keys.AppCurrentRelease(app))
	if err != nil || len(resp.Kvs) == 0 {
		return 0, 0, fmt.Errorf("read back the release: %v", err)
	}
	return rel.Version, resp.Kvs[0].ModRevision, nil
}

// Scale writes app's scale and returns the revision.
func Scale(ctx context.Context, cli *clientv3.Client, app string, s map[string]int) (int64, error) {
	data, _ := json.Marshal(s)
	resp, err := cli.Put(ctx, keys.AppScale(app), string(data))
	if err != nil {
		return 0, err
	}
	return resp.Header.Revision, nil
}

// Units lists the unit keys of app: unit name → host.
func Units(ctx context.Context, cli *clientv3.Client, app string) (map[string]string, error) {
	resp, err := cli.Get(ctx, keys.UnitsPrefix, clientv3.WithPrefix(), clientv3.WithKeysOnly())
	if err != nil {
		return nil, err
	}
	out := map[string]string{}
	for _, kv := range resp.Kvs {
		h, n, err := keys.ParseUnitKey(keys.UnitsPrefix, string(kv.Key))
		if err == nil && n.App == app {
			out[n.String()] = h
		}
	}
	return out, nil
}

// Routes lists app's route keys: unit name → addr.
func Routes(ctx context.Context, cli *clientv3.Client, app string) (map[string]string, error) {
	resp, err := cli.Get(ctx, keys.ServicePrefixFor(app), clientv3.WithPrefix())
	if err != nil {
		return nil, err
	}
	out := map[string]string{}
	for _, kv := range resp.Kvs {
		if _, n, err := keys.ParseService(string(kv.Key)); err == nil {
			out[n.String()] = string(kv.Value)
		}
	}
	return out, nil
}

// Deploy reads app's deploy record.
func Deploy(ctx context.Context, cli *clientv3.Client, app string) (unit.Deploy, error) {
	var d unit.Deploy
	resp, err := cli.Get(ctx, keys.Deploy(app))
	if err != nil || len(resp.Kvs) == 0 {
		return d, fmt.Errorf("no deploy record for %s (%v)", app, err)
	}
	return d, json.Unmarshal(resp.Kvs[0].Value, &d)
}
