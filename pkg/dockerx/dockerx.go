// Package dockerx wraps fsouza/go-dockerclient with what the host daemons
// (publisher, logspout, builder, agent) need: an event stream that
// reconnects by itself and asks for a full resync after every (re)connect,
// since events may have been missed while the stream was down.
package dockerx

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"strings"
	"sync/atomic"
	"time"

	docker "github.com/fsouza/go-dockerclient"

	"github.com/deis/dataplane/pkg/retry"
)

// MaxAPIVersion is the newest Engine API version the client asks for:
// the newest its types are known to match. An engine that speaks less is
// asked for its own version.
const MaxAPIVersion = "1.51"

// Connect returns a client for endpoint (unix://, tcp://) speaking the API
// version negotiated with the engine: $DOCKER_API_VERSION when set (as the
// docker CLI does), else the lower of the engine's version and
// MaxAPIVersion. Engines drop old versions (Engine 29 refuses anything
// before 1.44), so no version is pinned. It does not wait for the engine:
// daemons start while Docker is down and report it in health; an engine
// that does not answer within a few seconds gets unversioned requests,
// which every engine serves at its own version.
func Connect(endpoint string) (*docker.Client, error) {
	cli, _, err := Negotiate(endpoint)
	return cli, err
}

// Negotiate is Connect, and also returns the version chosen ("" when the
// engine did not answer and requests go unversioned).
func Negotiate(endpoint string) (*docker.Client, string, error) {
	if v := strings.TrimSpace(os.Getenv("DOCKER_API_VERSION")); v != "" {
		cli, err := docker.NewVersionedClient(endpoint, v)
		if err != nil {
			return nil, "", fmt.Errorf("docker client for %s with DOCKER_API_VERSION=%q: %w", endpoint, v, err)
		}
		return cli, v, nil
	}
	probe, err := docker.NewClient(endpoint)
	if err != nil {
		return nil, "", fmt.Errorf("docker client for %s: %w", endpoint, err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	env, err := probe.VersionWithContext(ctx)
	cancel()
	if err != nil {
		return probe, "", nil
	}
	version := MaxAPIVersion
	if server, err := docker.NewAPIVersion(env.Get("ApiVersion")); err == nil {
		if max, _ := docker.NewAPIVersion(MaxAPIVersion); server.LessThan(max) {
			version = server.String()
		}
	}
	cli, err := docker.NewVersionedClient(endpoint, version)
	if err != nil {
		return nil, "", fmt.Errorf("docker client for %s: %w", endpoint, err)
	}
	return cli, version, nil
}

// Event is one container event of interest.
type Event struct {
	Action string // start, die, stop, kill, pause, unpause, destroy, oom, restart, ...
	ID     string // container id
	Name   string // container name without the leading "/" (may be empty)
	Labels map[string]string
	Time   time.Time
}

// Handler receives the stream. Resync is called after every (re)connect,
// before any event of that connection; Event for each container event.
// Both run on the Watch goroutine, in order.
type Handler interface {
	Resync(ctx context.Context) error
	Event(ctx context.Context, ev Event)
}

// Watcher follows container events. Create with NewWatcher and Run it.
type Watcher struct {
	cli        *docker.Client
	h          Handler
	log        *slog.Logger
	reconnects atomic.Int64
	connected  atomic.Bool
	lastErr    atomic.Pointer[error]
}

// NewWatcher returns a watcher delivering to h.
func NewWatcher(cli *docker.Client, h Handler, log *slog.Logger) *Watcher {
	if log == nil {
		log = slog.Default()
	}
	return &Watcher{cli: cli, h: h, log: log}
}

// Reconnects is how many times the stream had to be reopened.
func (w *Watcher) Reconnects() int64 { return w.reconnects.Load() }

// Err is why the stream is currently down, or nil while connected.
func (w *Watcher) Err() error {
	if w.connected.Load() {
		return nil
	}
	if p := w.lastErr.Load(); p != nil {
		return *p
	}
	return fmt.Errorf("docker event stream not connected yet")
}

// Run follows events until ctx ends, reconnecting with backoff (100ms to
// 2s). It returns ctx's error.
func (w *Watcher) Run(ctx context.Context) error {
	backoff := retry.New(100*time.Millisecond, 2*time.Second)
	first := true
	for {
		err := w.streamOnce(ctx)
		w.connected.Store(false)
		if ctx.Err() != nil {
			return ctx.Err()
		}
		w.lastErr.Store(&err)
		if !first {
			w.reconnects.Add(1)
		}
		first = false
		wait := backoff.Next()
		w.log.Warn("docker event stream down; reconnecting", "err", err, "retry_in", wait)
		if !retry.Sleep(ctx, wait) {
			return ctx.Err()
		}
	}
}

func (w *Watcher) streamOnce(ctx context.Context) error {
	pctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	err := w.cli.PingWithContext(pctx)
	cancel()
	if err != nil {
		return fmt.Errorf("docker ping: %w", err)
	}
	sctx, stop := context.WithCancel(ctx)
	defer stop()
	events, err := streamEvents(sctx, w.cli.Endpoint())
	if err != nil {
		return fmt.Errorf("docker events: %w", err)
	}
	// Resync after subscribing, so nothing between the two is missed.
	if err := w.h.Resync(ctx); err != nil {
		return fmt.Errorf("resync after connect: %w", err)
	}
	w.connected.Store(true)
	// A periodic ping notices an engine that hangs without closing the
	// stream, so we can resync once it answers again.
	ping := time.NewTicker(2 * time.Second)
	defer ping.Stop()
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-ping.C:
			pctx, cancel := context.WithTimeout(ctx, 2*time.Second)
			err := w.cli.PingWithContext(pctx)
			cancel()
			if err != nil {
				return fmt.Errorf("docker ping: %w", err)
			}
		case ev, ok := <-events:
			if !ok {
				return fmt.Errorf("docker event stream closed")
			}
			if ev.Type != "container" && ev.Type != "" {
				continue
			}
			id := ev.Actor.ID
			if id == "" {
				id = ev.ID
			}
			action := ev.Action
			if action == "" {
				action = ev.Status
			}
			w.h.Event(ctx, Event{
				Action: action, ID: id, Name: ev.Actor.Attributes["name"],
				Labels: ev.Actor.Attributes, Time: time.Unix(0, ev.TimeNano),
			})
		}
	}
}

