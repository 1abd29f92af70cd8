// Package logspout follows the stdout and stderr of every container on this
// host and ships each line as RFC 5424 syslog to the logger found in etcd
// and to extra routes. Docker's own log files are the buffer: a follower
// reads a line only after every route has queued the previous one, and the
// timestamp of the last line every route has written is kept per container
// stream under the state directory, so a restart or a crash resumes where
// delivery stopped: nothing is lost, and at most what was queued repeats.
package logspout

import (
	"context"
	"crypto/x509"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"time"

	docker "github.com/fsouza/go-dockerclient"
	"github.com/prometheus/client_golang/prometheus"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/deis/dataplane/pkg/dockerx"
	"github.com/deis/dataplane/pkg/etcdwatch"
	"github.com/deis/dataplane/pkg/follow"
	"github.com/deis/dataplane/pkg/health"
	"github.com/deis/dataplane/pkg/keys"
	"github.com/deis/dataplane/pkg/syslog/sender"
)

// DefaultMaxRoutes is the default cap on routes added through the API.
const DefaultMaxRoutes = 16

// Config holds logspout's settings.
type Config struct {
	Host     string   // HOSTNAME of every message
	StateDir string   // where cursors are kept
	Routes   []string // extra syslog URLs (--route)
	MaxLine  int      // longest line shipped (64 KiB)
	// MaxRoutes caps the routes added through the API (default 16): each
	// holds a queue of up to 10,000 lines.
	MaxRoutes int
	// TLSRootCAs verifies syslog+tls routes (--tls-ca); nil = system roots.
	TLSRootCAs *x509.CertPool
}

// Logspout is a running shipper.
type Logspout struct {
	cfg    Config
	docker *docker.Client
	etcd   *clientv3.Client
	log    *slog.Logger
	Health *health.Registry
	events *dockerx.Watcher

	routesMu sync.RWMutex
	logger   *sender.Sender    // the platform logger, from etcd; may be nil
	extra    map[string]*route // --route and API routes, by id
	sendCtx  context.Context
	routeWG  sync.WaitGroup

	mu        sync.Mutex
	following map[string]context.CancelFunc // container id -> stop
	cursors   map[string]time.Time          // "<id>:<pri>" -> last line written by every route
	destroyed map[string]time.Time          // cursor keys of destroyed containers, to ignore late acks
	// prevRun is when the previous logspout run was last known alive
	// (zero on the first run): a container that stopped after it may have
	// lines no run shipped. caughtUp are stopped containers read to the
	// end by this run.
	prevRun  time.Time
	started  time.Time // when New ran
	caughtUp map[string]bool
	dirty    bool
	wg       sync.WaitGroup

	linesIn, linesSkipped *prometheus.CounterVec
	linesOdd              *prometheus.CounterVec // shipped, but truncated or not text
	badRoutesFiles        prometheus.Counter
	routesRefused         prometheus.Counter
	hub                   *follow.Hub // /logs followers
}

