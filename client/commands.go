package client

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/deis/dataplane/pkg/version"
)

var appFlag = map[string]bool{"app": true}
var appShort = map[string]string{"a": "app"}

func withApp(extra map[string]bool) map[string]bool {
	out := map[string]bool{"app": true}
	for k, v := range extra {
		out[k] = v
	}
	return out
}

var commands = []command{
	{name: "auth:register", usage: "deis register <controller> [--username=<u>] [--password=<p>] [--email=<e>] [--ssl-verify=false]",
		flags: map[string]bool{"username": true, "password": true, "email": true, "ssl-verify": true}, run: (*CLI).register},
	{name: "auth:login", usage: "deis login <controller> [--username=<u>] [--password=<p>] [--ssl-verify=false]",
		flags: map[string]bool{"username": true, "password": true, "ssl-verify": true}, run: (*CLI).login},
	{name: "auth:logout", usage: "deis logout", run: (*CLI).logout},
	{name: "auth:whoami", usage: "deis whoami", run: (*CLI).whoami},
	{name: "auth:passwd", usage: "deis passwd [--username=<u>] [--password=<p>] [--new-password=<p>]",
		flags: map[string]bool{"username": true, "password": true, "new-password": true}, run: (*CLI).passwd},
	{name: "apps:create", usage: "deis create [<id>] [--no-remote] [--remote=deis]",
		flags: map[string]bool{"no-remote": false, "remote": true, "buildpack": true}, short: map[string]string{"r": "remote", "b": "buildpack"}, run: (*CLI).create},
	{name: "apps:list", usage: "deis apps [-l <n>]", flags: map[string]bool{"limit": true}, short: map[string]string{"l": "limit"}, run: (*CLI).appsList},
	{name: "apps:info", usage: "deis info [-a <app>]", flags: appFlag, short: appShort, run: (*CLI).info},
	{name: "apps:open", usage: "deis open [-a <app>]", flags: appFlag, short: appShort, run: (*CLI).open},
	{name: "apps:destroy", usage: "deis destroy [-a <app>] [--confirm=<app>]", flags: withApp(map[string]bool{"confirm": true}), short: appShort, run: (*CLI).destroy},
	{name: "apps:logs", usage: "deis logs [-a <app>] [-n <lines>] [-f]", flags: withApp(map[string]bool{"lines": true, "follow": false}), short: map[string]string{"a": "app", "n": "lines", "f": "follow"}, run: (*CLI).logs},
	{name: "apps:run", usage: "deis run [-a <app>] [--] <command>...", flags: appFlag, short: appShort, run: (*CLI).runCmd},
	{name: "config:list", usage: "deis config [-a <app>] [--oneline]", flags: withApp(map[string]bool{"oneline": false}), short: appShort, run: (*CLI).configList},
	{name: "config:set", usage: "deis config:set [-a <app>] <KEY>=<value>...", flags: appFlag, short: appShort, run: (*CLI).configSet},
	{name: "config:unset", usage: "deis config:unset [-a <app>] <KEY>...", flags: appFlag, short: appShort, run: (*CLI).configUnset},
	{name: "config:pull", usage: "deis config:pull [-a <app>] [--overwrite] [--interactive]", flags: withApp(map[string]bool{"overwrite": false, "interactive": false}), short: map[string]string{"a": "app", "o": "overwrite", "i": "interactive"}, run: (*CLI).configPull},
	{name: "config:push", usage: "deis config:push [-a <app>] [--path=.env]", flags: withApp(map[string]bool{"path": true}), short: map[string]string{"a": "app", "p": "path"}, run: (*CLI).configPush},
	{name: "ps:list", usage: "deis ps [-a <app>]", flags: withApp(map[string]bool{"limit": true}), short: map[string]string{"a": "app", "l": "limit"}, run: (*CLI).psList},
	{name: "ps:scale", usage: "deis scale [-a <app>] <type>=<n>...", flags: appFlag, short: appShort, run: (*CLI).scale},
	{name: "ps:restart", usage: "deis ps:restart [-a <app>] [<type>[.<num>]]", flags: appFlag, short: appShort, run: (*CLI).restart},
	{name: "releases:list", usage: "deis releases [-a <app>] [-l <n>]", flags: withApp(map[string]bool{"limit": true}), short: map[string]string{"a": "app", "l": "limit"}, run: (*CLI).releases},
	{name: "releases:info", usage: "deis releases:info v<N> [-a <app>]", flags: appFlag, short: appShort, run: (*CLI).releaseInfo},
	{name: "releases:rollback", usage: "deis rollback [v<N>] [-a <app>]", flags: appFlag, short: appShort, run: (*CLI).rollback},
	{name: "builds:create", usage: "deis pull <image> [-a <app>] [--procfile=<yaml>]", flags: withApp(map[string]bool{"procfile": true}), short: map[string]string{"a": "app", "p": "procfile"}, run: (*CLI).pull},
	{name: "builds:list", usage: "deis builds [-a <app>]", flags: withApp(map[string]bool{"limit": true}), short: map[string]string{"a": "app", "l": "limit"}, run: (*CLI).builds},
	{name: "keys:add", usage: "deis keys:add [<public key file>]", run: (*CLI).keysAdd},
	{name: "keys:list", usage: "deis keys [-l <n>]", flags: map[string]bool{"limit": true}, short: map[string]string{"l": "limit"}, run: (*CLI).keysList},
	{name: "keys:remove", usage: "deis keys:remove <id>", run: (*CLI).keysRemove},
	{name: "domains:add", usage: "deis domains:add <domain> [-a <app>]", flags: appFlag, short: appShort, run: (*CLI).domainsAdd},
	{name: "domains:list", usage: "deis domains [-a <app>]", flags: withApp(map[string]bool{"limit": true}), short: map[string]string{"a": "app", "l": "limit"}, run: (*CLI).domainsList},
	{name: "domains:remove", usage: "deis domains:remove <domain> [-a <app>]", flags: appFlag, short: appShort, run: (*CLI).domainsRemove},
	{name: "certs:add", usage: "deis certs:add <cert file> <key file> [--common-name=<cn>]", flags: map[string]bool{"common-name": true, "subject-alt-names": true}, run: (*CLI).certsAdd},
	{name: "certs:list", usage: "deis certs [-l <n>]", flags: map[string]bool{"limit": true}, short: map[string]string{"l": "limit"}, run: (*CLI).certsList},
	{name: "certs:remove", usage: "deis certs:remove <common name>", run: (*CLI).certsRemove},
	{name: "perms:list", usage: "deis perms [-a <app>]", flags: appFlag, short: appShort, run: (*CLI).permsList},
	{name: "perms:create", usage: "deis perms:create <user> [-a <app>]", flags: appFlag, short: appShort, run: (*CLI).permsCreate},
	{name: "perms:delete", usage: "deis perms:delete <user> [-a <app>]", flags: appFlag, short: appShort, run: (*CLI).permsDelete},
	{name: "git:remote", usage: "deis git:remote [-a <app>] [--remote=deis]", flags: withApp(map[string]bool{"remote": true}), short: map[string]string{"a": "app", "r": "remote"}, run: (*CLI).gitRemote},
	{name: "users:list", usage: "deis users [-l <n>]", flags: map[string]bool{"limit": true}, short: map[string]string{"l": "limit"}, run: (*CLI).users},
	{name: "version", usage: "deis version", run: func(c *CLI, _ *flags) error { fmt.Fprintln(c.Stdout, version.Version); return nil }},
}

