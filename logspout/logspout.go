// Package logspout follows the stdout and stderr of every container on this
// host and ships each line as RFC 5424 syslog to the logger found in etcd
// and to extra routes. Docker's own log files are the buffer: a follower
// reads a line only after every route has queued the previous one, and the
// timestamp of the last line every route has written is kept per container
// stream under the state directory, so a restart or a crash resumes where
// delivery stopped: nothing is lost, and at most what was queued repeats.
package logspout

import (
	"bytes"
	"context"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	docker "github.com/fsouza/go-dockerclient"
	"github.com/prometheus/client_golang/prometheus"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/deis/dataplane/pkg/dockerx"
	"github.com/deis/dataplane/pkg/etcdwatch"
	"github.com/deis/dataplane/pkg/health"
	"github.com/deis/dataplane/pkg/keys"
	"github.com/deis/dataplane/pkg/syslog/format"
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
	hub                   hub
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
		caughtUp: map[string]bool{}, extra: map[string]*route{}}
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
		reg.MustRegister(l.linesIn, l.linesSkipped, l.linesOdd, l.badRoutesFiles, l.routesRefused, &routeCollector{l})
	}
	return l, nil
}

func (l *Logspout) cursorFile() string { return filepath.Join(l.cfg.StateDir, "cursors.json") }

// lastRunFile holds when logspout was last known running (RFC 3339),
// written at start, every lastRunEvery and at stop.
func (l *Logspout) lastRunFile() string { return filepath.Join(l.cfg.StateDir, "lastrun") }

// catchUpMargin: a container without cursors that stopped up to this long
// before the previous run was last known alive is read whole too, since
// that run may have died before its lines were written and its cursor
// saved (every 500 ms).
const (
	lastRunEvery  = 2 * time.Second
	catchUpMargin = 10 * time.Second
)

func (l *Logspout) readLastRun() time.Time {
	data, err := os.ReadFile(l.lastRunFile())
	if err != nil {
		return time.Time{}
	}
	t, err := time.Parse(time.RFC3339Nano, strings.TrimSpace(string(data)))
	if err != nil {
		l.log.Warn("ignoring unreadable lastrun file: containers that stopped while logspout was down are not caught up", "file", l.lastRunFile(), "err", err)
		return time.Time{}
	}
	return t
}

func (l *Logspout) saveLastRun() {
	if err := writeFileSync(l.lastRunFile(), []byte(time.Now().UTC().Format(time.RFC3339Nano))); err != nil {
		l.log.Warn("could not save lastrun", "err", err)
	}
}

func (l *Logspout) loadCursors() error {
	data, err := os.ReadFile(l.cursorFile())
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("read %s: %w", l.cursorFile(), err)
	}
	if err := json.Unmarshal(data, &l.cursors); err != nil {
		l.log.Warn("ignoring unreadable cursor file; containers are shipped from their start", "file", l.cursorFile(), "err", err)
		l.cursors = map[string]time.Time{}
	}
	return nil
}

// saveCursors writes the cursors atomically (temp file, fsync, rename).
func (l *Logspout) saveCursors() {
	l.mu.Lock()
	if !l.dirty {
		l.mu.Unlock()
		return
	}
	data, err := json.Marshal(l.cursors)
	l.dirty = false
	l.mu.Unlock()
	if err != nil {
		return
	}
	if err := writeFileSync(l.cursorFile(), data); err != nil {
		l.log.Warn("could not save cursors", "err", err)
	}
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
	wg.Go(func() { l.followLogger(ctx, sendCtx, watcher) })
	wg.Go(func() { _ = l.events.Run(ctx) })
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
	l.wg.Wait()
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		queued := 0
		for _, s := range l.routes() {
			queued += s.QueueLen()
		}
		if queued == 0 {
			break
		}
	}
	stopSending()
	wg.Wait()
	l.routeWG.Wait()
	l.saveCursors()
	l.saveLastRun()
	return nil
}

func (l *Logspout) startRoute(r *route) {
	l.routesMu.Lock()
	defer l.routesMu.Unlock()
	l.startRouteLocked(r)
}

