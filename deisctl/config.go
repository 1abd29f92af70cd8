// Package deisctl is the operators' command line (cmd/deisctl): settings
// under /deis/<component>/ checked by the daemons' own parsers before
// anything is written, the platform's status, systemd install, and backup
// and restore of the whole platform.
package deisctl

import (
	"context"
	"errors"
	"fmt"
	"os"
	"sort"
	"strconv"
	"strings"

	clientv3 "go.etcd.io/etcd/client/v3"
	gossh "golang.org/x/crypto/ssh"

	"github.com/deis/dataplane/logger/store"
	"github.com/deis/dataplane/pkg/keys"
	"github.com/deis/dataplane/pkg/syslog/sender"
	"github.com/deis/dataplane/router/certs"
	"github.com/deis/dataplane/router/settings"
)

// component is one /deis/<name>/ settings tree as deisctl config sees it.
type component struct {
	prefix string
	// keys are the settings it takes, with the parser of each; nil means
	// any key (the router: its own Parse knows them all).
	keys map[string]func(string) error
	// files are settings whose value on the command line is a file path:
	// the file's content is stored.
	files map[string]bool
	// check validates the component's settings as they would be after the
	// change (kvs holds every key under prefix), for parsers that look at
	// several keys at once.
	check func(kvs map[string]string, changed []string) error
}

var components = map[string]component{
	"router": {prefix: keys.RouterPrefix, files: map[string]bool{"sslCert": true, "sslKey": true}, check: checkRouter},
	"platform": {prefix: keys.PlatformPrefix, keys: map[string]func(string) error{
		"domain":                 keys.ValidateDomain,
		"enablePlacementOptions": func(v string) error { _, err := strconv.ParseBool(v); return err },
		"apiToken": func(v string) error {
			if len(v) < 16 {
				return errors.New("want at least 16 characters: it guards the internal APIs")
			}
			return nil
		},
	}},
	"logs": {prefix: keys.LogsPrefix, keys: map[string]func(string) error{
		"storageAdapterType": func(v string) error { _, _, err := store.ParseAdapter(v); return err },
		"drain": func(v string) error {
			for _, u := range strings.Split(v, ",") {
				if strings.TrimSpace(u) == "" {
					continue
				}
				if _, err := sender.ParseURL(strings.TrimSpace(u)); err != nil {
					return err
				}
			}
			return nil
		},
		"protocol": oneOf("tcp", "udp"),
	}},
	"controller": {prefix: keys.ControllerPrefix, keys: map[string]func(string) error{
		"registrationMode": oneOf("enabled", "disabled", "admin_only"),
	}},
	"builder": {prefix: keys.BuilderPrefix, files: map[string]bool{"sshPrivateKey": true}, keys: map[string]func(string) error{
		// v1's name for the builder's host key; stored where the builder
		// reads it (/deis/builder/sshHostKey).
		"sshPrivateKey": func(v string) error { _, err := gossh.ParsePrivateKey([]byte(v)); return err },
	}},
}

// storedAs maps a v1 setting name to the key the daemons read.
var storedAs = map[string]string{keys.BuilderPrefix + "sshPrivateKey": keys.BuilderSSHHostKey}

func oneOf(vals ...string) func(string) error {
	return func(v string) error {
		for _, x := range vals {
			if v == x {
				return nil
			}
		}
		return fmt.Errorf("want one of %s", strings.Join(vals, ", "))
	}
}

// checkRouter runs the router's own settings parser over the settings as
// they would be: any error about a changed key refuses the change, with
// the router's reason. The certificate and key must also make a pair.
func checkRouter(kvs map[string]string, changed []string) error {
	_, errs := settings.Parse(kvs, nil)
	for _, err := range errs {
		for _, k := range changed {
			if strings.Contains(err.Error(), k+"=") || strings.Contains(err.Error(), k+":") {
				msg := strings.Replace(err.Error(), " (keeping last good value)", "", 1)
				return errors.New(strings.Replace(msg, ", ignored", "", 1))
			}
		}
	}
	cert, key := kvs[keys.RouterSetting("sslCert")], kvs[keys.RouterSetting("sslKey")]
	if cert != "" && key != "" {
		if _, err := certs.Parse(cert, key); err != nil {
			return fmt.Errorf("sslCert and sslKey: %w", err)
		}
	}
	return nil
}

// Config runs `deisctl config <component> get|set|rm key[=value]...`.
func (c *CLI) Config(ctx context.Context, args []string) error {
	if len(args) < 2 {
		return errors.New("usage: deisctl config <component> get|set|rm <key>[=<value>]...  (components: " + componentNames() + ")")
	}
	comp, ok := components[args[0]]
	if !ok {
		return fmt.Errorf("unknown component %q: want one of %s", args[0], componentNames())
	}
	verb, rest := args[1], args[2:]
	switch verb {
	case "get":
		return c.configGet(ctx, comp, rest)
	case "set":
		return c.configSet(ctx, args[0], comp, rest)
	case "rm":
		return c.configRm(ctx, comp, rest)
	}
	return fmt.Errorf("unknown action %q: want get, set or rm", verb)
}