// prompt asks for a value not given as a flag.
func (c *CLI) prompt(label string) string {
	fmt.Fprint(c.Stderr, label)
	if c.stdin == nil { // one reader for the run: a second prompt must not lose what the first buffered
		c.stdin = bufio.NewReader(c.Stdin)
	}
	line, _ := c.stdin.ReadString('\n')
	return strings.TrimSpace(line)
}

// probe checks that the URL is a Deis controller: GET /v1/ answers 401.
func (c *CLI) probe(a *api) error {
	r, err := a.do("GET", "/v1/", nil)
	if err != nil {
		return err
	}
	if r.status != 401 {
		return fmt.Errorf("%s does not appear to be a valid Deis controller", a.base)
	}
	return nil
}

func sslVerify(f *flags) bool { return f.get("ssl-verify") != "false" }

func (c *CLI) register(f *flags) error {
	if len(f.args) != 1 {
		return errors.New("Usage: deis register <controller>")
	}
	a := c.newAPI(f.args[0], "", sslVerify(f))
	if err := c.probe(a); err != nil {
		return err
	}
	user, pass, email := f.get("username"), f.get("password"), f.get("email")
	if user == "" {
		user = c.prompt("username: ")
	}
	if pass == "" {
		pass = c.prompt("password: ")
		if again := c.prompt("password (confirm): "); again != pass {
			return errors.New("Password mismatch, aborting registration.")
		}
	}
	if email == "" {
		email = c.prompt("email: ")
	}
	// A saved token goes along: admin_only registration needs an admin's.
	if s, err := loadSettings(settingsPath(c.Env)); err == nil {
		a.token = s.Token
	}
	if _, err := a.call("POST", "/v1/auth/register/", map[string]string{"username": user, "password": pass, "email": email}, nil); err != nil {
		return err
	}
	fmt.Fprintf(c.Stdout, "Registered %s\n", user)
	return c.doLogin(a.base, user, pass, a.verify)
}

func (c *CLI) login(f *flags) error {
	if len(f.args) != 1 {
		return errors.New("Usage: deis login <controller>")
	}
	user, pass := f.get("username"), f.get("password")
	if user == "" {
		user = c.prompt("username: ")
	}
	if pass == "" {
		pass = c.prompt("password: ")
	}
	a := c.newAPI(f.args[0], "", sslVerify(f))
	if err := c.probe(a); err != nil {
		return err
	}
	return c.doLogin(a.base, user, pass, a.verify)
}

