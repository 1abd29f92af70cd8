package builder

import (
	"archive/tar"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	docker "github.com/fsouza/go-dockerclient"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/deis/dataplane/pkg/events"
	"github.com/deis/dataplane/pkg/keys"
	"github.com/deis/dataplane/pkg/release"
)

// Release is /deis/apps/<app>/releases/v<N>.
type Release = release.Release

// push is one git-receive-pack in progress.
type push struct {
	b                      *Builder
	app, user, repo, token string
	ctx                    context.Context
	failed                 atomic.Bool
	hooked                 atomic.Bool // the pre-receive hook ran: the pack has arrived
}

const zeroSHA = "0000000000000000000000000000000000000000"

// onHook handles the pre-receive hook: builds a push to master and
// releases it. It returns the hook's exit status: non-zero declines the
// push.
func (p *push) onHook(req *hookRequest, out io.Writer) int {
	p.hooked.Store(true)
	var sha string
	for _, line := range req.Refs {
		f := strings.Fields(line)
		if len(f) != 3 {
			continue
		}
		switch {
		case f[2] != "refs/heads/master":
			fmt.Fprintf(out, "-----> %s stored; only master is built and released\n", f[2])
		case f[1] == zeroSHA:
			fmt.Fprintln(out, "!      deleting master is not allowed: it is what the app runs")
			p.fail("bad_ref")
			return 1
		default:
			sha = f[1]
		}
	}
	if sha == "" {
		p.b.m.pushes.WithLabelValues("stored").Inc()
		return 0
	}
	start := time.Now()
	kind, version, err := p.build(req, sha, out)
	if err != nil {
		if causeOf(err) == "deploy" {
			fmt.Fprintf(out, "\n!      push failed: %v\n", err)
		} else {
			fmt.Fprintf(out, "\n!      build failed: %v\n", err)
		}
		if kerr := p.keepObjects(req, sha); kerr != nil {
			p.b.log.Warn("could not keep the objects of a failed push", "app", p.app, "err", kerr)
		}
		p.fail(causeOf(err))
		p.b.log.Info("push failed", "app", p.app, "user", p.user, "sha", sha, "err", err)
		return 1
	}
	p.b.m.duration.WithLabelValues(kind).Observe(time.Since(start).Seconds())
	p.b.m.pushes.WithLabelValues("released").Inc()
	p.b.log.Info("released", "app", p.app, "user", p.user, "sha", sha, "version", version, "took", time.Since(start).Round(time.Millisecond))
	return 0
}

func (p *push) fail(cause string) {
	p.failed.Store(true)
	p.b.m.pushes.WithLabelValues("failed").Inc()
	p.b.m.failures.WithLabelValues(cause).Inc()
}

// stepError names the step of a build that failed, for metrics.
type stepError struct {
	step string
	err  error
}

func (e *stepError) Error() string { return e.err.Error() }
func (e *stepError) Unwrap() error { return e.err }

func step(name string, err error) error {
	if err == nil {
		return nil
	}
	return &stepError{step: name, err: err}
}

func causeOf(err error) string {
	var se *stepError
	if errors.As(err, &se) {
		return se.step
	}
	return "other"
}

// git runs a git command against the pushed (still quarantined) objects.
func (p *push) git(req *hookRequest, args ...string) *exec.Cmd {
	cmd := exec.Command("git", args...)
	cmd.Env = append(os.Environ(), "GIT_DIR="+p.repo)
	if req.ObjectDir != "" {
		cmd.Env = append(cmd.Env, "GIT_OBJECT_DIRECTORY="+req.ObjectDir, "GIT_ALTERNATE_OBJECT_DIRECTORIES="+req.Alternates)
	}
	return cmd
}