// startRouteLocked runs r's sender until it is removed or logspout stops.
func (l *Logspout) startRouteLocked(r *route) {
	if l.sendCtx == nil || r.stop != nil {
		return // not running yet: Run starts it
	}
	ctx, cancel := context.WithCancel(l.sendCtx)
	done := make(chan struct{})
	// Stopping a deleted route abandons what it had queued: its lines
	// count as shipped for the cursors, which must not wait for it.
	r.stop = func() { cancel(); <-done; r.s.Retire(l.sendCtx, nil) }
	l.routeWG.Go(func() { defer close(done); _ = r.s.Run(ctx) })
}

// target is a sender a line goes to. Lines wait for room in a sender
// (back-pressure: Docker's log is the buffer) except in a lossy one.
type target struct {
	s     *sender.Sender
	lossy bool
}

// targets are the senders a line of this container and stream goes to;
// any reports whether there is a route at all. The platform logger and
// --route flags get back-pressure; routes added through the API are lossy,
// so that one dead destination someone added cannot stop every container's
// shipping (gliderlabs/logspout drops a route that stalls).
func (l *Logspout) targets(name, app string, labels map[string]string, pri int) (out []target, any bool) {
	l.routesMu.RLock()
	defer l.routesMu.RUnlock()
	any = l.logger != nil || len(l.extra) > 0
	if l.logger != nil {
		out = append(out, target{s: l.logger})
	}
	for _, r := range l.extra {
		if r.matches(name, app, labels, pri) {
			out = append(out, target{s: r.s, lossy: r.Persisted})
		}
	}
	return out, any
}

// followLogger keeps a sender to /deis/logs/host:port over
// /deis/logs/protocol (tcp by default), replaced when they change.
func (l *Logspout) followLogger(ctx, sendCtx context.Context, w *etcdwatch.Watcher) {
	var cur string
	// The current sender is stopped when replaced; on shutdown it lives on
	// until sendCtx ends, so its queue can drain.
	run := &struct {
		stop func(successor *sender.Sender)
	}{stop: func(*sender.Sender) {}}
	for {
		var snap *etcdwatch.Snapshot
		select {
		case <-ctx.Done():
			return
		case snap = <-w.Updates():
		}
		host, port := snap.KVs[keys.LogsHost], snap.KVs[keys.LogsPort]
		proto := strings.TrimSpace(snap.KVs[keys.LogsProtocol])
		scheme := "syslog+tcp"
		if proto == "udp" {
			scheme = "syslog"
		}
		want := ""
		if host != "" && port != "" {
			want = scheme + "://" + net.JoinHostPort(strings.TrimSpace(host), strings.TrimSpace(port))
		}
		if want == cur {
			continue
		}
		if want == "" && cur != "" {
			// The logger's keys went away (it restarts, or its lease
			// lapsed): keep the last route, which retries until the logger
			// is back, rather than lose what it has queued.
			l.log.Warn("logger no longer announced in etcd; keeping the last route", "url", cur)
			continue
		}
		cur = want
		var s *sender.Sender
		if want != "" {
			c, err := sender.ParseURL(want)
			if err != nil {
				l.log.Warn("invalid logger address in etcd", "url", want, "err", err)
				continue
			}
			s = sender.New(c, l.log)
		}
		// Let the old route deliver what it has queued (bounded), then
		// hand what is left to the new one: the logger moved, its lines
		// did not become optional. The new route starts at once.
		l.routesMu.RLock()
		old, stopOld := l.logger, run.stop
		l.routesMu.RUnlock()
		go func() {
			for deadline := time.Now().Add(5 * time.Second); old != nil && old.QueueLen() > 0 && time.Now().Before(deadline); {
				time.Sleep(20 * time.Millisecond)
			}
			stopOld(s)
		}()
		run.stop = func(*sender.Sender) {}
		if s != nil {
			sctx, cancel := context.WithCancel(sendCtx)
			done := make(chan struct{})
			run.stop = func(successor *sender.Sender) { cancel(); <-done; s.Retire(sendCtx, successor) }
			l.routeWG.Go(func() { defer close(done); _ = s.Run(sctx) })
		}
		l.routesMu.Lock()
		l.logger = s
		l.routesMu.Unlock()
		l.log.Info("logger route", "url", want)
	}
}

