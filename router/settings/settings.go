// Package settings parses the router's /deis/router/* settings (docs/contract.md)
// into an immutable Settings value. Every setting has a default; an invalid
// value is reported and replaced by the last good value (or the default), so
// a typo never stops routing.
package settings

import (
	"crypto/tls"
	"errors"
	"fmt"
	"net/netip"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/deis/dataplane/pkg/daemon"
	"github.com/deis/dataplane/pkg/keys"
	"github.com/deis/dataplane/pkg/units"
)

// Settings is one consistent set of router settings. Treat as read-only.
type Settings struct {
	BodySize       int64         // bytes; 0 = unlimited
	DefaultTimeout time.Duration // read/write/idle towards apps
	// BodyTimeout is the longest wait between two reads of a client's
	// request body (nginx's client_body_timeout).
	BodyTimeout    time.Duration
	ConnectTimeout time.Duration

	ProxyProtocol   bool
	ProxyRealIPCIDR []netip.Prefix // peers trusted for X-Forwarded-For / PROXY

	EnforceHTTPS          bool
	HSTSEnabled           bool
	HSTSMaxAge            int
	HSTSIncludeSubDomains bool
	HSTSPreload           bool
	HSTSHeader            string // precomputed Strict-Transport-Security value

	Gzip          bool
	GzipCompLevel int
	GzipMinLength int
	GzipTypes     map[string]bool // media types (no parameters), lowercase

	EnforceWhitelist    bool
	ControllerWhitelist []netip.Prefix

	AffinityArg string

	SSLCert, SSLKey string // platform certificate PEM
	MinTLSVersion   uint16
	ServerTokens    bool

	BuilderConnectTimeout    time.Duration
	BuilderTCPTimeout        time.Duration
	ControllerConnectTimeout time.Duration
	ControllerReadTimeout    time.Duration
}

// DefaultGzipTypes are nginx's Deis v1 defaults.
var DefaultGzipTypes = "application/x-javascript application/xhtml+xml application/xml application/xml+rss application/json text/css text/javascript text/plain text/xml"

// Default returns the settings with every default of docs/contract.md.
func Default() *Settings {
	s := &Settings{
		BodySize:                 1 << 20,
		DefaultTimeout:           1300 * time.Second,
		BodyTimeout:              60 * time.Second,
		ConnectTimeout:           30 * time.Second,
		ProxyRealIPCIDR:          []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")},
		HSTSMaxAge:               10886400,
		Gzip:                     true,
		GzipCompLevel:            5,
		GzipMinLength:            256,
		MinTLSVersion:            tls.VersionTLS12,
		BuilderConnectTimeout:    10 * time.Second,
		BuilderTCPTimeout:        1200 * time.Second,
		ControllerConnectTimeout: 10 * time.Second,
		ControllerReadTimeout:    20 * time.Minute,
	}
	s.GzipTypes, _ = ParseGzipTypes(DefaultGzipTypes)
	s.HSTSHeader = hstsHeader(s)
	return s
}

