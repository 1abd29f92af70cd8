package dockerx_test

import (
	"context"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"sync"
	"testing"
	"time"

	docker "github.com/fsouza/go-dockerclient"

	"github.com/deis/dataplane/pkg/dockerx"
	"github.com/deis/dataplane/pkg/testenv"
)

// recorder keeps what the watcher delivered for one container name.
type recorder struct {
	name    string
	mu      sync.Mutex
	resyncs int
	actions []string
}

func (r *recorder) Resync(context.Context) error {
	r.mu.Lock()
	r.resyncs++
	r.mu.Unlock()
	return nil
}

func (r *recorder) Event(_ context.Context, ev dockerx.Event) {
	if ev.Name != r.name { // other tests share the engine
		return
	}
	r.mu.Lock()
	r.actions = append(r.actions, ev.Action)
	r.mu.Unlock()
}

func (r *recorder) saw(action string) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, a := range r.actions {
		if a == action {
			return true
		}
	}
	return false
}

func TestWatcherDeliversContainerEvents(t *testing.T) {
	t.Parallel()
	cli := testenv.Docker(t)
	name := fmt.Sprintf("dockerx%d_v1.web.1", rand.IntN(1e9))
	rec := &recorder{name: name}
	w := dockerx.NewWatcher(cli, rec, slog.New(slog.DiscardHandler))
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { _ = w.Run(ctx); close(done) }()
	defer func() { cancel(); <-done }()
	testenv.Eventually(t, 10*time.Second, func() bool { return w.Err() == nil }, "watcher never connected: %v", w.Err())
	rec.mu.Lock()
	if rec.resyncs < 1 {
		t.Error("Resync not called before the first events")
	}
	rec.mu.Unlock()

	c := testenv.RunContainer(t, cli, docker.CreateContainerOptions{
		Name:   name,
		Config: &docker.Config{Cmd: []string{"sleep", "30"}},
	})
	testenv.Eventually(t, 10*time.Second, func() bool { return rec.saw("start") }, "no start event for %s", name)
	if err := cli.KillContainer(docker.KillContainerOptions{ID: c.ID}); err != nil {
		t.Fatal(err)
	}
	testenv.Eventually(t, 10*time.Second, func() bool { return rec.saw("die") }, "no die event for %s", name)
}

func TestWatcherReportsUnreachableEngine(t *testing.T) {
	t.Parallel()
	// A real client pointed at a socket nobody listens on: the fault we
	// cannot otherwise cause without stopping the shared engine.
	cli, err := dockerx.Connect("unix://" + t.TempDir() + "/no-docker.sock")
	if err != nil {
		t.Fatal(err)
	}
	w := dockerx.NewWatcher(cli, &recorder{}, slog.New(slog.DiscardHandler))
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	go func() { _ = w.Run(ctx) }()
	testenv.Eventually(t, 2*time.Second, func() bool { return w.Err() != nil }, "Err() nil with no engine")
	<-ctx.Done()
}