func (l *Logspout) routes() []*sender.Sender {
	l.routesMu.RLock()
	defer l.routesMu.RUnlock()
	var out []*sender.Sender
	for _, r := range l.extra {
		out = append(out, r.s)
	}
	if l.logger != nil {
		out = append(out, l.logger)
	}
	return out
}

// Resync follows every running container not yet followed, catches up
// stopped ones that may hold unshipped lines (see ship), and forgets the
// cursors of containers that no longer exist (destroyed while logspout was
// not watching).
func (l *Logspout) Resync(ctx context.Context) error {
	list, err := l.docker.ListContainers(docker.ListContainersOptions{All: true, Context: ctx})
	if err != nil {
		return fmt.Errorf("list containers: %w", err)
	}
	exists := make(map[string]bool, len(list))
	for _, c := range list {
		exists[c.ID] = true
		if c.State == "running" || c.State == "paused" {
			l.follow(ctx, c.ID)
			continue
		}
		l.mu.Lock()
		done := l.caughtUp[c.ID]
		l.mu.Unlock()
		if !done && c.State != "created" {
			l.follow(ctx, c.ID) // ship decides whether it needs catching up
		}
	}
	l.mu.Lock()
	for key := range l.cursors {
		if id, _, _ := strings.Cut(key, ":"); !exists[id] {
			delete(l.cursors, key)
			l.dirty = true
		}
	}
	for id := range l.caughtUp {
		if !exists[id] {
			delete(l.caughtUp, id)
		}
	}
	l.mu.Unlock()
	return nil
}

// Event starts following on start; a follower ends by itself when the
// container's log stream ends (die).
func (l *Logspout) Event(ctx context.Context, ev dockerx.Event) {
	switch ev.Action {
	case "start", "restart", "unpause":
		l.follow(ctx, ev.ID)
	case "destroy":
		l.mu.Lock()
		for _, pri := range []int{format.PriStdout, format.PriStderr} {
			key := cursorKey(ev.ID, pri)
			delete(l.cursors, key)
			l.destroyed[key] = time.Now()
		}
		delete(l.caughtUp, ev.ID)
		l.dirty = true
		l.mu.Unlock()
	}
}

// follow ships container id until it stops or ctx (Run's, through the
// event watcher) ends.
func (l *Logspout) follow(ctx context.Context, id string) {
	l.mu.Lock()
	if _, ok := l.following[id]; ok {
		l.mu.Unlock()
		return
	}
	ctx, cancel := context.WithCancel(ctx)
	l.following[id] = cancel
	l.mu.Unlock()
	l.wg.Go(func() {
		defer func() {
			l.mu.Lock()
			delete(l.following, id)
			l.mu.Unlock()
			cancel()
		}()
		l.ship(ctx, id)
	})
}

