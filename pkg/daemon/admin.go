package daemon

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"runtime"
	"sync"
	"syscall"
	"time"

	"github.com/deis/dataplane/pkg/health"
	"github.com/deis/dataplane/pkg/version"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// NewMetrics returns a fresh Prometheus registry with the Go runtime and
// process collectors and build_info{version,goversion} = 1, so each daemon
// (and each test) has its own.
func NewMetrics() *prometheus.Registry {
	reg := prometheus.NewRegistry()
	info := prometheus.NewGauge(prometheus.GaugeOpts{Name: "build_info", Help: "The build: version and Go version (always 1).",
		ConstLabels: prometheus.Labels{"version": version.Version, "goversion": runtime.Version()}})
	info.Set(1)
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}), info)
	return reg
}

// Exit codes shared by every daemon: the same failure gives the same code.
const (
	ExitOK      = 0 // stopped by SIGTERM/SIGINT, or --version
	ExitFailure = 1 // failed while running
	ExitUsage   = 2 // a bad flag, or a dependency unusable at start (bind, etcd or Docker endpoint)
)

// Fail prints "<component>: <what>: <err>" as the one line a daemon dies with
// at start, and exits with ExitUsage.
func Fail(component, what string, err error) {
	fmt.Fprintf(os.Stderr, "%s: %s: %v\n", component, what, err)
	os.Exit(ExitUsage)
}

// Admin is the health and metrics HTTP server every daemon runs.
type Admin struct {
	Mux    *http.ServeMux
	Health *health.Registry
	Auth   *Auth // guards /metrics and any API added with Guard
	srv    *http.Server
	ln     net.Listener
}

// Timeouts of every internal HTTP server: a client gets IdleTimeout between
// keep-alive requests (as the router's own listener), then is closed.
const (
	ReadHeaderTimeout = 10 * time.Second
	IdleTimeout       = 90 * time.Second
)

// NewServer is an http.Server with the internal servers' timeouts.
func NewServer(h http.Handler) *http.Server {
	return &http.Server{Handler: h, ReadHeaderTimeout: ReadHeaderTimeout, IdleTimeout: IdleTimeout}
}

// NewAdmin listens on addr and routes /healthz (open: load balancers and
// init systems probe it) and /metrics (guarded by auth, since it names
// every app). More handlers can be added to Mux before Serve, through Guard
// when they read logs or change anything. A nil auth answers loopback only.
func NewAdmin(addr string, h *health.Registry, reg *prometheus.Registry, auth *Auth) (*Admin, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("admin listener on %s: %w", addr, err)
	}
	return NewAdminOn(ln, h, reg, auth), nil
}

// NewAdminOn is NewAdmin on a listener the caller bound (the router's is
// SO_REUSEPORT, so that a new router can start beside the old one).
func NewAdminOn(ln net.Listener, h *health.Registry, reg *prometheus.Registry, auth *Auth) *Admin {
	if auth == nil {
		auth = NewAuth("", slog.Default(), nil)
	}
	mux := http.NewServeMux()
	mux.Handle("/healthz", h)
	mux.Handle("/metrics", auth.Wrap(promhttp.HandlerFor(reg, promhttp.HandlerOpts{Registry: reg})))
	return &Admin{Mux: mux, Health: h, Auth: auth, ln: ln, srv: NewServer(mux)}
}

// Guard is h behind the API token (see Auth).
func (a *Admin) Guard(h http.Handler) http.Handler { return a.Auth.Wrap(h) }

// Addr is the address actually listened on (useful with port 0).
func (a *Admin) Addr() string { return a.ln.Addr().String() }

// Run serves until ctx ends, then shuts down within 5 seconds.
func (a *Admin) Run(ctx context.Context) error {
	errc := make(chan error, 1)
	go func() { errc <- a.srv.Serve(a.ln) }()
	select {
	case err := <-errc:
		return fmt.Errorf("admin server: %w", err)
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := a.srv.Shutdown(sctx); err != nil && !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("admin server shutdown: %w", err)
	}
	return nil
}

// SignalContext is a context cancelled by SIGTERM or SIGINT. From the
// first call on, SIGHUP never stops the process (Go's default, and what
// nginx and rsyslog operators send by reflex): it runs the hooks given to
// OnReload, or logs that there is nothing to reload.
func SignalContext() (context.Context, context.CancelFunc) {
	reloads.start.Do(func() {
		ch := make(chan os.Signal, 1)
		signal.Notify(ch, syscall.SIGHUP)
		go func() {
			for range ch {
				runReloads()
			}
		}()
	})
	return signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
}

// reloads are the SIGHUP hooks of this process.
var reloads struct {
	start sync.Once
	mu    sync.Mutex
	log   *slog.Logger
	hooks []reloadHook
}

type reloadHook struct {
	what string
	fn   func() error
}

// OnReload registers fn, which reloads what (e.g. "syslog TLS
// certificate"), to run on SIGHUP. A failing hook is logged and keeps what
// it had; the others still run.
func OnReload(log *slog.Logger, what string, fn func() error) {
	reloads.mu.Lock()
	defer reloads.mu.Unlock()
	reloads.log = log
	reloads.hooks = append(reloads.hooks, reloadHook{what, fn})
}

func runReloads() {
	reloads.mu.Lock()
	hooks, log := reloads.hooks, reloads.log
	reloads.mu.Unlock()
	if log == nil {
		log = slog.Default()
	}
	if len(hooks) == 0 {
		log.Info("SIGHUP: nothing to reload (settings come from etcd, live)")
		return
	}
	for _, h := range hooks {
		if err := h.fn(); err != nil {
			log.Error("SIGHUP: reload failed; keeping the previous one", "what", h.what, "err", err)
			continue
		}
		log.Info("SIGHUP: reloaded", "what", h.what)
	}
}

// Exit logs err (if any) and returns the process exit code: ExitOK for a
// clean stop, ExitFailure otherwise. Use as `code = daemon.Exit(log,
// run(ctx))` with os.Exit(code) deferred first, so other defers run.
func Exit(log *slog.Logger, err error) int {
	if err == nil || errors.Is(err, context.Canceled) {
		log.Info("stopped")
		return ExitOK
	}
	log.Error("stopped with error", "err", err)
	return ExitFailure
}