// Parse builds Settings from the /deis/router/* keys in kvs. prev (may be
// nil) supplies the last good value of a setting whose new value is
// invalid; otherwise the default is used. Each invalid value yields one
// error naming the key and the value.
func Parse(kvs map[string]string, prev *Settings) (*Settings, []error) {
	if prev == nil {
		prev = Default()
	}
	def := Default()
	s := &Settings{}
	var errs []error
	known := make(map[string]bool, 32)
	get := func(name string) (string, bool) {
		known[name] = true
		v, ok := kvs[keys.RouterSetting(name)]
		return strings.TrimSpace(v), ok
	}
	// field applies parse to the setting's value; on a missing key the
	// default is used, on an invalid one the previous good value.
	field := func(name string, parse func(string) error, useDefault, usePrev func()) {
		v, ok := get(name)
		if !ok {
			useDefault()
			return
		}
		if err := parse(v); err != nil {
			errs = append(errs, fmt.Errorf("%s=%q: %w (keeping %s)", keys.RouterSetting(name), clip(v), err, "last good value"))
			usePrev()
		}
	}
	size := func(name string, dst *int64, d, p int64) {
		field(name, func(v string) (err error) { *dst, err = units.ParseSize(v); return },
			func() { *dst = d }, func() { *dst = p })
	}
	dur := func(name string, dst *time.Duration, d, p time.Duration) {
		field(name, func(v string) (err error) { *dst, err = ParseTimeout(v); return },
			func() { *dst = d }, func() { *dst = p })
	}
	boolean := func(name string, dst *bool, d, p bool) {
		field(name, func(v string) (err error) { *dst, err = ParseBool(v); return },
			func() { *dst = d }, func() { *dst = p })
	}
	integer := func(name string, dst *int, lo, hi, d, p int) {
		field(name, func(v string) error {
			n, err := strconv.Atoi(v)
			if err != nil || n < lo || n > hi {
				return fmt.Errorf("want an integer from %d to %d", lo, hi)
			}
			*dst = n
			return nil
		}, func() { *dst = d }, func() { *dst = p })
	}
	cidrs := func(name string, dst *[]netip.Prefix, d, p []netip.Prefix) {
		field(name, func(v string) (err error) { *dst, err = ParseCIDRs(v); return },
			func() { *dst = d }, func() { *dst = p })
	}
	str := func(name string, dst *string, d string) {
		if v, ok := get(name); ok {
			*dst = v
		} else {
			*dst = d
		}
	}

	size("bodySize", &s.BodySize, def.BodySize, prev.BodySize)
	dur("defaultTimeout", &s.DefaultTimeout, def.DefaultTimeout, prev.DefaultTimeout)
	dur("bodyTimeout", &s.BodyTimeout, def.BodyTimeout, prev.BodyTimeout)
	dur("connectTimeout", &s.ConnectTimeout, def.ConnectTimeout, prev.ConnectTimeout)
	boolean("proxyProtocol", &s.ProxyProtocol, def.ProxyProtocol, prev.ProxyProtocol)
	cidrs("proxyRealIpCidr", &s.ProxyRealIPCIDR, def.ProxyRealIPCIDR, prev.ProxyRealIPCIDR)
	boolean("enforceHTTPS", &s.EnforceHTTPS, def.EnforceHTTPS, prev.EnforceHTTPS)
	boolean("hsts/enabled", &s.HSTSEnabled, def.HSTSEnabled, prev.HSTSEnabled)
	integer("hsts/maxAge", &s.HSTSMaxAge, 0, 1<<31-1, def.HSTSMaxAge, prev.HSTSMaxAge)
	boolean("hsts/includeSubDomains", &s.HSTSIncludeSubDomains, def.HSTSIncludeSubDomains, prev.HSTSIncludeSubDomains)
	boolean("hsts/preload", &s.HSTSPreload, def.HSTSPreload, prev.HSTSPreload)
	field("gzip", func(v string) (err error) { s.Gzip, err = ParseBool(v); return },
		func() { s.Gzip = def.Gzip }, func() { s.Gzip = prev.Gzip })
	integer("gzipCompLevel", &s.GzipCompLevel, 1, 9, def.GzipCompLevel, prev.GzipCompLevel)
	integer("gzipMinLength", &s.GzipMinLength, 0, 1<<31-1, def.GzipMinLength, prev.GzipMinLength)
	field("gzipTypes", func(v string) (err error) { s.GzipTypes, err = ParseGzipTypes(v); return },
		func() { s.GzipTypes = def.GzipTypes }, func() { s.GzipTypes = prev.GzipTypes })
	boolean("enforceWhitelist", &s.EnforceWhitelist, def.EnforceWhitelist, prev.EnforceWhitelist)
	cidrs("controller/whitelist", &s.ControllerWhitelist, def.ControllerWhitelist, prev.ControllerWhitelist)
	str("affinityArg", &s.AffinityArg, "")
	str("sslCert", &s.SSLCert, "")
	str("sslKey", &s.SSLKey, "")
	field("sslProtocols", func(v string) (err error) { s.MinTLSVersion, err = ParseTLSProtocols(v); return },
		func() { s.MinTLSVersion = def.MinTLSVersion }, func() { s.MinTLSVersion = prev.MinTLSVersion })
	boolean("serverTokens", &s.ServerTokens, def.ServerTokens, prev.ServerTokens)
	dur("builder/timeout/connect", &s.BuilderConnectTimeout, def.BuilderConnectTimeout, prev.BuilderConnectTimeout)
	dur("builder/timeout/tcp", &s.BuilderTCPTimeout, def.BuilderTCPTimeout, prev.BuilderTCPTimeout)
	dur("controller/timeout/connect", &s.ControllerConnectTimeout, def.ControllerConnectTimeout, prev.ControllerConnectTimeout)
	dur("controller/timeout/read", &s.ControllerReadTimeout, def.ControllerReadTimeout, prev.ControllerReadTimeout)
	s.HSTSHeader = hstsHeader(s)
	errs = append(errs, unknownSettings(kvs, known)...)
	return s, errs
}

