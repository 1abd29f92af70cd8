// Package daemon holds what every binary shares: the common flags of
// docs/contract.md (each with an environment fallback), logging setup, the
// admin HTTP server (/healthz, /metrics) and signal-driven lifetimes.
//
// cmd/<binary>/main.go uses it to parse flags into one config value; all
// other logic lives in the component packages.
package daemon

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/url"
	"os"
	"runtime"
	"strconv"
	"strings"
	"time"

	"github.com/deis/dataplane/pkg/keys"
	"github.com/deis/dataplane/pkg/version"
)

// Common are the flags every daemon takes (docs/contract.md "Common flags").
type Common struct {
	Etcd     []string   // etcd v3 endpoints
	Host     string     // this host's address as published in etcd
	Docker   string     // Docker engine endpoint
	LogLevel slog.Level // minimum level logged
	APIToken string     // shared secret of the internal HTTP APIs ("" = from etcd)
	// EtcdTLS is the client TLS for https:// etcd endpoints (nil: plain,
	// or the system roots for https).
	EtcdTLS *tls.Config

	etcdCA, etcdCert, etcdKey string

	etcdRaw, logLevelRaw string
}

// Default values of the common flags.
const (
	DefaultEtcd   = "http://127.0.0.1:2379"
	DefaultDocker = "unix:///var/run/docker.sock"
)

// Register adds --etcd, --host, --docker and --log-level to fs, with
// defaults taken from ETCD_ENDPOINTS, HOST, DOCKER_HOST and LOG_LEVEL. A
// flag given on the command line beats its environment variable.
func (c *Common) Register(fs *flag.FlagSet) {
	fs.StringVar(&c.etcdRaw, "etcd", Env("ETCD_ENDPOINTS", DefaultEtcd), "comma-separated etcd v3 endpoints (env ETCD_ENDPOINTS)")
	fs.StringVar(&c.Host, "host", Env("HOST", ""), "this host's address as published in etcd (env HOST; default first non-loopback IPv4)")
	fs.StringVar(&c.Docker, "docker", Env("DOCKER_HOST", DefaultDocker), "Docker engine endpoint (env DOCKER_HOST)")
	fs.StringVar(&c.APIToken, "api-token", Env("API_TOKEN", ""), "token the internal HTTP APIs and /metrics require (Authorization: Bearer); empty: etcd's "+keys.PlatformAPIToken+", and loopback clients only while none is set (env API_TOKEN)")
	fs.StringVar(&c.etcdCA, "etcd-cacert", Env("ETCD_CACERT", ""), "PEM file of the CA that signed etcd's certificate, for https:// endpoints (env ETCD_CACERT)")
	fs.StringVar(&c.etcdCert, "etcd-cert", Env("ETCD_CERT", ""), "PEM client certificate for etcd, with --etcd-key (env ETCD_CERT)")
	fs.StringVar(&c.etcdKey, "etcd-key", Env("ETCD_KEY", ""), "PEM key of --etcd-cert (env ETCD_KEY)")
	fs.StringVar(&c.logLevelRaw, "log-level", Env("LOG_LEVEL", "info"), "debug, info, warn or error (env LOG_LEVEL)")
}

// Validate resolves defaults and checks every common flag. The error names
// the flag, so main can print it as the one line the daemon dies with.
func (c *Common) Validate() error {
	eps, err := ParseEndpoints(c.etcdRaw)
	if err != nil {
		return fmt.Errorf("--etcd: %w", err)
	}
	c.Etcd = eps
	if c.EtcdTLS, err = EtcdTLS(c.etcdCA, c.etcdCert, c.etcdKey); err != nil {
		return err
	}
	if c.Host == "" {
		c.Host = DefaultHost()
	} else if strings.ContainsAny(c.Host, " /:") && net.ParseIP(c.Host) == nil {
		return fmt.Errorf("--host: %q is not an address or host name", c.Host)
	}
	if c.Docker == "" {
		return errors.New("--docker: must not be empty")
	}
	if err := c.LogLevel.UnmarshalText([]byte(c.logLevelRaw)); err != nil {
		return fmt.Errorf("--log-level: %q is not one of debug, info, warn, error", c.logLevelRaw)
	}
	return nil
}

