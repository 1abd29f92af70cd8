package runtime

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"sort"
	"strconv"
	"strings"
	"time"

	docker "github.com/fsouza/go-dockerclient"

	"github.com/deis/dataplane/pkg/dockerx"
	"github.com/deis/dataplane/pkg/keys"
)

// PullTimeout bounds one image pull (../shared/CONTROL-PLANE.md: 20 min).
const PullTimeout = 20 * time.Minute

// Docker is the Runtime of a real Docker engine.
type Docker struct {
	cli *docker.Client
	log *slog.Logger
}

// NewDocker returns a Runtime over cli.
func NewDocker(cli *docker.Client, log *slog.Logger) *Docker {
	return &Docker{cli: cli, log: log}
}

func (d *Docker) List(ctx context.Context, host string) ([]Container, error) {
	list, err := d.cli.ListContainers(docker.ListContainersOptions{
		All: true, Context: ctx,
		Filters: map[string][]string{"label": {keys.LabelHost + "=" + host}},
	})
	if err != nil {
		return nil, fmt.Errorf("list containers of host %s: %w", host, err)
	}
	out := make([]Container, 0, len(list))
	for _, c := range list {
		// The list is cheap but lacks exit codes and times: inspect each
		// one that is not running (few), trust the list for the rest.
		if c.State != "running" {
			full, err := d.Inspect(ctx, c.ID)
			if err == nil {
				out = append(out, full)
			}
			continue
		}
		name := ""
		if len(c.Names) > 0 {
			name = strings.TrimPrefix(c.Names[0], "/")
		}
		hp := 0
		for _, p := range c.Ports {
			if p.Type == "tcp" && p.PublicPort != 0 {
				hp = int(p.PublicPort)
				break
			}
		}
		out = append(out, Container{ID: c.ID, Name: name, Labels: c.Labels, Image: c.Image, Running: true, StartedAt: time.Unix(c.Created, 0), HostPort: hp})
	}
	return out, nil
}

func (d *Docker) Inspect(ctx context.Context, idOrName string) (Container, error) {
	info, err := d.cli.InspectContainerWithOptions(docker.InspectContainerOptions{ID: idOrName, Context: ctx})
	if err != nil {
		var nf *docker.NoSuchContainer
		if errors.As(err, &nf) {
			return Container{}, fmt.Errorf("container %s: %w", idOrName, ErrNotFound)
		}
		return Container{}, fmt.Errorf("inspect container %s: %w", idOrName, err)
	}
	c := Container{
		ID: info.ID, Name: strings.TrimPrefix(info.Name, "/"), Image: info.Config.Image,
		Running: info.State.Running && !info.State.Paused, ExitCode: info.State.ExitCode, OOMKilled: info.State.OOMKilled,
		StartedAt: info.State.StartedAt, FinishedAt: info.State.FinishedAt,
	}
	if info.Config != nil {
		c.Labels = info.Config.Labels
	}
	if info.NetworkSettings != nil {
		for p, bs := range info.NetworkSettings.Ports {
			if p.Proto() == "tcp" && len(bs) > 0 {
				c.HostPort, _ = strconv.Atoi(bs[0].HostPort)
			}
		}
	}
	return c, nil
}

func (d *Docker) EnsureImage(ctx context.Context, image string) (int, error) {
	img, err := d.cli.InspectImage(image)
	if errors.Is(err, docker.ErrNoSuchImage) {
		repo, tag := docker.ParseRepositoryTag(image)
		if tag == "" {
			tag = "latest"
		}
		pctx, cancel := context.WithTimeout(ctx, PullTimeout)
		defer cancel()
		var out bytes.Buffer
		if err := d.cli.PullImage(docker.PullImageOptions{Repository: repo, Tag: tag, Context: pctx, OutputStream: &out, InactivityTimeout: time.Minute}, docker.AuthConfiguration{}); err != nil {
			return 0, fmt.Errorf("pull image %s: %w", image, err)
		}
		img, err = d.cli.InspectImage(image)
	}
	if err != nil {
		return 0, fmt.Errorf("image %s: %w", image, err)
	}
	if img.Config == nil {
		return 0, nil
	}
	var ports []int
	for p := range img.Config.ExposedPorts {
		if p.Proto() == "tcp" {
			if n, err := strconv.Atoi(p.Port()); err == nil {
				ports = append(ports, n)
			}
		}
	}
	sort.Ints(ports)
	if len(ports) == 0 {
		return 0, nil
	}
	return ports[0], nil
}