func (c *CLI) doLogin(controller, user, pass string, verify bool) error {
	a := c.newAPI(controller, "", verify)
	var tok struct {
		Token string `json:"token"`
	}
	if _, err := a.call("POST", "/v1/auth/login/", map[string]string{"username": user, "password": pass}, &tok); err != nil {
		return err
	}
	s := &Settings{Username: user, SSLVerify: verify, Controller: a.base, Token: tok.Token}
	if old, err := loadSettings(settingsPath(c.Env)); err == nil {
		s.ResponseLimit = old.ResponseLimit
	}
	if err := s.save(settingsPath(c.Env)); err != nil {
		return err
	}
	fmt.Fprintf(c.Stdout, "Logged in as %s\n", user)
	return nil
}

func (c *CLI) logout(*flags) error {
	if err := os.Remove(settingsPath(c.Env)); err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	fmt.Fprintln(c.Stdout, "Logged out")
	return nil
}

func (c *CLI) whoami(*flags) error {
	s, _, err := c.session()
	if err != nil {
		return err
	}
	fmt.Fprintf(c.Stdout, "You are %s at %s\n", s.Username, s.Controller)
	return nil
}

func (c *CLI) passwd(f *flags) error {
	_, a, err := c.session()
	if err != nil {
		return err
	}
	body := map[string]string{"password": f.get("password"), "new_password": f.get("new-password")}
	if u := f.get("username"); u != "" {
		body["username"] = u
	}
	if body["password"] == "" && body["username"] == "" {
		body["password"] = c.prompt("current password: ")
	}
	if body["new_password"] == "" {
		body["new_password"] = c.prompt("new password: ")
	}
	if _, err := a.call("POST", "/v1/auth/passwd/", body, nil); err != nil {
		return err
	}
	fmt.Fprintln(c.Stdout, "Password change succeeded.")
	return nil
}

type appJSON struct {
	ID        string         `json:"id"`
	Owner     string         `json:"owner"`
	URL       string         `json:"url"`
	Structure map[string]int `json:"structure"`
	Created   string         `json:"created"`
	Updated   string         `json:"updated"`
	UUID      string         `json:"uuid"`
}

func (c *CLI) create(f *flags) error {
	s, a, err := c.session()
	if err != nil {
		return err
	}
	body := map[string]string{}
	if len(f.args) > 0 {
		body["id"] = f.args[0]
	}
	fmt.Fprint(c.Stdout, "Creating Application... ")
	var app appJSON
	if _, err := a.call("POST", "/v1/apps/", body, &app); err != nil {
		fmt.Fprintln(c.Stdout)
		return err
	}
	fmt.Fprintf(c.Stdout, "done, created %s\n", app.ID)
	if b := f.get("buildpack"); b != "" {
		if _, err := a.call("POST", "/v1/apps/"+app.ID+"/config/", map[string]any{"values": map[string]string{"BUILDPACK_URL": b}}, nil); err != nil {
			return err
		}
	}
	if !f.has("no-remote") {
		return c.addRemote(s, app.ID, remoteName(f))
	}
	fmt.Fprintln(c.Stdout, "remote available at "+gitURL(s, app.ID))
	return nil
}

func remoteName(f *flags) string {
	if r := f.get("remote"); r != "" {
		return r
	}
	return "deis"
}

// gitURL is v1's remote: ssh://git@<controller host>:2222/<app>.git.
func gitURL(s *Settings, app string) string {
	return "ssh://git@" + gitHost(s) + ":2222/" + app + ".git"
}

// gitHost is the controller's host name as git and ssh are given it. A
// name under .localhost (make run's deis.localhost) becomes 127.0.0.1:
// this client dials such names to loopback itself, but ssh asks the
// system's resolver, and glibc's does not know RFC 6761.
func gitHost(s *Settings) string {
	host := s.Controller
	if u, err := url.Parse(s.Controller); err == nil && u.Hostname() != "" {
		host = u.Hostname()
	}
	if isLocalhostName(host) {
		return "127.0.0.1"
	}
	return host
}

func (c *CLI) addRemote(s *Settings, app, remote string) error {
	out, err := c.git("remote", "add", remote, gitURL(s, app))
	if err != nil {
		if strings.Contains(out, "already exists") {
			return fmt.Errorf("A git remote named %s already exists: rename it (git remote rename %s %s-old) or use --remote", remote, remote, remote)
		}
		return fmt.Errorf("git remote add %s: %v: %s (not a git repository? run git init first, or use --no-remote)", remote, err, strings.TrimSpace(out))
	}
	fmt.Fprintf(c.Stdout, "Git remote %s added\nremote available at %s\n", remote, gitURL(s, app))
	return nil
}

func (c *CLI) gitRemote(f *flags) error {
	s, _, err := c.session()
	if err != nil {
		return err
	}
	app, _ := c.appName(f, s)
	return c.addRemote(s, app, remoteName(f))
}

