// Package table builds the router's immutable routing table from one etcd
// snapshot: apps and their backends, custom domains, the controller and
// builder addresses, certificates and settings. A table is never modified
// after Build; the request path loads the current one with one atomic load.
package table

import (
	"fmt"
	"net"
	"net/netip"
	"sort"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/deis/dataplane/pkg/keys"
	"github.com/deis/dataplane/router/certs"
	"github.com/deis/dataplane/router/settings"
)

// Prefixes are the etcd prefixes a table is built from.
var Prefixes = []string{
	keys.PlatformPrefix, keys.ServicesPrefix, keys.DomainsPrefix, keys.CertsPrefix,
	keys.ConfigPrefix, keys.RouterPrefix, keys.BuilderPrefix, keys.ControllerPrefix, keys.AppsPrefix,
}

// Backend is one app container address. Its health state outlives table
// swaps: the Pool hands the same *Backend to every table.
type Backend struct {
	Addr string // host:port

	fails        atomic.Int32
	ejectedUntil atomic.Int64 // unix nanoseconds
	Ejections    atomic.Int64
}

// Ejection policy: after EjectAfter consecutive connection failures a
// backend is skipped for EjectFor, then tried again.
const (
	EjectAfter = 3
	EjectFor   = 10 * time.Second
)

// Available reports whether the backend is not in its ejection cool-down.
func (b *Backend) Available(now int64) bool { return b.ejectedUntil.Load() <= now }

// Failed records a connection failure and reports whether it ejected the
// backend.
func (b *Backend) Failed(now int64) bool {
	if b.fails.Add(1) >= EjectAfter {
		b.fails.Store(0)
		b.ejectedUntil.Store(now + int64(EjectFor))
		b.Ejections.Add(1)
		return true
	}
	return false
}

// Succeeded resets the failure count.
func (b *Backend) Succeeded() {
	if b.fails.Load() != 0 {
		b.fails.Store(0)
	}
}

// Pool keeps one Backend per address across table builds. Only the table
// builder uses it (single goroutine).
type Pool struct{ m map[string]*Backend }

// NewPool returns an empty pool.
func NewPool() *Pool { return &Pool{m: make(map[string]*Backend)} }

func (p *Pool) get(addr string) *Backend {
	b := p.m[addr]
	if b == nil {
		b = &Backend{Addr: addr}
		p.m[addr] = b
	}
	return b
}

// retain drops backends no table uses any more.
func (p *Pool) retain(used map[string]bool) {
	for a := range p.m {
		if !used[a] {
			delete(p.m, a)
		}
	}
}

// App is one routable application.
type App struct {
	Name      string
	Backends  []*Backend // sorted by address
	Whitelist []netip.Prefix
	// Controller marks the deis.<domain> entry.
	Controller bool

	// Stats is shared across table generations for the same app name.
	Stats *AppStats
}

// Next returns the round-robin start index. The cursor survives table
// swaps, so a rebuild does not send a burst to the first backend.
func (a *App) Next() uint32 { return a.Stats.next.Add(1) }

// AppStats are per-app counters kept across table swaps.
type AppStats struct {
	ByClass [6]atomic.Int64 // index status/100
	next    atomic.Uint32   // round-robin cursor
}

// Target is a TCP forwarding destination (the builder).
type Target struct {
	Addr           string
	ConnectTimeout time.Duration
	IdleTimeout    time.Duration // no traffic either way for this long closes both sides
}

// Table is an immutable routing table.
type Table struct {
	Revision int64
	Built    time.Time
	Domain   string // platform domain, lowercase, may be empty

	Apps     map[string]*App // by app name
	Domains  map[string]*App // custom domain -> app
	Settings *settings.Settings
	Certs    *certs.Store
	Builder  *Target // nil when not announced

	Invalid int // entries skipped
}

