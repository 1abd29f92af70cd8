// Package logger is a syslog server that keeps each app's recent lines
// (in memory or in files), serves them over HTTP and forwards every line to
// the drains configured in etcd.
//
// TCP input is never dropped: a connection is read only as fast as its
// lines are stored and queued to drains, so a slow drain slows the senders
// (back-pressure) instead of losing lines. UDP cannot push back; its drops
// are counted.
package logger

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/deis/dataplane/logger/store"
	"github.com/deis/dataplane/pkg/announce"
	"github.com/deis/dataplane/pkg/daemon"
	"github.com/deis/dataplane/pkg/etcdwatch"
	"github.com/deis/dataplane/pkg/follow"
	"github.com/deis/dataplane/pkg/health"
	"github.com/deis/dataplane/pkg/keys"
	"github.com/deis/dataplane/pkg/retry"
	"github.com/deis/dataplane/pkg/syslog/format"
	"github.com/deis/dataplane/pkg/syslog/framing"
	"github.com/deis/dataplane/pkg/syslog/parse"
	"github.com/deis/dataplane/pkg/syslog/sender"
)

// Config is the logger's configuration.
type Config struct {
	SyslogAddr    string // UDP and TCP, e.g. ":514"
	SyslogTLSAddr string // "" disables
	TLSCert       string // PEM file paths for SyslogTLSAddr
	TLSKey        string
	Host          string // announced as /deis/logs/host
	LogRoot       string // file adapter root
	RotateBytes   int64
	RotateKeep    int
	MaxMessage    int // largest message accepted (bytes)
	// APIToken guards the log API and /metrics ("" = etcd's
	// /deis/platform/apiToken, loopback clients only while none is set).
	APIToken string
	// Memory store limits (0 = store's defaults: 256 MiB, 8 MiB per app,
	// 10,000 apps); the least recently written apps are evicted first.
	MemoryLimit    int64
	MemoryAppLimit int
	MaxApps        int
	// Syslog TCP/TLS connection limits (0 = 512, 64 per address, 5m idle).
	MaxConns      int
	MaxConnsPerIP int
	// Live followers (?follow=true): 0 = 256 in all, 16 per app.
	MaxFollowers, MaxFollowersPerApp int
	IdleTimeout                      time.Duration // no complete message for this long closes
}

// Logger is a running logger.
type Logger struct {
	cfg    Config
	etcd   *clientv3.Client
	log    *slog.Logger
	Health *health.Registry
	reg    *prometheus.Registry

	store  *store.Switch
	hub    *follow.Hub
	drains *sender.Set // from /deis/logs/drain

	tcp, tlsLn net.Listener
	udp        net.PacketConn
	auth       *daemon.Auth
	cert       atomic.Pointer[tls.Certificate] // of the syslog TLS listener
	limits     connLimits
	evictions  store.Evictions // by the memory store's limits, across adapter changes

	m metrics
}

type metrics struct {
	ingested    *prometheus.CounterVec // by transport
	parseFail   prometheus.Counter
	drops       *prometheus.CounterVec // by reason
	framingErrs prometheus.Counter
	// connsRefused counts stream connections refused or closed by the
	// limits: max_conns, max_conns_per_ip, idle, tls_handshake.
	connsRefused *prometheus.CounterVec
	stored       prometheus.Counter
	storedBytes  prometheus.Counter
}