func componentNames() string {
	names := make([]string, 0, len(components))
	for n := range components {
		names = append(names, n)
	}
	sort.Strings(names)
	return strings.Join(names, ", ")
}

func key(comp component, name string) string {
	k := comp.prefix + name
	if s, ok := storedAs[k]; ok {
		return s
	}
	return k
}

func (c *CLI) configGet(ctx context.Context, comp component, names []string) error {
	if len(names) == 0 { // every setting of the component
		resp, err := c.etcd.Get(ctx, comp.prefix, clientv3.WithPrefix())
		if err != nil {
			return fmt.Errorf("read %s: %w", comp.prefix, err)
		}
		for _, kv := range resp.Kvs {
			if kv.Lease != 0 {
				continue // announced by a daemon, not a setting
			}
			fmt.Fprintf(c.Stdout, "%s=%s\n", strings.TrimPrefix(string(kv.Key), comp.prefix), kv.Value)
		}
		return nil
	}
	for _, n := range names {
		resp, err := c.etcd.Get(ctx, key(comp, n))
		if err != nil {
			return fmt.Errorf("read %s: %w", key(comp, n), err)
		}
		if len(resp.Kvs) == 0 {
			return fmt.Errorf("%s is not set", key(comp, n))
		}
		fmt.Fprintln(c.Stdout, string(resp.Kvs[0].Value))
	}
	return nil
}

// configSet validates every value first and writes them all in one
// transaction, or nothing.
func (c *CLI) configSet(ctx context.Context, name string, comp component, pairs []string) error {
	if len(pairs) == 0 {
		return errors.New("usage: deisctl config " + name + " set <key>=<value>...")
	}
	vals := map[string]string{}
	var changed []string
	for _, p := range pairs {
		k, v, ok := strings.Cut(p, "=")
		if !ok || k == "" {
			return fmt.Errorf("%q is not <key>=<value>", p)
		}
		if comp.files[k] {
			data, err := os.ReadFile(v)
			if err != nil {
				return fmt.Errorf("%s is read from a file: %w", k, err)
			}
			v = string(data)
		}
		if comp.keys != nil {
			parse, known := comp.keys[k]
			if !known {
				return fmt.Errorf("%s: unknown %s setting (known: %s)", k, name, known2(comp))
			}
			if err := parse(strings.TrimSpace(v)); err != nil {
				return fmt.Errorf("%s=%q refused: %w; nothing was written", k, clip(v), err)
			}
		}
		vals[key(comp, k)] = v
		changed = append(changed, k)
	}
	if comp.check != nil {
		resp, err := c.etcd.Get(ctx, comp.prefix, clientv3.WithPrefix())
		if err != nil {
			return fmt.Errorf("read %s: %w", comp.prefix, err)
		}
		kvs := map[string]string{}
		for _, kv := range resp.Kvs {
			if kv.Lease == 0 {
				kvs[string(kv.Key)] = string(kv.Value)
			}
		}
		for k, v := range vals {
			kvs[k] = v
		}
		if err := comp.check(kvs, changed); err != nil {
			return fmt.Errorf("refused: %w; nothing was written", err)
		}
	}
	ops := make([]clientv3.Op, 0, len(vals))
	for k, v := range vals {
		ops = append(ops, clientv3.OpPut(k, v))
	}
	if _, err := c.etcd.Txn(ctx).Then(ops...).Commit(); err != nil {
		return fmt.Errorf("write %s settings: %w", name, err)
	}
	for _, k := range changed {
		fmt.Fprintf(c.Stdout, "%s: set\n", k)
	}
	return nil
}

func known2(comp component) string {
	names := make([]string, 0, len(comp.keys))
	for n := range comp.keys {
		names = append(names, n)
	}
	sort.Strings(names)
	return strings.Join(names, ", ")
}

func (c *CLI) configRm(ctx context.Context, comp component, names []string) error {
	if len(names) == 0 {
		return errors.New("usage: deisctl config <component> rm <key> [<key>...]")
	}
	ops := make([]clientv3.Op, 0, len(names))
	for _, n := range names {
		ops = append(ops, clientv3.OpDelete(key(comp, n)))
	}
	if _, err := c.etcd.Txn(ctx).Then(ops...).Commit(); err != nil {
		return fmt.Errorf("delete: %w", err)
	}
	for _, n := range names {
		fmt.Fprintf(c.Stdout, "%s: removed\n", n)
	}
	return nil
}

func clip(s string) string {
	if len(s) > 60 {
		return s[:60] + "..."
	}
	return s
}
