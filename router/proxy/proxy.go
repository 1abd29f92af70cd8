// Package proxy is the router's request path: one atomic load of the
// routing table, host lookup, policy checks (whitelist, HTTPS, body size),
// then the request is streamed to a backend and the response streamed back.
// The steady-state path does not allocate (see alloc_test.go).
package proxy

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
	"unsafe"

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
	backend, err := p.forward(ctx, s, app, st)
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

// forward sends the request to a backend, trying others when connecting
// fails (nothing was sent, so a retry is always safe).
func (p *Proxy) forward(ctx *fasthttp.RequestCtx, s *state, app *table.App, st *settings.Settings) (*table.Backend, error) {
	n := len(app.Backends)
	first := p.pick(ctx, app, st)
	now := time.Now().UnixNano()
	var (
		last *table.Backend
		err  error
	)
	tries := 0
	// Two passes: available backends first, then ejected ones as a last
	// resort, so an app whose backends all look bad still gets a try.
	for pass := 0; pass < 2 && tries < 3; pass++ {
		for i := 0; i < n && tries < 3; i++ {
			b := app.Backends[(first+i)%n]
			if b.Available(now) == (pass == 1) {
				continue
			}
			tries++
			last = b
			err = s.clients[b].hc.Do(&ctx.Request, &ctx.Response)
			if err == nil {
				b.Succeeded()
				return b, nil
			}
			if !isConnectError(err) {
				return b, err
			}
			p.upstreamErrors.WithLabelValues("connect").Inc()
			if b.Failed(now) {
				p.ejections.Inc()
				p.log.Warn("backend ejected after repeated connection failures", "app", app.Name, "backend", b.Addr, "cool_down", table.EjectFor)
			}
		}
	}
	if last == nil {
		return nil, errNoBackends
	}
	return last, err
}

// pick returns the index of the first backend to try: consistent hashing
// on the affinity argument when set and present, else round-robin.
func (p *Proxy) pick(ctx *fasthttp.RequestCtx, app *table.App, st *settings.Settings) int {
	n := len(app.Backends)
	if st.AffinityArg != "" {
		if v := ctx.QueryArgs().Peek(st.AffinityArg); len(v) > 0 {
			return rendezvous(app.Backends, v)
		}
		if v := ctx.Request.Header.Cookie(st.AffinityArg); len(v) > 0 {
			return rendezvous(app.Backends, v)
		}
	}
	return int(app.Next() % uint32(n))
}

// rendezvous is highest-random-weight hashing: adding or removing one
// backend only moves the keys that hashed to it.
func rendezvous(backends []*table.Backend, key []byte) int {
	best, bestScore := 0, uint64(0)
	for i, b := range backends {
		h := uint64(14695981039346656037) // FNV-1a
		for _, c := range key {
			h = (h ^ uint64(c)) * 1099511628211
		}
		for j := 0; j < len(b.Addr); j++ {
			h = (h ^ uint64(b.Addr[j])) * 1099511628211
		}
		if s := h; i == 0 || s > bestScore {
			best, bestScore = i, s
		}
	}
	return best
}

func isConnectError(err error) bool {
	if errors.Is(err, fasthttp.ErrDialTimeout) || errors.Is(err, fasthttp.ErrNoFreeConns) {
		return true
	}
	var op *net.OpError
	return errors.As(err, &op) && op.Op == "dial"
}

func (p *Proxy) upstreamFailed(ctx *fasthttp.RequestCtx, app *table.App, b *table.Backend, err error, start time.Time) {
	var errTooLarge *bodyTooLarge
	switch {
	case errors.As(err, &errTooLarge):
		p.reject(ctx, app, fasthttp.StatusRequestEntityTooLarge, "request body larger than the router's bodySize")
		ctx.SetConnectionClose()
		return
	case errors.Is(err, fasthttp.ErrTimeout) || errors.Is(err, fasthttp.ErrDialTimeout):
		p.upstreamErrors.WithLabelValues("timeout").Inc()
		p.reject(ctx, app, fasthttp.StatusGatewayTimeout, "the app did not answer in time")
	default:
		if !isConnectError(err) {
			p.upstreamErrors.WithLabelValues("other").Inc()
		}
		p.reject(ctx, app, fasthttp.StatusBadGateway, "the app could not be reached")
	}
	addr := ""
	if b != nil {
		addr = b.Addr
	}
	p.log.Debug("upstream request failed", "app", app.Name, "backend", addr, "err", err, "elapsed", time.Since(start))
}

