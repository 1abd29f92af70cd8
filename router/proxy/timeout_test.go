package proxy_test

import (
	"sync/atomic"
	"testing"
	"time"

	"github.com/valyala/fasthttp"
)

// TestAppTimeoutOnReusedConnection: an app that stops answering gets a 504
// after defaultTimeout (plus the backend deadline's small slack), also on
// a keep-alive connection whose deadline was set by earlier requests, and
// the requests after it are served again.
func TestAppTimeoutOnReusedConnection(t *testing.T) {
	const timeout = 400 * time.Millisecond
	var stall atomic.Bool
	addr := startProxy(t, func(ctx *fasthttp.RequestCtx) {
		if string(ctx.Path()) == "/slow" && stall.Load() {
			time.Sleep(3 * timeout)
		}
		ctx.SetBodyString("ok")
	}, map[string]string{"/deis/router/defaultTimeout": timeout.String()}, nil)

	client := &fasthttp.HostClient{Addr: addr, MaxConns: 1}
	get := func(path string) (int, time.Duration) {
		req, resp := fasthttp.AcquireRequest(), fasthttp.AcquireResponse()
		defer fasthttp.ReleaseRequest(req)
		defer fasthttp.ReleaseResponse(resp)
		req.SetRequestURI("http://app.example.com" + path)
		start := time.Now()
		if err := client.DoTimeout(req, resp, 10*timeout); err != nil {
			t.Fatalf("GET %s: %v", path, err)
		}
		return resp.StatusCode(), time.Since(start)
	}
	// Warm the router's keep-alive connection to the app, spread over more
	// than the deadline's slack so that a deadline set earlier is reused.
	for i := range 20 {
		if code, _ := get("/slow"); code != 200 {
			t.Fatalf("warm-up request %d: status %d", i, code)
		}
		time.Sleep(20 * time.Millisecond)
	}
	stall.Store(true)
	code, took := get("/slow")
	if code != fasthttp.StatusGatewayTimeout {
		t.Fatalf("stalled app: status %d, want 504", code)
	}
	if slackMax := 2 * timeout; took < timeout || took > slackMax {
		t.Errorf("stalled app answered 504 after %v, want between %v and %v", took, timeout, slackMax)
	}
	stall.Store(false)
	if code, _ := get("/fast"); code != 200 {
		t.Errorf("after the timeout: status %d, want 200", code)
	}
}