// EtcdTLS builds the etcd client's TLS from PEM files: a CA (else the
// system roots) and an optional client certificate and key. All empty:
// nil. The error names the flag.
func EtcdTLS(caFile, certFile, keyFile string) (*tls.Config, error) {
	if caFile == "" && certFile == "" && keyFile == "" {
		return nil, nil
	}
	cfg := &tls.Config{MinVersion: tls.VersionTLS12}
	if caFile != "" {
		pem, err := os.ReadFile(caFile)
		if err != nil {
			return nil, fmt.Errorf("--etcd-cacert: %w", err)
		}
		cfg.RootCAs = x509.NewCertPool()
		if !cfg.RootCAs.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("--etcd-cacert: no PEM certificate in %s", caFile)
		}
	}
	if (certFile == "") != (keyFile == "") {
		return nil, errors.New("--etcd-cert and --etcd-key go together")
	}
	if certFile != "" {
		pair, err := tls.LoadX509KeyPair(certFile, keyFile)
		if err != nil {
			return nil, fmt.Errorf("--etcd-cert, --etcd-key: %w", err)
		}
		cfg.Certificates = []tls.Certificate{pair}
	}
	return cfg, nil
}

// ParseEndpoints splits a comma list of etcd URLs and checks each.
func ParseEndpoints(s string) ([]string, error) {
	var out []string
	for _, ep := range strings.Split(s, ",") {
		ep = strings.TrimSpace(ep)
		if ep == "" {
			continue
		}
		u, err := url.Parse(ep)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return nil, fmt.Errorf("%q is not an http(s)://host:port URL", ep)
		}
		out = append(out, ep)
	}
	if len(out) == 0 {
		return nil, errors.New("no endpoint given")
	}
	return out, nil
}

// DefaultHost is the first non-loopback IPv4 address of this machine, else
// 127.0.0.1.
func DefaultHost() string {
	addrs, err := net.InterfaceAddrs()
	if err == nil {
		for _, a := range addrs {
			if ipn, ok := a.(*net.IPNet); ok && !ipn.IP.IsLoopback() && ipn.IP.To4() != nil {
				return ipn.IP.String()
			}
		}
	}
	return "127.0.0.1"
}

// Env returns the environment variable name, or def when it is unset or
// empty.
func Env(name, def string) string {
	if v := os.Getenv(name); v != "" {
		return v
	}
	return def
}

// EnvDuration is Env for durations; an unparsable value is returned as the
// default and reported by the flag parser only if given on the command line,
// so callers should Validate durations they take from the environment.
func EnvDuration(name string, def time.Duration) time.Duration {
	if v := os.Getenv(name); v != "" {
		if d, err := ParseDuration(v); err == nil {
			return d
		}
	}
	return def
}

// ParseDuration accepts Go syntax ("30s", "1m30s") or bare seconds ("30",
// "1.5"), as the router settings of docs/contract.md do. Negative values are
// rejected.
func ParseDuration(s string) (time.Duration, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return 0, errors.New("empty duration")
	}
	if f, err := strconv.ParseFloat(s, 64); err == nil {
		if !(f >= 0 && f <= 1e9) { // also rejects NaN

			return 0, fmt.Errorf("duration %q out of range", s)
		}
		return time.Duration(f * float64(time.Second)), nil
	}
	d, err := time.ParseDuration(s)
	if err != nil {
		return 0, fmt.Errorf("duration %q: want Go syntax (30s) or seconds", s)
	}
	if d < 0 {
		return 0, fmt.Errorf("duration %q is negative", s)
	}
	return d, nil
}

