// Package proxy is the router's request path: one atomic load of the
// routing table, host lookup, policy checks (whitelist, HTTPS, body size),
// then the request is streamed to a backend and the response streamed back.
// The steady-state path does not allocate (see alloc_test.go).
package proxy

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"log/slog"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/valyala/fasthttp"

	"github.com/deis/dataplane/pkg/version"
	"github.com/deis/dataplane/router/settings"
	"github.com/deis/dataplane/router/table"
)

// Proxy routes requests with the current table. Install swaps tables; Handle
// serves requests concurrently with it.
type Proxy struct {
	current atomic.Pointer[state]
	log     *slog.Logger
	access  *AccessLog // nil when the access log is off

	idPrefix [16]byte
	idSeq    atomic.Uint64

	latency        prometheus.Histogram
	upstreamErrors *prometheus.CounterVec
	ejections      prometheus.Counter
	noTable        prometheus.Counter
	bodyRefused    *prometheus.CounterVec
	unknownHost    prometheus.Counter

	mu      sync.Mutex // serialises Install
	clients map[string]*client
}

// state is one installed table with its backend clients.
type state struct {
	t       *table.Table
	clients map[*table.Backend]*client
}

type client struct {
	hc  *fasthttp.HostClient
	cfg clientSettings
}

// clientSettings are the parts of the settings a HostClient is built with.
type clientSettings struct {
	connect, read time.Duration
}

// New returns a proxy. access may be nil to disable the access log.
func New(log *slog.Logger, access *AccessLog, reg prometheus.Registerer) *Proxy {
	p := &Proxy{log: log, access: access, clients: make(map[string]*client)}
	var seed [8]byte
	_, _ = rand.Read(seed[:])
	hex.Encode(p.idPrefix[:], seed[:])
	p.latency = prometheus.NewHistogram(prometheus.HistogramOpts{
		Name: "router_request_duration_seconds", Help: "Time from request read to response headers, all apps.",
		Buckets: prometheus.ExponentialBuckets(0.0005, 2, 16),
	})
	p.upstreamErrors = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "router_upstream_errors_total", Help: "Backend errors by kind (connect, timeout, other).",
	}, []string{"kind"})
	p.ejections = prometheus.NewCounter(prometheus.CounterOpts{Name: "router_backend_ejections_total", Help: "Backends ejected after repeated connection failures."})
	p.bodyRefused = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "router_request_body_refused_total", Help: "Requests whose body was refused: too_large (bodySize), timeout (bodyTimeout), incomplete (the client stopped early)."}, []string{"reason"})
	p.unknownHost = prometheus.NewCounter(prometheus.CounterOpts{Name: "router_unknown_host_requests_total", Help: "Requests answered 404 because no app is served at their host."})
	p.noTable = prometheus.NewCounter(prometheus.CounterOpts{Name: "router_no_table_requests_total", Help: "Requests answered 503 because no table was loaded yet."})
	if reg != nil {
		reg.MustRegister(p.latency, p.upstreamErrors, p.ejections, p.noTable, p.bodyRefused, p.unknownHost, &appCollector{p: p})
	}
	return p
}

// Table returns the installed table, or nil.
func (p *Proxy) Table() *table.Table {
	if s := p.current.Load(); s != nil {
		return s.t
	}
	return nil
}

// Install makes t the table for every new request. Requests in flight
// finish with the table they started with; open connections are kept.
func (p *Proxy) Install(t *table.Table) {
	p.mu.Lock()
	defer p.mu.Unlock()
	want := clientSettings{connect: t.Settings.ConnectTimeout, read: t.Settings.DefaultTimeout}
	ctrl := clientSettings{connect: t.Settings.ControllerConnectTimeout, read: t.Settings.ControllerReadTimeout}
	s := &state{t: t, clients: make(map[*table.Backend]*client, t.Backends())}
	fresh := make(map[string]*client, len(p.clients))
	for _, app := range t.Apps {
		cfg := want
		if app.Controller {
			cfg = ctrl
		}
		for _, b := range app.Backends {
			key := b.Addr
			if app.Controller {
				key = "controller|" + b.Addr
			}
			c := p.clients[key]
			if c == nil || c.cfg != cfg {
				c = newClient(b.Addr, cfg)
			}
			fresh[key] = c
			s.clients[b] = c
		}
	}
	p.clients = fresh
	p.current.Store(s)
}

