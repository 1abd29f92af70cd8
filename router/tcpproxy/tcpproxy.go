// Package tcpproxy forwards raw TCP connections (the router's port 2222) to
// a target read from the routing table at each new connection: the
// builder's SSH port. Half-close is passed through, so `git push` over ssh
// sees the remote's EOF and exit status.
package tcpproxy

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/deis/dataplane/pkg/retry"
	"github.com/deis/dataplane/router/table"
)

// Server accepts connections and forwards them.
type Server struct {
	target func() *table.Target
	log    *slog.Logger

	mu    sync.Mutex
	conns map[net.Conn]struct{}
	lns   []net.Listener
	wg    sync.WaitGroup

	accepted, dialFailures prometheus.Counter
	bytes                  *prometheus.CounterVec
}

// New returns a server asking target() for the destination of each new
// connection (nil: none announced, the connection is closed).
func New(target func() *table.Target, log *slog.Logger, reg prometheus.Registerer) *Server {
	s := &Server{target: target, log: log, conns: make(map[net.Conn]struct{})}
	s.accepted = prometheus.NewCounter(prometheus.CounterOpts{Name: "router_tcp_connections_total", Help: "TCP connections accepted on the builder port."})
	s.dialFailures = prometheus.NewCounter(prometheus.CounterOpts{Name: "router_tcp_dial_failures_total", Help: "TCP connections closed because the builder could not be reached."})
	s.bytes = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "router_tcp_bytes_total", Help: "Bytes forwarded on the builder port."}, []string{"direction"})
	if reg != nil {
		reg.MustRegister(s.accepted, s.dialFailures, s.bytes)
	}
	return s
}

// Serve accepts on ln until it is closed or ctx ends.
func (s *Server) Serve(ctx context.Context, ln net.Listener) error {
	s.mu.Lock()
	s.lns = append(s.lns, ln)
	s.mu.Unlock()
	stop := context.AfterFunc(ctx, func() { ln.Close() })
	defer stop()
	backoff := retry.New(5*time.Millisecond, time.Second)
	for {
		c, err := ln.Accept()
		if err != nil {
			if ctx.Err() != nil || errors.Is(err, net.ErrClosed) {
				return nil
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				if !retry.Sleep(ctx, backoff.Next()) {
					return nil
				}
				continue
			}
			return err
		}
		backoff.Reset()
		s.accepted.Inc()
		s.track(c, true)
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			defer s.track(c, false)
			defer func() {
				if r := recover(); r != nil {
					s.log.Error("panic in tcp proxy connection", "panic", r)
				}
			}()
			s.handle(c)
		}()
	}
}

func (s *Server) track(c net.Conn, add bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if add {
		s.conns[c] = struct{}{}
	} else {
		delete(s.conns, c)
	}
}

func (s *Server) handle(c net.Conn) {
	defer c.Close()
	t := s.target()
	if t == nil {
		s.log.Warn("closing tcp connection: no builder announced in etcd", "client", c.RemoteAddr().String())
		return
	}
	up, err := net.DialTimeout("tcp", t.Addr, t.ConnectTimeout)
	if err != nil {
		s.dialFailures.Inc()
		s.log.Warn("closing tcp connection: builder unreachable", "client", c.RemoteAddr().String(), "builder", t.Addr, "err", err)
		return
	}
	defer up.Close()
	in, out := Pipe(c, up, t.IdleTimeout)
	s.bytes.WithLabelValues("in").Add(float64(in))
	s.bytes.WithLabelValues("out").Add(float64(out))
}

// Pipe copies a to b and b to a until both directions end, half-closing
// each destination when its source ends (so `git push` over ssh sees the
// remote's EOF and exit status). idle (0 = none) closes both connections
// when no byte has passed in either direction for that long: a stream that
// only one side talks on (a WebSocket the app pushes on) stays open. It
// returns the bytes copied each way.
func Pipe(a, b net.Conn, idle time.Duration) (aToB, bToA int64) {
	var last atomic.Int64 // unix nanoseconds of the last byte either way
	last.Store(time.Now().UnixNano())
	var wg sync.WaitGroup
	wg.Go(func() { aToB = copyIdle(b, a, idle, &last) })
	bToA = copyIdle(a, b, idle, &last)
	wg.Wait()
	return aToB, bToA
}

// copyIdle copies src to dst, then half-closes dst. A read that times out
// while the other direction was active within idle waits again.
func copyIdle(dst, src net.Conn, idle time.Duration, last *atomic.Int64) int64 {
	buf := make([]byte, 32<<10)
	var total int64
	for {
		if idle > 0 {
			_ = src.SetReadDeadline(time.Unix(0, last.Load()).Add(idle))
		}
		n, err := src.Read(buf)
		if n > 0 {
			last.Store(time.Now().UnixNano())
			if idle > 0 {
				_ = dst.SetWriteDeadline(time.Now().Add(idle))
			}
			w, werr := dst.Write(buf[:n])
			total += int64(w)
			if werr != nil {
				break
			}
		}
		if err != nil {
			var ne net.Error
			if !errors.Is(err, io.EOF) && errors.As(err, &ne) && ne.Timeout() {
				if time.Since(time.Unix(0, last.Load())) < idle {
					continue // the other direction is alive
				}
				// Idle both ways: close both, not just this direction.
				_ = dst.Close()
				_ = src.Close()
				return total
			}
			break
		}
	}
	if cw, ok := dst.(interface{ CloseWrite() error }); ok {
		_ = cw.CloseWrite()
	} else {
		_ = dst.Close()
	}
	return total
}

// Shutdown stops accepting, waits for open connections until ctx ends, then
// closes the rest.
func (s *Server) Shutdown(ctx context.Context) error {
	s.mu.Lock()
	for _, ln := range s.lns {
		_ = ln.Close()
	}
	s.mu.Unlock()
	done := make(chan struct{})
	go func() { s.wg.Wait(); close(done) }()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
	}
	s.mu.Lock()
	for c := range s.conns {
		_ = c.Close()
	}
	s.mu.Unlock()
	<-done
	return ctx.Err()
}
