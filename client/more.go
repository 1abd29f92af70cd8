package client

import (
	"errors"
	"fmt"
	"os"
	"sort"
	"strconv"
	"strings"
)

func init() {
	commands = append(commands,
		command{name: "auth:cancel", usage: "deis auth:cancel [--username=<u>] [--password=<p>] [--yes]",
			flags: map[string]bool{"username": true, "password": true, "yes": false}, run: (*CLI).cancel},
		command{name: "auth:regenerate", usage: "deis auth:regenerate [-u <user>] [--all]",
			flags: map[string]bool{"username": true, "all": false}, short: map[string]string{"u": "username"}, run: (*CLI).regenerate},
		command{name: "limits:list", usage: "deis limits [-a <app>]", flags: appFlag, short: appShort, run: (*CLI).limitsList},
		command{name: "limits:set", usage: "deis limits:set [-a <app>] [--memory|--cpu] <type>=<limit>...",
			flags: withApp(map[string]bool{"memory": false, "cpu": false}), short: map[string]string{"a": "app", "m": "memory", "c": "cpu"}, run: (*CLI).limitsSet},
		command{name: "limits:unset", usage: "deis limits:unset [-a <app>] [--memory|--cpu] <type>...",
			flags: withApp(map[string]bool{"memory": false, "cpu": false}), short: map[string]string{"a": "app", "m": "memory", "c": "cpu"}, run: (*CLI).limitsUnset},
		command{name: "tags:list", usage: "deis tags [-a <app>]", flags: appFlag, short: appShort, run: (*CLI).tagsList},
		command{name: "tags:set", usage: "deis tags:set [-a <app>] <key>=<value>...", flags: appFlag, short: appShort, run: (*CLI).tagsSet},
		command{name: "tags:unset", usage: "deis tags:unset [-a <app>] <key>...", flags: appFlag, short: appShort, run: (*CLI).tagsUnset},
	)
}

func (c *CLI) cancel(f *flags) error {
	s, a, err := c.session()
	if err != nil {
		return err
	}
	user := f.get("username")
	if user == "" {
		user = s.Username
	}
	if !f.has("yes") {
		if c.prompt(fmt.Sprintf("cancel account %s at %s? (y/N): ", user, s.Controller)) != "y" {
			return errors.New("Account not changed")
		}
	}
	var body any
	if user != s.Username {
		body = map[string]string{"username": user}
	}
	if _, err := a.call("DELETE", "/v1/auth/cancel/", body, nil); err != nil {
		return err
	}
	fmt.Fprintln(c.Stdout, "Account cancelled")
	if user == s.Username {
		return os.Remove(settingsPath(c.Env))
	}
	return nil
}

func (c *CLI) regenerate(f *flags) error {
	s, a, err := c.session()
	if err != nil {
		return err
	}
	body := map[string]any{}
	if f.has("all") {
		body["all"] = true
	} else if u := f.get("username"); u != "" {
		body["username"] = u
	}
	var tok struct {
		Token string `json:"token"`
	}
	if _, err := a.call("POST", "/v1/auth/tokens/", body, &tok); err != nil {
		return err
	}
	if len(body) == 0 || body["username"] == s.Username {
		s.Token = tok.Token
		if err := s.save(settingsPath(c.Env)); err != nil {
			return err
		}
	}
	fmt.Fprintln(c.Stdout, "Token regenerated")
	return nil
}

func (c *CLI) limitsList(f *flags) error {
	app, cfg, err := c.appConfig(f)
	if err != nil {
		return err
	}
	fmt.Fprintf(c.Stdout, "=== %s Limits\n\n--- Memory\n", app)
	printLimits(c, cfg.Memory)
	cpu := map[string]string{}
	for t, n := range cfg.CPU {
		cpu[t] = strconv.Itoa(n)
	}
	fmt.Fprintln(c.Stdout, "\n--- CPU")
	printLimits(c, cpu)
	return nil
}

func printLimits(c *CLI, m map[string]string) {
	if len(m) == 0 {
		fmt.Fprintln(c.Stdout, "Unlimited")
		return
	}
	ks := make([]string, 0, len(m))
	for k := range m {
		ks = append(ks, k)
	}
	sort.Strings(ks)
	for _, k := range ks {
		fmt.Fprintf(c.Stdout, "%s  %s\n", k, m[k])
	}
}

func limitKind(f *flags) string {
	if f.has("cpu") {
		return "cpu"
	}
	return "memory"
}

func (c *CLI) limitsSet(f *flags) error {
	if len(f.args) == 0 {
		return errors.New("Usage: deis limits:set <type>=<limit>...")
	}
	kind := limitKind(f)
	vals := map[string]any{}
	for _, kv := range f.args {
		t, v, ok := strings.Cut(kv, "=")
		if !ok || t == "" || v == "" {
			return fmt.Errorf("%q is not <type>=<limit>", kv)
		}
		if kind == "cpu" {
			n, err := strconv.Atoi(v)
			if err != nil {
				return fmt.Errorf("%q: CPU shares are a whole number", kv)
			}
			vals[t] = n
		} else {
			vals[t] = strings.ToUpper(v)
		}
	}
	return c.configChange(f, map[string]any{kind: vals}, "Applying limits")
}

func (c *CLI) limitsUnset(f *flags) error {
	return c.unsetKeys(f, limitKind(f), "deis limits:unset <type>...", "Removing limits")
}

func (c *CLI) tagsList(f *flags) error {
	app, cfg, err := c.appConfig(f)
	if err != nil {
		return err
	}
	fmt.Fprintf(c.Stdout, "=== %s Tags\n", app)
	printLimits(c, cfg.Tags)
	return nil
}

func (c *CLI) tagsSet(f *flags) error {
	return c.setPairs(f, "tags", "deis tags:set <key>=<value>...", "Applying tags")
}

func (c *CLI) tagsUnset(f *flags) error {
	return c.unsetKeys(f, "tags", "deis tags:unset <key>...", "Removing tags")
}
