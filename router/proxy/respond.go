package proxy

import (
	"bufio"
	"bytes"
	"io"
	"net"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/valyala/fasthttp"

	"github.com/deis/dataplane/router/settings"
	"github.com/deis/dataplane/router/table"
)

// reject answers with the router's own short error in the form the client
// asked for (JSON, HTML or plain text), naming the cause.
func (p *Proxy) reject(ctx *fasthttp.RequestCtx, app *table.App, code int, cause string) {
	start := time.Now()
	resp := &ctx.Response
	resp.Reset()
	resp.SetStatusCode(code)
	accept := ctx.Request.Header.Peek("Accept")
	switch {
	case bytes.Contains(accept, []byte("application/json")):
		resp.Header.SetContentType("application/json")
		b := append([]byte(`{"error":`), strconv.Quote(cause)...)
		b = append(b, `,"status":`...)
		b = strconv.AppendInt(b, int64(code), 10)
		resp.SetBody(append(b, "}\n"...))
	case bytes.Contains(accept, []byte("text/html")):
		resp.Header.SetContentType("text/html; charset=utf-8")
		title := strconv.Itoa(code) + " " + fasthttp.StatusMessage(code)
		resp.SetBodyString("<!DOCTYPE html><html><head><title>" + title + "</title></head><body><h1>" + title + "</h1><p>" + cause + "</p></body></html>\n")
	default:
		resp.Header.SetContentType("text/plain; charset=utf-8")
		resp.SetBodyString(strconv.Itoa(code) + " " + fasthttp.StatusMessage(code) + ": " + cause + "\n")
	}
	p.done(ctx, app, nil, start)
}

func (p *Proxy) redirectHTTPS(ctx *fasthttp.RequestCtx, host []byte, app *table.App) {
	start := time.Now()
	u := append([]byte("https://"), host...)
	u = append(u, ctx.Request.Header.RequestURI()...)
	ctx.Response.Header.Set("Location", string(u))
	ctx.SetStatusCode(fasthttp.StatusMovedPermanently)
	p.done(ctx, app, nil, start)
}

// upgrade passes an Upgrade request (WebSocket and any other protocol)
// through: the request goes to a backend, whose response head is read.
// Only a 101 Switching Protocols turns the connection into a tunnel, with
// bytes copied both ways until either side closes (the hijacked connection
// no longer depends on the routing table, so table swaps cannot break it).
// Any other answer is relayed as a normal response and the client's
// connection stays under the router's rules (as nginx and HAProxy do):
// otherwise "Connection: Upgrade" would open a raw pipe past bodySize,
// header rewriting and the access log.
func (p *Proxy) upgrade(ctx *fasthttp.RequestCtx, s *state, app *table.App, start time.Time) {
	st := s.t.Settings
	n := len(app.Backends)
	first := p.pick(ctx, app, st)
	var (
		backend net.Conn
		b       *table.Backend
		err     error
	)
	now := time.Now().UnixNano()
	for i := 0; i < n && i < 3; i++ {
		b = app.Backends[(first+i)%n]
		backend, err = net.DialTimeout("tcp", b.Addr, st.ConnectTimeout)
		if err == nil {
			b.Succeeded()
			break
		}
		p.upstreamErrors.WithLabelValues("connect").Inc()
		if b.Failed(now) {
			p.ejections.Inc()
		}
	}
	if err != nil {
		p.reject(ctx, app, fasthttp.StatusBadGateway, "the app could not be reached")
		return
	}
	// The body (if any) streams: it is never held whole in memory.
	_ = backend.SetDeadline(time.Now().Add(st.DefaultTimeout))
	bw := bufio.NewWriterSize(backend, 4<<10)
	err = ctx.Request.Write(bw)
	if err == nil {
		err = bw.Flush()
	}
	if err != nil {
		backend.Close()
		p.reject(ctx, app, fasthttp.StatusBadGateway, "the app could not be reached")
		return
	}
	br := bufio.NewReaderSize(backend, 4<<10)
	resp := &ctx.Response
	if err := resp.ReadLimitBody(br, 0); err != nil {
		backend.Close()
		p.upstreamErrors.WithLabelValues("upgrade_response").Inc()
		p.reject(ctx, app, fasthttp.StatusBadGateway, "the app did not answer the upgrade request")
		return
	}
	if resp.StatusCode() != fasthttp.StatusSwitchingProtocols {
		// Not upgraded: an ordinary response, and the next request on this
		// connection is parsed and checked like any other.
		backend.Close()
		resp.Header.Del("Connection")
		resp.Header.Del("Upgrade")
		p.done(ctx, app, b, start)
		return
	}
	_ = backend.SetDeadline(time.Time{})
	head := append([]byte(nil), resp.Header.Header()...)
	early := make([]byte, br.Buffered()) // tunnel bytes the app sent with its 101
	_, _ = io.ReadFull(br, early)
	idle := st.DefaultTimeout
	ctx.HijackSetNoResponse(true)
	ctx.Hijack(func(c net.Conn) {
		_ = c.SetWriteDeadline(time.Now().Add(idle))
		if _, err := c.Write(append(head, early...)); err != nil {
			c.Close()
			backend.Close()
			return
		}
		pipe(c, backend, idle)
	})
	p.done(ctx, app, b, start)
}

