package proxy

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http/httputil"
	"sync"
	"time"

	"github.com/valyala/fasthttp"
)

// maxBuffered is the largest response body read into memory; larger ones
// (and chunked or close-delimited ones) are streamed to the client.
const maxBuffered = 64 << 10

// transport is a fasthttp RoundTripper with its own keep-alive pool. It
// exists because fasthttp's transport allocates per request when it
// streams response bodies; here small responses are buffered in the
// Response's pooled buffer and large ones streamed, so the steady state
// allocates nothing.
type transport struct {
	addr                string
	connect, read, idle time.Duration
	pool                chan *pconn
}

type pconn struct {
	c        net.Conn
	br       *bufio.Reader
	bw       *bufio.Writer
	usedAt   time.Time // when a request last started on it
	deadline time.Time // its read and write deadline as last set; zero when unknown
}

var bufPool = sync.Pool{New: func() any { return new(pconn) }}

func newTransport(addr string, connect, read time.Duration) *transport {
	return &transport{addr: addr, connect: connect, read: read, idle: 60 * time.Second, pool: make(chan *pconn, 64)}
}

func (t *transport) get(now time.Time) (*pconn, bool, error) {
	for {
		select {
		case pc := <-t.pool:
			if now.Sub(pc.usedAt) < t.idle {
				return pc, true, nil
			}
			pc.c.Close()
			continue
		default:
		}
		c, err := net.DialTimeout("tcp", t.addr, t.connect)
		if err != nil {
			return nil, false, err
		}
		pc := bufPool.Get().(*pconn)
		pc.c = c
		pc.deadline = time.Time{}
		if pc.br == nil {
			pc.br = bufio.NewReaderSize(c, 16<<10)
			pc.bw = bufio.NewWriterSize(c, 16<<10)
		} else {
			pc.br.Reset(c)
			pc.bw.Reset(c)
		}
		return pc, false, nil
	}
}

func (t *transport) put(pc *pconn) {
	select {
	case t.pool <- pc:
	default:
		t.close(pc)
	}
}

func (t *transport) close(pc *pconn) {
	pc.c.Close()
	pc.c = nil
	pc.br.Reset(nil)
	pc.bw.Reset(nil)
	bufPool.Put(pc)
}

// RoundTrip sends req and reads resp. A reused connection that fails
// before any response byte is reported as retryable (the backend closed an
// idle connection), as fasthttp's own transport does.
func (t *transport) RoundTrip(_ *fasthttp.HostClient, req *fasthttp.Request, resp *fasthttp.Response) (bool, error) {
	now := time.Now() // the one clock read of a round trip (~80 ns each on a VM)
	pc, reused, err := t.get(now)
	if err != nil {
		return false, err
	}
	pc.usedAt = now
	t.setDeadline(pc, now)
	if err := req.Write(pc.bw); err != nil {
		t.close(pc)
		return reused, err
	}
	if err := pc.bw.Flush(); err != nil {
		t.close(pc)
		return reused, err
	}
	for {
		if err := resp.Header.Read(pc.br); err != nil {
			t.close(pc)
			if errors.Is(err, io.EOF) && reused {
				return true, err
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				return false, fasthttp.ErrTimeout
			}
			return false, err
		}
		code := resp.Header.StatusCode()
		if code < 100 || code > 199 || code == fasthttp.StatusSwitchingProtocols {
			break
		}
	}
	keep := !resp.Header.ConnectionClose() && !req.Header.ConnectionClose()
	code := resp.Header.StatusCode()
	if req.Header.IsHead() || code == fasthttp.StatusNoContent || code == fasthttp.StatusNotModified {
		resp.SkipBody = true
		t.finish(pc, keep)
		return false, nil
	}
	cl := resp.Header.ContentLength()
	if cl >= 0 && cl <= maxBuffered {
		if err := resp.ReadBody(pc.br, maxBuffered); err != nil {
			t.close(pc)
			return false, err
		}
		t.finish(pc, keep)
		return false, nil
	}
	// Stream: the connection returns to the pool when the body is done.
	sb := &streamBody{t: t, pc: pc, keep: keep}
	switch {
	case cl >= 0:
		sb.r = io.LimitReader(pc.br, int64(cl))
	case cl == -1:
		sb.r = httputil.NewChunkedReader(pc.br)
		sb.chunked = true
	default: // until close
		sb.r = pc.br
		sb.keep = false
		cl = -1
	}
	_ = pc.c.SetReadDeadline(time.Time{})
	pc.deadline = time.Time{}
	sb.deadline = t.read
	resp.SetBodyStream(sb, cl)
	return false, nil
}