// ship streams one container's log from its cursor and sends each line.
func (l *Logspout) ship(ctx context.Context, id string) {
	info, err := l.docker.InspectContainerWithOptions(docker.InspectContainerOptions{ID: id, Context: ctx})
	if err != nil {
		return
	}
	name := strings.TrimPrefix(info.Name, "/")
	var labels map[string]string
	var env []string
	tty := false
	if info.Config != nil {
		labels, env, tty = info.Config.Labels, info.Config.Env, info.Config.Tty
	}
	if labels[keys.LabelLogspout] == "ignore" || containsEnv(env, "LOGSPOUT=ignore") {
		l.linesSkipped.WithLabelValues("ignored_container").Inc()
		return
	}
	app, proc := name, ""
	if c, err := keys.ParseContainer(name, labels); err == nil {
		app, proc = c.App, c.Proc()
	}
	// One cursor per stream: stdout and stderr lines interleave out of
	// timestamp order, so one cursor would skip lines.
	l.mu.Lock()
	cursors := map[int]time.Time{format.PriStdout: l.cursors[cursorKey(id, format.PriStdout)], format.PriStderr: l.cursors[cursorKey(id, format.PriStderr)]}
	l.mu.Unlock()
	flights := map[int]*inflight{
		format.PriStdout: {l: l, key: cursorKey(id, format.PriStdout)},
		format.PriStderr: {l: l, key: cursorKey(id, format.PriStderr)},
	}
	follow := info.State.Running || info.State.Paused
	if !follow {
		// A stopped container: it exited while logspout was down, or
		// during the previous run's last moments. Read it to the end from
		// its cursors when it has them (lines before are skipped), or
		// whole when it stopped after the previous run was last alive;
		// one that stopped before that was caught up by that run.
		stopped := info.State.FinishedAt
		shipped := !cursors[format.PriStdout].IsZero() || !cursors[format.PriStderr].IsZero()
		// One that stopped since this logspout started (a short-lived
		// container: its start event came after it exited) is shipped
		// whole, as any other of this run.
		before := stopped.Before(l.started)
		if !shipped && before && (l.prevRun.IsZero() || stopped.Before(l.prevRun.Add(-catchUpMargin))) {
			l.markCaughtUp(id)
			return
		}
		defer func() {
			if ctx.Err() == nil {
				l.markCaughtUp(id)
			}
		}()
	}
	var buf []byte // the message being formatted, reused
	for attempt := 0; ; attempt++ {
		if !l.readLog(ctx, id, tty, follow, cursors, func(ln logLine) bool {
			return l.shipLine(ctx, &buf, ln, name, app, proc, labels, flights)
		}) {
			return // shutting down: each cursor stays before its unsent line
		}
		if !follow || ctx.Err() != nil {
			return
		}
		// The follow stream ended. Docker ends it when the container stops,
		// sometimes before the reader has caught up with the log, so read
		// what is left once more without following; if the container still
		// runs (Docker restarted, the stream broke), follow again.
		info, err := l.docker.InspectContainerWithOptions(docker.InspectContainerOptions{ID: id, Context: ctx})
		if err != nil {
			return // gone
		}
		if !info.State.Running {
			follow = false
			continue
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(min(time.Duration(attempt+1)*time.Second, 10*time.Second)):
		}
	}
}

func (l *Logspout) markCaughtUp(id string) {
	l.mu.Lock()
	l.caughtUp[id] = true
	l.mu.Unlock()
}

// readLog streams one container's log after the per-stream cursors and
// hands each newer line to ship, stopping early when ship returns false.
// It reports whether it read to the end.
func (l *Logspout) readLog(ctx context.Context, id string, tty, follow bool, cursors map[int]time.Time, ship func(logLine) bool) bool {
	var since int64
	if a, b := cursors[format.PriStdout], cursors[format.PriStderr]; !a.IsZero() && !b.IsZero() {
		since = min(a.Unix(), b.Unix()) // second granularity: older lines are skipped below
	} // else a stream never shipped anything: read the whole log; the other
	// stream's cursor still skips what it already sent
	emit := func(ln logLine) bool {
		if !ln.ts.After(cursors[ln.pri]) {
			l.linesSkipped.WithLabelValues("already_shipped").Inc()
			return true
		}
		if !ship(ln) {
			return false
		}
		cursors[ln.pri] = ln.ts
		return true
	}
	// Docker's stream is demultiplexed, cut into lines and shipped in this
	// one goroutine: a line costs no pipe or channel handoff, and a route
	// that is full stops the reading of Docker's stream (back-pressure).
	stdout, stderr := l.newSplitter(format.PriStdout, emit), l.newSplitter(format.PriStderr, emit)
	err := l.docker.Logs(docker.LogsOptions{
		Context: ctx, Container: id, OutputStream: stdout, ErrorStream: stderr,
		Follow: follow, Stdout: true, Stderr: true, Timestamps: true, Since: since, RawTerminal: tty,
	})
	if stdout.stopped || stderr.stopped {
		return false
	}
	if ctx.Err() != nil {
		return true // stopping: a partial line stays unshipped, after the cursor
	}
	if err != nil {
		l.log.Debug("log stream ended", "container", id, "err", err)
	}
	return stdout.flush() && stderr.flush()
}