// Parse parses args into fs and exits the process with a one-line error
// when a flag is bad (ExitUsage). It adds --version, which prints the
// build's version and exits 0. It is meant for main packages only.
func Parse(fs *flag.FlagSet, args []string, validate ...func() error) {
	showVersion := fs.Bool("version", false, "print the version and exit")
	// The flag package would print the whole usage after a bad flag: the
	// contract is one line naming it. -h still prints the usage.
	fs.Init(fs.Name(), flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	if err := parseArgs(fs, args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			fs.SetOutput(os.Stderr)
			fs.Usage()
			os.Exit(ExitOK)
		}
		fmt.Fprintf(os.Stderr, "%s: %v\n", fs.Name(), err)
		os.Exit(ExitUsage)
	}
	fs.SetOutput(os.Stderr)
	if *showVersion {
		fmt.Printf("%s %s (%s)\n", fs.Name(), version.Version, runtime.Version())
		os.Exit(0)
	}
	for _, v := range validate {
		if err := v(); err != nil {
			fmt.Fprintf(os.Stderr, "%s: %v\n", fs.Name(), err)
			os.Exit(ExitUsage)
		}
	}
}

// parseArgs is fs.Parse with two differences. A boolean flag followed by
// a separate true/false word takes it ("--access-log false"): Go's flag
// package would read the flag as true and leave "false" behind. And an
// argument left over is an error: every setting is a flag, so a stray word
// is a mistyped one, which must not be ignored.
func parseArgs(fs *flag.FlagSet, args []string) error {
	joined := make([]string, 0, len(args))
	for i := 0; i < len(args); i++ {
		a := args[i]
		name := strings.TrimLeft(a, "-")
		if strings.HasPrefix(a, "-") && !strings.Contains(name, "=") && i+1 < len(args) {
			if f := fs.Lookup(name); f != nil {
				if bf, ok := f.Value.(interface{ IsBoolFlag() bool }); ok && bf.IsBoolFlag() {
					if _, err := ParseBool(args[i+1]); err == nil {
						joined = append(joined, a+"="+args[i+1])
						i++
						continue
					}
				}
			}
		}
		joined = append(joined, a)
	}
	if err := fs.Parse(joined); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected argument %q: settings are flags (--name=value)", fs.Arg(0))
	}
	return nil
}

// NewLogger returns a JSON slog logger at level, tagged with the component.
// Durations are written as Go duration strings ("1.5s"), not the integer
// nanoseconds slog's JSON handler would print.
func NewLogger(component string, level slog.Level) *slog.Logger {
	h := slog.NewJSONHandler(os.Stderr, &slog.HandlerOptions{Level: level, ReplaceAttr: readableDurations})
	return slog.New(h).With("component", component)
}

func readableDurations(_ []string, a slog.Attr) slog.Attr {
	if a.Value.Kind() == slog.KindDuration {
		return slog.String(a.Key, a.Value.Duration().String())
	}
	return a
}

// boolFlag is a boolean flag that also takes a value: --x, --x=false,
// --x=off, --x no. Its environment variable sets the default.
type boolFlag struct{ p *bool }

func (b boolFlag) String() string {
	if b.p == nil {
		return "false"
	}
	return strconv.FormatBool(*b.p)
}

func (b boolFlag) Set(s string) error {
	v, err := ParseBool(s)
	if err != nil {
		return err
	}
	*b.p = v
	return nil
}

func (boolFlag) IsBoolFlag() bool { return true }

// BoolVar defines a boolean flag whose default comes from env (when set
// and valid) or def; it accepts true/false, on/off, yes/no, 1/0, and no
// value at all for true.
func BoolVar(fs *flag.FlagSet, p *bool, name, env string, def bool, usage string) {
	*p = def
	if v, ok := os.LookupEnv(env); ok && v != "" {
		if b, err := ParseBool(v); err == nil {
			*p = b
		}
	}
	fs.Var(boolFlag{p}, name, usage+" (env "+env+")")
}

// ParseBool accepts true/false, on/off, yes/no, 1/0, any case.
func ParseBool(v string) (bool, error) {
	switch strings.ToLower(strings.TrimSpace(v)) {
	case "true", "on", "yes", "1":
		return true, nil
	case "false", "off", "no", "0":
		return false, nil
	}
	return false, fmt.Errorf("%q is not true or false", v)
}
