// Package runtime is what the agent needs from a container engine, as one
// small interface: Docker in production (NewDocker), and an in-memory fake
// (NewFake) for the scheduler's scale and chaos tests, where 500 containers
// or a dead host whose containers live on cannot run for real.
package runtime

import (
	"context"
	"errors"
	"time"
)

// ErrNotFound is returned for a container or image that does not exist.
var ErrNotFound = errors.New("not found")

// Container is what the agent knows of one container.
type Container struct {
	ID         string
	Name       string // without Docker's leading "/"
	Labels     map[string]string
	Image      string
	Running    bool
	ExitCode   int
	OOMKilled  bool
	StartedAt  time.Time
	FinishedAt time.Time
	HostPort   int // the host port the routed port is published on; 0 when none
}

// RunSpec describes a container to create.
type RunSpec struct {
	Name      string
	Image     string
	Command   string // run with /bin/sh -c; "" runs the image's own CMD
	Env       []string
	Labels    map[string]string
	Memory    int64  // bytes; 0: no limit
	CPUShares int64  // 0: the engine's default
	Port      int    // container port published on HostIP; 0: none
	HostIP    string // where Port is published
}

// Image is one local build image of an app: named
// [<registry>/]<app>:git-<sha> (keys.BuildImageApp), or labelled
// io.deis.app by an older builder.
type Image struct {
	ID   string
	Refs []string // its repo:tag references that name the app's builds
	App  string
}

// Runtime drives containers. Implementations are safe for concurrent use.
type Runtime interface {
	// List returns every container, running or not, labelled with the
	// given host (io.deis.host).
	List(ctx context.Context, host string) ([]Container, error)
	// Inspect returns one container by ID or name; ErrNotFound if none.
	Inspect(ctx context.Context, idOrName string) (Container, error)
	// EnsureImage pulls image unless it is present and returns its lowest
	// exposed TCP port (0 when it exposes none).
	EnsureImage(ctx context.Context, image string) (exposedPort int, err error)
	// Create makes a container (not started) and returns its ID.
	Create(ctx context.Context, spec RunSpec) (string, error)
	Start(ctx context.Context, id string) error
	// Stop sends SIGTERM, then SIGKILL after timeout.
	Stop(ctx context.Context, id string, timeout time.Duration) error
	Remove(ctx context.Context, id string) error
	// Logs returns the last maxBytes of the container's stdout and stderr,
	// and whether older output was cut.
	Logs(ctx context.Context, id string, maxBytes int) (out string, truncated bool, err error)
	// Watch calls changed with a container ID whenever a container starts,
	// stops or goes away, and resync after every (re)connect. It returns
	// when ctx ends.
	Watch(ctx context.Context, changed func(id string), resync func()) error
	// Images lists the local build images of apps.
	Images(ctx context.Context) ([]Image, error)
	RemoveImage(ctx context.Context, ref string) error
	// Capacity is the host's memory (MB) and CPU count.
	Capacity(ctx context.Context) (memMB int64, cpus int, err error)
}