// shipLine formats a line and hands it to every route that wants it,
// waiting for room (Docker's log is the buffer). False when ctx ended.
func (l *Logspout) shipLine(ctx context.Context, buf *[]byte, ln logLine, name, app, proc string, labels map[string]string, flights map[int]*inflight) bool {
	msg := format.Message{Priority: ln.pri, Time: ln.ts, Host: l.cfg.Host, App: app, ProcID: proc, Text: ln.text}
	encoded := format.Kind(-1) // what buf holds
	routes, any := l.targets(name, app, labels, ln.pri)
	for !any {
		// No destination at all (the logger is not announced yet):
		// wait; the line stays in Docker's log and the cursor before it.
		select {
		case <-ctx.Done():
			return false
		case <-time.After(100 * time.Millisecond):
		}
		routes, any = l.targets(name, app, labels, ln.pri)
	}
	if len(routes) == 0 {
		l.linesSkipped.WithLabelValues("filtered").Inc()
	}
	// The cursor moves past this line once every route has written it.
	flight := flights[ln.pri]
	seq := flight.add(ln.ts, len(routes))
	for _, t := range routes {
		// Each route gets its own ?format=; most share one encoding.
		if k := t.s.Format(); k != encoded {
			*buf = format.Append((*buf)[:0], k, &msg)
			encoded = k
		}
		if t.lossy {
			// A route added through the API never holds the others
			// back: when its queue is full the line is dropped for it
			// alone (counted in its dropped figure).
			t.s.TrySendAcked(*buf, flight, seq)
			continue
		}
		if err := t.s.SendAcked(ctx, *buf, flight, seq); err != nil {
			return false // shutting down: the cursor stays before this line
		}
	}
	if l.hub.active() {
		line := ln.ts.UTC().AppendFormat(nil, time.RFC3339Nano)
		line = append(append(append(append(append(line, ' '), app...), '['), proc...), "]: "...)
		l.hub.publish(app, append(line, ln.text...))
	}
	return true
}

func cursorKey(id string, pri int) string { return id + ":" + strconv.Itoa(pri) }

// pruneDestroyed forgets destroyed containers after late acknowledgements
// can no longer arrive.
func (l *Logspout) pruneDestroyed(after time.Duration) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for k, at := range l.destroyed {
		if time.Since(at) > after {
			delete(l.destroyed, k)
		}
	}
}

type logLine struct {
	ts   time.Time
	pri  int
	text []byte
}

// lineSplitter is the writer one of Docker's streams (stdout or stderr)
// is copied into: it cuts the timestamped stream into lines and hands each
// to emit. Lines longer than MaxLine are cut (the rest is dropped and
// counted).
type lineSplitter struct {
	l       *Logspout
	pri     int
	counter prometheus.Counter
	rawMax  int
	emit    func(logLine) bool
	buf     []byte // the current line so far
	cut     bool   // bytes of the current line were dropped
	stopped bool   // emit refused a line: shutting down
}

var errStopped = errors.New("logspout is stopping")

func (l *Logspout) newSplitter(pri int, emit func(logLine) bool) *lineSplitter {
	stream := "stdout"
	if pri == format.PriStderr {
		stream = "stderr"
	}
	return &lineSplitter{l: l, pri: pri, emit: emit, counter: l.linesIn.WithLabelValues(stream),
		// Room for MaxLine of text plus the timestamp Docker puts before
		// each of its 16 KiB chunks.
		rawMax: l.cfg.MaxLine + (l.cfg.MaxLine/dockerChunk+2)*48}
}