// Build makes a table from kvs at revision rev. prev (may be nil) supplies
// last good settings and per-app stats. Each invalid entry yields one error
// and is skipped; it never affects other apps.
func Build(kvs map[string]string, rev int64, prev *Table, pool *Pool) (*Table, []error) {
	var prevSettings *settings.Settings
	if prev != nil {
		prevSettings = prev.Settings
	}
	st, errs := settings.Parse(kvs, prevSettings)
	t := &Table{
		Revision: rev,
		Built:    time.Now(),
		Domain:   strings.ToLower(strings.TrimSuffix(strings.TrimSpace(kvs[keys.PlatformDomain]), ".")),
		Apps:     make(map[string]*App),
		Domains:  make(map[string]*App),
		Settings: st,
	}
	app := func(name string) *App {
		a := t.Apps[name]
		if a == nil {
			a = &App{Name: name}
			if prev != nil && prev.Apps[name] != nil {
				a.Stats = prev.Apps[name].Stats
			}
			if a.Stats == nil {
				a.Stats = new(AppStats)
			}
			t.Apps[name] = a
		}
		return a
	}
	used := make(map[string]bool)
	var whitelists []string
	for k, v := range kvs {
		switch {
		case strings.HasPrefix(k, keys.ServicesPrefix):
			name, _, err := keys.ParseService(k)
			if err != nil {
				errs = append(errs, err)
				continue
			}
			addr, err := ValidateAddr(v)
			if err != nil {
				errs = append(errs, fmt.Errorf("%s: %w", k, err))
				continue
			}
			a := app(name)
			a.Backends = append(a.Backends, pool.get(addr))
			used[addr] = true
		case strings.HasPrefix(k, keys.AppsPrefix):
			rest := k[len(keys.AppsPrefix):]
			name, field, ok := strings.Cut(rest, "/")
			if ok && field == "owner" {
				if err := keys.ValidateAppName(name); err != nil {
					errs = append(errs, fmt.Errorf("%s: %w", k, err))
					continue
				}
				app(name)
			}
		case strings.HasPrefix(k, keys.ConfigPrefix):
			if strings.HasSuffix(k, "/deis_whitelist") {
				whitelists = append(whitelists, k)
			}
		}
	}
	for _, k := range whitelists {
		name := strings.TrimSuffix(strings.TrimPrefix(k, keys.ConfigPrefix), "/deis_whitelist")
		a := t.Apps[name]
		if a == nil {
			continue
		}
		wl, err := parseWhitelist(kvs[k])
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %w (app %s denies everyone until fixed)", k, err, name))
			// Fail closed: a broken whitelist must not open the app.
			wl = []netip.Prefix{}
		}
		a.Whitelist = wl
	}
	for k, v := range kvs {
		d, ok := strings.CutPrefix(k, keys.DomainsPrefix)
		if !ok {
			continue
		}
		d = strings.ToLower(strings.TrimSuffix(d, "."))
		if err := keys.ValidateDomain(d); err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", k, err))
			continue
		}
		name := strings.TrimSpace(v)
		if err := keys.ValidateAppName(name); err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", k, err))
			continue
		}
		t.Domains[d] = app(name)
	}
	for _, a := range t.Apps {
		sort.Slice(a.Backends, func(i, j int) bool { return a.Backends[i].Addr < a.Backends[j].Addr })
	}
	// The controller, served at deis.<domain>.
	if h, p := kvs[keys.ControllerHost], kvs[keys.ControllerPort]; h != "" || p != "" {
		addr, err := ValidateAddr(net.JoinHostPort(strings.TrimSpace(h), strings.TrimSpace(p)))
		if err != nil {
			errs = append(errs, fmt.Errorf("controller host/port: %w", err))
		} else {
			c := &App{Name: "deis", Controller: true, Backends: []*Backend{pool.get(addr)}, Whitelist: st.ControllerWhitelist, Stats: new(AppStats)}
			if prev != nil && prev.Apps["deis.controller"] != nil {
				c.Stats = prev.Apps["deis.controller"].Stats
			}
			used[addr] = true
			t.Apps["deis.controller"] = c // not a valid app name, so no clash
		}
	}
	if h, p := kvs[keys.BuilderHost], kvs[keys.BuilderPort]; h != "" || p != "" {
		addr, err := ValidateAddr(net.JoinHostPort(strings.TrimSpace(h), strings.TrimSpace(p)))
		if err != nil {
			errs = append(errs, fmt.Errorf("builder host/port: %w", err))
		} else {
			t.Builder = &Target{Addr: addr, ConnectTimeout: st.BuilderConnectTimeout, IdleTimeout: st.BuilderTCPTimeout}
		}
	}
	var certErrs []error
	var prevCerts *certs.Store
	if prev != nil {
		prevCerts = prev.Certs
	}
	t.Certs, certErrs = certs.Build(kvs, t.Domain, st.SSLCert, st.SSLKey, prevCerts)
	errs = append(errs, certErrs...)
	pool.retain(used)
	t.Invalid = len(errs)
	return t, errs
}

// ValidateAddr checks host:port and returns it normalised.
func ValidateAddr(v string) (string, error) {
	v = strings.TrimSpace(v)
	host, port, err := net.SplitHostPort(v)
	if err != nil {
		return "", fmt.Errorf("backend %q is not host:port", clip(v))
	}
	n, err := strconv.Atoi(port)
	if err != nil || n < 1 || n > 65535 {
		return "", fmt.Errorf("backend %q: bad port", clip(v))
	}
	if host == "" {
		return "", fmt.Errorf("backend %q: empty host", clip(v))
	}
	if _, err := netip.ParseAddr(host); err != nil {
		if keys.ValidateDomain(host) != nil {
			return "", fmt.Errorf("backend %q: bad host", clip(v))
		}
	}
	return net.JoinHostPort(host, port), nil
}

// parseWhitelist reads Deis v1's deis_whitelist: addresses or CIDRs
// separated by commas or spaces, each optionally followed by ":label".
func parseWhitelist(v string) ([]netip.Prefix, error) {
	var cleaned []string
	for _, f := range strings.FieldsFunc(v, func(r rune) bool { return r == ',' || r == ' ' }) {
		if i := strings.LastIndexByte(f, ':'); i > 0 && strings.Count(f, ":") == 1 {
			f = f[:i] // IPv4 with a label
		}
		cleaned = append(cleaned, f)
	}
	return settings.ParseCIDRs(strings.Join(cleaned, ","))
}

// Lookup finds the app for a request host (already lowercased, port and
// trailing dot removed). It returns nil when no app matches.
func (t *Table) Lookup(host string) *App {
	if a := t.Domains[host]; a != nil {
		return a
	}
	if t.Domain == "" {
		// No platform domain: the first label names the app.
		name, _, _ := strings.Cut(host, ".")
		if name == "deis" {
			return t.Apps["deis.controller"]
		}
		return t.Apps[name]
	}
	if len(host) > len(t.Domain)+1 && host[len(host)-len(t.Domain)-1] == '.' && host[len(host)-len(t.Domain):] == t.Domain {
		name := host[:len(host)-len(t.Domain)-1]
		if strings.IndexByte(name, '.') >= 0 {
			return nil
		}
		if name == "deis" {
			return t.Apps["deis.controller"]
		}
		return t.Apps[name]
	}
	return nil
}

// Backends is the number of backends in the table.
func (t *Table) Backends() int {
	n := 0
	for _, a := range t.Apps {
		n += len(a.Backends)
	}
	return n
}

func clip(s string) string {
	if len(s) > 64 {
		return s[:64] + "..."
	}
	return s
}
