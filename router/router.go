// Package router wires the edge router together: the etcd watch that builds
// routing tables, the HTTP and HTTPS listeners (SO_REUSEPORT, optional PROXY
// protocol), the TCP forwarder to the builder, the health port and the
// router's own announcement in etcd.
package router

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	reuseport "github.com/libp2p/go-reuseport"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/valyala/fasthttp"
	clientv3 "go.etcd.io/etcd/client/v3"
	"golang.org/x/sync/errgroup"

	"github.com/deis/dataplane/pkg/announce"
	"github.com/deis/dataplane/pkg/daemon"
	"github.com/deis/dataplane/pkg/etcdwatch"
	"github.com/deis/dataplane/pkg/health"
	"github.com/deis/dataplane/pkg/keys"
	"github.com/deis/dataplane/router/proxy"
	"github.com/deis/dataplane/router/proxyproto"
	"github.com/deis/dataplane/router/settings"
	"github.com/deis/dataplane/router/table"
	"github.com/deis/dataplane/router/tcpproxy"
)

// Config is everything the router needs; cmd/router fills it from flags.
type Config struct {
	HTTPAddr  string // "" disables
	HTTPSAddr string // "" disables
	SSHAddr   string // "" disables
	Host      string // announced as /deis/router/hosts/<Host>
	Grace     time.Duration
	AccessLog bool
	// HeaderTimeout bounds reading a request's head (slow clients).
	HeaderTimeout time.Duration
	// MaxConns bounds concurrent client connections.
	MaxConns int
	// GCHeadroom, when set, paces the garbage collector: the heap may grow
	// by at least this much between collections (router/gc.go). Zero
	// leaves GOGC alone.
	GCHeadroom uint64
}

// Router is a running router.
type Router struct {
	cfg     Config
	cli     *clientv3.Client
	log     *slog.Logger
	reg     *prometheus.Registry
	health  *health.Registry
	proxy   *proxy.Proxy
	access  *proxy.AccessLog
	watcher *etcdwatch.Watcher
	pool    *table.Pool

	httpSrv, httpsSrv *fasthttp.Server
	tcp               *tcpproxy.Server
	listeners         map[string]net.Listener
	proxyProtocol     func() bool
	trustedProxy      func(netip.Addr) bool // may a peer set the client address with PROXY?

	buildDuration     prometheus.Histogram
	invalid           prometheus.Counter
	handshakesRefused prometheus.Counter
	handshakes        *handshakeTurns
	newTable          chan struct{} // to tuneGC: a table was installed

	// tlsForTable is the TLS configuration of the installed table, built
	// once per table rather than once per handshake.
	tlsForTable atomic.Pointer[tableTLS]
}

type tableTLS struct {
	t   *table.Table
	cfg *tls.Config
}