// New returns a shipper; reg receives its metrics.
func New(cfg Config, dcli *docker.Client, ecli *clientv3.Client, log *slog.Logger, reg prometheus.Registerer) (*Logspout, error) {
	if cfg.MaxLine <= 0 {
		cfg.MaxLine = 64 << 10
	}
	if cfg.MaxRoutes <= 0 {
		cfg.MaxRoutes = DefaultMaxRoutes
	}
	if err := os.MkdirAll(cfg.StateDir, 0o755); err != nil {
		return nil, fmt.Errorf("--state-dir %s: %w", cfg.StateDir, err)
	}
	l := &Logspout{cfg: cfg, docker: dcli, etcd: ecli, log: log, Health: &health.Registry{},
		following: map[string]context.CancelFunc{}, cursors: map[string]time.Time{}, destroyed: map[string]time.Time{},
		caughtUp: map[string]bool{}, extra: map[string]*route{}, hub: follow.New(0, 0)}
	for i, u := range cfg.Routes {
		r, err := newRoute(fmt.Sprintf("flag-%d", i+1), u, log, cfg.TLSRootCAs)
		if err != nil {
			return nil, fmt.Errorf("--route: %w", err)
		}
		l.extra[r.ID] = r
	}
	l.events = dockerx.NewWatcher(dcli, l, log)
	l.badRoutesFiles = prometheus.NewCounter(prometheus.CounterOpts{Name: "logspout_routes_file_unreadable_total", Help: "Unreadable routes.json files moved aside at start."})
	l.routesRefused = prometheus.NewCounter(prometheus.CounterOpts{Name: "logspout_routes_refused_total", Help: "API routes refused because --max-routes were there already."})
	if err := l.loadRoutes(); err != nil {
		return nil, err
	}
	if err := l.loadCursors(); err != nil {
		return nil, err
	}
	l.prevRun = l.readLastRun()
	l.started = time.Now()
	l.linesIn = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "logspout_lines_total", Help: "Lines read from containers, by stream."}, []string{"stream"})
	l.linesSkipped = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "logspout_lines_skipped_total", Help: "Lines not shipped, by reason."}, []string{"reason"})
	l.linesOdd = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "logspout_lines_odd_total", Help: "Lines shipped but cut at --max-line (truncated), or not text (invalid_utf8, binary), by kind."}, []string{"kind"})
	if reg != nil {
		reg.MustRegister(l.linesIn, l.linesSkipped, l.linesOdd, l.badRoutesFiles, l.routesRefused, newRouteCollector(l))
	}
	return l, nil
}

// Run ships until ctx ends.
func (l *Logspout) Run(ctx context.Context) error {
	// Routes outlive the followers by a grace period so that what is
	// queued (and already counted in the cursors) is delivered on shutdown.
	sendCtx, stopSending := context.WithCancel(context.WithoutCancel(ctx))
	defer stopSending()
	var wg sync.WaitGroup
	l.routesMu.Lock()
	l.sendCtx = sendCtx
	for _, r := range l.extra {
		l.startRouteLocked(r)
	}
	l.routesMu.Unlock()
	watcher := etcdwatch.New(l.etcd, []string{keys.LogsPrefix}, etcdwatch.Options{Logger: l.log})
	wg.Go(func() { _ = watcher.Run(ctx) })
	loggerRoute := sender.NewSet(sendCtx)
	wg.Go(func() { l.followLogger(ctx, loggerRoute, watcher) })
	// The event watcher starts followers (l.wg.Go): it ends before
	// l.wg.Wait, since a WaitGroup must not grow while it is waited on.
	var events sync.WaitGroup
	events.Go(func() { _ = l.events.Run(ctx) })
	l.saveLastRun()
	wg.Go(func() {
		t := time.NewTicker(500 * time.Millisecond)
		defer t.Stop()
		lastRunSaved := time.Now()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
				l.pruneDestroyed(time.Minute)
				l.saveCursors()
				if time.Since(lastRunSaved) >= lastRunEvery {
					l.saveLastRun()
					lastRunSaved = time.Now()
				}
				l.Health.Set("docker", l.events.Err())
				l.Health.Set("routes", sender.Failing(l.routes()))
			}
		}
	})
	<-ctx.Done()
	l.hub.Close() // /logs followers end with logspout
	events.Wait()
	l.wg.Wait()
	// What is queued (and so counted in the cursors) is delivered, for a
	// while; the rest stays unacknowledged and is sent after a restart.
	drainCtx, cancelDrain := context.WithTimeout(sendCtx, 5*time.Second)
	for _, s := range l.routes() {
		s.WaitIdle(drainCtx)
	}
	cancelDrain()
	stopSending()
	wg.Wait()
	loggerRoute.Close()
	l.routeWG.Wait()
	l.saveCursors()
	l.saveLastRun()
	return nil
}
