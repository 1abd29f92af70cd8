// Package sender ships encoded syslog messages to one destination (a
// logger drain, a logspout route): syslog:// (UDP), syslog+tcp:// and
// syslog+tls://, with octet-counting or newline framing. Each sender has its
// own bounded queue, reconnects forever with backoff, resolves DNS again on
// every connect, and reopens connections idle for longer than the
// destination tolerates (Papertrail closes them after 15 minutes).
package sender

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/deis/dataplane/pkg/retry"
	"github.com/deis/dataplane/pkg/syslog/format"
	"github.com/deis/dataplane/pkg/syslog/framing"
)

// Transport is how messages travel.
type Transport int

const (
	UDP Transport = iota
	TCP
	TLS
)

func (t Transport) String() string { return [...]string{"udp", "tcp", "tls"}[t] }

// Default limits per transport (CONTRACT: UDP 1,024 bytes, TCP 100,000).
const (
	DefaultUDPMax = 1024
	DefaultTCPMax = 100000
)

// Config describes a destination.
type Config struct {
	URL       string // as given, for logs and health
	Transport Transport
	Addr      string       // host:port
	Framing   framing.Mode // OctetCounting or NonTransparent on streams
	Format    format.Kind
	MaxSize   int        // messages longer are truncated
	Params    url.Values // every query parameter, for callers' filters
	TLS       *tls.Config
	QueueSize int
	// IdleReconnect reopens a stream connection before writing when it has
	// been idle this long (default 10 minutes).
	IdleReconnect time.Duration
}

// ParseURL reads syslog://host:port (UDP), syslog+tcp://, syslog+tls://
// with optional ?framing=octet|newline and ?format=rfc5424|rfc3164. Other
// parameters are kept in Params.
func ParseURL(raw string) (Config, error) {
	var c Config
	u, err := url.Parse(strings.TrimSpace(raw))
	if err != nil {
		return c, fmt.Errorf("syslog URL %q: %w", raw, err)
	}
	c.URL = redact(u)
	switch u.Scheme {
	case "syslog", "udp", "syslog+udp":
		c.Transport = UDP
	case "syslog+tcp", "tcp":
		c.Transport = TCP
	case "syslog+tls", "tls":
		c.Transport = TLS
	default:
		return c, fmt.Errorf("syslog URL %q: scheme must be syslog (UDP), syslog+tcp or syslog+tls", c.URL)
	}
	host, port, err := net.SplitHostPort(u.Host)
	if err != nil || host == "" {
		return c, fmt.Errorf("syslog URL %q: want host:port", c.URL)
	}
	if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 {
		return c, fmt.Errorf("syslog URL %q: bad port %q", c.URL, port)
	}
	c.Addr = u.Host
	c.Params = u.Query()
	switch c.Params.Get("framing") {
	case "", "octet", "octet-counting":
		c.Framing = framing.OctetCounting
	case "newline", "nl", "lf":
		c.Framing = framing.NonTransparent
	default:
		return c, fmt.Errorf("syslog URL %q: framing must be octet or newline", c.URL)
	}
	switch strings.ToLower(c.Params.Get("format")) {
	case "", "rfc5424", "5424":
		c.Format = format.RFC5424
	case "rfc3164", "3164":
		c.Format = format.RFC3164
	default:
		return c, fmt.Errorf("syslog URL %q: format must be rfc5424 or rfc3164", c.URL)
	}
	c.MaxSize = DefaultTCPMax
	if c.Transport == UDP {
		c.MaxSize = DefaultUDPMax
	}
	if c.Transport == TLS {
		c.TLS = &tls.Config{ServerName: host, MinVersion: tls.VersionTLS12}
	}
	return c, nil
}

// redact is u as it may be shown (logs, metrics, /routes): without the
// password, and with the value of every query parameter this package and
// its callers' filters do not define replaced, since tokens ride there.
func redact(u *url.URL) string {
	r := *u
	if r.User != nil {
		if _, has := r.User.Password(); has {
			r.User = url.UserPassword(r.User.Username(), "xxxxx")
		}
	}
	if r.RawQuery != "" {
		q := r.Query()
		for k := range q {
			if k != "framing" && k != "format" && !strings.HasPrefix(k, "filter.") {
				q[k] = []string{"xxxxx"}
			}
		}
		r.RawQuery = q.Encode()
	}
	return r.String()
}