// New binds every listener (so that errors surface at start) and returns a
// router ready to Run.
func New(cfg Config, cli *clientv3.Client, log *slog.Logger) (*Router, error) {
	if cfg.HeaderTimeout <= 0 {
		cfg.HeaderTimeout = 30 * time.Second
	}
	if cfg.MaxConns <= 0 {
		cfg.MaxConns = 100000
	}
	r := &Router{cfg: cfg, cli: cli, log: log, reg: daemon.NewMetrics(), health: &health.Registry{}, pool: table.NewPool(), listeners: map[string]net.Listener{}}
	if cfg.AccessLog {
		r.access = proxy.NewAccessLog(os.Stdout)
	}
	r.proxy = proxy.New(log, r.access, r.reg)
	if r.access != nil {
		r.reg.MustRegister(prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "router_access_log_dropped_total", Help: "Access log lines dropped because the writer fell behind."},
			func() float64 { return float64(r.access.Dropped.Load()) }))
	}
	r.watcher = etcdwatch.New(cli, table.Prefixes, etcdwatch.Options{Logger: log})
	r.buildDuration = prometheus.NewHistogram(prometheus.HistogramOpts{Name: "router_table_build_seconds", Help: "Time to build a routing table.", Buckets: prometheus.ExponentialBuckets(0.0005, 2, 14)})
	r.invalid = prometheus.NewCounter(prometheus.CounterOpts{Name: "router_invalid_entries_total", Help: "Invalid etcd entries skipped (new ones per build)."})
	r.handshakesRefused = prometheus.NewCounter(prometheus.CounterOpts{Name: "router_tls_handshakes_refused_total", Help: "TLS handshakes failed after waiting 5 s for one of the GOMAXPROCS handshake turns."})
	r.handshakes = newHandshakeTurns()
	r.newTable = make(chan struct{}, 1)
	r.reg.MustRegister(r.buildDuration, r.invalid, r.handshakesRefused)
	r.health.Set("table", errors.New("no routing table loaded yet"))
	r.trustedProxy = func(peer netip.Addr) bool {
		t := r.proxy.Table()
		return t != nil && settings.Allowed(t.Settings.ProxyRealIPCIDR, peer)
	}
	r.proxyProtocol = func() bool {
		if t := r.proxy.Table(); t != nil {
			return t.Settings.ProxyProtocol
		}
		return false
	}

	for name, addr := range map[string]string{"http": cfg.HTTPAddr, "https": cfg.HTTPSAddr, "ssh": cfg.SSHAddr} {
		if addr == "" {
			continue
		}
		ln, err := listen(name, addr)
		if err != nil {
			r.closeListeners()
			return nil, fmt.Errorf("%s listener on %s: %w", name, addr, err)
		}
		pl := proxyproto.NewListener(ln, r.proxyProtocol, r.trustedProxy, 5*time.Second, log)
		r.listeners[name] = pl
		r.reg.MustRegister(
			prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "router_proxy_protocol_rejected_total", Help: "Connections closed for a missing or bad PROXY header.", ConstLabels: prometheus.Labels{"listener": name}}, func() float64 { return float64(pl.Rejected.Load()) }),
			prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "router_proxy_protocol_untrusted_total", Help: "PROXY headers whose source was ignored: the peer is not in proxyRealIpCidr.", ConstLabels: prometheus.Labels{"listener": name}}, func() float64 { return float64(pl.Untrusted.Load()) }),
		)
	}
	r.httpSrv = r.newServer()
	r.httpsSrv = r.newServer()
	r.tcp = tcpproxy.New(func() *table.Target {
		if t := r.proxy.Table(); t != nil {
			return t.Builder
		}
		return nil
	}, log, r.reg)
	return r, nil
}

// listen binds a router port with SO_REUSEPORT, so that during a rolling
// restart the new router binds beside the old one.
//
// HTTP and HTTPS connections get no TCP keepalive (as in nginx and HAProxy
// by default): every wait on them is already bounded (the header timeout,
// the idle timeout between requests, the app timeout for bodies, writes and
// Upgrade tunnels), so a vanished client is dropped by those anyway, and
// Go's default would cost four setsockopt calls per accepted connection,
// about 2 % of the router's CPU in resumed TLS handshakes
// (bench/router/tlsprofile.sh). SSH connections keep Go's default (15 s):
// a git push can stay quiet for a whole build.
func listen(name, addr string) (net.Listener, error) {
	lc := net.ListenConfig{Control: reuseport.Control}
	if name != "ssh" {
		lc.KeepAlive = -1
	}
	return lc.Listen(context.Background(), "tcp", addr)
}

// NewAdmin binds the router's admin server on addr: /healthz, /metrics
// (guarded by the API token) and the load balancers' /health-check. The
// caller (main) owns it and runs it beside Run.
func NewAdmin(r *Router, addr, apiToken string) (*daemon.Admin, error) {
	// SO_REUSEPORT like the other listeners: during a rolling restart the
	// new router binds the same health port beside the old one.
	ln, err := reuseport.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("admin listener on %s: %w", addr, err)
	}
	admin := daemon.NewAdminOn(ln, r.health, r.reg, daemon.NewAuth(apiToken, r.log, r.reg))
	admin.Mux.HandleFunc("/health-check", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain")
		_, _ = w.Write([]byte("OK\n"))
	})
	return admin, nil
}

// Addr returns the bound address of listener name (http, https, ssh), for
// tests that bind port 0.
func (r *Router) Addr(name string) string {
	if ln := r.listeners[name]; ln != nil {
		return ln.Addr().String()
	}
	return ""
}

// Proxy exposes the request path (for tests and benchmarks).
func (r *Router) Proxy() *proxy.Proxy { return r.proxy }

func (r *Router) closeListeners() {
	for _, ln := range r.listeners {
		_ = ln.Close()
	}
}