func (p *push) build(req *hookRequest, sha string, out io.Writer) (kind string, version int, err error) {
	ctx, cancel := context.WithTimeout(p.ctx, p.b.cfg.BuildTimeout)
	defer cancel()
	short := sha[:8]
	ls, err := p.git(req, "ls-tree", "--name-only", sha).Output()
	if err != nil {
		return "", 0, step("repository", fmt.Errorf("read the pushed tree: %w", err))
	}
	files := map[string]bool{}
	for _, f := range strings.Split(string(ls), "\n") {
		files[f] = true
	}
	var procfile map[string]string
	if files["Procfile"] {
		data, err := p.git(req, "show", sha+":Procfile").Output()
		if err != nil {
			return "", 0, step("repository", fmt.Errorf("read Procfile: %w", err))
		}
		if procfile, err = ParseProcfile(data); err != nil {
			return "", 0, step("procfile", err)
		}
	}
	kind = "dockerfile"
	if !files["Dockerfile"] {
		kind = "stack"
		if procfile == nil {
			return "", 0, step("procfile", errors.New("neither a Dockerfile nor a Procfile: add a Dockerfile, or a Procfile naming the app's processes (web: <command>)"))
		}
		if _, err := p.b.docker.InspectImage(p.b.cfg.StackImage); err != nil {
			return "", 0, step("stack", fmt.Errorf("stack image %s is not on this Docker engine: %w", p.b.cfg.StackImage, err))
		}
	} else if procfile == nil {
		procfile = map[string]string{"cmd": ""} // the image's own CMD
	}
	image := keys.BuildImage(p.app, sha)
	if kind == "dockerfile" {
		fmt.Fprintf(out, "-----> Building Docker image %s from the Dockerfile\n", image)
	} else {
		fmt.Fprintf(out, "-----> Building %s on the stack image %s\n", image, p.b.cfg.StackImage)
	}
	if err := p.dockerBuild(ctx, req, sha, image, kind, procfile, out); err != nil {
		return "", 0, step("build", err)
	}
	releaseImage := image
	if reg, err := p.registry(ctx); err != nil {
		return "", 0, step("registry", err)
	} else if reg != "" {
		fmt.Fprintf(out, "-----> Pushing to the registry %s\n", reg)
		if releaseImage, err = p.pushImage(ctx, reg, short, out); err != nil {
			return "", 0, step("registry", err)
		}
	}
	fmt.Fprintln(out, "-----> Releasing")
	rel, rev, err := p.release(ctx, releaseImage, procfile, sha)
	if err != nil {
		return "", 0, step("release", err)
	}
	events.Send(p.b.etcd, p.app, rel.Summary) // "alice deployed 060da68" in the app's log
	err = p.awaitDeploy(rel.Version, rev, out)
	// After the deploy: listing and removing images keeps the engine busy,
	// and the new release's containers may be starting on this host.
	p.prune(ctx)
	if err != nil {
		return "", rel.Version, step("deploy", err)
	}
	return kind, rel.Version, nil
}

// dockerBuild streams `git archive` of the revision to Docker as the
// build context: no checkout on disk. A stack build adds a generated
// Dockerfile to the stream.
func (p *push) dockerBuild(ctx context.Context, req *hookRequest, sha, image, kind string, procfile map[string]string, out io.Writer) error {
	archive := p.git(req, "archive", "--format=tar", sha)
	archiveOut, err := archive.StdoutPipe()
	if err != nil {
		return err
	}
	var stderr bytes.Buffer
	archive.Stderr = &stderr
	if err := archive.Start(); err != nil {
		return fmt.Errorf("git archive: %w", err)
	}
	// git's stderr is whole, and safe to read, only once git has exited.
	stopArchive := sync.OnceFunc(func() { _ = archive.Process.Kill(); _ = archive.Wait() })
	defer stopArchive()
	input := io.Reader(archiveOut)
	dockerfile := ""
	if kind == "stack" {
		dockerfile = stackDockerfileName
		pr, pw := io.Pipe()
		go addStackDockerfile(archiveOut, pw, stackDockerfile(p.b.cfg.StackImage, procfile))
		input = pr
		defer pr.Close()
	}
	err = p.b.docker.BuildImage(docker.BuildImageOptions{
		Context:             ctx,
		Name:                image,
		Dockerfile:          dockerfile,
		InputStream:         input,
		OutputStream:        out,
		RmTmpContainer:      true,
		ForceRmTmpContainer: true,
		Memory:              p.b.cfg.BuildMemory,
		Memswap:             memswap(p.b.cfg.BuildMemory),
		CPUPeriod:           cpuPeriod(p.b.cfg.BuildCPUs),
		CPUQuota:            cpuQuota(p.b.cfg.BuildCPUs),
	})
	if err != nil {
		if ctx.Err() != nil {
			return fmt.Errorf("docker build: %v (%w)", ctx.Err(), err)
		}
		stopArchive()
		if s := strings.TrimSpace(stderr.String()); s != "" {
			return fmt.Errorf("docker build: %v (git archive: %s)", err, s)
		}
		return fmt.Errorf("docker build: %w", err)
	}
	return nil
}