func (c *CLI) appsList(f *flags) error {
	s, a, err := c.session()
	if err != nil {
		return err
	}
	var apps []appJSON
	n, err := a.list("/v1/apps/", limit(f, s), &apps)
	if err != nil {
		return err
	}
	fmt.Fprintf(c.Stdout, "=== Apps%s\n", shown(len(apps), n))
	ids := make([]string, 0, len(apps))
	for _, x := range apps {
		ids = append(ids, x.ID)
	}
	sort.Strings(ids)
	for _, id := range ids {
		fmt.Fprintln(c.Stdout, id)
	}
	return nil
}

func shown(n, total int) string {
	if n < total {
		return fmt.Sprintf(" (%d of %d)", n, total)
	}
	return ""
}

func (c *CLI) info(f *flags) error {
	s, a, err := c.session()
	if err != nil {
		return err
	}
	app, _ := c.appName(f, s)
	var x appJSON
	if _, err := a.call("GET", "/v1/apps/"+app+"/", nil, &x); err != nil {
		return err
	}
	fmt.Fprintf(c.Stdout, "=== %s Application\nuuid:    %s\nurl:     %s\nowner:   %s\nid:      %s\ncreated: %s\nupdated: %s\n\n", x.ID, x.UUID, x.URL, x.Owner, x.ID, x.Created, x.Updated)
	if err := c.printPs(a, app, 100); err != nil {
		return err
	}
	var ds []struct{ Domain string }
	if _, err := a.list("/v1/apps/"+app+"/domains/", 100, &ds); err != nil {
		return err
	}
	fmt.Fprintf(c.Stdout, "\n=== %s Domains\n", app)
	for _, d := range ds {
		fmt.Fprintln(c.Stdout, d.Domain)
	}
	return nil
}

func (c *CLI) open(f *flags) error {
	s, a, err := c.session()
	if err != nil {
		return err
	}
	app, _ := c.appName(f, s)
	var x appJSON
	if _, err := a.call("GET", "/v1/apps/"+app+"/", nil, &x); err != nil {
		return err
	}
	// No browser to start here: the URL is the answer.
	fmt.Fprintln(c.Stdout, "http://"+x.URL)
	return nil
}

func (c *CLI) destroy(f *flags) error {
	s, a, err := c.session()
	if err != nil {
		return err
	}
	app, source := c.appName(f, s)
	fmt.Fprintf(c.Stderr, "Using app %s (from %s)\n", app, source)
	confirm := f.get("confirm")
	if confirm == "" {
		confirm = c.prompt(fmt.Sprintf(" !    WARNING: Potentially Destructive Action\n !    This command will destroy the application: %s\n !    To proceed, type \"%s\" or re-run this command with --confirm=%s\n\n> ", app, app, app))
	}
	if confirm != app {
		return fmt.Errorf("App %s does not match confirm %s, aborting.", app, confirm)
	}
	fmt.Fprintf(c.Stdout, "Destroying %s... ", app)
	start := time.Now()
	if _, err := a.call("DELETE", "/v1/apps/"+app+"/?wait=true", nil, nil); err != nil {
		fmt.Fprintln(c.Stdout)
		return err
	}
	fmt.Fprintf(c.Stdout, "done in %ds\n", int(time.Since(start).Seconds()))
	if strings.HasPrefix(source, "git remote ") {
		_, _ = c.git("remote", "remove", strings.TrimPrefix(source, "git remote "))
		fmt.Fprintln(c.Stdout, "Git remote deis removed")
	}
	return nil
}

func (c *CLI) logs(f *flags) error {
	s, a, err := c.session()
	if err != nil {
		return err
	}
	app, _ := c.appName(f, s)
	q := url.Values{}
	if n := f.get("lines"); n != "" {
		q.Set("log_lines", n)
	}
	if f.has("follow") {
		q.Set("follow", "true")
		return a.stream("/v1/apps/"+app+"/logs?"+q.Encode(), c.Stdout)
	}
	path := "/v1/apps/" + app + "/logs"
	if len(q) > 0 {
		path += "?" + q.Encode()
	}
	r, err := a.call("GET", path, nil, nil)
	if err != nil {
		return err
	}
	if r.status == 204 {
		fmt.Fprintf(c.Stderr, "%s has no logs yet\n", app)
		return nil
	}
	_, err = c.Stdout.Write(r.body)
	return err
}

func (c *CLI) runCmd(f *flags) error {
	s, a, err := c.session()
	if err != nil {
		return err
	}
	if len(f.args) == 0 {
		return errors.New("Usage: deis run [-a <app>] [--] <command>...")
	}
	app := c.mutatingApp(f, s)
	cmd := strings.Join(f.args, " ")
	fmt.Fprintf(c.Stderr, "Running '%s'...\n", cmd)
	var res []json.RawMessage
	if _, err := a.call("POST", "/v1/apps/"+app+"/run", map[string]string{"command": cmd}, &res); err != nil {
		return err
	}
	if len(res) != 2 {
		return errors.New("the controller's run answer is not [rc, output]")
	}
	var rc int
	var out string
	_ = json.Unmarshal(res[0], &rc)
	_ = json.Unmarshal(res[1], &out)
	fmt.Fprint(c.Stdout, out)
	if rc != 0 {
		return exitError{rc}
	}
	return nil
}

