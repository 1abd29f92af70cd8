package scheduler

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/deis/dataplane/pkg/keys"
	"github.com/deis/dataplane/pkg/release"
	"github.com/deis/dataplane/pkg/unit"
)

// RunTimeout bounds a `deis run` command (20 min).
const RunTimeout = 20 * time.Minute

// MaxRunsPerApp bounds an app's one-off commands running at once, so one
// tenant's runs cannot fill the hosts.
const MaxRunsPerApp = 10

// ErrTooManyRuns is returned by RunOnce when the app is at MaxRunsPerApp.
var ErrTooManyRuns = errors.New("too many runs")

// RunOnce runs command once with app's release rel, on a host chosen like
// any unit (dataPlane hosts when placement options are on, the release's
// tags apply), and returns its exit code and output. The run unit lives on
// lease (the calling replica's): if ctx ends first, or the replica dies,
// the key goes and the agent kills the container.
func RunOnce(ctx context.Context, cli *clientv3.Client, lease clientv3.LeaseID, app string, rel *release.Release, command string) (unit.RunResult, error) {
	if rel.Image == "" {
		return unit.RunResult{}, errors.New("the release has no image yet: push the app first")
	}
	st, err := readState(ctx, cli)
	if err != nil {
		return unit.RunResult{}, err
	}
	h, err := place((&planner{hostAddr: map[string]string{}}).loads(st), need{app: app, typ: unit.TypeRun, tags: rel.Tags, dataPlane: st.placementOptions})
	if err != nil {
		return unit.RunResult{}, fmt.Errorf("no host to run on: %w", err)
	}
	ctx, cancel := context.WithTimeout(ctx, RunTimeout)
	defer cancel()
	var key string
	for attempt := 0; attempt < 20 && key == ""; attempt++ {
		existing, err := cli.Get(ctx, keys.RunsAppPrefix(app), clientv3.WithPrefix(), clientv3.WithKeysOnly())
		if err != nil {
			return unit.RunResult{}, fmt.Errorf("list runs of %s: %w", app, err)
		}
		running := 0
		for _, kv := range existing.Kvs {
			if !strings.HasSuffix(string(kv.Key), "/result") {
				running++
			}
		}
		if running >= MaxRunsPerApp {
			return unit.RunResult{}, fmt.Errorf("%s already has %d commands running (at most %d at once): wait for one to end: %w", app, running, MaxRunsPerApp, ErrTooManyRuns)
		}
		// Never reuse a number soon: an agent may still be cleaning up the
		// previous run of that name. The store's revision only grows.
		k := int(existing.Header.Revision%999_999_999) + 1
		for _, kv := range existing.Kvs {
			rest := strings.TrimPrefix(string(kv.Key), keys.RunsAppPrefix(app))
			if c, err := keys.ParseContainerName(strings.SplitN(rest, "/", 2)[0]); err == nil && c.Num >= k {
				k = c.Num + 1
			}
		}
		spec := unit.Run{Spec: unit.Spec{App: app, Version: rel.Version, Type: unit.TypeRun, Num: k, Image: rel.Image, Command: command}, Host: h.name, Lease: int64(lease)}
		data, _ := json.Marshal(spec)
		try := keys.RunUnit(app, spec.Name().String())
		resp, err := cli.Txn(ctx).If(clientv3.Compare(clientv3.CreateRevision(try), "=", 0)).
			Then(clientv3.OpPut(try, string(data), clientv3.WithLease(lease))).Commit()
		if err != nil {
			return unit.RunResult{}, fmt.Errorf("place the run: %w", err)
		}
		if resp.Succeeded {
			key = try
		}
	}
	if key == "" {
		return unit.RunResult{}, errors.New("place the run: too many runs started at once; try again")
	}
	defer func() {
		// Done, failed or abandoned: the key goes, and with it the container.
		dctx, c := context.WithTimeout(context.WithoutCancel(ctx), 3*time.Second)
		defer c()
		_, _ = cli.Delete(dctx, key, clientv3.WithPrefix())
	}()
	resultKey := key + "/result"
	for {
		resp, err := cli.Get(ctx, resultKey)
		if err != nil {
			return unit.RunResult{}, fmt.Errorf("read the run's result: %w", err)
		}
		if len(resp.Kvs) > 0 {
			var r unit.RunResult
			if err := json.Unmarshal(resp.Kvs[0].Value, &r); err != nil {
				return r, fmt.Errorf("the run's result: %w", err)
			}
			return r, nil
		}
		wctx, wcancel := context.WithCancel(ctx)
		wc := cli.Watch(wctx, resultKey, clientv3.WithRev(resp.Header.Revision+1))
		select {
		case <-ctx.Done():
		case <-wc:
		}
		wcancel()
		if ctx.Err() != nil {
			if errors.Is(ctx.Err(), context.DeadlineExceeded) {
				return unit.RunResult{}, fmt.Errorf("the command ran longer than %s and was killed", RunTimeout)
			}
			return unit.RunResult{}, ctx.Err()
		}
	}
}
