package deisctl

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
)

// CLI is one run of deisctl, connected to etcd (cmd/deisctl wires it).
type CLI struct {
	Stdout, Stderr io.Writer
	Etcd           *clientv3.Client
	Systemd        Systemd

	etcd *clientv3.Client
}

// Usage is deisctl's help.
const Usage = `usage: deisctl [global flags] <command> [args]

Commands:
  config <component> get [key...]          print settings (all of the component's without keys)
  config <component> set key=value...      validate with the daemons' own parsers, then write all or nothing
  config <component> rm key...             delete settings
                                           components: builder, controller, logs, platform, router;
                                           sslCert, sslKey, sshPrivateKey take a file path
  status                                   every component on every host and what is unhealthy; exit 1 if any
  install [component|platform|stateless-platform] [--planes controlPlane,dataPlane,routerMesh]
  uninstall [component|platform|stateless-platform]
  start|stop|restart [component|platform|stateless-platform]
  rolling-restart router                   a new router beside the old on the same ports, then the old one stops: no refused connection
  backup <file> [--logs-dir DIR] [--repos-dir DIR]
  restore <file> [--logs-dir DIR] [--repos-dir DIR] [--force]
`

// Run executes one command.
func (c *CLI) Run(ctx context.Context, args []string) error {
	c.etcd = c.Etcd
	if len(args) == 0 || args[0] == "help" || args[0] == "-h" || args[0] == "--help" {
		fmt.Fprint(c.Stdout, Usage)
		return nil
	}
	switch args[0] {
	case "config":
		return c.Config(ctx, args[1:])
	case "status":
		checks, bad := Status(ctx, c.etcd)
		PrintStatus(tabwriter.NewWriter(c.Stdout, 0, 4, 2, ' ', 0), checks)
		if bad > 0 {
			return fmt.Errorf("%d unhealthy", bad)
		}
		return nil
	case "backup", "restore":
		return c.backupRestore(ctx, args[0], args[1:])
	case "install", "uninstall", "start", "stop", "restart":
		return c.units(args[0], args[1:])
	case "rolling-restart":
		if len(args) != 2 || args[1] != "router" {
			return errors.New("usage: deisctl rolling-restart router (the router alone shares its ports between two processes; restart other components with restart)")
		}
		return c.Systemd.RollingRestartRouter(func(msg string) { fmt.Fprintln(c.Stdout, "rolling-restart: "+msg) })
	}
	return fmt.Errorf("unknown command %q: deisctl help lists them", args[0])
}

func (c *CLI) backupRestore(ctx context.Context, verb string, args []string) error {
	fs := flag.NewFlagSet(verb, flag.ContinueOnError)
	fs.SetOutput(c.Stderr)
	logs := fs.String("logs-dir", "", "the logger's --log-root (file store), to include")
	repos := fs.String("repos-dir", "", "the builder's --repo-root, to include")
	force := fs.Bool("force", false, "restore: overwrite a cluster that has users or apps")
	file, rest := "", args
	if len(rest) > 0 && !strings.HasPrefix(rest[0], "-") {
		file, rest = rest[0], rest[1:]
	}
	if err := fs.Parse(rest); err != nil {
		return err
	}
	if file == "" && fs.NArg() > 0 {
		file = fs.Arg(0)
	}
	if file == "" {
		return fmt.Errorf("usage: deisctl %s <file> [--logs-dir DIR] [--repos-dir DIR]", verb)
	}
	dirs := Dirs{"logs": *logs, "repos": *repos}
	start := time.Now()
	if verb == "backup" {
		tmp := file + ".partial"
		f, err := os.OpenFile(tmp, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o600) // it holds password hashes and keys
		if err != nil {
			return fmt.Errorf("create %s: %w", tmp, err)
		}
		n, err := Backup(ctx, c.etcd, dirs, f)
		if cerr := f.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			os.Remove(tmp)
			return err
		}
		if err := os.Rename(tmp, file); err != nil {
			return err
		}
		st, _ := os.Stat(file)
		fmt.Fprintf(c.Stdout, "backup: %d keys of /deis and the data directories in %s (%d bytes) in %s\n", n, file, st.Size(), time.Since(start).Round(time.Millisecond))
		return nil
	}
	f, err := os.Open(file)
	if err != nil {
		return fmt.Errorf("open %s: %w", file, err)
	}
	defer f.Close()
	n, err := Restore(ctx, c.etcd, dirs, f, *force)
	if err != nil {
		if errors.Is(err, ErrNotEmpty) {
			return err
		}
		return fmt.Errorf("restore %s: %w", file, err)
	}
	fmt.Fprintf(c.Stdout, "restore: %d keys written to /deis and the data directories unpacked in %s; start (or restart) the daemons\n", n, time.Since(start).Round(time.Millisecond))
	return nil
}

func (c *CLI) units(verb string, args []string) error {
	fs := flag.NewFlagSet(verb, flag.ContinueOnError)
	fs.SetOutput(c.Stderr)
	planes := fs.String("planes", "", "this host's roles: controlPlane,dataPlane,routerMesh (default all)")
	target, rest := "platform", args
	if len(rest) > 0 && !strings.HasPrefix(rest[0], "-") {
		target, rest = rest[0], rest[1:]
	}
	if err := fs.Parse(rest); err != nil {
		return err
	}
	sd := c.Systemd
	if *planes != "" {
		sd.Planes = strings.Split(*planes, ",")
	}
	comps, err := sd.Resolve(target)
	if err != nil {
		return err
	}
	switch verb {
	case "install":
		err = sd.Install(comps)
	case "uninstall":
		err = sd.Uninstall(comps)
	default:
		err = sd.Do(verb, comps)
	}
	if err != nil {
		return err
	}
	fmt.Fprintf(c.Stdout, "%s: %s\n", verb, strings.Join(comps, ", "))
	return nil
}
