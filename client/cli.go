package client

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
)

// CLI is one run of the `deis` command. Its fields are the process's
// world, so that tests can give it their own.
type CLI struct {
	Stdout, Stderr io.Writer
	Stdin          io.Reader
	Env            func(string) string
	Dir            string       // working directory (app detection, git)
	HTTP           *http.Client // nil: a default one
	// CatchInterrupt starts delivering Ctrl-C to the returned channel
	// until stop is called: a change in flight catches it to say that the
	// change stays. Nil: Ctrl-C is never caught.
	CatchInterrupt func() (ch <-chan os.Signal, stop func())

	stdin *bufio.Reader // Stdin, buffered once for every prompt
}

// command is one `deis` command.
type command struct {
	name  string
	usage string
	flags map[string]bool // flag name (long, without dashes) → takes a value
	short map[string]string
	run   func(c *CLI, f *flags) error
}

// flags is a parsed command line.
type flags struct {
	vals map[string]string
	args []string
}

func (f *flags) get(name string) string { return f.vals[name] }
func (f *flags) has(name string) bool   { _, ok := f.vals[name]; return ok }

// exitError carries an exit status other than 1.
type exitError struct{ code int }

func (e exitError) Error() string { return fmt.Sprintf("exit status %d", e.code) }

// shortcuts of DEIS-V1-API.md.
var shortcuts = map[string]string{
	"create": "apps:create", "destroy": "apps:destroy", "info": "apps:info", "logs": "apps:logs", "open": "apps:open", "run": "apps:run",
	"login": "auth:login", "logout": "auth:logout", "passwd": "auth:passwd", "register": "auth:register", "whoami": "auth:whoami",
	"pull": "builds:create", "rollback": "releases:rollback", "scale": "ps:scale",
	"sharing": "perms:list", "sharing:list": "perms:list", "sharing:add": "perms:create", "sharing:remove": "perms:delete",
}

// topics run their list when given bare.
var topics = []string{"apps", "builds", "certs", "config", "domains", "keys", "limits", "perms", "ps", "releases", "tags", "users"}

// Run executes args (without the program name) and returns the exit status.
func (c *CLI) Run(args []string) int {
	if c.Env == nil {
		c.Env = os.Getenv
	}
	if len(args) == 0 || args[0] == "help" && len(args) == 1 || args[0] == "-h" || args[0] == "--help" {
		c.usage()
		return 0
	}
	name := args[0]
	if name == "-v" || name == "--version" {
		name = "version"
	}
	if name == "help" {
		name, args = args[1], []string{args[1], "--help"}
	}
	if full, ok := shortcuts[name]; ok {
		name = full
	}
	for _, t := range topics {
		if name == t {
			name = t + ":list"
		}
	}
	cmd := lookup(name)
	if cmd == nil {
		return c.plugin(name, args[1:])
	}
	f, err := parseFlags(cmd, args[1:])
	if err != nil {
		fmt.Fprintf(c.Stderr, "%v\nUsage: %s\n", err, cmd.usage)
		return 1
	}
	if f.has("help") {
		fmt.Fprintf(c.Stdout, "Usage: %s\n", cmd.usage)
		return 0
	}
	if err := cmd.run(c, f); err != nil {
		var ee exitError
		if errors.As(err, &ee) {
			return ee.code
		}
		fmt.Fprintln(c.Stderr, err)
		return 1
	}
	return 0
}

func lookup(name string) *command {
	for i := range commands {
		if commands[i].name == name {
			return &commands[i]
		}
	}
	return nil
}

// plugin runs deis-<topic> [<sub>] from PATH for an unknown command.
func (c *CLI) plugin(name string, args []string) int {
	topic, sub, _ := strings.Cut(name, ":")
	path, err := c.lookPath("deis-" + topic)
	if err != nil {
		fmt.Fprintln(c.Stderr, "Found no matching command, try 'deis help'")
		return 1
	}
	if sub != "" {
		args = append([]string{sub}, args...)
	}
	cmd := exec.Command(path, args...)
	cmd.Stdin, cmd.Stdout, cmd.Stderr, cmd.Dir = c.Stdin, c.Stdout, c.Stderr, c.Dir
	if err := cmd.Run(); err != nil {
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			return ee.ExitCode()
		}
		fmt.Fprintln(c.Stderr, err)
		return 1
	}
	return 0
}

