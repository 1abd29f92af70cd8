package runtime

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/deis/dataplane/pkg/keys"
)

// Fake is an in-memory Runtime: a FAKE container engine for the scheduler's
// scale and chaos tests, where hundreds of containers, or a dead host whose
// containers live on, cannot run for real on one machine. A running fake
// container of a routed unit is real enough to be routed to: it listens on
// HostIP with an HTTP server that answers 200 and its name.
type Fake struct {
	// Behave decides what a container does once started; nil: it runs
	// until stopped and serves HTTP when it has a port.
	Behave func(RunSpec) FakeBehaviour
	// FailCreate, when set, may refuse a create (fault injection).
	FailCreate func(RunSpec) error
	MemMB      int64
	CPUs       int

	mu       sync.Mutex
	seq      int
	byID     map[string]*fakeContainer
	byName   map[string]string
	images   map[string]int // present images → exposed port
	watchers map[int]func(string)
	nextW    int
}

// Host returns the engine as seen by host's agent. Container names are
// unique per host rather than per engine, as on real separate hosts: a dead
// host's container and its replacement elsewhere may share a name.
func (f *Fake) Host(host string) Runtime { return &fakeHost{Fake: f, host: host} }

type fakeHost struct {
	*Fake
	host string
}

func (h *fakeHost) Inspect(ctx context.Context, idOrName string) (Container, error) {
	return h.Fake.Inspect(ctx, h.scoped(idOrName))
}

func (h *fakeHost) Create(ctx context.Context, s RunSpec) (string, error) {
	s.Name = h.host + "/" + s.Name
	return h.Fake.Create(ctx, s)
}

func (h *fakeHost) List(ctx context.Context, host string) ([]Container, error) {
	list, err := h.Fake.List(ctx, host)
	for i := range list {
		list[i].Name = strings.TrimPrefix(list[i].Name, h.host+"/")
	}
	return list, err
}

func (h *fakeHost) scoped(idOrName string) string {
	if len(idOrName) == 64 && strings.Trim(idOrName, "0123456789abcdef") == "" {
		return idOrName
	}
	return h.host + "/" + idOrName
}

// FakeBehaviour is how a fake container behaves once started.
type FakeBehaviour struct {
	ExitAfter time.Duration // > 0: exits on its own after this long
	ExitCode  int
	Output    string // what it "printed"
	Status    int    // HTTP status it answers (200 when 0)
	NoListen  bool   // never opens its port
}

type fakeContainer struct {
	Container
	spec   RunSpec
	ln     net.Listener
	srv    *http.Server
	timer  *time.Timer
	output string
}

// NewFake returns an empty fake engine whose images are present as soon as
// they are asked for, except those named in AddMissingImage.
func NewFake() *Fake {
	return &Fake{MemMB: 4096, CPUs: 2, byID: map[string]*fakeContainer{}, byName: map[string]string{}, images: map[string]int{}, watchers: map[int]func(string){}}
}

// missing marks images that "do not exist" in the fake registry.
const missing = -1

// AddMissingImage makes pulls of image fail as a registry would.
func (f *Fake) AddMissingImage(image string) {
	f.mu.Lock()
	f.images[image] = missing
	f.mu.Unlock()
}

func (f *Fake) List(_ context.Context, host string) ([]Container, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []Container
	for _, c := range f.byID {
		if c.Labels[keys.LabelHost] == host {
			out = append(out, c.Container)
		}
	}
	return out, nil
}

// Running counts the running containers of every host.
func (f *Fake) Running() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	n := 0
	for _, c := range f.byID {
		if c.Running {
			n++
		}
	}
	return n
}

func (f *Fake) Inspect(_ context.Context, idOrName string) (Container, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if c := f.get(idOrName); c != nil {
		out := c.Container
		if _, name, ok := strings.Cut(out.Name, "/"); ok {
			out.Name = name
		}
		return out, nil
	}
	return Container{}, fmt.Errorf("container %s: %w", idOrName, ErrNotFound)
}

func (f *Fake) get(idOrName string) *fakeContainer {
	if c, ok := f.byID[idOrName]; ok {
		return c
	}
	return f.byID[f.byName[idOrName]]
}

func (f *Fake) EnsureImage(_ context.Context, image string) (int, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if p, ok := f.images[image]; ok {
		if p == missing {
			return 0, fmt.Errorf("pull image %s: manifest unknown: %w", image, ErrNotFound)
		}
		return p, nil
	}
	f.images[image] = 0
	return 0, nil
}

