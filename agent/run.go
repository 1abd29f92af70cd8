package agent

import (
	"context"
	"encoding/json"
	"errors"
	"strconv"
	"strings"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/deis/dataplane/agent/runtime"
	"github.com/deis/dataplane/pkg/etcdwatch"
	"github.com/deis/dataplane/pkg/keys"
	"github.com/deis/dataplane/pkg/unit"
)

// RunTimeout is the longest a one-off run may take (20 min).
const RunTimeout = 20 * time.Minute

// errAbandoned cancels a run whose key went away.
var errAbandoned = errors.New("the run's client left")

// runLoop starts the one-off runs assigned to this host and kills those
// whose key went away (the client left, or its replica died).
func (a *Agent) runLoop(ctx context.Context) {
	t := time.NewTicker(a.cfg.Reconcile)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case snap := <-a.runs.Updates():
			a.reconcileRuns(ctx, snap)
		case <-a.runDone:
			// A run ended: one of the same name may be waiting for it.
			if snap := a.runs.Snapshot(); snap != nil {
				a.reconcileRuns(ctx, snap)
			}
		case <-t.C:
			if snap := a.runs.Snapshot(); snap != nil {
				a.reconcileRuns(ctx, snap)
			}
		}
	}
}

func (a *Agent) reconcileRuns(ctx context.Context, snap *etcdwatch.Snapshot) {
	want := map[string]unit.Run{}
	for k, v := range snap.KVs {
		if strings.HasSuffix(k, "/result") {
			continue
		}
		var r unit.Run
		if err := json.Unmarshal([]byte(v), &r); err != nil || r.Host != a.cfg.Host {
			continue
		}
		name := r.Name().String()
		if r.Type != unit.TypeRun || k != keys.RunUnit(r.App, name) {
			a.logBadSpec(k, v, errors.New("not a run unit of its app"))
			continue
		}
		if _, done := snap.KVs[k+"/result"]; done {
			continue
		}
		want[name] = r
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	for name, r := range want {
		if a.running[name] == nil {
			rctx, cancel := context.WithCancelCause(ctx)
			a.running[name] = func() { cancel(errAbandoned) }
			a.wg.Go(func() {
				defer func() {
					a.mu.Lock()
					delete(a.running, name)
					a.mu.Unlock()
					select {
					case a.runDone <- struct{}{}:
					default:
					}
				}()
				a.run(rctx, r)
			})
		}
	}
	for name, cancel := range a.running {
		if _, ok := want[name]; !ok {
			cancel() // the requester left: kill it
		}
	}
}

// run executes one run unit and writes its result on the requester's lease.
func (a *Agent) run(ctx context.Context, r unit.Run) {
	name := r.Name().String()
	log := a.log.With("run", name)
	result := unit.RunResult{RC: -1}
	id, err := a.startRun(ctx, r)
	if err != nil {
		result.Output = "deis run: " + err.Error() + "\n"
		a.writeResult(ctx, r, result)
		return
	}
	cleanup := context.WithoutCancel(ctx)
	defer func() {
		if err := a.rt.Remove(cleanup, id); err != nil {
			log.Warn("remove run container", "err", err)
		}
	}()
	deadline := time.Now().Add(RunTimeout)
	t := time.NewTicker(250 * time.Millisecond)
	defer t.Stop()
	for {
		c, err := a.rt.Inspect(cleanup, id)
		if err == nil && !c.Running && !c.FinishedAt.IsZero() {
			result.RC = c.ExitCode
			break
		}
		if time.Now().After(deadline) {
			_ = a.rt.Stop(cleanup, id, time.Second)
			result.RC = 124
			break
		}
		select {
		case <-ctx.Done():
			_ = a.rt.Stop(cleanup, id, time.Second)
			if errors.Is(context.Cause(ctx), errAbandoned) {
				log.Info("run abandoned by its client; killed it")
				return
			}
			result.RC = 137
			result.Output = "deis run: the agent on " + a.cfg.Host + " stopped during the run; it was killed\n"
			a.writeResult(ctx, r, result)
			return
		case <-t.C:
		}
	}
	result.Output, result.Truncated, _ = a.rt.Logs(cleanup, id, unit.MaxRunOutput)
	a.writeResult(ctx, r, result)
	log.Info("run finished", "rc", result.RC, "bytes", len(result.Output))
}

func (a *Agent) startRun(ctx context.Context, r unit.Run) (string, error) {
	rel, err := a.releaseOf(ctx, r.App, r.Version)
	if err != nil {
		return "", err
	}
	if _, err := a.rt.EnsureImage(ctx, r.Image); err != nil {
		return "", err
	}
	env := make([]string, 0, len(rel.Config))
	for k, v := range rel.Config {
		env = append(env, k+"="+v)
	}
	labels := map[string]string{
		keys.LabelApp: r.App, keys.LabelVersion: "v" + strconv.Itoa(r.Version), keys.LabelType: unit.TypeRun,
		keys.LabelNum: strconv.Itoa(r.Num), keys.LabelHost: a.cfg.Host,
	}
	name := r.Name().String()
	// A container of the same name left by an agent that died mid-run.
	if old, err := a.rt.Inspect(ctx, name); err == nil {
		_ = a.rt.Remove(ctx, old.ID)
	}
	// Create and start are not cut short by the client leaving: the engine
	// may have made the container already, and an error then would leave
	// it behind. The caller's loop kills it if the client is gone.
	dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Minute)
	defer cancel()
	id, err := a.rt.Create(dctx, runtime.RunSpec{Name: name, Image: r.Image, Command: r.Command, Env: env, Labels: labels})
	if err != nil {
		return "", err
	}
	if err := a.rt.Start(dctx, id); err != nil {
		_ = a.rt.Remove(dctx, id)
		return "", err
	}
	return id, nil
}

func (a *Agent) writeResult(ctx context.Context, r unit.Run, res unit.RunResult) {
	data, _ := json.Marshal(res)
	wctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	key := keys.RunResult(r.App, r.Name().String())
	// Only while the run key exists: a result after the client left would
	// linger with nobody to read it.
	_, err := a.etcd.Txn(wctx).If(clientv3.Compare(clientv3.CreateRevision(keys.RunUnit(r.App, r.Name().String())), ">", 0)).
		Then(clientv3.OpPut(key, string(data), clientv3.WithLease(clientv3.LeaseID(r.Lease)))).Commit()
	if err != nil {
		a.log.Warn("write run result", "run", r.Name().String(), "err", err)
	}
}