func (d *Docker) Create(ctx context.Context, s RunSpec) (string, error) {
	cfg := &docker.Config{Image: s.Image, Env: s.Env, Labels: s.Labels}
	if s.Command != "" {
		cfg.Cmd = []string{"/bin/sh", "-c", s.Command}
	}
	hc := &docker.HostConfig{Memory: s.Memory, CPUShares: s.CPUShares}
	if s.Port > 0 {
		p := docker.Port(strconv.Itoa(s.Port) + "/tcp")
		cfg.ExposedPorts = map[docker.Port]struct{}{p: {}}
		hc.PortBindings = map[docker.Port][]docker.PortBinding{p: {{HostIP: s.HostIP, HostPort: "0"}}}
	}
	if s.Memory > 0 {
		hc.MemorySwap = s.Memory // no swap beyond the limit
	}
	c, err := d.cli.CreateContainer(docker.CreateContainerOptions{Name: s.Name, Config: cfg, HostConfig: hc, Context: ctx})
	if err != nil {
		return "", fmt.Errorf("create container %s from %s: %w", s.Name, s.Image, err)
	}
	return c.ID, nil
}

func (d *Docker) Start(ctx context.Context, id string) error {
	err := d.cli.StartContainerWithContext(id, nil, ctx)
	var already *docker.ContainerAlreadyRunning
	if err != nil && !errors.As(err, &already) {
		return fmt.Errorf("start container %s: %w", id, err)
	}
	return nil
}

func (d *Docker) Stop(ctx context.Context, id string, timeout time.Duration) error {
	secs := uint(timeout / time.Second)
	err := d.cli.StopContainerWithContext(id, secs, ctx)
	var notRunning *docker.ContainerNotRunning
	var nf *docker.NoSuchContainer
	if err != nil && !errors.As(err, &notRunning) && !errors.As(err, &nf) {
		return fmt.Errorf("stop container %s: %w", id, err)
	}
	return nil
}

func (d *Docker) Remove(ctx context.Context, id string) error {
	err := d.cli.RemoveContainer(docker.RemoveContainerOptions{ID: id, Force: true, RemoveVolumes: true, Context: ctx})
	var nf *docker.NoSuchContainer
	if err != nil && !errors.As(err, &nf) {
		return fmt.Errorf("remove container %s: %w", id, err)
	}
	return nil
}

func (d *Docker) Logs(ctx context.Context, id string, maxBytes int) (string, bool, error) {
	w := &tailBuffer{max: maxBytes}
	err := d.cli.Logs(docker.LogsOptions{Context: ctx, Container: id, OutputStream: w, ErrorStream: w, Stdout: true, Stderr: true, RawTerminal: false})
	if err != nil {
		return "", false, fmt.Errorf("logs of container %s: %w", id, err)
	}
	return w.String(), w.cut, nil
}

// tailBuffer keeps the last max bytes written to it.
type tailBuffer struct {
	buf []byte
	max int
	cut bool
}

func (t *tailBuffer) Write(p []byte) (int, error) {
	t.buf = append(t.buf, p...)
	if over := len(t.buf) - t.max; over > 0 {
		t.buf = append(t.buf[:0], t.buf[over:]...)
		t.cut = true
	}
	return len(p), nil
}

func (t *tailBuffer) String() string { return string(t.buf) }

var _ io.Writer = (*tailBuffer)(nil)

func (d *Docker) Watch(ctx context.Context, changed func(id string), resync func()) error {
	w := dockerx.NewWatcher(d.cli, watchHandler{changed: changed, resync: resync}, d.log)
	return w.Run(ctx)
}

type watchHandler struct {
	changed func(string)
	resync  func()
}

func (h watchHandler) Resync(context.Context) error { h.resync(); return nil }
func (h watchHandler) Event(_ context.Context, ev dockerx.Event) {
	switch ev.Action {
	case "start", "die", "stop", "kill", "destroy", "oom", "restart", "pause", "unpause":
		h.changed(ev.ID)
	}
}

func (d *Docker) Images(ctx context.Context) ([]Image, error) {
	list, err := d.cli.ListImages(docker.ListImagesOptions{Context: ctx})
	if err != nil {
		return nil, fmt.Errorf("list images: %w", err)
	}
	var out []Image
	for _, img := range list {
		if app := img.Labels[keys.LabelApp]; app != "" { // built before builds were known by name
			out = append(out, Image{ID: img.ID, Refs: img.RepoTags, App: app})
			continue
		}
		var app string
		var refs []string
		for _, ref := range img.RepoTags {
			if a := keys.BuildImageApp(ref); a != "" && (app == "" || a == app) {
				app, refs = a, append(refs, ref)
			}
		}
		if app != "" {
			out = append(out, Image{ID: img.ID, Refs: refs, App: app})
		}
	}
	return out, nil
}

func (d *Docker) RemoveImage(ctx context.Context, ref string) error {
	if err := d.cli.RemoveImageExtended(ref, docker.RemoveImageOptions{Context: ctx}); err != nil {
		return fmt.Errorf("remove image %s: %w", ref, err)
	}
	return nil
}

func (d *Docker) Capacity(context.Context) (int64, int, error) {
	info, err := d.cli.Info()
	if err != nil {
		return 0, 0, fmt.Errorf("docker info: %w", err)
	}
	return info.MemTotal >> 20, info.NCPU, nil
}