// Acker is told, with the sequence number given to SendAcked, when a
// message has been written to the destination's connection. Callers that
// must not lose lines (logspout) move their resume position only then.
type Acker interface{ Ack(seq uint64) }

// Item is a queued message with whom to tell once it is written.
type Item struct {
	Msg   []byte
	Acker Acker // may be nil
	Seq   uint64
}

// Sender ships messages to one destination. Safe for concurrent use.
type Sender struct {
	cfg Config
	log *slog.Logger
	q   chan Item

	Sent, Dropped, Truncated, Reconnects atomic.Int64

	mu      sync.Mutex
	lastErr error
	failing time.Time // since when connecting/writing has failed; zero if fine
	unsent  []Item    // taken from the queue by Run but not written when it returned
	// A retired sender (see Retire) passes what reaches its queue on.
	retired   bool
	successor *Sender

	// pending counts messages queued and not yet written, handed on or
	// abandoned; idle is closed (and replaced) each time it drops to 0.
	pending atomic.Int64
	idle    chan struct{}
}

// added and done keep pending and wake WaitIdle.
func (s *Sender) added(n int64) { s.pending.Add(n) }

func (s *Sender) done(n int64) {
	if n == 0 || s.pending.Add(-n) != 0 {
		return
	}
	s.mu.Lock()
	if s.idle != nil {
		close(s.idle)
		s.idle = nil
	}
	s.mu.Unlock()
}

// WaitIdle waits until everything queued has been written (or handed on,
// or abandoned by Retire), or ctx ends; false then. Owners use it to let a
// sender that is being replaced or stopped finish its queue, within a
// grace period they choose.
func (s *Sender) WaitIdle(ctx context.Context) bool {
	for {
		s.mu.Lock()
		if s.pending.Load() == 0 {
			s.mu.Unlock()
			return true
		}
		if s.idle == nil {
			s.idle = make(chan struct{})
		}
		ch := s.idle
		s.mu.Unlock()
		select {
		case <-ch:
		case <-ctx.Done():
			return false
		}
	}
}

// New returns a sender; Run must be running for messages to leave.
func New(cfg Config, log *slog.Logger) *Sender {
	if cfg.QueueSize <= 0 {
		cfg.QueueSize = 10000
	}
	if cfg.IdleReconnect <= 0 {
		cfg.IdleReconnect = 10 * time.Minute
	}
	if cfg.MaxSize <= 0 {
		cfg.MaxSize = DefaultTCPMax
	}
	if log == nil {
		log = slog.Default()
	}
	return &Sender{cfg: cfg, log: log.With("destination", cfg.URL), q: make(chan Item, cfg.QueueSize)}
}

// Config returns the destination's configuration.
func (s *Sender) Config() Config { return s.cfg }

// QueueLen is how many messages wait.
func (s *Sender) QueueLen() int { return len(s.q) }

// Err is the last connect or write error while the destination is
// failing, with how long it has been failing; nil when healthy.
func (s *Sender) Err() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.failing.IsZero() {
		return nil
	}
	return fmt.Errorf("%s failing for %s: %w", s.cfg.URL, time.Since(s.failing).Round(time.Second), s.lastErr)
}

func (s *Sender) setErr(err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err == nil {
		s.failing = time.Time{}
		s.lastErr = nil
		return
	}
	if s.failing.IsZero() {
		s.failing = time.Now()
	}
	s.lastErr = err
}

// Send queues a copy of msg, waiting for room (back-pressure) until ctx
// ends.
func (s *Sender) Send(ctx context.Context, msg []byte) error {
	return s.SendAcked(ctx, msg, nil, 0)
}

// SendAcked is Send, and calls acker.Ack(seq) once msg has been written.
func (s *Sender) SendAcked(ctx context.Context, msg []byte, acker Acker, seq uint64) error {
	return s.enqueue(ctx, Item{Msg: clone(msg), Acker: acker, Seq: seq})
}

func (s *Sender) enqueue(ctx context.Context, it Item) error {
	s.added(1) // before the item is visible, so it is never done before added
	select {
	case s.q <- it:
		s.mu.Lock()
		retired := s.retired
		s.mu.Unlock()
		if retired {
			s.passOn(ctx)
		}
		return nil
	case <-ctx.Done():
		s.Dropped.Add(1)
		s.done(1)
		return ctx.Err()
	}
}

