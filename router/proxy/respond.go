package proxy

import (
	"bytes"
	"strconv"
	"time"

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