// New binds the listeners and returns a logger ready to Run. reg receives
// its metrics.
func New(cfg Config, cli *clientv3.Client, log *slog.Logger, reg *prometheus.Registry) (*Logger, error) {
	if cfg.MaxMessage <= 0 {
		cfg.MaxMessage = framing.DefaultMaxSize
	}
	if cfg.MaxConns <= 0 {
		cfg.MaxConns = 512
	}
	if cfg.MaxConnsPerIP <= 0 {
		cfg.MaxConnsPerIP = 64
	}
	if cfg.IdleTimeout <= 0 {
		cfg.IdleTimeout = 5 * time.Minute
	}
	l := &Logger{cfg: cfg, etcd: cli, log: log, Health: &health.Registry{}, reg: reg}
	l.limits = connLimits{max: cfg.MaxConns, perIP: cfg.MaxConnsPerIP, byIP: make(map[string]int)}
	var authReg prometheus.Registerer // a nil *Registry is not a nil interface
	if reg != nil {
		authReg = reg
	}
	l.auth = daemon.NewAuth(cfg.APIToken, log, authReg)
	l.store = store.NewSwitch(l.memoryLimits(), store.FileOptions{Root: cfg.LogRoot, MaxBytes: cfg.RotateBytes, Keep: cfg.RotateKeep})
	l.drains = sender.NewSet(context.Background())
	l.hub = follow.New(cfg.MaxFollowers, cfg.MaxFollowersPerApp)
	l.m = metrics{
		ingested:     prometheus.NewCounterVec(prometheus.CounterOpts{Name: "logger_messages_received_total", Help: "Messages received by transport."}, []string{"transport"}),
		parseFail:    prometheus.NewCounter(prometheus.CounterOpts{Name: "logger_parse_failures_total", Help: "Messages kept as raw lines because they did not parse."}),
		drops:        prometheus.NewCounterVec(prometheus.CounterOpts{Name: "logger_drops_total", Help: "Lines dropped, by reason."}, []string{"reason"}),
		connsRefused: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "logger_connections_refused_total", Help: "Syslog TCP/TLS connections refused or closed by the limits, by reason."}, []string{"reason"}),
		framingErrs:  prometheus.NewCounter(prometheus.CounterOpts{Name: "logger_framing_errors_total", Help: "TCP connections closed for bad framing."}),
		stored:       prometheus.NewCounter(prometheus.CounterOpts{Name: "logger_stored_lines_total", Help: "Lines stored."}),
		storedBytes:  prometheus.NewCounter(prometheus.CounterOpts{Name: "logger_stored_bytes_total", Help: "Bytes stored."}),
	}
	if reg != nil {
		reg.MustRegister(l.m.ingested, l.m.parseFail, l.m.drops, l.m.framingErrs, l.m.connsRefused, l.m.stored, l.m.storedBytes, &statsCollector{l}, sender.Collector("logger_drain", "drain", l.drains.Senders))
	}
	var err error
	if l.tcp, err = net.Listen("tcp", cfg.SyslogAddr); err != nil {
		return nil, fmt.Errorf("syslog tcp listener on %s: %w", cfg.SyslogAddr, err)
	}
	// UDP on the same port as TCP (port 0 in tests: reuse TCP's).
	udpAddr := cfg.SyslogAddr
	if _, p, _ := net.SplitHostPort(cfg.SyslogAddr); p == "0" {
		udpAddr = l.tcp.Addr().String()
	}
	if l.udp, err = net.ListenPacket("udp", udpAddr); err != nil {
		l.tcp.Close()
		return nil, fmt.Errorf("syslog udp listener on %s: %w", udpAddr, err)
	}
	if uc, ok := l.udp.(*net.UDPConn); ok {
		_ = uc.SetReadBuffer(8 << 20)
	}
	if cfg.SyslogTLSAddr != "" {
		if err := l.ReloadCertificate(); err != nil {
			l.closeListeners()
			return nil, err
		}
		getCert := func(*tls.ClientHelloInfo) (*tls.Certificate, error) { return l.cert.Load(), nil }
		if l.tlsLn, err = tls.Listen("tcp", cfg.SyslogTLSAddr, &tls.Config{GetCertificate: getCert, MinVersion: tls.VersionTLS12}); err != nil {
			l.closeListeners()
			return nil, fmt.Errorf("syslog TLS listener on %s: %w", cfg.SyslogTLSAddr, err)
		}
	}
	return l, nil
}

// Close releases the listeners of a logger that will not Run (Run closes
// them itself when it stops).
func (l *Logger) Close() { l.closeListeners() }

