package proxy

import (
	"bufio"
	"io"
	"net"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/deis/dataplane/router/table"
	"github.com/deis/dataplane/router/tcpproxy"
)

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
	// The same choice of backend as for requests (ejected ones last).
	var backend net.Conn
	b, err := p.tryBackends(ctx, app, st, start, func(b *table.Backend) (err error) {
		backend, err = net.DialTimeout("tcp", b.Addr, st.ConnectTimeout)
		return err
	})
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
		tcpproxy.Pipe(c, backend, idle)
	})
	p.done(ctx, app, b, start)
}