func (r *Router) newServer() *fasthttp.Server {
	return &fasthttp.Server{
		Handler:                       r.handle,
		Name:                          "deis-router",
		Concurrency:                   r.cfg.MaxConns,
		ReadBufferSize:                16 << 10, // largest request head; beyond it: 431
		WriteBufferSize:               16 << 10,
		ReadTimeout:                   r.cfg.HeaderTimeout,
		IdleTimeout:                   90 * time.Second,
		MaxRequestBodySize:            64 << 10, // buffered below this, streamed above
		StreamRequestBody:             true,
		DisableHeaderNamesNormalizing: true,
		DisablePreParseMultipartForm:  true,
		NoDefaultServerHeader:         true,
		NoDefaultContentType:          true,
		NoDefaultDate:                 false,
		CloseOnShutdown:               true,
		Logger:                        slogPrinter{r.log},
		HeaderReceived: func(h *fasthttp.RequestHeader) fasthttp.RequestConfig {
			// The head had to arrive within HeaderTimeout; a body (a big
			// upload) gets the app timeout. A request without one reads
			// nothing more (the next request's wait sets its own deadline),
			// and each deadline set is a runtime timer update per request.
			t := r.proxy.Table()
			if t == nil {
				return fasthttp.RequestConfig{}
			}
			cfg := fasthttp.RequestConfig{WriteTimeout: t.Settings.DefaultTimeout}
			if h.ContentLength() != 0 {
				cfg.ReadTimeout = t.Settings.DefaultTimeout
			}
			return cfg
		},
	}
}

// handle recovers panics at the request boundary.
func (r *Router) handle(ctx *fasthttp.RequestCtx) {
	defer func() {
		if p := recover(); p != nil {
			r.log.Error("panic serving request", "panic", p, "host", string(ctx.Host()))
			ctx.Error("internal router error", fasthttp.StatusInternalServerError)
		}
	}()
	r.proxy.Handle(ctx)
}

type slogPrinter struct{ log *slog.Logger }

func (p slogPrinter) Printf(format string, args ...any) {
	p.log.Debug(fmt.Sprintf(format, args...))
}

// Run serves until ctx ends, then shuts down gracefully within Grace.
func (r *Router) Run(ctx context.Context) error {
	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error { return ignoreCanceled(r.watcher.Run(gctx)) })
	g.Go(func() error { r.applyUpdates(gctx); return nil })
	if r.cfg.GCHeadroom > 0 {
		g.Go(func() error { r.tuneGC(gctx); return nil })
	}

	ann := announce.New(r.cli, announce.DefaultTTL, r.log)
	if addr := r.Addr("http"); addr != "" {
		_, port, _ := net.SplitHostPort(addr)
		_ = ann.Put(gctx, keys.RouterHost(r.cfg.Host), net.JoinHostPort(r.cfg.Host, port))
	}
	annCtx, stopAnnounce := context.WithCancel(context.WithoutCancel(gctx))
	var annDone sync.WaitGroup
	annDone.Go(func() { _ = ann.Run(annCtx) })

	// Connections wait in the listeners' backlogs until the first routing
	// table is in: a router started beside a running one (SO_REUSEPORT, a
	// restart) would otherwise answer its share of requests 503. Without
	// etcd it serves after firstTableWait all the same, saying why.
	r.waitFirstTable(gctx)
	serveErr := make(chan error, 3)
	if ln := r.listeners["http"]; ln != nil {
		go func() { serveErr <- r.httpSrv.Serve(ln) }()
	}
	if ln := r.listeners["https"]; ln != nil {
		tlsLn := tls.NewListener(r.handshakes.listener(ln), &tls.Config{GetConfigForClient: r.tlsConfig})
		go func() { serveErr <- r.httpsSrv.Serve(tlsLn) }()
	}
	if ln := r.listeners["ssh"]; ln != nil {
		go func() { serveErr <- r.tcp.Serve(context.WithoutCancel(gctx), ln) }()
	}
	r.log.Info("router serving", "http", r.Addr("http"), "https", r.Addr("https"), "ssh", r.Addr("ssh"))
	r.checkMigrate()
	if err := daemon.Notify("READY=1"); err != nil {
		r.log.Warn("cannot tell systemd the router is ready", "err", err)
	}

	var runErr error
	select {
	case <-gctx.Done():
	case err := <-serveErr:
		if err != nil {
			runErr = fmt.Errorf("listener stopped: %w", err)
		}
	}
	// Leave the mesh first, then stop accepting and drain in-flight requests.
	_ = daemon.Notify("STOPPING=1")
	stopAnnounce()
	annDone.Wait()
	sctx, cancel := context.WithTimeout(context.Background(), r.cfg.Grace)
	defer cancel()
	var wg sync.WaitGroup
	for _, srv := range []*fasthttp.Server{r.httpSrv, r.httpsSrv} {
		wg.Go(func() { _ = srv.ShutdownWithContext(sctx) })
	}
	wg.Go(func() { _ = r.tcp.Shutdown(sctx) })
	wg.Wait()
	r.closeListeners()
	if r.access != nil {
		r.access.Close()
	}
	if err := g.Wait(); err != nil && runErr == nil && !errors.Is(err, context.Canceled) {
		runErr = err
	}
	return runErr
}