func newClient(addr string, cfg clientSettings) *client {
	return &client{cfg: cfg, hc: &fasthttp.HostClient{
		Addr:                          addr,
		Transport:                     newTransport(addr, cfg.connect, cfg.read),
		DisableHeaderNamesNormalizing: true,
		DisablePathNormalizing:        true,
		NoDefaultUserAgentHeader:      true,
		MaxIdemponentCallAttempts:     2, // one retry when a pooled connection was closed by the backend
	}}
}

var (
	hdrXFF        = []byte("X-Forwarded-For")
	hdrXRealIP    = []byte("X-Real-IP")
	hdrXFProto    = []byte("X-Forwarded-Proto")
	hdrXFPort     = []byte("X-Forwarded-Port")
	hdrXRequestID = []byte("X-Request-Id")
	hdrXReqStart  = []byte("X-Request-Start")
	hdrHSTS       = []byte("Strict-Transport-Security")
	hdrServer     = []byte("Server")
	strHTTPS      = []byte("https")
	strHTTP       = []byte("http")
	serverToken   = []byte("deis-router/" + version.Version)
	errNoBackends = errors.New("no backend available")
)

// Handle serves one request. It is the fasthttp handler of the HTTP and
// HTTPS listeners.
func (p *Proxy) Handle(ctx *fasthttp.RequestCtx) {
	start := time.Now()
	s := p.current.Load()
	if s == nil {
		p.noTable.Inc()
		p.reject(ctx, nil, fasthttp.StatusServiceUnavailable, "router is starting: no routing table loaded yet")
		return
	}
	t := s.t
	st := t.Settings
	// Every answer, the router's own pages included, carries a request id
	// (to the app, and in the access log).
	var idBuf [64]byte
	if len(ctx.Request.Header.PeekBytes(hdrXRequestID)) == 0 {
		ctx.Request.Header.SetBytesKV(hdrXRequestID, p.newRequestID(idBuf[:0]))
	}
	if uri := ctx.Request.Header.RequestURI(); len(uri) > 0 && uri[0] != '/' && uri[0] != '*' {
		absoluteForm(ctx)
	}
	var hostBuf [256]byte
	host := normalizeHost(ctx.Request.Header.Host(), hostBuf[:0])
	app := t.Lookup(b2s(host))
	if app == nil {
		p.unknownHost.Inc()
		p.reject(ctx, nil, fasthttp.StatusNotFound, "no app is served at this host")
		return
	}

	peer := peerAddr(ctx)
	trustedPeer := settings.Allowed(st.ProxyRealIPCIDR, peer)
	client := peer
	if trustedPeer {
		client = realClient(ctx.Request.Header.PeekBytes(hdrXFF), st.ProxyRealIPCIDR, peer)
	}
	https := ctx.IsTLS()
	if !https && trustedPeer {
		https = string(ctx.Request.Header.PeekBytes(hdrXFProto)) == "https"
	}

	if app.Whitelist != nil || st.EnforceWhitelist {
		if !settings.Allowed(app.Whitelist, client) {
			p.reject(ctx, app, fasthttp.StatusForbidden, "your address is not on this app's whitelist")
			return
		}
	}
	if st.EnforceHTTPS && !https {
		p.redirectHTTPS(ctx, host, app)
		return
	}
	if len(app.Backends) == 0 {
		p.reject(ctx, app, fasthttp.StatusServiceUnavailable, "the app has no running containers")
		return
	}
	if cl := ctx.Request.Header.ContentLength(); st.BodySize > 0 && int64(cl) > st.BodySize {
		p.reject(ctx, app, fasthttp.StatusRequestEntityTooLarge, "request body larger than the router's bodySize")
		lingerBody(ctx, int64(cl))
		return
	}
	body, err := prepareBody(ctx, st, start)
	if err != nil {
		p.bodyFailed(ctx, app, body, err)
		return
	}

	// Headers to the app.
	h := &ctx.Request.Header
	if !trustedPeer {
		stripSpoofable(h)
	}
	var buf [64]byte
	h.SetBytesKV(hdrXRealIP, client.AppendTo(buf[:0]))
	if trustedPeer && len(h.PeekBytes(hdrXFF)) > 0 {
		xff := append(append(h.PeekBytes(hdrXFF), ", "...), peer.AppendTo(buf[:0])...)
		h.SetBytesKV(hdrXFF, xff)
	} else {
		h.SetBytesKV(hdrXFF, client.AppendTo(buf[:0]))
	}
	if https {
		h.SetBytesKV(hdrXFProto, strHTTPS)
	} else {
		h.SetBytesKV(hdrXFProto, strHTTP)
	}
	if !trustedPeer || len(h.PeekBytes(hdrXFPort)) == 0 {
		h.SetBytesKV(hdrXFPort, strconv.AppendInt(buf[:0], int64(localPort(ctx)), 10))
	}
	h.SetBytesKV(hdrXReqStart, strconv.AppendInt(append(buf[:0], "t="...), start.UnixMilli(), 10))

	if h.ConnectionUpgrade() {
		p.upgrade(ctx, s, app, start)
		return
	}

	clientClose := h.ConnectionClose()
	h.ResetConnectionClose()
	// A TLS request carries the https scheme; backends speak plain HTTP.
	ctx.Request.URI().SetSchemeBytes(strHTTP)
	backend, err := p.forward(ctx, s, app, st, start)
	if err != nil {
		if body != nil && (body.tooLarge || errors.Is(err, errBodyIncomplete) || isTimeout(err)) {
			p.bodyFailed(ctx, app, body, err)
			return
		}
		p.upstreamFailed(ctx, app, backend, err, start)
		return
	}
	resp := &ctx.Response
	if resp.IsBodyStream() && resp.Header.ContentLength() < 0 && !ctx.Request.Header.IsHTTP11() {
		// HTTP/1.0 has no chunked encoding (RFC 9112 6.1): send the body
		// with its length.
		if err := bufferBody(resp, maxHTTP10Body); err != nil {
			p.upstreamErrors.WithLabelValues("http10_body").Inc()
			p.reject(ctx, app, fasthttp.StatusBadGateway, "the app's response is too large for an HTTP/1.0 client; use HTTP/1.1")
			return
		}
	}
	if clientClose {
		ctx.SetConnectionClose()
	} else {
		resp.Header.ResetConnectionClose()
	}
	if https && st.HSTSEnabled {
		resp.Header.SetBytesK(hdrHSTS, st.HSTSHeader)
	}
	if st.ServerTokens && len(resp.Header.PeekBytes(hdrServer)) == 0 {
		resp.Header.SetBytesKV(hdrServer, serverToken)
	}
	if st.Gzip {
		maybeGzip(ctx, st)
	}
	p.done(ctx, app, backend, start)
}

// done records metrics and the access log line.
func (p *Proxy) done(ctx *fasthttp.RequestCtx, app *table.App, b *table.Backend, start time.Time) {
	now := time.Now() // one clock read for both: each is ~80 ns on a VM, per request
	elapsed := now.Sub(start)
	p.latency.Observe(elapsed.Seconds())
	code := ctx.Response.StatusCode()
	if app != nil {
		if c := code / 100; c >= 0 && c < len(app.Stats.ByClass) {
			app.Stats.ByClass[c].Add(1)
		}
	}
	if p.access != nil {
		p.access.Log(ctx, app, b, code, now, elapsed)
	}
}

func (p *Proxy) newRequestID(dst []byte) []byte {
	dst = append(dst, p.idPrefix[:]...)
	var n [8]byte
	seq := p.idSeq.Add(1)
	for i := 7; i >= 0; i-- {
		n[i] = byte(seq)
		seq >>= 8
	}
	var out [16]byte
	hex.Encode(out[:], n[:])
	return append(dst, out[:]...)
}