// done records metrics and the access log line.
func (p *Proxy) done(ctx *fasthttp.RequestCtx, app *table.App, b *table.Backend, start time.Time) {
	elapsed := time.Since(start)
	p.latency.Observe(elapsed.Seconds())
	code := ctx.Response.StatusCode()
	if app != nil {
		if c := code / 100; c >= 0 && c < len(app.Stats.ByClass) {
			app.Stats.ByClass[c].Add(1)
		}
	}
	if p.access != nil {
		p.access.Log(ctx, app, b, code, elapsed)
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

// absoluteForm handles "GET http://host/path HTTP/1.1": the authority in
// the request target is the host (RFC 9112 3.2.2), for routing and for the
// app, which gets the origin form. Routing on the Host header while the
// app received the URI's host would let a client feed any Host to an app.
func absoluteForm(ctx *fasthttp.RequestCtx) {
	uri := ctx.Request.URI()
	if len(uri.Host()) == 0 {
		return
	}
	ctx.Request.Header.SetHostBytes(uri.Host())
	ctx.Request.Header.SetRequestURIBytes(uri.RequestURI())
}

// spoofable are the headers that name the client or the original request
// and that only a trusted peer (proxyRealIpCidr) may set, lower case.
var spoofable = [...]string{"x-forwarded-for", "x-forwarded-proto", "x-forwarded-port", "x-forwarded-host", "x-real-ip", "forwarded"}

func isSpoofable(k []byte) bool {
	for _, s := range spoofable {
		if len(k) == len(s) && equalFoldASCII(k, s) {
			return true
		}
	}
	return false
}

func equalFoldASCII(b []byte, lower string) bool {
	for i := range b {
		c := b[i]
		if c >= 'A' && c <= 'Z' {
			c += 'a' - 'A'
		}
		if c != lower[i] {
			return false
		}
	}
	return true
}

// stripSpoofable removes, whatever their case, the headers an untrusted
// client may not set; the router then sets its own. Header names are not
// normalised here, so "x-real-ip" would otherwise pass beside the
// router's "X-Real-IP". It allocates only when there is one to remove.
func stripSpoofable(h *fasthttp.RequestHeader) {
	found := false
	for k := range h.All() {
		if isSpoofable(k) {
			found = true
			break
		}
	}
	if !found {
		return
	}
	var del [][]byte
	for k := range h.All() {
		if isSpoofable(k) {
			del = append(del, append([]byte(nil), k...))
		}
	}
	for _, k := range del {
		h.DelBytes(k)
	}
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

// normalizeHost lowercases host, drops the port and trailing dots. IPv6
// literals keep their brackets stripped. It writes into dst when it must
// change the bytes.
func normalizeHost(h []byte, dst []byte) []byte {
	if len(h) > 0 && h[0] == '[' {
		if i := indexByte(h, ']'); i > 0 {
			h = h[1:i]
		}
	} else if i := lastIndexByte(h, ':'); i >= 0 {
		h = h[:i]
	}
	for len(h) > 0 && h[len(h)-1] == '.' {
		h = h[:len(h)-1]
	}
	upper := false
	for _, c := range h {
		if c >= 'A' && c <= 'Z' {
			upper = true
			break
		}
	}
	if !upper {
		return h
	}
	for _, c := range h {
		if c >= 'A' && c <= 'Z' {
			c += 'a' - 'A'
		}
		dst = append(dst, c)
	}
	return dst
}

func indexByte(b []byte, c byte) int {
	for i := range b {
		if b[i] == c {
			return i
		}
	}
	return -1
}

func lastIndexByte(b []byte, c byte) int {
	for i := len(b) - 1; i >= 0; i-- {
		if b[i] == c {
			return i
		}
	}
	return -1
}

// b2s views b as a string without copying; the string must not outlive b.
func b2s(b []byte) string {
	if len(b) == 0 {
		return ""
	}
	return unsafe.String(&b[0], len(b))
}

func peerAddr(ctx *fasthttp.RequestCtx) netip.Addr {
	if a, ok := ctx.RemoteAddr().(*net.TCPAddr); ok {
		if ip, ok := netip.AddrFromSlice(a.IP); ok {
			return ip.Unmap()
		}
	}
	return netip.Addr{}
}

func localPort(ctx *fasthttp.RequestCtx) int {
	if a, ok := ctx.LocalAddr().(*net.TCPAddr); ok {
		return a.Port
	}
	return 0
}

// realClient walks X-Forwarded-For from the right, skipping trusted
// proxies; the first untrusted address is the client.
func realClient(xff []byte, trusted []netip.Prefix, peer netip.Addr) netip.Addr {
	client := peer
	end := len(xff)
	for end > 0 {
		start := lastIndexByte(xff[:end], ',') + 1
		field := trimSpace(xff[start:end])
		end = start - 1
		ip, err := netip.ParseAddr(b2s(field))
		if err != nil {
			break
		}
		client = ip.Unmap()
		if !settings.Allowed(trusted, client) {
			break
		}
	}
	return client
}

func trimSpace(b []byte) []byte {
	for len(b) > 0 && (b[0] == ' ' || b[0] == '\t') {
		b = b[1:]
	}
	for len(b) > 0 && (b[len(b)-1] == ' ' || b[len(b)-1] == '\t') {
		b = b[:len(b)-1]
	}
	return b
}