func (f *Fake) Create(_ context.Context, s RunSpec) (string, error) {
	if f.FailCreate != nil {
		if err := f.FailCreate(s); err != nil {
			return "", err
		}
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if _, ok := f.byName[s.Name]; ok {
		return "", fmt.Errorf("create container %s: the name is already in use", s.Name)
	}
	f.seq++
	id := fmt.Sprintf("%064x", f.seq) // shaped like a Docker ID: never a unit name
	f.byID[id] = &fakeContainer{Container: Container{ID: id, Name: s.Name, Labels: s.Labels, Image: s.Image}, spec: s}
	f.byName[s.Name] = id
	return id, nil
}

func (f *Fake) Start(_ context.Context, id string) error {
	f.mu.Lock()
	c := f.get(id)
	if c == nil {
		f.mu.Unlock()
		return fmt.Errorf("start container %s: %w", id, ErrNotFound)
	}
	if c.Running {
		f.mu.Unlock()
		return nil
	}
	var b FakeBehaviour
	if f.Behave != nil {
		b = f.Behave(c.spec)
	}
	c.Running, c.ExitCode, c.StartedAt = true, 0, time.Now()
	c.output += b.Output
	if c.spec.Port > 0 && !b.NoListen {
		ln, err := net.Listen("tcp", net.JoinHostPort(c.spec.HostIP, "0"))
		if err != nil {
			c.Running = false
			f.mu.Unlock()
			return fmt.Errorf("start container %s: publish port: %w", id, err)
		}
		status := b.Status
		if status == 0 {
			status = http.StatusOK
		}
		name := c.Name
		c.ln, c.HostPort = ln, ln.Addr().(*net.TCPAddr).Port
		c.srv = &http.Server{ReadHeaderTimeout: 5 * time.Second, Handler: http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
			w.WriteHeader(status)
			_, _ = w.Write([]byte(name + "\n"))
		})}
		go func(srv *http.Server, ln net.Listener) { _ = srv.Serve(ln) }(c.srv, ln)
	}
	if b.ExitAfter > 0 {
		code := b.ExitCode
		c.timer = time.AfterFunc(b.ExitAfter, func() { f.exit(id, code) })
	}
	f.mu.Unlock()
	f.notify(id)
	return nil
}

// exit stops a fake container's "process" with code.
func (f *Fake) exit(id string, code int) {
	f.mu.Lock()
	c := f.byID[id]
	if c == nil || !c.Running {
		f.mu.Unlock()
		return
	}
	c.Running, c.ExitCode, c.FinishedAt = false, code, time.Now()
	if c.timer != nil {
		c.timer.Stop()
	}
	srv := c.srv
	c.srv, c.ln, c.HostPort = nil, nil, 0
	f.mu.Unlock()
	if srv != nil {
		_ = srv.Close()
	}
	f.notify(id)
}

// Crash makes a running container exit with code, as a crashing app would.
func (f *Fake) Crash(id string, code int) { f.exit(id, code) }

func (f *Fake) Stop(_ context.Context, id string, _ time.Duration) error {
	f.exit(id, 143)
	return nil
}

func (f *Fake) Remove(_ context.Context, id string) error {
	f.exit(id, 137)
	f.mu.Lock()
	if c := f.get(id); c != nil {
		delete(f.byName, c.Name)
		delete(f.byID, c.ID)
	}
	f.mu.Unlock()
	f.notify(id)
	return nil
}

func (f *Fake) Logs(_ context.Context, id string, maxBytes int) (string, bool, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	c := f.get(id)
	if c == nil {
		return "", false, fmt.Errorf("logs of container %s: %w", id, ErrNotFound)
	}
	if len(c.output) > maxBytes {
		return c.output[len(c.output)-maxBytes:], true, nil
	}
	return c.output, false, nil
}

func (f *Fake) Watch(ctx context.Context, changed func(string), resync func()) error {
	f.mu.Lock()
	f.nextW++
	n := f.nextW
	f.watchers[n] = changed
	f.mu.Unlock()
	resync()
	<-ctx.Done()
	f.mu.Lock()
	delete(f.watchers, n)
	f.mu.Unlock()
	return ctx.Err()
}

func (f *Fake) notify(id string) {
	f.mu.Lock()
	ws := make([]func(string), 0, len(f.watchers))
	for _, w := range f.watchers {
		ws = append(ws, w)
	}
	f.mu.Unlock()
	for _, w := range ws {
		w(id)
	}
}

func (f *Fake) Images(context.Context) ([]Image, error) { return nil, nil }

func (f *Fake) RemoveImage(_ context.Context, ref string) error {
	return fmt.Errorf("remove image %s: %w", ref, errors.ErrUnsupported)
}

func (f *Fake) Capacity(context.Context) (int64, int, error) { return f.MemMB, f.CPUs, nil }

// KillHost stops every container of host at once, as a host that lost power.
func (f *Fake) KillHost(host string) {
	f.mu.Lock()
	var ids []string
	for id, c := range f.byID {
		if c.Labels[keys.LabelHost] == host {
			ids = append(ids, id)
		}
	}
	f.mu.Unlock()
	for _, id := range ids {
		f.exit(id, 137)
	}
}

// Close stops every fake container's listener.
func (f *Fake) Close() {
	f.mu.Lock()
	ids := make([]string, 0, len(f.byID))
	for id := range f.byID {
		ids = append(ids, id)
	}
	f.mu.Unlock()
	for _, id := range ids {
		f.exit(id, 137)
	}
}

var _ Runtime = (*Fake)(nil)
var _ Runtime = (*Docker)(nil)
