package agent

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"strconv"
	"strings"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/deis/dataplane/agent/runtime"
	"github.com/deis/dataplane/pkg/keys"
	"github.com/deis/dataplane/pkg/release"
	"github.com/deis/dataplane/pkg/retry"
	"github.com/deis/dataplane/pkg/unit"
)

// TailBytes is how much of a crashed container's output its status keeps.
const TailBytes = 2048

// worker owns one unit's container on this host.
type worker struct {
	a      *Agent
	name   string
	cname  keys.ContainerName
	cancel context.CancelFunc
	poke   chan struct{}

	// spec is the desired spec (nil: retire); guarded by a.mu.
	spec *unit.Spec

	// Owned by the worker goroutine.
	backoff     *retry.Backoff
	restarts    int
	nextRestart time.Time
	lastStatus  string // JSON last written
	rel         *release.Release
}

func newBackoff(min, max time.Duration) *retry.Backoff { return retry.New(min, max) }

// set hands the worker its desired spec; called with a.mu held.
func (w *worker) set(s *unit.Spec) {
	w.spec = s
	w.wake()
}

func (w *worker) wake() {
	select {
	case w.poke <- struct{}{}:
	default:
	}
}

func (w *worker) desired() *unit.Spec {
	w.a.mu.Lock()
	defer w.a.mu.Unlock()
	return w.spec
}

// run steps the unit until it is retired or ctx ends. Each step looks at the
// container as it is now and moves it one step towards the spec.
func (w *worker) run(ctx context.Context) {
	for {
		next, done := w.step(ctx)
		if done {
			w.a.mu.Lock()
			if w.spec == nil { // no new spec arrived while retiring
				delete(w.a.workers, w.name)
				w.a.mu.Unlock()
				w.a.own("", w.name)
				return
			}
			w.a.mu.Unlock()
			continue
		}
		if next <= 0 {
			// Docker events wake the worker on every change, and a resync
			// after a reconnect wakes them all: the idle look is only a
			// safety net, spread so that 100 units do not inspect at once.
			next = 3*w.a.cfg.Reconcile + time.Duration(rand.Int64N(int64(w.a.cfg.Reconcile)))
		}
		t := time.NewTimer(next)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-w.poke:
		case <-t.C:
		}
		t.Stop()
	}
}

// step returns when to look again, and done once a retired unit is gone.
func (w *worker) step(ctx context.Context) (next time.Duration, done bool) {
	spec := w.desired()
	c, err := w.a.rt.Inspect(ctx, w.name)
	found := err == nil
	if err != nil && !errors.Is(err, runtime.ErrNotFound) {
		w.a.log.Warn("inspect unit container; retrying", "unit", w.name, "err", err)
		return 2 * time.Second, false
	}
	if found {
		w.a.own(c.ID, w.name)
	}
	if spec == nil {
		if found {
			w.retire(ctx, c, true)
		}
		if err := w.a.ann.Delete(ctx, keys.Status(w.a.cfg.Host, w.name)); err != nil && ctx.Err() == nil {
			w.a.log.Warn("delete unit status; will retry", "unit", w.name, "err", err)
			return time.Second, false
		}
		return 0, ctx.Err() == nil
	}
	if found && generationOf(c) != spec.Generation {
		// A restart: the same unit again as a new container.
		w.retire(ctx, c, false)
		found = false
	}
	if !found {
		return w.create(ctx, *spec)
	}
	if !c.Running {
		return w.crashed(ctx, *spec, c)
	}
	if time.Since(c.StartedAt) >= w.a.cfg.ResetAfter {
		w.backoff.Reset()
	}
	w.report(ctx, *spec, unit.Status{State: unit.Up, Container: c.ID, Port: c.HostPort, Restarts: w.restarts, Since: c.StartedAt.UTC()})
	return 0, false
}

