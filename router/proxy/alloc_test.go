package proxy_test

import (
	"log/slog"
	"net"
	"testing"

	"github.com/valyala/fasthttp"

	"github.com/deis/dataplane/internal/race"
	"github.com/deis/dataplane/router/proxy"
	"github.com/deis/dataplane/router/table"
)

// setup runs a fasthttp backend and the proxy on loopback and returns a
// client that reuses its request and response, so that everything the
// measurement sees allocated comes from the proxy path (client and
// backend are allocation-free in steady state).
func setup(tb testing.TB, access bool) (do func()) {
	tb.Helper()
	backendLn, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	body := []byte("hello from the app\n")
	backend := &fasthttp.Server{Handler: func(ctx *fasthttp.RequestCtx) {
		ctx.SetContentType("text/plain")
		ctx.SetBody(body)
	}}
	go backend.Serve(backendLn)
	tb.Cleanup(func() { _ = backend.Shutdown() })

	var al *proxy.AccessLog
	if access {
		al = proxy.NewAccessLog(discard{})
		tb.Cleanup(al.Close)
	}
	p := proxy.New(slog.New(slog.DiscardHandler), al, nil)
	t, errs := table.Build(map[string]string{
		"/deis/platform/domain":           "example.com",
		"/deis/services/app/app_v1.web.1": backendLn.Addr().String(),
	}, 1, nil, table.NewPool())
	if len(errs) != 0 {
		tb.Fatal(errs)
	}
	p.Install(t)
	routerLn, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	srv := &fasthttp.Server{Handler: p.Handle, StreamRequestBody: true, NoDefaultServerHeader: true}
	go srv.Serve(routerLn)
	tb.Cleanup(func() { _ = srv.Shutdown() })

	client := &fasthttp.HostClient{Addr: routerLn.Addr().String()}
	req, resp := fasthttp.AcquireRequest(), fasthttp.AcquireResponse()
	req.SetRequestURI("http://app.example.com/path?q=1")
	return func() {
		if err := client.Do(req, resp); err != nil || resp.StatusCode() != 200 {
			tb.Fatalf("request: %v %d %s", err, resp.StatusCode(), resp.Body())
		}
	}
}

type discard struct{}

func (discard) Write(p []byte) (int, error) { return len(p), nil }

// maxAllocsPerRequest is what the request path may allocate. The router's
// own code allocates nothing; the 4 come from fasthttp's HostClient when it
// streams a response body (closures in transport.RoundTrip), which we need
// so multi-GB downloads pass with bounded memory. Replacing that transport
// with a pooled one is the known next step to reach 0.
const maxAllocsPerRequest = 4

// TestProxyPathAllocations guards the request path's allocation count, with
// and without the access log.
func TestProxyPathAllocations(t *testing.T) {
	if race.Enabled {
		t.Skip("allocation counts are meaningless under -race")
	}
	for _, access := range []bool{false, true} {
		do := setup(t, access)
		for range 200 { // warm pools and connections
			do()
		}
		if allocs := testing.AllocsPerRun(1000, do); allocs > maxAllocsPerRequest {
			t.Errorf("access log %v: %.2f allocations per proxied request, want at most %d", access, allocs, maxAllocsPerRequest)
		}
	}
}

func BenchmarkProxy(b *testing.B) {
	do := setup(b, false)
	b.ReportAllocs()
	for b.Loop() {
		do()
	}
}

func BenchmarkProxyWithAccessLog(b *testing.B) {
	do := setup(b, true)
	b.ReportAllocs()
	for b.Loop() {
		do()
	}
}
