package proxy

import (
	"bytes"
	"errors"
	"io"
	"net"
	"reflect"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/deis/dataplane/router/settings"
	"github.com/deis/dataplane/router/table"
)

// Request bodies up to maxPrefill (or bodySize, when smaller) are read
// whole before an app connection is used, as nginx's request buffering
// does: a client sending its body slowly then holds no app connection. A
// larger body is streamed after its first maxPrefill bytes.
const maxPrefill = 1 << 20

// errBodyIncomplete: the client's body ended before its end (a chunked
// body without its last chunk, a short Content-Length body).
var errBodyIncomplete = errors.New("the request body ended before it was complete")

type bodyTooLarge struct{}

func (*bodyTooLarge) Error() string { return "request body larger than bodySize" }

// requestBody is a client's streamed request body as the router forwards
// it: counted against bodySize, with a deadline between reads
// (bodyTimeout) inside the request's overall one (defaultTimeout), and an
// early close of the client reported as an error rather than a clean end,
// so the app never receives a truncated body as complete.
type requestBody struct {
	ctx      *fasthttp.RequestCtx
	r        io.Reader // fasthttp's request stream
	chunked  bool
	limit    int64 // bodySize; 0 = unlimited
	read     int64
	perRead  time.Duration
	deadline time.Time // the request's overall deadline
	tooLarge bool
}

func (b *requestBody) Read(p []byte) (int, error) {
	d := time.Now().Add(b.perRead)
	if d.After(b.deadline) {
		d = b.deadline
	}
	_ = b.ctx.Conn().SetReadDeadline(d)
	n, err := b.r.Read(p)
	b.read += int64(n)
	if b.limit > 0 && b.read > b.limit {
		b.tooLarge = true
		return 0, &bodyTooLarge{}
	}
	if errors.Is(err, io.EOF) && b.chunked && !streamEnded(b.r) {
		// fasthttp answers io.EOF both after the last chunk and when the
		// client closed the connection between two chunks.
		return n, errBodyIncomplete
	}
	if errors.Is(err, io.ErrUnexpectedEOF) {
		return n, errBodyIncomplete
	}
	return n, err
}

// streamEnded reports whether fasthttp's request stream r read the body to
// its real end (for a chunked body: the last chunk and trailer). fasthttp
// keeps this in an unexported field; when a future version drops it, every
// EOF counts as the end, as before (TestM2AbortedChunkedUploadNeverLooksComplete fails
// first).
func streamEnded(r io.Reader) bool {
	v := reflect.ValueOf(r)
	if v.Kind() != reflect.Pointer || v.IsNil() || v.Elem().Kind() != reflect.Struct {
		return true
	}
	f := v.Elem().FieldByName("eof")
	if !f.IsValid() || f.Kind() != reflect.Bool {
		return true
	}
	return f.Bool()
}

// prepareBody wraps a streamed request body (a chunked one, or one larger
// than what fasthttp buffers) and reads up to maxPrefill of it before any
// app is contacted. A body that fits is then sent with a Content-Length.
// It returns the wrapper (nil when the body was not streamed) or the error
// that ended the body early.
func prepareBody(ctx *fasthttp.RequestCtx, st *settings.Settings, start time.Time) (*requestBody, error) {
	stream := ctx.RequestBodyStream()
	if stream == nil {
		return nil, nil
	}
	cl := ctx.Request.Header.ContentLength()
	b := &requestBody{
		ctx: ctx, r: stream, chunked: cl == -1, limit: st.BodySize,
		perRead: st.BodyTimeout, deadline: start.Add(st.DefaultTimeout),
	}
	prefill := int64(maxPrefill)
	if st.BodySize > 0 && st.BodySize < prefill {
		prefill = st.BodySize + 1 // one more byte tells "too large"
	}
	var buf bytes.Buffer
	n, err := buf.ReadFrom(io.LimitReader(b, prefill))
	if err != nil {
		return b, err
	}
	if n < prefill {
		// The whole body is here: send it with a length.
		ctx.Request.SetBody(buf.Bytes())
		return b, nil
	}
	ctx.Request.SetBodyStream(io.MultiReader(&buf, b), cl)
	return b, nil
}

// maxHTTP10Body is the largest response of unknown length buffered for an
// HTTP/1.0 client, which cannot take chunked encoding.
const maxHTTP10Body = 64 << 20

// bufferBody reads a streamed response body of unknown length into memory,
// so that it is sent with a Content-Length; an error past max.
func bufferBody(resp *fasthttp.Response, max int64) error {
	var buf bytes.Buffer
	n, err := buf.ReadFrom(io.LimitReader(resp.BodyStream(), max+1))
	if err != nil {
		return err
	}
	if n > max {
		return errors.New("response body over the HTTP/1.0 buffer")
	}
	resp.SetBody(buf.Bytes())
	return nil
}

// maxLinger is how much of a refused body is read and discarded so the
// client, still sending, can read the 413 instead of a connection reset
// (what nginx's lingering close does). Larger bodies are cut off.
const maxLinger = 8 << 20

func lingerBody(ctx *fasthttp.RequestCtx, length int64) {
	stream := ctx.RequestBodyStream()
	if stream == nil || length > maxLinger {
		ctx.SetConnectionClose()
		return
	}
	_ = ctx.Conn().SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.CopyN(io.Discard, stream, length); err != nil {
		ctx.SetConnectionClose()
	}
}

// drainConn reads and drops up to max bytes until the client pauses for
// 200 ms. Only used on the 413 path.
func drainConn(c net.Conn, max int64) {
	buf := make([]byte, 32<<10)
	for n := int64(0); n < max; {
		_ = c.SetReadDeadline(time.Now().Add(200 * time.Millisecond))
		k, err := c.Read(buf)
		n += int64(k)
		if err != nil {
			break
		}
	}
	_ = c.SetReadDeadline(time.Time{})
}

// bodyFailed answers a request whose body could not be read whole: 413
// past bodySize (after reading and dropping what the client still sends,
// so it sees the 413 rather than a reset), 408 when it was too slow, 400
// when it ended early. The connection is closed: its framing is lost.
func (p *Proxy) bodyFailed(ctx *fasthttp.RequestCtx, app *table.App, body *requestBody, err error) {
	defer ctx.SetConnectionClose() // after reject, which resets the response
	switch {
	case body != nil && body.tooLarge:
		drainConn(ctx.Conn(), maxLinger)
		p.bodyRefused.WithLabelValues("too_large").Inc()
		p.reject(ctx, app, fasthttp.StatusRequestEntityTooLarge, "request body larger than the router's bodySize")
	case isTimeout(err):
		p.bodyRefused.WithLabelValues("timeout").Inc()
		p.reject(ctx, app, fasthttp.StatusRequestTimeout, "the request body was sent too slowly")
	default:
		p.bodyRefused.WithLabelValues("incomplete").Inc()
		p.reject(ctx, app, fasthttp.StatusBadRequest, "the request body ended before it was complete")
	}
}

func isTimeout(err error) bool {
	var ne interface{ Timeout() bool }
	return errors.As(err, &ne) && ne.Timeout()
}