// lookPath is exec.LookPath over the CLI's own $PATH.
func (c *CLI) lookPath(name string) (string, error) {
	for _, dir := range filepath.SplitList(c.Env("PATH")) {
		if dir == "" {
			dir = "."
		}
		p := filepath.Join(dir, name)
		if st, err := os.Stat(p); err == nil && st.Mode().IsRegular() && st.Mode().Perm()&0o111 != 0 {
			return p, nil
		}
	}
	return "", exec.ErrNotFound
}

// parseFlags reads --name=value, --name value, -x value and -x=value
// anywhere on the line ("--" ends them), as v1's docopt did.
func parseFlags(cmd *command, args []string) (*flags, error) {
	f := &flags{vals: map[string]string{}}
	for i := 0; i < len(args); i++ {
		a := args[i]
		if a == "--" {
			f.args = append(f.args, args[i+1:]...)
			break
		}
		if !strings.HasPrefix(a, "-") || a == "-" {
			f.args = append(f.args, a)
			continue
		}
		name, val, hasVal := strings.Cut(strings.TrimLeft(a, "-"), "=")
		if !strings.HasPrefix(a, "--") {
			long, ok := cmd.short[name]
			if !ok && name != "h" {
				return nil, fmt.Errorf("unknown option %s", a)
			}
			name = long
			if name == "" {
				name = "help"
			}
		}
		if name == "help" {
			f.vals["help"] = ""
			continue
		}
		takes, ok := cmd.flags[name]
		if !ok {
			return nil, fmt.Errorf("unknown option --%s", name)
		}
		if takes && !hasVal {
			if i+1 >= len(args) {
				return nil, fmt.Errorf("option --%s needs a value", name)
			}
			i++
			val = args[i]
		}
		if !takes && !hasVal {
			val = "true"
		}
		f.vals[name] = val
	}
	return f, nil
}

func (c *CLI) usage() {
	fmt.Fprintln(c.Stdout, "Usage: deis <command> [<args>...]\n\nCommands (deis help <command> for one):")
	names := make([]string, 0, len(commands))
	for _, cmd := range commands {
		names = append(names, cmd.name)
	}
	sort.Strings(names)
	for _, n := range names {
		fmt.Fprintln(c.Stdout, "  "+n)
	}
	fmt.Fprintln(c.Stdout, "\nShortcuts: create destroy info logs open run login logout passwd register whoami pull rollback scale sharing")
}

// session is the logged-in user's settings and API.
func (c *CLI) session() (*Settings, *api, error) {
	s, err := loadSettings(settingsPath(c.Env))
	if err != nil {
		return nil, nil, err
	}
	if !s.SSLVerify && strings.HasPrefix(s.Controller, "https") {
		fmt.Fprintln(c.Stderr, "!    WARNING: TLS certificates of the controller are not verified (ssl_verify false in the settings file)")
	}
	return s, c.newAPI(s.Controller, s.Token, s.SSLVerify), nil
}

// limit is -l/--limit, else the settings' response_limit, else 100.
func limit(f *flags, s *Settings) int {
	var n int
	if _, err := fmt.Sscan(f.get("limit"), &n); err == nil && n > 0 {
		return n
	}
	if s.ResponseLimit > 0 {
		return s.ResponseLimit
	}
	return 100
}

// appName finds the app: -a, else a git remote on the controller's host,
// else the directory's name; source says which.
func (c *CLI) appName(f *flags, s *Settings) (app, source string) {
	if a := f.get("app"); a != "" {
		return a, "-a"
	}
	host := gitHost(s)
	if out, err := c.git("remote", "-v"); err == nil {
		for _, line := range strings.Split(out, "\n") {
			fl := strings.Fields(line)
			if len(fl) >= 2 && host != "" && strings.Contains(fl[1], host) {
				base := fl[1][strings.LastIndexAny(fl[1], "/:")+1:]
				return strings.TrimSuffix(base, ".git"), "git remote " + fl[0]
			}
		}
	}
	return strings.ToLower(filepath.Base(c.Dir)), "the directory name"
}

// mutatingApp is appName for commands that change or run something: it
// says which app it acts on, and why, before doing it.
func (c *CLI) mutatingApp(f *flags, s *Settings) string {
	app, source := c.appName(f, s)
	fmt.Fprintf(c.Stderr, "Using app %s (from %s)\n", app, source)
	return app
}

func (c *CLI) git(args ...string) (string, error) {
	cmd := exec.Command("git", args...)
	cmd.Dir = c.Dir
	out, err := cmd.CombinedOutput()
	return string(out), err
}