// streamEvents follows the engine's /events stream of container events at
// endpoint (unix:// or tcp://) until ctx ends or the stream breaks, when
// the channel is closed. It reads the stream itself rather than through
// go-dockerclient's event monitor, which is shared by every user of a
// client, reconnects on its own without telling, and races when
// re-enabled.
func streamEvents(ctx context.Context, endpoint string) (<-chan docker.APIEvents, error) {
	u, err := url.Parse(endpoint)
	if err != nil {
		return nil, fmt.Errorf("docker endpoint %q: %w", endpoint, err)
	}
	base, dial := "http://"+u.Host, (&net.Dialer{}).DialContext
	if u.Scheme == "unix" {
		base = "http://docker"
		dial = func(ctx context.Context, _, _ string) (net.Conn, error) {
			return (&net.Dialer{}).DialContext(ctx, "unix", u.Path)
		}
	}
	client := &http.Client{Transport: &http.Transport{DialContext: dial}}
	filters := url.QueryEscape(`{"type":["container"]}`)
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, base+"/events?filters="+filters, nil)
	if err != nil {
		return nil, err
	}
	resp, err := client.Do(req)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusOK {
		body, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
		resp.Body.Close()
		return nil, fmt.Errorf("GET /events: %s: %s", resp.Status, strings.TrimSpace(string(body)))
	}
	out := make(chan docker.APIEvents, 256)
	go func() {
		defer close(out)
		defer resp.Body.Close()
		dec := json.NewDecoder(resp.Body)
		for {
			var ev docker.APIEvents
			if err := dec.Decode(&ev); err != nil {
				return
			}
			select {
			case out <- ev:
			case <-ctx.Done():
				return
			}
		}
	}()
	return out, nil
}