type configJSON struct {
	Values map[string]string `json:"values"`
	Memory map[string]string `json:"memory"`
	CPU    map[string]int    `json:"cpu"`
	Tags   map[string]string `json:"tags"`
}

// appConfig is the app (from -a, the remote or the directory) and its
// config, values, limits and tags.
func (c *CLI) appConfig(f *flags) (string, configJSON, error) {
	var cfg configJSON
	s, a, err := c.session()
	if err != nil {
		return "", cfg, err
	}
	app, _ := c.appName(f, s)
	_, err = a.call("GET", "/v1/apps/"+app+"/config/", nil, &cfg)
	return app, cfg, err
}

func (c *CLI) configList(f *flags) error {
	app, cfg, err := c.appConfig(f)
	if err != nil {
		return err
	}
	ks := make([]string, 0, len(cfg.Values))
	width := 0
	for k := range cfg.Values {
		ks = append(ks, k)
		width = max(width, len(k))
	}
	sort.Strings(ks)
	if f.has("oneline") {
		parts := make([]string, 0, len(ks))
		for _, k := range ks {
			parts = append(parts, k+"="+cfg.Values[k])
		}
		fmt.Fprintln(c.Stdout, strings.Join(parts, " "))
		return nil
	}
	fmt.Fprintf(c.Stdout, "=== %s Config\n", app)
	for _, k := range ks {
		fmt.Fprintf(c.Stdout, "%-*s  %s\n", width, k, cfg.Values[k])
	}
	return nil
}

// configChange posts a config change and prints the new release.
func (c *CLI) configChange(f *flags, body map[string]any, what string) error {
	s, a, err := c.session()
	if err != nil {
		return err
	}
	app := c.mutatingApp(f, s)
	fmt.Fprintf(c.Stdout, "%s...\n", what)
	start := time.Now()
	r, err := c.change(a, app, "POST", "/v1/apps/"+app+"/config/", body, nil)
	if err != nil {
		return err
	}
	fmt.Fprintf(c.Stdout, "done in %ds, v%s\n", int(time.Since(start).Seconds()), r.header.Get("Deis-Release"))
	return nil
}

func (c *CLI) configSet(f *flags) error {
	return c.setPairs(f, "values", "deis config:set <KEY>=<value>...", "Creating config")
}

func (c *CLI) configUnset(f *flags) error {
	return c.unsetKeys(f, "values", "deis config:unset <KEY>...", "Removing config")
}

// setPairs posts the key=value arguments as the config field named field
// (values, tags): the values may hold anything, "=" included.
func (c *CLI) setPairs(f *flags, field, usage, what string) error {
	if len(f.args) == 0 {
		return errors.New("Usage: " + usage)
	}
	vals := map[string]any{}
	for _, kv := range f.args {
		k, v, ok := strings.Cut(kv, "=")
		if !ok || k == "" {
			return fmt.Errorf("%q is not <key>=<value>", kv)
		}
		vals[k] = v
	}
	return c.configChange(f, map[string]any{field: vals}, what)
}

// unsetKeys posts the key arguments as nulls in the config field named
// field (values, tags, memory, cpu), which deletes them.
func (c *CLI) unsetKeys(f *flags, field, usage, what string) error {
	if len(f.args) == 0 {
		return errors.New("Usage: " + usage)
	}
	vals := map[string]any{}
	for _, k := range f.args {
		vals[k] = nil
	}
	return c.configChange(f, map[string]any{field: vals}, what)
}

type containerJSON struct {
	Type    string `json:"type"`
	Num     int    `json:"num"`
	State   string `json:"state"`
	Release string `json:"release"`
}

func (c *CLI) printPs(a *api, app string, n int) error {
	var ps []containerJSON
	if _, err := a.list("/v1/apps/"+app+"/containers/", n, &ps); err != nil {
		return err
	}
	fmt.Fprintf(c.Stdout, "=== %s Processes\n", app)
	byType := map[string][]containerJSON{}
	var types []string
	for _, p := range ps {
		if byType[p.Type] == nil {
			types = append(types, p.Type)
		}
		byType[p.Type] = append(byType[p.Type], p)
	}
	sort.Strings(types)
	for _, t := range types {
		fmt.Fprintf(c.Stdout, "--- %s:\n", t)
		for _, p := range byType[t] {
			fmt.Fprintf(c.Stdout, "%s.%d %s (%s)\n", p.Type, p.Num, p.State, p.Release)
		}
	}
	return nil
}

func (c *CLI) psList(f *flags) error {
	s, a, err := c.session()
	if err != nil {
		return err
	}
	app, _ := c.appName(f, s)
	return c.printPs(a, app, limit(f, s))
}

