package deisctl

import (
	"cmp"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"

	"github.com/deis/dataplane/contrib/systemd"
)

// planes are Deis v1's host roles and the components each runs.
var planes = map[string][]string{
	"controlPlane": {"controller", "builder", "logger"},
	"dataPlane":    {"agent", "publisher", "logspout"},
	"routerMesh":   {"router"},
}

// allComponents is every installable component, etcd first.
var allComponents = []string{"etcd", "logger", "controller", "builder", "router", "publisher", "logspout", "agent"}

// Systemd is where install writes units and how it drives systemd.
type Systemd struct {
	UnitDir   string   // /etc/systemd/system
	EnvDir    string   // /etc/deis: the per-component environment files
	Systemctl []string // the systemctl command ("systemctl")
	Sysctl    []string // the sysctl command ("sysctl")
	SysctlDir string   // /etc/sysctl.d
	Planes    []string // this host's roles; empty: all three
}

// migrateSysctl makes a router that stops beside a new one hand its queued
// connections over instead of resetting them (router.MigrateSysctl): set
// now, and at boot from SysctlDir.
func (s Systemd) migrateSysctl() error {
	if err := os.MkdirAll(s.SysctlDir, 0o755); err != nil {
		return fmt.Errorf("sysctl directory: %w", err)
	}
	conf := "# deisctl: a router restarted beside another hands its queued connections over (Linux 5.14+).\nnet.ipv4.tcp_migrate_req = 1\n"
	if err := os.WriteFile(filepath.Join(s.SysctlDir, "90-deis-router.conf"), []byte(conf), 0o644); err != nil {
		return fmt.Errorf("write 90-deis-router.conf: %w", err)
	}
	return run(s.Sysctl, "-w", "net.ipv4.tcp_migrate_req=1")
}

// Resolve turns an install target into components: one component, or
// "platform" (every component of this host's planes, and etcd), or
// "stateless-platform" (the same without etcd: a host that uses an etcd
// cluster or an etcd gRPC proxy elsewhere).
func (s Systemd) Resolve(target string) ([]string, error) {
	if slices.Contains(allComponents, target) {
		return []string{target}, nil
	}
	if target != "platform" && target != "stateless-platform" {
		return nil, fmt.Errorf("unknown component %q: want platform, stateless-platform or one of %s", target, strings.Join(allComponents, ", "))
	}
	use := s.Planes
	if len(use) == 0 {
		use = []string{"controlPlane", "dataPlane", "routerMesh"}
	}
	want := map[string]bool{"etcd": target == "platform"}
	for _, p := range use {
		cs, ok := planes[p]
		if !ok {
			return nil, fmt.Errorf("unknown plane %q: want controlPlane, dataPlane or routerMesh", p)
		}
		for _, c := range cs {
			want[c] = true
		}
	}
	var out []string
	for _, c := range allComponents {
		if want[c] {
			out = append(out, c)
		}
	}
	return out, nil
}

// Install writes each component's unit, the agent's placement labels (the
// host's planes, so that `deis tags:set dataPlane=true` lands apps here),
// then reloads systemd and enables and starts the units.
func (s Systemd) Install(components []string) error {
	if err := os.MkdirAll(s.UnitDir, 0o755); err != nil {
		return fmt.Errorf("unit directory: %w", err)
	}
	var units []string
	for _, c := range components {
		name := "deis-" + c + ".service"
		data, err := systemd.Units.ReadFile(name)
		if err != nil {
			return fmt.Errorf("no unit for %s: %w", c, err)
		}
		if err := os.WriteFile(filepath.Join(s.UnitDir, name), data, 0o644); err != nil {
			return fmt.Errorf("write %s: %w", name, err)
		}
		units = append(units, name)
		if c == "router" {
			if err := s.migrateSysctl(); err != nil {
				return err
			}
		}
		if c == "agent" {
			if err := s.writeAgentLabels(); err != nil {
				return err
			}
		}
	}
	if err := s.systemctl("daemon-reload"); err != nil {
		return err
	}
	return s.systemctl(append([]string{"enable", "--now"}, units...)...)
}

