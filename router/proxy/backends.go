package proxy

// Choosing a backend and sending the request to it: the policy shared by
// requests and upgrades, and what a failure becomes.

import (
	"errors"
	"net"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/deis/dataplane/router/settings"
	"github.com/deis/dataplane/router/table"
)

// forward sends the request to a backend, trying others when connecting
// fails (nothing was sent, so a retry is always safe).
func (p *Proxy) forward(ctx *fasthttp.RequestCtx, s *state, app *table.App, st *settings.Settings, start time.Time) (*table.Backend, error) {
	return p.tryBackends(ctx, app, st, start, func(b *table.Backend) error {
		return s.clients[b].hc.Do(&ctx.Request, &ctx.Response)
	})
}

// tryBackends calls try with the app's backends in the order of the policy
// (affinity or round-robin first, available backends before ejected ones,
// at most 3 tries) until one succeeds or fails with anything but a
// connection failure: only then was nothing sent, so another backend may
// be tried. A connection failure counts towards the backend's ejection.
// start, the request's arrival, is the time ejections are judged by.
func (p *Proxy) tryBackends(ctx *fasthttp.RequestCtx, app *table.App, st *settings.Settings, start time.Time, try func(*table.Backend) error) (*table.Backend, error) {
	n := len(app.Backends)
	first := p.pick(ctx, app, st)
	now := start.UnixNano()
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
			err = try(b)
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