func drink(c *CLI) string {
	if d := c.Env("DEIS_DRINK_OF_CHOICE"); d != "" {
		return d
	}
	return "coffee"
}

func (c *CLI) scale(f *flags) error {
	s, a, err := c.session()
	if err != nil {
		return err
	}
	if len(f.args) == 0 {
		return errors.New("Usage: deis scale <type>=<n>...")
	}
	body := map[string]int{}
	for _, kv := range f.args {
		t, n, ok := strings.Cut(kv, "=")
		v, err := strconv.Atoi(n)
		if !ok || t == "" || err != nil || v < 0 {
			return fmt.Errorf("%q is not <type>=<count>", kv)
		}
		body[t] = v
	}
	app := c.mutatingApp(f, s)
	fmt.Fprintf(c.Stdout, "Scaling processes... but first, %s!\n", drink(c))
	start := time.Now()
	if _, err := c.change(a, app, "POST", "/v1/apps/"+app+"/scale/", body, nil); err != nil {
		return err
	}
	fmt.Fprintf(c.Stdout, "done in %ds\n", int(time.Since(start).Seconds()))
	return c.printPs(a, app, 100)
}

func (c *CLI) restart(f *flags) error {
	s, a, err := c.session()
	if err != nil {
		return err
	}
	app := c.mutatingApp(f, s)
	path := "/v1/apps/" + app + "/containers/"
	if len(f.args) == 1 {
		t, n, _ := strings.Cut(f.args[0], ".")
		path += t + "/"
		if n != "" {
			path += n + "/"
		}
	}
	fmt.Fprintf(c.Stdout, "Restarting processes... but first, %s!\n", drink(c))
	start := time.Now()
	if _, err := c.change(a, app, "POST", path+"restart/", nil, nil); err != nil {
		return err
	}
	fmt.Fprintf(c.Stdout, "done in %ds\n", int(time.Since(start).Seconds()))
	return c.printPs(a, app, 100)
}

type releaseJSON struct {
	Version int    `json:"version"`
	Created string `json:"created"`
	Summary string `json:"summary"`
	Owner   string `json:"owner"`
	Failed  string `json:"failed"`
}

func (c *CLI) releases(f *flags) error {
	s, a, err := c.session()
	if err != nil {
		return err
	}
	app, _ := c.appName(f, s)
	var rs []releaseJSON
	n, err := a.list("/v1/apps/"+app+"/releases/", limit(f, s), &rs)
	if err != nil {
		return err
	}
	fmt.Fprintf(c.Stdout, "=== %s Releases%s\n", app, shown(len(rs), n))
	for _, r := range rs {
		fmt.Fprintf(c.Stdout, "v%d\t%s\t%s\n", r.Version, r.Created, r.Summary)
	}
	return nil
}

func (c *CLI) releaseInfo(f *flags) error {
	s, a, err := c.session()
	if err != nil {
		return err
	}
	if len(f.args) != 1 {
		return errors.New("Usage: deis releases:info v<N>")
	}
	app, _ := c.appName(f, s)
	r, err := a.call("GET", "/v1/apps/"+app+"/releases/"+f.args[0]+"/", nil, nil)
	if err != nil {
		return err
	}
	_, err = c.Stdout.Write(append(r.body, '\n'))
	return err
}

func (c *CLI) rollback(f *flags) error {
	s, a, err := c.session()
	if err != nil {
		return err
	}
	app := c.mutatingApp(f, s)
	var body any
	target := "the previous release"
	if len(f.args) == 1 {
		v, err := strconv.Atoi(strings.TrimPrefix(f.args[0], "v"))
		if err != nil {
			return fmt.Errorf("%q is not a release (v<N>)", f.args[0])
		}
		body, target = map[string]int{"version": v}, "v"+strconv.Itoa(v)
	}
	fmt.Fprintf(c.Stdout, "Rolling back to %s...\n", target)
	var res struct {
		Version int `json:"version"`
	}
	if _, err := c.change(a, app, "POST", "/v1/apps/"+app+"/releases/rollback/", body, &res); err != nil {
		return err
	}
	fmt.Fprintf(c.Stdout, "done, v%d\n", res.Version)
	return nil
}

func (c *CLI) pull(f *flags) error {
	s, a, err := c.session()
	if err != nil {
		return err
	}
	if len(f.args) != 1 {
		return errors.New("Usage: deis pull <image>")
	}
	app := c.mutatingApp(f, s)
	body := map[string]any{"image": f.args[0]}
	procfile := map[string]string{}
	if p := f.get("procfile"); p != "" {
		procfile = parseProcfile(p)
	} else if data, err := os.ReadFile(filepath.Join(c.Dir, "Procfile")); err == nil {
		procfile = parseProcfile(string(data))
	}
	if len(procfile) > 0 {
		body["procfile"] = procfile
	}
	fmt.Fprintf(c.Stdout, "Creating build...\n")
	r, err := c.change(a, app, "POST", "/v1/apps/"+app+"/builds/", body, nil)
	if err != nil {
		return err
	}
	fmt.Fprintf(c.Stdout, "done, v%s\n", r.header.Get("Deis-Release"))
	return nil
}