// unknownSettings names each /deis/router/* key that is no setting (a typo,
// or a Deis v1 setting this router does not have), with the setting it
// probably meant: ignored silently, it would cost an incident.
func unknownSettings(kvs map[string]string, known map[string]bool) []error {
	var errs []error
	for k := range kvs {
		name, ok := strings.CutPrefix(k, keys.RouterPrefix)
		if !ok || strings.HasPrefix(k, keys.RouterHostsPrefix) || known[name] {
			continue
		}
		err := fmt.Errorf("%s: unknown router setting, ignored", k)
		for n := range known {
			if strings.EqualFold(n, name) {
				err = fmt.Errorf("%s: unknown router setting, ignored (did you mean %s?)", k, keys.RouterSetting(n))
			}
		}
		errs = append(errs, err)
	}
	sort.Slice(errs, func(i, j int) bool { return errs[i].Error() < errs[j].Error() })
	return errs
}

func hstsHeader(s *Settings) string {
	h := "max-age=" + strconv.Itoa(s.HSTSMaxAge)
	if s.HSTSIncludeSubDomains {
		h += "; includeSubDomains"
	}
	if s.HSTSPreload {
		h += "; preload"
	}
	return h
}

// MinTimeout is the shortest timeout setting accepted: below it (0
// included) every request would fail, which a setting must never cause.
const MinTimeout = 100 * time.Millisecond

// ParseTimeout parses a timeout setting (Go syntax or bare seconds) of at
// least MinTimeout.
func ParseTimeout(v string) (time.Duration, error) {
	d, err := daemon.ParseDuration(v)
	if err != nil {
		return 0, err
	}
	if d < MinTimeout {
		return 0, fmt.Errorf("a timeout must be at least %v", MinTimeout)
	}
	return d, nil
}

// ParseBool accepts true/false, on/off, yes/no, 1/0.
// An empty value is false (a key set to nothing).
func ParseBool(v string) (bool, error) {
	if strings.TrimSpace(v) == "" {
		return false, nil
	}
	return daemon.ParseBool(v)
}

// ParseCIDRs parses a comma (or space) separated list of CIDRs or single
// addresses.
func ParseCIDRs(v string) ([]netip.Prefix, error) {
	var out []netip.Prefix
	for _, f := range strings.FieldsFunc(v, func(r rune) bool { return r == ',' || r == ' ' || r == '\t' || r == '\n' }) {
		if p, err := netip.ParsePrefix(f); err == nil {
			out = append(out, p.Masked())
			continue
		}
		a, err := netip.ParseAddr(f)
		if err != nil {
			return nil, fmt.Errorf("%q is not a CIDR or address", clip(f))
		}
		out = append(out, netip.PrefixFrom(a.Unmap(), a.Unmap().BitLen()))
	}
	return out, nil
}

// ParseGzipTypes parses a space or comma separated list of media types.
func ParseGzipTypes(v string) (map[string]bool, error) {
	out := make(map[string]bool)
	for _, f := range strings.FieldsFunc(v, func(r rune) bool { return r == ',' || r == ' ' || r == '\t' }) {
		f = strings.ToLower(f)
		if !strings.Contains(f, "/") && f != "*" {
			return nil, fmt.Errorf("%q is not a media type", clip(f))
		}
		out[f] = true
	}
	return out, nil
}

// ParseTLSProtocols takes nginx's ssl_protocols list ("TLSv1.2 TLSv1.3") or a
// single version and returns the minimum version enabled. TLS 1.0 and 1.1
// are accepted only when named explicitly.
func ParseTLSProtocols(v string) (uint16, error) {
	var lowest uint16
	for _, f := range strings.FieldsFunc(v, func(r rune) bool { return r == ',' || r == ' ' }) {
		var ver uint16
		switch strings.ToLower(strings.TrimPrefix(strings.ToLower(f), "tls")) {
		case "v1", "v1.0", "1.0", "1":
			ver = tls.VersionTLS10
		case "v1.1", "1.1":
			ver = tls.VersionTLS11
		case "v1.2", "1.2":
			ver = tls.VersionTLS12
		case "v1.3", "1.3":
			ver = tls.VersionTLS13
		default:
			return 0, fmt.Errorf("%q is not a TLS version (TLSv1.2, TLSv1.3)", clip(f))
		}
		if lowest == 0 || ver < lowest {
			lowest = ver
		}
	}
	if lowest == 0 {
		return 0, errors.New("no TLS version given")
	}
	return lowest, nil
}

// Allowed reports whether ip is inside one of the prefixes.
func Allowed(prefixes []netip.Prefix, ip netip.Addr) bool {
	ip = ip.Unmap()
	for _, p := range prefixes {
		if p.Contains(ip) {
			return true
		}
	}
	return false
}

func clip(s string) string {
	if len(s) > 64 {
		return s[:64] + "..."
	}
	return s
}
