package testenv

import (
	"archive/tar"
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"

	docker "github.com/fsouza/go-dockerclient"
)

// BusyboxImage is the base image every Docker test uses. It is built from
// Debian's busybox-static by `docker import`, since nothing can be pulled.
const BusyboxImage = "deis/busybox:latest"

// BusyboxPath is where Debian's busybox-static installs the binary.
const BusyboxPath = "/bin/busybox"

// Docker connects to the engine at DOCKER_HOST (or the local socket) and
// makes sure the busybox image exists. Where no engine answers, the test is
// skipped with the reason, unless REQUIRE_DOCKER=1, where it fails.
// Under -short (make test-short) it always skips.
func Docker(t testing.TB) *docker.Client {
	t.Helper()
	if testing.Short() {
		t.Skip("needs a Docker engine: skipped by -short")
	}
	cli, err := dockerClient()
	if err == nil {
		err = EnsureBusyboxImage(cli)
	}
	if err != nil {
		if requireDocker() {
			t.Fatalf("REQUIRE_DOCKER=1 but Docker is not usable: %v", err)
		}
		t.Skipf("skipping: no usable Docker engine (%v); run scripts/setup.sh or set DOCKER_HOST", err)
	}
	return cli
}

func dockerClient() (*docker.Client, error) {
	endpoint := os.Getenv("DOCKER_HOST")
	if endpoint == "" {
		endpoint = "unix:///var/run/docker.sock"
	}
	cli, err := docker.NewClient(endpoint)
	if err != nil {
		return nil, fmt.Errorf("docker client for %s: %w", endpoint, err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := cli.PingWithContext(ctx); err != nil {
		return nil, fmt.Errorf("docker ping %s: %w", endpoint, err)
	}
	return cli, nil
}

var imageOnce sync.Mutex

// EnsureBusyboxImage imports BusyboxImage from /bin/busybox unless present.
func EnsureBusyboxImage(cli *docker.Client) error {
	imageOnce.Lock()
	defer imageOnce.Unlock()
	if _, err := cli.InspectImage(BusyboxImage); err == nil {
		return nil
	}
	rootfs, err := BusyboxRootfs()
	if err != nil {
		return err
	}
	// go-dockerclient's ImportImage has no --change; the docker CLI does,
	// and it is installed with the engine.
	cmd := exec.Command("docker", "import", "--change", "ENV PATH=/bin", "-", BusyboxImage)
	cmd.Stdin = bytes.NewReader(rootfs)
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("docker import %s: %v: %s", BusyboxImage, err, strings.TrimSpace(string(out)))
	}
	return nil
}

// BusyboxRootfs returns a tar of a minimal root filesystem: /bin/busybox,
// a symlink per applet, and empty /tmp, /etc, /www, /proc, /sys, /dev.
func BusyboxRootfs() ([]byte, error) {
	bin, err := os.ReadFile(BusyboxPath)
	if err != nil {
		return nil, fmt.Errorf("read %s (install Debian's busybox-static): %w", BusyboxPath, err)
	}
	out, err := exec.Command(BusyboxPath, "--list").Output()
	if err != nil {
		return nil, fmt.Errorf("%s --list: %w", BusyboxPath, err)
	}
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	now := time.Now()
	for _, d := range []string{"bin", "tmp", "etc", "www", "proc", "sys", "dev", "app", "root"} {
		mode := int64(0o755)
		if d == "tmp" {
			mode = 0o1777
		}
		if err := tw.WriteHeader(&tar.Header{Name: d + "/", Typeflag: tar.TypeDir, Mode: mode, ModTime: now}); err != nil {
			return nil, err
		}
	}
	if err := tw.WriteHeader(&tar.Header{Name: "bin/busybox", Mode: 0o755, Size: int64(len(bin)), ModTime: now}); err != nil {
		return nil, err
	}
	if _, err := tw.Write(bin); err != nil {
		return nil, err
	}
	for _, applet := range strings.Fields(string(out)) {
		if applet == "busybox" || strings.Contains(applet, "/") {
			continue
		}
		if err := tw.WriteHeader(&tar.Header{Name: "bin/" + applet, Typeflag: tar.TypeSymlink, Linkname: "busybox", Mode: 0o777, ModTime: now}); err != nil {
			return nil, err
		}
	}
	files := map[string]string{
		"etc/passwd":     "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/false\n",
		"etc/group":      "root:x:0:\nnogroup:x:65534:\n",
		"www/index.html": "ok\n",
	}
	for name, body := range files {
		if err := tw.WriteHeader(&tar.Header{Name: name, Mode: 0o644, Size: int64(len(body)), ModTime: now}); err != nil {
			return nil, err
		}
		if _, err := tw.Write([]byte(body)); err != nil {
			return nil, err
		}
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// RunContainer creates and starts a container from opts and removes it
// (forcefully) when the test ends.
func RunContainer(t testing.TB, cli *docker.Client, opts docker.CreateContainerOptions) *docker.Container {
	t.Helper()
	if opts.Config == nil {
		opts.Config = &docker.Config{}
	}
	if opts.Config.Image == "" {
		opts.Config.Image = BusyboxImage
	}
	c, err := cli.CreateContainer(opts)
	if err != nil {
		t.Fatalf("create container %s: %v", opts.Name, err)
	}
	t.Cleanup(func() {
		_ = cli.RemoveContainer(docker.RemoveContainerOptions{ID: c.ID, Force: true, RemoveVolumes: true})
	})
	if err := cli.StartContainer(c.ID, nil); err != nil {
		t.Fatalf("start container %s: %v", opts.Name, err)
	}
	c, err = cli.InspectContainerWithOptions(docker.InspectContainerOptions{ID: c.ID})
	if err != nil {
		t.Fatalf("inspect container %s: %v", opts.Name, err)
	}
	return c
}

// HTTPDOptions describes a busybox httpd container named name serving dir
// /www on container port 8080, published on a random loopback port.
func HTTPDOptions(name string, labels map[string]string, cmd ...string) docker.CreateContainerOptions {
	if len(cmd) == 0 {
		cmd = []string{"httpd", "-f", "-p", "8080", "-h", "/www"}
	}
	return docker.CreateContainerOptions{
		Name: name,
		Config: &docker.Config{
			Image:        BusyboxImage,
			Cmd:          cmd,
			Labels:       labels,
			ExposedPorts: map[docker.Port]struct{}{"8080/tcp": {}},
		},
		HostConfig: &docker.HostConfig{
			PortBindings: map[docker.Port][]docker.PortBinding{"8080/tcp": {{HostIP: "127.0.0.1", HostPort: "0"}}},
		},
	}
}