func (l *Logger) closeListeners() {
	for _, c := range []io.Closer{l.tcp, l.tlsLn} {
		if c != nil && !isNilListener(c) {
			_ = c.Close()
		}
	}
	if l.udp != nil {
		_ = l.udp.Close()
	}
}

func isNilListener(c io.Closer) bool {
	ln, ok := c.(net.Listener)
	return ok && ln == nil
}

// Addr returns a bound address: "syslog" (TCP and UDP), "tls".
func (l *Logger) Addr(name string) string {
	switch name {
	case "syslog":
		return l.tcp.Addr().String()
	case "udp":
		return l.udp.LocalAddr().String()
	case "tls":
		if l.tlsLn != nil {
			return l.tlsLn.Addr().String()
		}
	}
	return ""
}

// Store is the current storage adapter.
func (l *Logger) Store() *store.Switch { return l.store }

// Run serves until ctx ends.
func (l *Logger) Run(ctx context.Context) error {
	var wg sync.WaitGroup
	wg.Go(func() { l.acceptLoop(ctx, l.tcp, "tcp") })
	if l.tlsLn != nil {
		wg.Go(func() { l.acceptLoop(ctx, l.tlsLn, "tls") })
	}
	wg.Go(func() { l.udpLoop(ctx) })

	watcher := etcdwatch.New(l.etcd, []string{keys.LogsPrefix}, etcdwatch.Options{Logger: l.log})
	wg.Go(func() { _ = watcher.Run(ctx) })
	wg.Go(func() { l.applyConfig(ctx, watcher) })

	ann := announce.New(l.etcd, announce.DefaultTTL, l.log)
	_, port, _ := net.SplitHostPort(l.tcp.Addr().String())
	_ = ann.Put(ctx, keys.LogsHost, l.cfg.Host)
	_ = ann.Put(ctx, keys.LogsPort, port)
	annCtx, stopAnn := context.WithCancel(context.WithoutCancel(ctx))
	wg.Go(func() { _ = ann.Run(annCtx) })
	wg.Go(func() { l.healthLoop(ctx, watcher, ann) })
	wg.Go(func() { l.flushLoop(ctx) })

	<-ctx.Done()
	stopAnn()
	l.closeListeners()
	l.hub.Close() // live followers end, so the API server's shutdown does not wait on them
	wg.Wait()
	l.drains.Close() // what they hold is delivered, within the set's grace
	_ = l.Store().Close()
	return nil
}

func (l *Logger) flushLoop(ctx context.Context) {
	t := time.NewTicker(200 * time.Millisecond)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			l.store.Do(func(s store.Store) {
				if f, ok := s.(*store.File); ok {
					f.Flush()
				}
			})
		}
	}
}

// ReloadCertificate reads --tls-cert and --tls-key again (SIGHUP, after a
// renewal); on error the certificate in use is kept.
func (l *Logger) ReloadCertificate() error {
	cert, err := tls.LoadX509KeyPair(l.cfg.TLSCert, l.cfg.TLSKey)
	if err != nil {
		return fmt.Errorf("syslog TLS certificate (--tls-cert, --tls-key): %w", err)
	}
	l.cert.Store(&cert)
	return nil
}

// Reload is SIGHUP: the TLS certificate is read again from its files and
// the file store's files are reopened (after logrotate), as rsyslog does.
func (l *Logger) Reload() error {
	l.ReopenFiles()
	if l.tlsLn == nil {
		return nil
	}
	return l.ReloadCertificate()
}

// ReopenFiles closes the file store's files so they are opened again
// (SIGUSR1, after an external logrotate).
func (l *Logger) ReopenFiles() {
	l.store.Do(func(s store.Store) {
		if f, ok := s.(*store.File); ok {
			f.Reopen()
			l.log.Info("reopened log files")
		}
	})
}

