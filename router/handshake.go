package router

import (
	"errors"
	"net"
	"runtime"
	"sync/atomic"
	"time"
)

// handshakeTurns bounds the TLS handshakes computing at once, so that a
// flood of new connections cannot take every core from the requests of
// established ones. A turn is taken once the ClientHello is in (a client
// slow to send it holds none) and given back at the server's first write,
// which crypto/tls makes only when its whole flight, signature included,
// is computed.
type handshakeTurns struct {
	turns chan struct{}
	wait  time.Duration // the longest a handshake waits for a turn
}

// errNoTurn fails a handshake that waited too long: the router is
// saturated with handshakes, and a client retrying later is better served
// than one whose handshake finishes after it gave up.
var errNoTurn = errors.New("too many TLS handshakes at once; try again")

func newHandshakeTurns() *handshakeTurns {
	return &handshakeTurns{turns: make(chan struct{}, runtime.GOMAXPROCS(0)), wait: 5 * time.Second}
}

// listener wraps ln so that its connections can take turns.
func (h *handshakeTurns) listener(ln net.Listener) net.Listener { return turnListener{ln, h} }

type turnListener struct {
	net.Listener
	h *handshakeTurns
}

func (l turnListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return &turnConn{Conn: c, h: l.h}, nil
}

// turnConn is the raw connection under crypto/tls (ClientHelloInfo.Conn).
type turnConn struct {
	net.Conn
	h    *handshakeTurns
	held atomic.Bool
}

// take waits for a turn; called from GetConfigForClient.
func (c *turnConn) take() error {
	select {
	case c.h.turns <- struct{}{}:
		c.held.Store(true)
		return nil
	default:
	}
	t := time.NewTimer(c.h.wait)
	defer t.Stop()
	select {
	case c.h.turns <- struct{}{}:
		c.held.Store(true)
		return nil
	case <-t.C:
		return errNoTurn
	}
}

func (c *turnConn) give() {
	if c.held.Load() && c.held.Swap(false) {
		<-c.h.turns
	}
}

func (c *turnConn) Write(b []byte) (int, error) {
	c.give()
	return c.Conn.Write(b)
}

func (c *turnConn) Close() error {
	c.give()
	return c.Conn.Close()
}