// Retire hands what a stopped sender never wrote (its Run has returned)
// to successor, oldest first, or, with no successor, acknowledges it as
// abandoned (a deleted route). Messages queued after Retire, by callers
// that picked this sender just before it was replaced, follow the same way.
func (s *Sender) Retire(ctx context.Context, successor *Sender) {
	s.mu.Lock()
	s.retired, s.successor = true, successor
	s.mu.Unlock()
	s.passOn(ctx)
}

// passOn empties the queue of a retired sender; each item is taken by
// exactly one caller, so none is acknowledged twice.
func (s *Sender) passOn(ctx context.Context) {
	s.mu.Lock()
	next, unsent := s.successor, s.unsent
	s.unsent = nil
	s.mu.Unlock()
	handOver := func(it Item) {
		defer s.done(1)
		if next != nil {
			// On failure (shutting down) it stays unacknowledged, so the
			// caller's cursor stays before it and it is sent again later.
			_ = next.enqueue(ctx, it)
			return
		}
		s.Dropped.Add(1)
		if it.Acker != nil {
			it.Acker.Ack(it.Seq)
		}
	}
	for _, it := range unsent {
		handOver(it)
	}
	for {
		select {
		case it := <-s.q:
			handOver(it)
		default:
			return
		}
	}
}

// Encode appends m to dst in the destination's format (?format=, RFC 5424
// by default).
func (s *Sender) Encode(dst []byte, m *format.Message) []byte {
	return format.Append(dst, s.cfg.Format, m)
}

// Format is the destination's encoding; callers encode with Encode (or
// format.Append) before sending.
func (s *Sender) Format() format.Kind { return s.cfg.Format }

// TrySend queues a copy of msg if there is room, else drops it (counted).
func (s *Sender) TrySend(msg []byte) bool {
	return s.TrySendAcked(msg, nil, 0)
}

// TrySendAcked is TrySend, and calls acker.Ack(seq) once msg has been
// written, or at once when it is dropped (a lossy destination never holds
// the caller's position back).
func (s *Sender) TrySendAcked(msg []byte, acker Acker, seq uint64) bool {
	return s.tryEnqueue(Item{Msg: clone(msg), Acker: acker, Seq: seq})
}

func (s *Sender) tryEnqueue(it Item) bool {
	s.added(1)
	select {
	case s.q <- it:
		s.mu.Lock()
		retired := s.retired
		s.mu.Unlock()
		if retired {
			s.passOn(context.Background())
		}
		return true
	default:
		s.Dropped.Add(1)
		s.done(1)
		if it.Acker != nil {
			it.Acker.Ack(it.Seq)
		}
		return false
	}
}

func clone(b []byte) []byte { return append([]byte(nil), b...) }

// A busy stream route writes up to this much per system call.
const (
	batchBytes = 64 << 10
	batchMax   = 1024
)

