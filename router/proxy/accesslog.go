package proxy

import (
	"io"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"github.com/valyala/fasthttp"

	"github.com/deis/dataplane/router/table"
)

// AccessLog writes one JSON line per request from a background goroutine.
// The request path only formats into a pooled buffer and hands it over; if
// the writer falls behind, lines are dropped and counted rather than
// slowing requests.
type AccessLog struct {
	w       io.Writer
	ch      chan *logBuf
	pool    sync.Pool
	Dropped atomic.Int64
	done    chan struct{}
}

type logBuf struct{ b []byte }

// NewAccessLog starts the writer goroutine; Close stops it after draining.
func NewAccessLog(w io.Writer) *AccessLog {
	l := &AccessLog{w: w, ch: make(chan *logBuf, 8192), done: make(chan struct{})}
	l.pool.New = func() any { return &logBuf{b: make([]byte, 0, 512)} }
	go l.run()
	return l
}

func (l *AccessLog) run() {
	defer close(l.done)
	for buf := range l.ch {
		_, _ = l.w.Write(buf.b)
		buf.b = buf.b[:0]
		l.pool.Put(buf)
	}
}

// Close flushes queued lines and stops the writer.
func (l *AccessLog) Close() {
	close(l.ch)
	<-l.done
}

// Log formats one request, with what nginx's combined format carries. Safe
// for concurrent use. A response streamed from the app is logged when its
// body has been sent, with the bytes really sent (its length is unknown
// before); others with their body's length. A streamed response the
// router gzips is logged with bytes -1 (its compressed size is known to
// fasthttp's compressor only). duration_ms is the time to the response
// head; at is when it was sent.
func (l *AccessLog) Log(ctx *fasthttp.RequestCtx, app *table.App, b *table.Backend, status int, at time.Time, elapsed time.Duration) {
	buf := l.pool.Get().(*logBuf)
	d := buf.b[:0]
	d = append(d, `{"time":"`...)
	d = at.UTC().AppendFormat(d, time.RFC3339Nano)
	d = append(d, `","level":"INFO","component":"router","msg":"access","request_id":`...)
	d = appendJSON(d, ctx.Request.Header.Peek("X-Request-Id"))
	d = append(d, `,"app":`...)
	if app != nil {
		d = appendJSONString(d, app.Name)
	} else {
		d = append(d, `""`...)
	}
	d = append(d, `,"backend":`...)
	if b != nil {
		d = appendJSONString(d, b.Addr)
	} else {
		d = append(d, `""`...)
	}
	d = append(d, `,"client":"`...)
	d = peerAddr(ctx).AppendTo(d)
	d = append(d, `","method":`...)
	d = appendJSON(d, ctx.Method())
	d = append(d, `,"host":`...)
	d = appendJSON(d, ctx.Host())
	d = append(d, `,"path":`...)
	d = appendJSON(d, ctx.Path())
	d = append(d, `,"query":`...)
	d = appendJSON(d, ctx.URI().QueryString())
	d = append(d, `,"protocol":`...)
	d = appendJSON(d, ctx.Request.Header.Protocol())
	d = append(d, `,"user_agent":`...)
	d = appendJSON(d, ctx.Request.Header.UserAgent())
	d = append(d, `,"referer":`...)
	d = appendJSON(d, ctx.Request.Header.Referer())
	d = append(d, `,"status":`...)
	d = strconv.AppendInt(d, int64(status), 10)
	d = append(d, `,"duration_ms":`...)
	d = strconv.AppendFloat(d, float64(elapsed.Microseconds())/1000, 'f', 3, 64)
	d = append(d, `,"bytes":`...)
	buf.b = d
	if sb, ok := ctx.Response.BodyStream().(*streamBody); ok && ctx.Response.IsBodyStream() {
		// The line ends when the body has been sent: fasthttp closes the
		// stream then.
		sb.onClose = func(sent int64) { l.finish(buf, sent) }
		return
	}
	sent := int64(ctx.Response.Header.ContentLength())
	if !ctx.Response.IsBodyStream() {
		sent = int64(len(ctx.Response.Body()))
	}
	l.finish(buf, sent)
}

// finish ends a line with the bytes sent and queues it.
func (l *AccessLog) finish(buf *logBuf, sent int64) {
	buf.b = append(strconv.AppendInt(buf.b, sent, 10), "}\n"...)
	select {
	case l.ch <- buf:
	default:
		l.Dropped.Add(1)
		buf.b = buf.b[:0]
		l.pool.Put(buf)
	}
}

const hexDigits = "0123456789abcdef"

func appendJSON(d, s []byte) []byte { return appendJSONString(d, b2s(s)) }

// appendJSONString quotes s as a JSON string, escaping what JSON requires
// and replacing invalid UTF-8.
func appendJSONString(d []byte, s string) []byte {
	d = append(d, '"')
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			switch {
			case c == '"' || c == '\\':
				d = append(d, '\\', c)
			case c < 0x20:
				d = append(d, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&15])
			default:
				d = append(d, c)
			}
			i++
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			d = append(d, `\ufffd`...)
		} else {
			d = append(d, s[i:i+size]...)
		}
		i += size
	}
	return append(d, '"')
}