const stackDockerfileName = ".deis-stack.Dockerfile"

// stackDockerfile puts the app's files at /app on the stack image; the
// web process (if any) is the image's default command.
func stackDockerfile(stack string, procfile map[string]string) []byte {
	var b strings.Builder
	fmt.Fprintf(&b, "FROM %s\nCOPY . /app\nWORKDIR /app\n", stack)
	if web, ok := procfile["web"]; ok {
		cmd, _ := json.Marshal([]string{"sh", "-c", web})
		fmt.Fprintf(&b, "CMD %s\n", cmd)
	}
	return []byte(b.String())
}

// addStackDockerfile copies a tar stream and appends the generated
// Dockerfile to it.
func addStackDockerfile(in io.Reader, out *io.PipeWriter, dockerfile []byte) {
	tr, tw := tar.NewReader(in), tar.NewWriter(out)
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			out.CloseWithError(fmt.Errorf("read git archive: %w", err))
			return
		}
		if h.Typeflag == tar.TypeXGlobalHeader {
			continue
		}
		if err := tw.WriteHeader(h); err != nil {
			out.CloseWithError(err)
			return
		}
		if _, err := io.Copy(tw, tr); err != nil {
			out.CloseWithError(err)
			return
		}
	}
	if err := tw.WriteHeader(&tar.Header{Name: stackDockerfileName, Mode: 0o644, Size: int64(len(dockerfile)), ModTime: time.Now()}); err != nil {
		out.CloseWithError(err)
		return
	}
	_, _ = tw.Write(dockerfile)
	out.CloseWithError(tw.Close())
}

// registry is "<host>:<port>" from /deis/registry/{host,port}, or "".
func (p *push) registry(ctx context.Context) (string, error) {
	resp, err := p.b.etcd.Txn(ctx).Then(clientv3.OpGet(keys.RegistryHost), clientv3.OpGet(keys.RegistryPort)).Commit()
	if err != nil {
		return "", fmt.Errorf("read the registry address: %w", err)
	}
	host, port := strings.TrimSpace(string(first(resp, 0))), strings.TrimSpace(string(first(resp, 1)))
	if host == "" || port == "" {
		return "", nil
	}
	return host + ":" + port, nil
}

func (p *push) pushImage(ctx context.Context, reg, short string, out io.Writer) (string, error) {
	repo := reg + "/" + p.app
	tag := keys.BuildTagPrefix + short
	if err := p.b.docker.TagImage(p.app+":"+tag, docker.TagImageOptions{Repo: repo, Tag: tag, Force: true, Context: ctx}); err != nil {
		return "", fmt.Errorf("tag for %s: %w", reg, err)
	}
	if err := p.b.docker.PushImage(docker.PushImageOptions{Name: repo, Tag: tag, Registry: reg, OutputStream: out, Context: ctx, InactivityTimeout: time.Minute}, docker.AuthConfiguration{ServerAddress: reg}); err != nil { // an empty auth sends no X-Registry-Auth, which Docker refuses
		return "", fmt.Errorf("push to %s: %w", reg, err)
	}
	return repo + ":" + tag, nil
}

func (p *push) platformDomain(ctx context.Context) string {
	resp, err := p.b.etcd.Get(ctx, keys.PlatformDomain)
	if err != nil || len(resp.Kvs) == 0 {
		return ""
	}
	return strings.TrimSpace(string(resp.Kvs[0].Value))
}

// release writes the next release (max existing + 1) with the pushed image
// and Procfile, the live config, and the memory, CPU and tags of the current
// release, and points release at it, in one transaction (pkg/release).
func (p *push) release(ctx context.Context, image string, procfile map[string]string, sha string) (*Release, int64, error) {
	var rev int64
	rel, err := release.Write(ctx, p.b.etcd, p.app, func(cur *release.Release, config map[string]string) (*release.Release, error) {
		r := &Release{Image: image, Procfile: procfile, Config: config, SHA: sha, User: p.user,
			Created: time.Now().UTC(), Summary: fmt.Sprintf("%s deployed %s", p.user, sha[:min(7, len(sha))])}
		if cur != nil {
			r.Memory, r.CPU, r.Tags = cur.Memory, cur.CPU, cur.Tags
		}
		return r, nil
	})
	if err != nil {
		return nil, 0, err
	}
	// The revision the release landed at: the deploy record that covers it
	// has a rev at least this.
	resp, err := p.b.etcd.Get(ctx, keys.AppCurrentRelease(p.app))
	if err != nil {
		return nil, 0, fmt.Errorf("read back release v%d: %w", rel.Version, err)
	}
	rev = resp.Header.Revision
	for _, kv := range resp.Kvs {
		if string(kv.Value) == fmt.Sprint(rel.Version) {
			rev = kv.ModRevision
		}
	}
	return rel, rev, nil
}