// create pulls the image, creates and starts the unit's container.
func (w *worker) create(ctx context.Context, spec unit.Spec) (time.Duration, bool) {
	w.report(ctx, spec, unit.Status{State: unit.Pulling, Since: time.Now().UTC()})
	rel, err := w.a.releaseOf(ctx, spec.App, spec.Version)
	if err != nil {
		return w.fail(ctx, spec, fmt.Errorf("read release v%d: %w", spec.Version, err))
	}
	w.rel = rel
	exposed, err := w.a.rt.EnsureImage(ctx, spec.Image)
	if err != nil {
		return w.fail(ctx, spec, err)
	}
	env := make([]string, 0, len(rel.Config)+1)
	for k, v := range rel.Config {
		if k != "PORT" {
			env = append(env, k+"="+v)
		}
	}
	port := 0
	if spec.Routed() {
		port = spec.Port
		if port == 0 {
			if p, err := strconv.Atoi(rel.Config["PORT"]); err == nil && p > 0 && p < 65536 {
				port = p
			} else if exposed > 0 {
				port = exposed
			} else {
				port = 5000
			}
		}
		env = append(env, "PORT="+strconv.Itoa(port))
	}
	labels := map[string]string{
		keys.LabelApp: spec.App, keys.LabelVersion: "v" + strconv.Itoa(spec.Version),
		keys.LabelType: spec.Type, keys.LabelNum: strconv.Itoa(spec.Num),
		keys.LabelHost: w.a.cfg.Host, keys.LabelGeneration: strconv.Itoa(spec.Generation),
	}
	if port > 0 {
		labels[keys.LabelPort] = strconv.Itoa(port)
	}
	w.report(ctx, spec, unit.Status{State: unit.Starting, Since: time.Now().UTC()})
	id, err := w.a.rt.Create(ctx, runtime.RunSpec{
		Name: w.name, Image: spec.Image, Command: spec.Command, Env: env, Labels: labels,
		Memory: spec.Memory, CPUShares: int64(spec.CPU), Port: port, HostIP: w.a.cfg.Host,
	})
	if err != nil {
		return w.fail(ctx, spec, err)
	}
	w.a.own(id, w.name)
	if err := w.a.rt.Start(ctx, id); err != nil {
		_ = w.a.rt.Remove(context.WithoutCancel(ctx), id)
		return w.fail(ctx, spec, err)
	}
	w.a.m.starts.Inc()
	w.restarts = 0
	w.backoff.Reset()
	w.a.log.Info("unit started", "unit", w.name, "generation", spec.Generation, "image", spec.Image)
	return 100 * time.Millisecond, false // look again soon: it may die at once
}

// fail reports a unit that could not be started and retries later; the
// leader decides whether the deploy fails.
func (w *worker) fail(ctx context.Context, spec unit.Spec, err error) (time.Duration, bool) {
	if ctx.Err() != nil {
		return 0, false
	}
	w.a.m.errors.Inc()
	w.a.log.Warn("unit could not be started; retrying", "unit", w.name, "err", err)
	w.report(ctx, spec, unit.Status{State: unit.Error, Since: time.Now().UTC(), Msg: clip(err.Error(), 500)})
	return w.backoff.Next(), false
}

// crashed handles a container that exited while its unit is assigned:
// report it, then start it again in place once its backoff has passed.
func (w *worker) crashed(ctx context.Context, spec unit.Spec, c runtime.Container) (time.Duration, bool) {
	now := time.Now()
	if w.nextRestart.IsZero() {
		wait := w.backoff.Next()
		w.nextRestart = now.Add(wait)
		tail, _, _ := w.a.rt.Logs(ctx, c.ID, TailBytes)
		msg := "exited with code " + strconv.Itoa(c.ExitCode)
		if c.OOMKilled {
			msg = "killed: out of memory (limit " + strconv.FormatInt(spec.Memory>>20, 10) + "M)"
		}
		w.a.log.Warn("unit crashed; restarting in place", "unit", w.name, "exit", c.ExitCode, "restart_in", wait.Round(time.Millisecond))
		w.report(ctx, spec, unit.Status{State: unit.Crashed, Container: c.ID, Restarts: w.restarts, Exit: c.ExitCode, Since: c.FinishedAt.UTC(), Msg: msg, Tail: clip(tail, TailBytes)})
	}
	if wait := time.Until(w.nextRestart); wait > 0 {
		return wait, false
	}
	w.nextRestart = time.Time{}
	w.restarts++
	w.a.m.restarts.Inc()
	if err := w.a.rt.Start(ctx, c.ID); err != nil {
		return w.fail(ctx, spec, err)
	}
	return 100 * time.Millisecond, false
}