// Run sends until ctx ends, reconnecting with backoff (100ms to 10s).
// Messages queued together are written together (one write per batch on
// stream transports); each is acknowledged once its write succeeded.
func (s *Sender) Run(ctx context.Context) error {
	var (
		conn    net.Conn
		batch   []Item // taken from the queue but not yet written
		lastUse time.Time
		backoff = retry.New(100*time.Millisecond, 10*time.Second)
		frame   = make([]byte, 0, batchBytes+4096)
	)
	defer func() {
		if conn != nil {
			conn.Close()
		}
		if len(batch) > 0 {
			s.mu.Lock()
			s.unsent = append(s.unsent, batch...)
			s.mu.Unlock()
		}
	}()
	for {
		idle := false
		if len(batch) == 0 {
			select {
			case it := <-s.q:
				batch = append(batch, it)
			default:
				idle = true // nothing queued: wait, and check the peer after
				select {
				case <-ctx.Done():
					return ctx.Err()
				case it := <-s.q:
					batch = append(batch, it)
				}
			}
			if s.cfg.Transport != UDP {
				size := len(batch[0].Msg)
			fill:
				for size < batchBytes && len(batch) < batchMax {
					select {
					case it := <-s.q:
						batch = append(batch, it)
						size += len(it.Msg)
					default:
						break fill
					}
				}
			}
		}
		// After waiting for a message, make sure the peer did not close the
		// connection meanwhile: a write into a closed connection "succeeds"
		// locally and the message would be lost. (While the queue is busy
		// the check is skipped; a peer dying mid-burst can still cost what
		// was in flight, as with any plain syslog transport.)
		if conn != nil && s.cfg.Transport != UDP && (idle || time.Since(lastUse) > 20*time.Millisecond) && (time.Since(lastUse) > s.cfg.IdleReconnect || peerClosed(conn)) {
			conn.Close() // idle too long or closed by the peer: reopen first
			conn = nil
		}
		if conn == nil {
			c, err := s.dial(ctx)
			if err != nil {
				s.setErr(err)
				wait := backoff.Next()
				s.log.Warn("syslog destination unreachable; retrying", "err", err, "retry_in", wait, "queued", len(s.q)+len(batch))
				if !retry.Sleep(ctx, wait) {
					return ctx.Err()
				}
				continue
			}
			conn = c
			s.Reconnects.Add(1)
		}
		written, err := s.write(conn, batch, frame)
		for _, it := range batch[:written] {
			if it.Acker != nil {
				it.Acker.Ack(it.Seq)
			}
		}
		s.Sent.Add(int64(written))
		s.done(int64(written))
		batch = append(batch[:0], batch[written:]...)
		if err != nil {
			s.setErr(fmt.Errorf("write: %w", err))
			conn.Close()
			conn = nil
			continue // the rest of the batch is retried on the next connection
		}
		lastUse = time.Now()
		backoff.Reset()
		s.setErr(nil)
	}
}

// write sends a batch: one datagram per message over UDP, one write for
// all over a stream. It returns how many messages were written.
func (s *Sender) write(conn net.Conn, batch []Item, frame []byte) (int, error) {
	_ = conn.SetWriteDeadline(time.Now().Add(10 * time.Second))
	if s.cfg.Transport == UDP {
		for i, it := range batch {
			if _, err := conn.Write(s.encode(frame[:0], it.Msg)); err != nil {
				return i, err
			}
		}
		return len(batch), nil
	}
	frame = frame[:0]
	for _, it := range batch {
		frame = s.encode(frame, it.Msg)
	}
	if _, err := conn.Write(frame); err != nil {
		return 0, err
	}
	return len(batch), nil
}

func (s *Sender) encode(dst, msg []byte) []byte {
	if len(msg) > s.cfg.MaxSize {
		msg = msg[:s.cfg.MaxSize]
		s.Truncated.Add(1)
	}
	if s.cfg.Transport == UDP {
		return framing.Append(dst, framing.Unknown, msg) // one per datagram
	}
	return framing.Append(dst, s.cfg.Framing, msg)
}

func (s *Sender) dial(ctx context.Context) (net.Conn, error) {
	d := &net.Dialer{Timeout: 5 * time.Second, KeepAlive: 30 * time.Second}
	switch s.cfg.Transport {
	case UDP:
		return d.DialContext(ctx, "udp", s.cfg.Addr)
	case TLS:
		td := &tls.Dialer{NetDialer: d, Config: s.cfg.TLS}
		return td.DialContext(ctx, "tcp", s.cfg.Addr)
	default:
		return d.DialContext(ctx, "tcp", s.cfg.Addr)
	}
}

// peerClosed reports whether the peer has closed the connection (syslog
// receivers never send, so readable means EOF or reset).
func peerClosed(c net.Conn) bool {
	_ = c.SetReadDeadline(time.Now().Add(time.Millisecond))
	var b [1]byte
	_, err := c.Read(b[:])
	_ = c.SetReadDeadline(time.Time{})
	var ne net.Error
	return err != nil && !(errors.As(err, &ne) && ne.Timeout())
}

// Failing joins the errors of the senders that are failing, or returns nil
// when all are healthy: one health check for a set of destinations.
func Failing(senders []*Sender) error {
	var msgs []string
	for _, s := range senders {
		if err := s.Err(); err != nil {
			msgs = append(msgs, err.Error())
		}
	}
	if len(msgs) == 0 {
		return nil
	}
	return errors.New(strings.Join(msgs, "; "))
}