func (s *lineSplitter) Write(p []byte) (int, error) {
	n := len(p)
	for len(p) > 0 {
		end := bytes.IndexByte(p, '\n')
		chunk := p
		if end >= 0 {
			chunk = p[:end+1]
		}
		if room := s.rawMax - len(s.buf); room > 0 {
			take := min(room, len(chunk))
			s.buf = append(s.buf, chunk[:take]...)
			s.cut = s.cut || take < len(chunk)
		} else {
			s.cut = true
		}
		p = p[len(chunk):]
		if end >= 0 && !s.line() {
			return 0, errStopped
		}
	}
	return n, nil
}

// flush hands over a last line that ended without a newline.
func (s *lineSplitter) flush() bool {
	return len(s.buf) == 0 || s.line()
}

// line parses and emits the buffered line, then empties the buffer.
func (s *lineSplitter) line() bool {
	defer func() { s.buf, s.cut = s.buf[:0], false }()
	full := bytes.TrimRight(s.buf, "\r\n")
	if len(full) == 0 {
		return true
	}
	sp := bytes.IndexByte(full, ' ')
	var ts time.Time
	var err error
	if sp > 0 {
		ts, err = time.Parse(time.RFC3339Nano, string(full[:sp]))
	}
	if sp <= 0 || err != nil {
		s.l.linesSkipped.WithLabelValues("no_timestamp").Inc()
		return true
	}
	text, cut := rejoin(full[sp+1:]), s.cut
	if len(text) > s.l.cfg.MaxLine {
		text, cut = text[:s.l.cfg.MaxLine], true
	}
	if cut {
		s.l.linesOdd.WithLabelValues("truncated").Inc()
	}
	if !utf8.Valid(text) {
		s.l.linesOdd.WithLabelValues("invalid_utf8").Inc()
	} else if hasControl(text) {
		s.l.linesOdd.WithLabelValues("binary").Inc()
	}
	s.counter.Inc()
	if !s.emit(logLine{ts: ts, pri: s.pri, text: text}) {
		s.stopped = true
		return false
	}
	return true
}

// dockerChunk is where Docker's json-file driver splits long lines; with
// timestamps on, every following chunk carries its own "<time> " prefix
// and no newline separates them.
const dockerChunk = 16 << 10

// rejoin removes the timestamp prefixes Docker put inside a long line, so
// the line is shipped whole.
func rejoin(text []byte) []byte {
	if len(text) <= dockerChunk {
		return text
	}
	var out []byte
	for len(text) > dockerChunk {
		rest := text[dockerChunk:]
		j := bytes.IndexByte(rest, ' ')
		if j < 20 || j > 40 {
			break
		}
		if _, err := time.Parse(time.RFC3339Nano, string(rest[:j])); err != nil {
			break
		}
		out = append(out, text[:dockerChunk]...)
		text = rest[j+1:]
	}
	if out == nil {
		return text
	}
	return append(out, text...)
}

// hasControl reports control characters other than tab: binary output.
func hasControl(b []byte) bool {
	for _, c := range b {
		if c < 0x20 && c != '\t' || c == 0x7f {
			return true
		}
	}
	return false
}

func containsEnv(env []string, kv string) bool {
	for _, e := range env {
		if e == kv {
			return true
		}
	}
	return false
}

// RouteInfo describes a route for the /routes API.
type RouteInfo struct {
	ID      string `json:"id"`
	URL     string `json:"uri"`
	Source  string `json:"source"` // "etcd" (the platform logger), "flag" or "api"
	Sent    int64  `json:"sent"`
	Dropped int64  `json:"dropped"`
	Queued  int    `json:"queued"`
	Error   string `json:"error,omitempty"`
}

// Routes lists the current routes.
func (l *Logspout) Routes() []RouteInfo {
	l.routesMu.RLock()
	defer l.routesMu.RUnlock()
	out := []RouteInfo{}
	if l.logger != nil {
		out = append(out, (&route{ID: "logger", URI: l.logger.Config().URL, s: l.logger}).info("etcd"))
	}
	for _, r := range l.extra {
		src := "flag"
		if r.Persisted {
			src = "api"
		}
		out = append(out, r.info(src))
	}
	return out
}