// pipe copies both ways, half-closing as each side finishes, and gives up
// after idle without traffic in either direction.
func pipe(a, b net.Conn, idle time.Duration) {
	done := make(chan struct{}, 2)
	cp := func(dst, src net.Conn) {
		buf := make([]byte, 32<<10)
		for {
			_ = src.SetReadDeadline(time.Now().Add(idle))
			n, err := src.Read(buf)
			if n > 0 {
				_ = dst.SetWriteDeadline(time.Now().Add(idle))
				if _, werr := dst.Write(buf[:n]); werr != nil {
					break
				}
			}
			if err != nil {
				break
			}
		}
		if cw, ok := dst.(interface{ CloseWrite() error }); ok {
			_ = cw.CloseWrite()
		} else {
			_ = dst.Close()
		}
		done <- struct{}{}
	}
	go cp(b, a)
	cp(a, b)
	<-done
	a.Close()
	b.Close()
}

// gzipHandlers compress the response at each level; the wrapped handler
// does nothing, the wrapper's post-processing is what we want.
var gzipHandlers [10]fasthttp.RequestHandler

func init() {
	for lvl := 1; lvl <= 9; lvl++ {
		gzipHandlers[lvl] = fasthttp.CompressHandlerLevel(func(*fasthttp.RequestCtx) {}, lvl)
	}
}

// maybeGzip compresses when the client accepts gzip, the app did not
// compress, the type is in gzipTypes and the body is at least
// gzipMinLength (or of unknown length).
func maybeGzip(ctx *fasthttp.RequestCtx, st *settings.Settings) {
	resp := &ctx.Response
	if len(resp.Header.ContentEncoding()) > 0 || !ctx.Request.Header.HasAcceptEncoding("gzip") {
		return
	}
	if cl := resp.Header.ContentLength(); cl >= 0 && cl < st.GzipMinLength || cl == 0 {
		return
	}
	ct := resp.Header.ContentType()
	if i := bytes.IndexByte(ct, ';'); i >= 0 {
		ct = ct[:i]
	}
	ct = bytes.TrimSpace(ct)
	if !st.GzipTypes[b2s(ct)] && !st.GzipTypes["*"] {
		return
	}
	gzipHandlers[st.GzipCompLevel](ctx)
}

// appCollector exports per-app request counters from the current table, so
// the request path only does atomic adds.
type appCollector struct{ p *Proxy }

var appRequestsDesc = prometheus.NewDesc("router_requests_total", "Requests by app and status class.", []string{"app", "status"}, nil)
var tableDescs = struct{ age, apps, backends, invalid *prometheus.Desc }{
	prometheus.NewDesc("router_table_age_seconds", "Seconds since the routing table in use was built.", nil, nil),
	prometheus.NewDesc("router_table_apps", "Apps in the routing table.", nil, nil),
	prometheus.NewDesc("router_table_backends", "Backends in the routing table.", nil, nil),
	prometheus.NewDesc("router_table_invalid_entries", "Entries skipped as invalid in the last build.", nil, nil),
}

func (c *appCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- appRequestsDesc
	ch <- tableDescs.age
	ch <- tableDescs.apps
	ch <- tableDescs.backends
	ch <- tableDescs.invalid
}

func (c *appCollector) Collect(ch chan<- prometheus.Metric) {
	t := c.p.Table()
	if t == nil {
		return
	}
	ch <- prometheus.MustNewConstMetric(tableDescs.age, prometheus.GaugeValue, time.Since(t.Built).Seconds())
	ch <- prometheus.MustNewConstMetric(tableDescs.apps, prometheus.GaugeValue, float64(len(t.Apps)))
	ch <- prometheus.MustNewConstMetric(tableDescs.backends, prometheus.GaugeValue, float64(t.Backends()))
	ch <- prometheus.MustNewConstMetric(tableDescs.invalid, prometheus.GaugeValue, float64(t.Invalid))
	for _, a := range t.Apps {
		for class := 1; class < len(a.Stats.ByClass); class++ {
			if n := a.Stats.ByClass[class].Load(); n > 0 {
				ch <- prometheus.MustNewConstMetric(appRequestsDesc, prometheus.CounterValue, float64(n), a.Name, strconv.Itoa(class)+"xx")
			}
		}
	}
}

var _ io.Reader = (*requestBody)(nil)