func (l *Logger) healthLoop(ctx context.Context, w *etcdwatch.Watcher, ann *announce.Announcer) {
	t := time.NewTicker(time.Second)
	defer t.Stop()
	for {
		err := w.Err()
		if err == nil {
			err = ann.Err()
		}
		l.Health.Set("etcd", err)
		l.Health.Set("drains", sender.Failing(l.drains.Senders()))
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// applyConfig follows /deis/logs/storageAdapterType and /deis/logs/drain.
func (l *Logger) applyConfig(ctx context.Context, w *etcdwatch.Watcher) {
	var lastDrain string
	for {
		var snap *etcdwatch.Snapshot
		select {
		case <-ctx.Done():
			return
		case snap = <-w.Updates():
		}
		l.setAdapter(snap.KVs[keys.LogsStorageAdapterType])
		if raw := snap.KVs[keys.LogsDrain]; raw != lastDrain {
			lastDrain = raw
			var next []*sender.Sender
			for _, u := range strings.Split(raw, ",") {
				if strings.TrimSpace(u) == "" {
					continue
				}
				cfg, err := sender.ParseURL(u)
				if err != nil {
					l.log.Warn("ignoring invalid drain", "key", keys.LogsDrain, "err", err)
					continue
				}
				next = append(next, sender.New(cfg, l.log))
			}
			// The new drains start at once; the old ones finish what they
			// had queued (bounded), then stop; what is left is dropped and
			// counted (a drain is lossy by design: the store has every line).
			l.drains.Replace(next, nil)
			l.log.Info("drains configured", "count", len(next))
		}
	}
}

func (l *Logger) memoryLimits() store.MemoryLimits {
	return store.MemoryLimits{MaxBytes: l.cfg.MemoryLimit, MaxAppBytes: l.cfg.MemoryAppLimit, MaxApps: l.cfg.MaxApps, Log: l.log, Evictions: &l.evictions}
}

func (l *Logger) setAdapter(raw string) {
	changed, err := l.store.Apply(raw)
	if err != nil {
		l.log.Warn("keeping the current storage adapter", "err", err)
		return
	}
	if changed {
		l.log.Info("storage adapter", "kind", l.store.Kind())
	}
}

func (l *Logger) acceptLoop(ctx context.Context, ln net.Listener, transport string) {
	var wg sync.WaitGroup
	defer wg.Wait()
	var conns sync.Map
	closeAll := func() {
		conns.Range(func(k, _ any) bool { k.(net.Conn).Close(); return true })
	}
	stop := context.AfterFunc(ctx, closeAll)
	defer func() {
		// Stopping: the listener is closed as ctx ends, so this loop can
		// return before AfterFunc's goroutine ran closeAll; stop() then
		// cancels it, and a connection left open would hold wg.Wait (and
		// the logger's stop) until its idle timeout.
		if stop() && ctx.Err() != nil {
			closeAll()
		}
	}()
	backoff := retry.New(5*time.Millisecond, time.Second) // e.g. out of file descriptors
	for {
		c, err := ln.Accept()
		if err != nil {
			if ctx.Err() != nil || errors.Is(err, net.ErrClosed) {
				return
			}
			if !retry.Sleep(ctx, backoff.Next()) {
				return
			}
			continue
		}
		backoff.Reset()
		peer := hostOf(c.RemoteAddr())
		if reason := l.limits.admit(peer); reason != "" {
			l.refuseConn(c, peer, reason)
			continue
		}
		conns.Store(c, struct{}{})
		if ctx.Err() != nil {
			// Accepted while stopping, perhaps after the close-all above
			// ran: a client that keeps its connection open (logspout
			// redials at once) would otherwise hold the stop forever.
			conns.Delete(c)
			c.Close()
			return
		}
		wg.Go(func() {
			defer l.limits.release(peer)
			defer conns.Delete(c)
			defer c.Close()
			defer func() {
				if r := recover(); r != nil {
					l.log.Error("panic on syslog connection", "panic", r)
				}
			}()
			l.serveStream(ctx, c, transport)
		})
	}
}

// serveStream reads one TCP/TLS connection. Each line is stored before the
// next is read. A connection that completes no message within IdleTimeout
// (a slow trickle inside one frame included) is closed; a TLS handshake has
// handshakeTimeout.
func (l *Logger) serveStream(ctx context.Context, c net.Conn, transport string) {
	sender := hostOf(c.RemoteAddr())
	if tc, ok := c.(*tls.Conn); ok {
		hctx, cancel := context.WithTimeout(ctx, handshakeTimeout)
		err := tc.HandshakeContext(hctx)
		cancel()
		if err != nil {
			l.m.connsRefused.WithLabelValues("tls_handshake").Inc()
			l.log.Debug("syslog TLS handshake failed", "peer", c.RemoteAddr().String(), "err", err)
			return
		}
	}
	r := framing.NewReader(c, l.cfg.MaxMessage)
	p := parse.New()
	var line []byte
	counter := l.m.ingested.WithLabelValues(transport)
	// The deadline is moved forward once per idle/8 rather than per
	// message: a busy connection then pays for a timer change rarely.
	idle := l.cfg.IdleTimeout
	var refreshed time.Time
	for {
		if now := time.Now(); now.Sub(refreshed) > idle/8 {
			_ = c.SetReadDeadline(now.Add(idle))
			refreshed = now
		}
		msg, err := r.Next()
		if err != nil {
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				l.m.connsRefused.WithLabelValues("idle").Inc()
				l.log.Debug("closing an idle syslog connection", "peer", c.RemoteAddr().String(), "idle", idle.String())
				return
			}
			if errors.Is(err, framing.ErrFraming) {
				l.m.framingErrs.Inc()
				l.log.Warn("closing syslog connection with bad framing", "peer", c.RemoteAddr().String(), "err", err)
			}
			return
		}
		counter.Inc()
		line = l.ingest(p, msg, sender, line[:0])
	}
}

func (l *Logger) udpLoop(ctx context.Context) {
	buf := make([]byte, 65536)
	p := parse.New()
	var line []byte
	counter := l.m.ingested.WithLabelValues("udp")
	for {
		n, addr, err := l.udp.ReadFrom(buf)
		if err != nil {
			if ctx.Err() != nil || errors.Is(err, net.ErrClosed) {
				return
			}
			continue
		}
		counter.Inc()
		line = l.ingest(p, buf[:n], hostOf(addr), line[:0])
	}
}

// handshakeTimeout bounds a syslog TLS handshake.
const handshakeTimeout = 10 * time.Second

// connLimits count syslog stream connections, in all and per address.
type connLimits struct {
	max, perIP int
	mu         sync.Mutex
	total      int
	byIP       map[string]int
	warned     bool
}

// admit counts a new connection from peer, or says why it is refused.
func (c *connLimits) admit(peer string) string {
	c.mu.Lock()
	defer c.mu.Unlock()
	switch {
	case c.total >= c.max:
		return "max_conns"
	case c.byIP[peer] >= c.perIP:
		return "max_conns_per_ip"
	}
	c.total++
	c.byIP[peer]++
	return ""
}

func (c *connLimits) release(peer string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.total--
	if c.byIP[peer]--; c.byIP[peer] <= 0 {
		delete(c.byIP, peer)
	}
}

// refuseConn closes a connection over the limits, counted, and says so in
// the log the first time.
func (l *Logger) refuseConn(c net.Conn, peer, reason string) {
	c.Close()
	l.m.connsRefused.WithLabelValues(reason).Inc()
	l.limits.mu.Lock()
	first := !l.limits.warned
	l.limits.warned = true
	l.limits.mu.Unlock()
	if first {
		l.log.Warn("refusing syslog connections over the limit (logger_connections_refused_total counts them)", "peer", peer, "reason", reason, "max_conns", l.limits.max, "max_conns_per_ip", l.limits.perIP)
	}
}

// ingest parses, stores, fans out to followers and queues to drains.
func (l *Logger) ingest(p *parse.Parser, msg []byte, from string, line []byte) []byte {
	m := p.Parse(msg, from, time.Now())
	if m.Format == parse.Raw {
		l.m.parseFail.Inc()
		l.log.Debug("unparseable syslog message kept as a raw line", "from", from)
	}
	if keys.ValidateAppName(m.App) != nil {
		// Stored under a safe name: hosts and odd tags become file names.
		m.App = safeName(m.App)
	}
	line = parse.AppendLine(line, &m)
	if err := l.Store().Append(m.App, line); err != nil {
		l.m.drops.WithLabelValues("store_error").Inc()
		l.log.Warn("could not store line", "app", m.App, "err", err)
	} else {
		l.m.stored.Inc()
		l.m.storedBytes.Add(float64(len(line)))
	}
	l.hub.Publish(m.App, line)
	drains := l.drains.Senders()
	if len(drains) > 0 {
		var out [512]byte
		msg := format.Message{Priority: 8 + m.Severity, Time: m.Time, Host: m.Host, App: m.App, ProcID: m.Proc, Text: []byte(m.Text)}
		enc, encoded := out[:0], format.Kind(-1)
		// The line is stored already: a drain that cannot keep up (the
		// hosted service is down) loses lines for itself alone, counted,
		// and never stops ingest for every app (rsyslog's separate action
		// queues do the same).
		for _, d := range drains {
			if k := d.Format(); k != encoded { // each drain's ?format=
				enc, encoded = format.Append(enc[:0], k, &msg), k
			}
			if !d.TrySend(enc) {
				l.m.drops.WithLabelValues("drain_queue_full").Inc()
			}
		}
	}
	return line
}

// safeName maps any app attribution to a valid app name.
func safeName(s string) string {
	var b strings.Builder
	dash := true
	for i := 0; i < len(s) && b.Len() < keys.MaxAppNameLen; i++ {
		c := s[i]
		switch {
		case c >= 'a' && c <= 'z', c >= '0' && c <= '9':
			b.WriteByte(c)
			dash = false
		case c >= 'A' && c <= 'Z':
			b.WriteByte(c + 'a' - 'A')
			dash = false
		default:
			if !dash {
				b.WriteByte('-')
				dash = true
			}
		}
	}
	out := strings.TrimRight(b.String(), "-")
	if out == "" {
		return "unknown"
	}
	return out
}

func hostOf(a net.Addr) string {
	h, _, err := net.SplitHostPort(a.String())
	if err != nil {
		return a.String()
	}
	return h
}

// statsCollector exports what is counted in atomics: follower and
// memory-store figures (the drains have sender.Collector).
type statsCollector struct{ l *Logger }

var (
	evictedAppsDesc   = prometheus.NewDesc("logger_evicted_apps_total", "Apps whose lines the memory store dropped whole to stay within --memory-limit or --max-apps (least recently written first).", nil, nil)
	evictedLinesDesc  = prometheus.NewDesc("logger_evicted_lines_total", "Lines the memory store dropped to stay within its byte and app limits.", nil, nil)
	followRefusedDesc = prometheus.NewDesc("logger_follow_refused_total", "Live followers refused: over the per-app or total limit.", nil, nil)
	followDropDesc    = prometheus.NewDesc("logger_follow_dropped_total", "Lines not delivered to followers too slow to keep up.", nil, nil)
)

func (c *statsCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- followDropDesc
	ch <- followRefusedDesc
	ch <- evictedAppsDesc
	ch <- evictedLinesDesc
}

func (c *statsCollector) Collect(ch chan<- prometheus.Metric) {
	ch <- prometheus.MustNewConstMetric(followDropDesc, prometheus.CounterValue, float64(c.l.hub.Dropped.Load()))
	ch <- prometheus.MustNewConstMetric(followRefusedDesc, prometheus.CounterValue, float64(c.l.hub.Refused.Load()))
	ch <- prometheus.MustNewConstMetric(evictedAppsDesc, prometheus.CounterValue, float64(c.l.evictions.Apps.Load()))
	ch <- prometheus.MustNewConstMetric(evictedLinesDesc, prometheus.CounterValue, float64(c.l.evictions.Lines.Load()))
}

var _ = strconv.Itoa