func (s Systemd) writeAgentLabels() error {
	use := s.Planes
	if len(use) == 0 {
		use = []string{"controlPlane", "dataPlane", "routerMesh"}
	}
	labels := make([]string, 0, len(use))
	for _, p := range use {
		labels = append(labels, p+"=true")
	}
	if err := os.MkdirAll(s.EnvDir, 0o755); err != nil {
		return fmt.Errorf("environment directory: %w", err)
	}
	path := filepath.Join(s.EnvDir, "agent.env")
	old, _ := os.ReadFile(path)
	var keep []string
	for _, l := range strings.Split(string(old), "\n") {
		if l != "" && !strings.HasPrefix(l, "LABELS=") {
			keep = append(keep, l)
		}
	}
	keep = append(keep, "LABELS="+strings.Join(labels, ","))
	return os.WriteFile(path, []byte(strings.Join(keep, "\n")+"\n"), 0o644)
}

// Uninstall stops and disables the units, then removes their files.
func (s Systemd) Uninstall(components []string) error {
	var units []string
	for _, c := range components {
		units = append(units, "deis-"+c+".service")
	}
	if err := s.systemctl(append([]string{"disable", "--now"}, units...)...); err != nil {
		return err
	}
	for _, u := range units {
		if err := os.Remove(filepath.Join(s.UnitDir, u)); err != nil && !errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("remove %s: %w", u, err)
		}
	}
	return s.systemctl("daemon-reload")
}

// Do runs start, stop or restart on the components' units.
func (s Systemd) Do(verb string, components []string) error {
	args := []string{verb}
	for _, c := range components {
		args = append(args, "deis-"+c+".service")
	}
	return s.systemctl(args...)
}

func (s Systemd) systemctl(args ...string) error { return run(s.Systemctl, args...) }

// run runs command (a program and its first arguments) with args.
func run(command []string, args ...string) error {
	cmd := exec.Command(command[0], append(append([]string{}, command[1:]...), args...)...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		return fmt.Errorf("%s %s: %w: %s", strings.Join(command, " "), strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	return nil
}

// routerInstances are the template instances a rolling restart alternates
// between (deis-router@.service: Type=notify, SO_REUSEPORT ports).
var routerInstances = []string{"deis-router@a.service", "deis-router@b.service"}

// RollingRestartRouter restarts this host's router without refusing a
// connection: it starts a second router instance beside the running one
// (they share the ports: SO_REUSEPORT), waits until it serves (systemd's
// start returns on its READY=1), then stops the old one, which hands new
// connections to the new one and drains (router/steer.go). The instance
// that runs afterwards is the one enabled at boot. A host installed with
// the plain deis-router.service moves to the template on its first
// rolling restart.
func (s Systemd) RollingRestartRouter(say func(string)) error {
	data, err := systemd.Units.ReadFile("deis-router@.service")
	if err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(s.UnitDir, "deis-router@.service"), data, 0o644); err != nil {
		return fmt.Errorf("write deis-router@.service: %w", err)
	}
	if err := s.systemctl("daemon-reload"); err != nil {
		return err
	}
	if err := s.migrateSysctl(); err != nil {
		return err
	}
	old := ""
	for _, u := range append([]string{"deis-router.service"}, routerInstances...) {
		if s.systemctl("is-active", "--quiet", u) == nil {
			old = u
			break
		}
	}
	next := routerInstances[0]
	if old == routerInstances[0] {
		next = routerInstances[1]
	}
	say("starting " + next + " beside " + cmp.Or(old, "no running router"))
	if err := s.systemctl("start", next); err != nil {
		return fmt.Errorf("the new router did not start, the old one keeps serving: %w", err)
	}
	if err := s.systemctl("enable", next); err != nil {
		return err
	}
	if old == "" {
		return nil
	}
	say("stopping " + old + " (it hands over new connections and drains in-flight requests)")
	if err := s.systemctl("stop", old); err != nil {
		return err
	}
	return s.systemctl("disable", old)
}