// parseProcfile reads "<type>: <command>" lines (or a YAML flow map).
func parseProcfile(s string) map[string]string {
	out := map[string]string{}
	s = strings.Trim(strings.TrimSpace(s), "{}")
	for _, line := range strings.FieldsFunc(s, func(r rune) bool { return r == '\n' || r == ',' }) {
		t, cmd, ok := strings.Cut(line, ":")
		if ok && strings.TrimSpace(t) != "" && !strings.HasPrefix(strings.TrimSpace(t), "#") {
			out[strings.Trim(strings.TrimSpace(t), `"'`)] = strings.Trim(strings.TrimSpace(cmd), `"'`)
		}
	}
	return out
}

func (c *CLI) builds(f *flags) error {
	s, a, err := c.session()
	if err != nil {
		return err
	}
	app, _ := c.appName(f, s)
	var bs []struct{ UUID, Created, Image string }
	if _, err := a.list("/v1/apps/"+app+"/builds/", limit(f, s), &bs); err != nil {
		return err
	}
	fmt.Fprintf(c.Stdout, "=== %s Builds\n", app)
	for _, b := range bs {
		fmt.Fprintf(c.Stdout, "%s %s %s\n", b.UUID, b.Created, b.Image)
	}
	return nil
}

func (c *CLI) keysAdd(f *flags) error {
	_, a, err := c.session()
	if err != nil {
		return err
	}
	path := ""
	if len(f.args) == 1 {
		path = f.args[0]
	} else {
		matches, _ := filepath.Glob(filepath.Join(c.Env("HOME"), ".ssh", "*.pub"))
		if len(matches) == 0 {
			return errors.New("No SSH public keys found in ~/.ssh: give one, deis keys:add <file>")
		}
		for i, m := range matches {
			fmt.Fprintf(c.Stdout, "%d) %s\n", i+1, filepath.Base(m))
		}
		n, _ := strconv.Atoi(c.prompt("Which would you like to use with Deis? "))
		if n < 1 || n > len(matches) {
			return errors.New("No key chosen")
		}
		path = matches[n-1]
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	line := strings.TrimSpace(string(data))
	id := strings.TrimSuffix(filepath.Base(path), ".pub")
	if fl := strings.Fields(line); len(fl) >= 3 {
		id = strings.Join(fl[2:], " ")
	}
	fmt.Fprintf(c.Stdout, "Uploading %s to deis... ", filepath.Base(path))
	if _, err := a.call("POST", "/v1/keys/", map[string]string{"id": id, "public": line}, nil); err != nil {
		fmt.Fprintln(c.Stdout)
		return err
	}
	fmt.Fprintln(c.Stdout, "done")
	return nil
}

func (c *CLI) keysList(f *flags) error {
	s, a, err := c.session()
	if err != nil {
		return err
	}
	var ks []struct{ ID, Public string }
	if _, err := a.list("/v1/keys/", limit(f, s), &ks); err != nil {
		return err
	}
	fmt.Fprintf(c.Stdout, "=== %s Keys\n", s.Username)
	for _, k := range ks {
		p := k.Public
		if len(p) > 26 {
			p = p[:16] + "..." + p[len(p)-10:]
		}
		fmt.Fprintf(c.Stdout, "%s %s\n", k.ID, p)
	}
	return nil
}

func (c *CLI) keysRemove(f *flags) error {
	_, a, err := c.session()
	if err != nil {
		return err
	}
	if len(f.args) != 1 {
		return errors.New("Usage: deis keys:remove <id>")
	}
	if _, err := a.call("DELETE", "/v1/keys/"+url.PathEscape(f.args[0]), nil, nil); err != nil {
		return err
	}
	fmt.Fprintf(c.Stdout, "Removing %s SSH Key... done\n", f.args[0])
	return nil
}

func (c *CLI) domainsAdd(f *flags) error {
	s, a, err := c.session()
	if err != nil {
		return err
	}
	if len(f.args) != 1 {
		return errors.New("Usage: deis domains:add <domain>")
	}
	app, _ := c.appName(f, s)
	if _, err := a.call("POST", "/v1/apps/"+app+"/domains/", map[string]string{"domain": f.args[0]}, nil); err != nil {
		return err
	}
	fmt.Fprintf(c.Stdout, "Adding %s to %s... done\n", f.args[0], app)
	return nil
}

func (c *CLI) domainsList(f *flags) error {
	s, a, err := c.session()
	if err != nil {
		return err
	}
	app, _ := c.appName(f, s)
	var ds []struct{ Domain string }
	if _, err := a.list("/v1/apps/"+app+"/domains/", limit(f, s), &ds); err != nil {
		return err
	}
	fmt.Fprintf(c.Stdout, "=== %s Domains\n", app)
	for _, d := range ds {
		fmt.Fprintln(c.Stdout, d.Domain)
	}
	return nil
}

func (c *CLI) domainsRemove(f *flags) error {
	s, a, err := c.session()
	if err != nil {
		return err
	}
	if len(f.args) != 1 {
		return errors.New("Usage: deis domains:remove <domain>")
	}
	app := c.mutatingApp(f, s)
	if _, err := a.call("DELETE", "/v1/apps/"+app+"/domains/"+url.PathEscape(f.args[0]), nil, nil); err != nil {
		return err
	}
	fmt.Fprintf(c.Stdout, "Removing %s from %s... done\n", f.args[0], app)
	return nil
}

func (c *CLI) certsAdd(f *flags) error {
	_, a, err := c.session()
	if err != nil {
		return err
	}
	if len(f.args) != 2 {
		return errors.New("Usage: deis certs:add <cert file> <key file>")
	}
	cert, err := os.ReadFile(f.args[0])
	if err != nil {
		return err
	}
	key, err := os.ReadFile(f.args[1])
	if err != nil {
		return err
	}
	names := []string{f.get("common-name")}
	if sans := f.get("subject-alt-names"); sans != "" {
		names = append(names, strings.Split(sans, ",")...)
	}
	for _, cn := range names {
		body := map[string]string{"certificate": string(cert), "key": string(key)}
		if cn != "" {
			body["common_name"] = strings.TrimSpace(cn)
		}
		var res struct {
			CommonName string `json:"common_name"`
			Expires    string `json:"expires"`
		}
		if _, err := a.call("POST", "/v1/certs/", body, &res); err != nil {
			return err
		}
		fmt.Fprintf(c.Stdout, "Added certificate for %s (expires %s)\n", res.CommonName, res.Expires)
	}
	return nil
}

func (c *CLI) certsList(f *flags) error {
	s, a, err := c.session()
	if err != nil {
		return err
	}
	var cs []struct {
		CommonName string `json:"common_name"`
		Expires    string `json:"expires"`
	}
	if _, err := a.list("/v1/certs/", limit(f, s), &cs); err != nil {
		return err
	}
	fmt.Fprintf(c.Stdout, "%-40s %s\n", "Common Name", "Expires")
	for _, x := range cs {
		fmt.Fprintf(c.Stdout, "%-40s %s\n", x.CommonName, x.Expires)
	}
	return nil
}

func (c *CLI) certsRemove(f *flags) error {
	_, a, err := c.session()
	if err != nil {
		return err
	}
	if len(f.args) != 1 {
		return errors.New("Usage: deis certs:remove <common name>")
	}
	if _, err := a.call("DELETE", "/v1/certs/"+url.PathEscape(f.args[0]), nil, nil); err != nil {
		return err
	}
	fmt.Fprintf(c.Stdout, "Removing %s... done\n", f.args[0])
	return nil
}

func (c *CLI) permsList(f *flags) error {
	s, a, err := c.session()
	if err != nil {
		return err
	}
	app, _ := c.appName(f, s)
	var p struct{ Users []string }
	if _, err := a.call("GET", "/v1/apps/"+app+"/perms/", nil, &p); err != nil {
		return err
	}
	fmt.Fprintf(c.Stdout, "=== %s's Users\n", app)
	for _, u := range p.Users {
		fmt.Fprintln(c.Stdout, u)
	}
	return nil
}

func (c *CLI) permsCreate(f *flags) error {
	s, a, err := c.session()
	if err != nil {
		return err
	}
	if len(f.args) != 1 {
		return errors.New("Usage: deis perms:create <user>")
	}
	app, _ := c.appName(f, s)
	if _, err := a.call("POST", "/v1/apps/"+app+"/perms/", map[string]string{"username": f.args[0]}, nil); err != nil {
		return err
	}
	fmt.Fprintf(c.Stdout, "Adding %s to %s collaborators... done\n", f.args[0], app)
	return nil
}

func (c *CLI) permsDelete(f *flags) error {
	s, a, err := c.session()
	if err != nil {
		return err
	}
	if len(f.args) != 1 {
		return errors.New("Usage: deis perms:delete <user>")
	}
	app := c.mutatingApp(f, s)
	if _, err := a.call("DELETE", "/v1/apps/"+app+"/perms/"+url.PathEscape(f.args[0]), nil, nil); err != nil {
		return err
	}
	fmt.Fprintf(c.Stdout, "Removing %s from %s collaborators... done\n", f.args[0], app)
	return nil
}

func (c *CLI) users(f *flags) error {
	s, a, err := c.session()
	if err != nil {
		return err
	}
	var us []struct{ Username string }
	n, err := a.list("/v1/users/", limit(f, s), &us)
	if err != nil {
		return err
	}
	fmt.Fprintf(c.Stdout, "=== Users%s\n", shown(len(us), n))
	for _, u := range us {
		fmt.Fprintln(c.Stdout, u.Username)
	}
	return nil
}