// deadlineSlack is how much later than the app timeout a backend
// connection's deadline may fall, so that it is not set on every request.
const deadlineSlack = 250 * time.Millisecond

// setDeadline gives the round trip starting at now one deadline for the
// write and the read of the head, between t.read and t.read plus a little
// slack from now. Setting one is a runtime timer update; on a busy
// keep-alive connection the one already set mostly still fits, and is
// kept. A pooled connection's past deadline never fits: it is set again
// before any use.
func (t *transport) setDeadline(pc *pconn, now time.Time) {
	want := now.Add(t.read)
	if !pc.deadline.IsZero() && !pc.deadline.Before(want) {
		return // set at most slack ago: it falls within [want, want+slack]
	}
	slack := min(deadlineSlack, t.read/8)
	pc.deadline = want.Add(slack)
	_ = pc.c.SetDeadline(pc.deadline)
}

func (t *transport) finish(pc *pconn, keep bool) {
	if keep {
		t.put(pc)
	} else {
		t.close(pc)
	}
}

// streamBody reads a large response body and gives the connection back
// when it has been read to the end (or closes it when not).
type streamBody struct {
	t        *transport
	pc       *pconn
	r        io.Reader
	keep     bool
	eof      bool
	chunked  bool
	deadline time.Duration
	sent     int64            // body bytes read, hence sent to the client
	onClose  func(sent int64) // the access log's end of line, if any
}

// maxTrailer bounds the trailer section read after a chunked body.
const maxTrailer = 16 << 10

// skipTrailer consumes what follows a chunked body's last chunk: the
// trailer fields, if any, and the empty line that ends them
// (RFC 9112 7.1.2). httputil's chunked reader stops before them, and a
// connection reused with them unread would answer the next request with
// the leftover trailer. False when the section is malformed or too long:
// the connection must then be closed.
func skipTrailer(br *bufio.Reader) bool {
	for read := 0; read < maxTrailer; {
		line, err := br.ReadSlice('\n')
		read += len(line)
		if err != nil {
			return false
		}
		if len(line) <= 2 && (len(line) == 1 || line[0] == '\r') {
			return true // the empty line
		}
	}
	return false
}

func (s *streamBody) Read(p []byte) (int, error) {
	if s.pc == nil {
		return 0, io.EOF
	}
	s.pc.deadline = time.Time{} // the read deadline moves on its own now
	_ = s.pc.c.SetReadDeadline(time.Now().Add(s.deadline))
	n, err := s.r.Read(p)
	s.sent += int64(n)
	if errors.Is(err, io.EOF) {
		s.eof = true
		if s.chunked && !s.finishChunked() {
			s.keep = false
		}
	} else if err != nil {
		err = fmt.Errorf("reading response body: %w", err)
	}
	return n, err
}

// finishChunked finishes a chunked body once: the trailer section is consumed so
// the connection can be reused.
func (s *streamBody) finishChunked() bool {
	s.chunked = false
	return skipTrailer(s.pc.br)
}

func (s *streamBody) Close() error {
	if s.onClose != nil {
		s.onClose(s.sent)
		s.onClose = nil
	}
	if s.pc == nil {
		return nil
	}
	pc := s.pc
	s.pc = nil
	if s.eof && s.keep {
		s.t.finish(pc, true)
	} else {
		s.t.close(pc)
	}
	return nil
}
