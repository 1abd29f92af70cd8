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

// startProxy runs app as the one backend of app.example.com, behind the
// proxy on loopback with the router settings given (etcd keys under
// /deis/router/), and returns the proxy's address.
func startProxy(tb testing.TB, app fasthttp.RequestHandler, settings map[string]string, al *proxy.AccessLog) string {
	tb.Helper()
	backendLn, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	backend := &fasthttp.Server{Handler: app}
	go backend.Serve(backendLn)
	tb.Cleanup(func() { _ = backend.Shutdown() })

	kvs := map[string]string{
		"/deis/platform/domain":           "example.com",
		"/deis/services/app/app_v1.web.1": backendLn.Addr().String(),
	}
	for k, v := range settings {
		kvs[k] = v
	}
	p := proxy.New(slog.New(slog.DiscardHandler), al, nil)
	t, errs := table.Build(kvs, 1, nil, table.NewPool())
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
	return routerLn.Addr().String()
}

// setup runs a fasthttp backend and the proxy on loopback and returns a
// client that reuses its request and response, so that everything the
// measurement sees allocated comes from the proxy path (client and
// backend are allocation-free in steady state).
func setup(tb testing.TB, access bool) (do func()) {
	tb.Helper()
	body := []byte("hello from the app\n")
	var al *proxy.AccessLog
	if access {
		al = proxy.NewAccessLog(discard{})
		tb.Cleanup(al.Close)
	}
	addr := startProxy(tb, func(ctx *fasthttp.RequestCtx) {
		ctx.SetContentType("text/plain")
		ctx.SetBody(body)
	}, nil, al)

	client := &fasthttp.HostClient{Addr: addr}
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

// maxAllocsPerRequest is what the request path may allocate in steady state:
// nothing (client, backend and router included). Bodies over 64 KiB are
// streamed and may allocate; they are not the steady state this guards.
const maxAllocsPerRequest = 0

// TestProxyPathAllocations is the zero-allocation guarantee of issue 3, with
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