// retire drains and stops the container and removes it. With gone set the
// unit is leaving this host (its status is deleted by the caller);
// otherwise it is being replaced by a new generation.
func (w *worker) retire(ctx context.Context, c runtime.Container, gone bool) {
	// A retiring container finishes retiring even if the agent is asked to
	// stop meanwhile: a half-drained unit would be unrouted but running.
	ctx = context.WithoutCancel(ctx)
	drain, stop := w.a.cfg.Drain, w.a.cfg.StopTimeout
	rel := w.rel
	if rel == nil || rel.Version != w.cname.Version {
		rel, _ = w.a.releaseOf(ctx, w.cname.App, w.cname.Version)
	}
	if rel != nil {
		drain = secondsSetting(rel.Config, "DEIS_DRAIN_SECONDS", drain)
		stop = secondsSetting(rel.Config, "DEIS_STOP_TIMEOUT", stop)
	}
	st := unit.Status{State: unit.Draining, Container: c.ID, Port: c.HostPort, Restarts: w.restarts, Since: time.Now().UTC()}
	if c.Running {
		var ops []clientv3.Op
		routed := w.cname.Routable()
		svc := keys.Service(w.cname.App, w.name)
		// Only the route to this host's container: after a move the same
		// unit name may be routed to its replacement on another host.
		ours := clientv3.Compare(clientv3.Value(svc), "=", net.JoinHostPort(w.a.cfg.Host, strconv.Itoa(c.HostPort)))
		if routed && c.HostPort > 0 {
			ops = append(ops, clientv3.OpTxn([]clientv3.Cmp{ours}, []clientv3.Op{clientv3.OpDelete(svc)}, nil))
		}
		data, _ := json.Marshal(st)
		if err := w.a.ann.PutWith(ctx, keys.Status(w.a.cfg.Host, w.name), string(data), ops...); err != nil {
			w.a.log.Warn("mark unit draining", "unit", w.name, "err", err)
			if routed && c.HostPort > 0 {
				// Without the route deleted the router may still send
				// requests here: try once more, the wait below covers it.
				_, _ = w.a.etcd.Txn(ctx).If(ours).Then(clientv3.OpDelete(svc)).Commit()
			}
		}
		w.lastStatus = string(data)
		if routed {
			time.Sleep(drain) // router watch propagation and requests in flight
		}
		st.State, st.Since = unit.Stopping, time.Now().UTC()
		w.write(ctx, st)
		if err := w.a.rt.Stop(ctx, c.ID, stop); err != nil {
			w.a.log.Warn("stop unit container", "unit", w.name, "err", err)
		}
	}
	if err := w.a.rt.Remove(ctx, c.ID); err != nil {
		w.a.log.Warn("remove unit container", "unit", w.name, "err", err)
	}
	w.a.own("", w.name)
	w.a.m.stops.Inc()
	w.a.log.Info("unit stopped", "unit", w.name, "left_host", gone)
}

// report writes the unit's status when it changed (so an idle agent writes
// nothing but lease keep-alives).
func (w *worker) report(ctx context.Context, spec unit.Spec, st unit.Status) {
	st.Generation = spec.Generation
	w.write(ctx, st)
}

func (w *worker) write(ctx context.Context, st unit.Status) {
	data, _ := json.Marshal(st)
	if string(data) == w.lastStatus {
		return
	}
	w.lastStatus = string(data)
	if err := w.a.ann.Put(ctx, keys.Status(w.a.cfg.Host, w.name), string(data)); err != nil && ctx.Err() == nil {
		w.a.log.Debug("status kept for the next lease", "unit", w.name, "err", err)
	}
}

func generationOf(c runtime.Container) int {
	n, _ := strconv.Atoi(c.Labels[keys.LabelGeneration])
	return n
}

// secondsSetting reads a per-app override in whole seconds.
func secondsSetting(cfg map[string]string, name string, def time.Duration) time.Duration {
	if v, ok := cfg[name]; ok {
		if n, err := strconv.Atoi(strings.TrimSpace(v)); err == nil && n >= 0 && n <= 3600 {
			return time.Duration(n) * time.Second
		}
	}
	return def
}

func clip(s string, n int) string {
	if len(s) > n {
		return s[len(s)-n:]
	}
	return s
}