// prune removes this app's build images not used by its last
// KeepReleases releases. Images still used by containers stay (Docker
// refuses), and are tried again after the next push.
func (p *push) prune(ctx context.Context) {
	resp, err := p.b.etcd.Get(ctx, keys.AppReleasesPrefix(p.app), clientv3.WithPrefix())
	if err != nil {
		return
	}
	var rels []Release
	for _, kv := range resp.Kvs {
		var r Release
		if json.Unmarshal(kv.Value, &r) == nil {
			rels = append(rels, r)
		}
	}
	sort.Slice(rels, func(i, j int) bool { return rels[i].Version > rels[j].Version })
	keep := map[string]bool{}
	for i := 0; i < len(rels) && i < p.b.cfg.KeepReleases; i++ {
		if len(rels[i].SHA) >= 8 {
			keep[keys.BuildTagPrefix+rels[i].SHA[:8]] = true
		}
	}
	images, err := p.b.docker.ListImages(docker.ListImagesOptions{Context: ctx})
	if err != nil {
		return
	}
	for _, img := range images {
		for _, ref := range img.RepoTags {
			tag := ref[strings.LastIndex(ref, ":")+1:]
			if keys.BuildImageApp(ref) != p.app || keep[tag] {
				continue
			}
			if err := p.b.docker.RemoveImageExtended(ref, docker.RemoveImageOptions{Context: ctx}); err != nil {
				p.b.log.Debug("image kept", "image", ref, "err", err)
			} else {
				p.b.log.Info("removed old build image", "image", ref)
			}
		}
	}
}

// keepObjects moves the objects of a declined push out of git's
// quarantine (which git deletes) into the repository, and points
// refs/deis/failed at the revision, so the pushed commits are kept.
func (p *push) keepObjects(req *hookRequest, sha string) error {
	if req.Quarantine == "" {
		return nil
	}
	objects := filepath.Join(p.repo, "objects")
	err := filepath.WalkDir(req.Quarantine, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(req.Quarantine, path)
		dst := filepath.Join(objects, rel)
		if d.IsDir() {
			return os.MkdirAll(dst, 0o755)
		}
		if _, err := os.Stat(dst); err == nil {
			return nil
		}
		if os.Link(path, dst) == nil {
			return nil
		}
		data, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		return os.WriteFile(dst, data, 0o444)
	})
	if err != nil {
		return err
	}
	cmd := exec.Command("git", "update-ref", "refs/deis/failed", sha)
	cmd.Env = append(os.Environ(), "GIT_DIR="+p.repo)
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("git update-ref: %w: %s", err, out)
	}
	// Only the last declined push is referenced: drop what earlier ones
	// left, or every failed push would grow the repository for good.
	gc := exec.Command("git", "gc", "--prune=now", "--quiet")
	gc.Env = append(os.Environ(), "GIT_DIR="+p.repo)
	if out, err := gc.CombinedOutput(); err != nil {
		return fmt.Errorf("git gc: %w: %s", err, out)
	}
	return nil
}

// cpuPeriod and cpuQuota express a build's CPU limit in cores (0 = none)
// as Docker's CFS period and quota.
const cfsPeriod = 100000

func cpuPeriod(cpus float64) int64 {
	if cpus <= 0 {
		return 0
	}
	return cfsPeriod
}

func cpuQuota(cpus float64) int64 {
	if cpus <= 0 {
		return 0
	}
	return int64(cpus * cfsPeriod)
}

// memswap is the memory plus swap limit of a build: no swap beyond its
// memory limit.
func memswap(memory int64) int64 {
	if memory <= 0 {
		return 0
	}
	return memory
}