// applyUpdates builds a table from each new snapshot and installs it.
func (r *Router) applyUpdates(ctx context.Context) {
	seen := map[string]bool{}
	for {
		select {
		case <-ctx.Done():
			return
		case snap := <-r.watcher.Updates():
			start := time.Now()
			t, errs := table.Build(snap.KVs, snap.Revision, r.proxy.Table(), r.pool)
			r.buildDuration.Observe(time.Since(start).Seconds())
			// Log each invalid entry once, not on every rebuild.
			now := map[string]bool{}
			for _, err := range errs {
				msg := err.Error()
				now[msg] = true
				if !seen[msg] {
					r.invalid.Inc()
					r.log.Warn("skipping invalid etcd entry", "err", msg)
				}
			}
			seen = now
			r.proxy.Install(t)
			r.tableChanged()
			r.health.Set("table", nil)
			r.log.Debug("routing table installed", "revision", t.Revision, "apps", len(t.Apps), "backends", t.Backends(), "build", time.Since(start))
		}
	}
}

// MigrateSysctl is the kernel setting that makes a restart beside a
// running router lossless: with it, connections queued on the listening
// socket of a router that stops (accepted by the kernel, not yet by the
// router) move to its sibling on the same SO_REUSEPORT port, instead of
// being reset (Linux 5.14+). deisctl sets it; the router warns without it.
const MigrateSysctl = "/proc/sys/net/ipv4/tcp_migrate_req"

func (r *Router) checkMigrate() {
	b, err := os.ReadFile(MigrateSysctl)
	if err == nil && strings.TrimSpace(string(b)) == "1" {
		return
	}
	r.log.Warn("net.ipv4.tcp_migrate_req is not 1: stopping this router beside a new one (a rolling restart) resets the connections queued at that moment; sysctl -w net.ipv4.tcp_migrate_req=1 (deisctl install router sets it)")
}

// tlsConfig is chosen per handshake from the current table: certificates
// by SNI and the minimum version from sslProtocols.
func (r *Router) tlsConfig(hello *tls.ClientHelloInfo) (*tls.Config, error) {
	if c, ok := hello.Conn.(*turnConn); ok {
		if err := c.take(); err != nil {
			r.handshakesRefused.Inc()
			return nil, err
		}
	}
	t := r.proxy.Table()
	if t == nil {
		return nil, errors.New("no routing table loaded yet")
	}
	if c := r.tlsForTable.Load(); c != nil && c.t == t {
		return c.cfg, nil
	}
	cfg := tlsConfigFor(t)
	r.tlsForTable.Store(&tableTLS{t, cfg})
	return cfg, nil
}

// tlsConfigFor serves t's certificates by SNI with t's minimum version.
// Session tickets are on: a config from GetConfigForClient without keys of
// its own uses the listener's, which rotate on their own.
func tlsConfigFor(t *table.Table) *tls.Config {
	return &tls.Config{
		MinVersion: t.Settings.MinTLSVersion,
		NextProtos: []string{"http/1.1"},
		GetCertificate: func(h *tls.ClientHelloInfo) (*tls.Certificate, error) {
			if c, ok := t.Certs.For(h); ok {
				return c, nil
			}
			return nil, fmt.Errorf("no certificate for server name %q", h.ServerName)
		},
	}
}

// firstTableWait bounds how long Run holds connections for the first table.
const firstTableWait = 10 * time.Second

func (r *Router) waitFirstTable(ctx context.Context) {
	deadline := time.Now().Add(firstTableWait)
	for r.proxy.Table() == nil && ctx.Err() == nil {
		if time.Now().After(deadline) {
			r.log.Warn("serving without a routing table: etcd has not answered; requests get 503 until it does", "waited", firstTableWait.String())
			return
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func ignoreCanceled(err error) error {
	if errors.Is(err, context.Canceled) {
		return nil
	}
	return err
}

// PortOf returns the port of a host:port, or 0.
func PortOf(addr string) int {
	_, p, err := net.SplitHostPort(addr)
	if err != nil {
		return 0
	}
	n, _ := strconv.Atoi(p)
	return n
}
