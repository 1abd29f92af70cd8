package builder

import (
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gliderlabs/ssh"
)

// Pre-authentication limits, as OpenSSH's LoginGraceTime and MaxStartups:
// a connection that has not opened a session within LoginGrace is closed,
// and beyond MaxUnauthenticated connections still authenticating new ones
// are refused, so that parked handshakes cannot exhaust the builder.
const (
	DefaultLoginGrace         = 30 * time.Second
	DefaultMaxUnauthenticated = 64
)

type ctxKeyGrace struct{}

// graceConn holds a connection to a deadline until it is authenticated:
// every deadline set meanwhile (gliderlabs/ssh moves them on each read and
// write) is clamped to the grace deadline.
type graceConn struct {
	net.Conn
	grace   time.Time
	authed  atomic.Bool
	release sync.Once
	done    func()
}

func (c *graceConn) clamp(t time.Time) time.Time {
	if c.authed.Load() {
		return t
	}
	if t.IsZero() || t.After(c.grace) {
		return c.grace
	}
	return t
}

func (c *graceConn) SetDeadline(t time.Time) error      { return c.Conn.SetDeadline(c.clamp(t)) }
func (c *graceConn) SetReadDeadline(t time.Time) error  { return c.Conn.SetReadDeadline(c.clamp(t)) }
func (c *graceConn) SetWriteDeadline(t time.Time) error { return c.Conn.SetWriteDeadline(c.clamp(t)) }

// authenticated lifts the grace deadline and frees the connection's place
// among those authenticating.
func (c *graceConn) authenticated() {
	c.authed.Store(true)
	c.release.Do(c.done)
	_ = c.Conn.SetDeadline(time.Time{})
}

func (c *graceConn) Close() error {
	c.release.Do(c.done)
	return c.Conn.Close()
}

// admitConn is the SSH server's ConnCallback: it refuses a connection
// over MaxUnauthenticated and puts the others under the grace deadline.
func (b *Builder) admitConn(ctx ssh.Context, conn net.Conn) net.Conn {
	if n := b.unauthed.Add(1); n > int64(b.cfg.MaxUnauthenticated) {
		b.unauthed.Add(-1)
		b.m.refusedConns.WithLabelValues("max_unauthenticated").Inc()
		if b.warnedStartups.CompareAndSwap(false, true) {
			b.log.Warn("refusing SSH connections: too many still authenticating (builder_ssh_refused_total counts them)", "max_unauthenticated", b.cfg.MaxUnauthenticated, "peer", conn.RemoteAddr().String())
		}
		return nil
	}
	gc := &graceConn{Conn: conn, grace: time.Now().Add(b.cfg.LoginGrace), done: func() { b.unauthed.Add(-1) }}
	_ = gc.Conn.SetDeadline(gc.grace)
	ctx.SetValue(ctxKeyGrace{}, gc)
	return gc
}

// sessionStarted marks the session's connection authenticated.
func sessionStarted(ctx ssh.Context) {
	if gc, ok := ctx.Value(ctxKeyGrace{}).(*graceConn); ok {
		gc.authenticated()
	}
}

// idleInput is a push's standard input that remembers when the client last
// sent something, for the push idle timeout.
type idleInput struct {
	r    interface{ Read([]byte) (int, error) }
	last atomic.Int64 // unix nanoseconds
}

func newIdleInput(r interface{ Read([]byte) (int, error) }) *idleInput {
	in := &idleInput{r: r}
	in.last.Store(time.Now().UnixNano())
	return in
}

func (in *idleInput) Read(p []byte) (int, error) {
	n, err := in.r.Read(p)
	if n > 0 {
		in.last.Store(time.Now().UnixNano())
	}
	return n, err
}

func (in *idleInput) idle() time.Duration { return time.Since(time.Unix(0, in.last.Load())) }
