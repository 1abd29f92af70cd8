// Command backend is the app every proxy in bench/router forwards to: a
// small fixed response, keep-alive, as fast as it can so the proxies are
// what is measured.
package main

import (
	"flag"
	"log"

	"github.com/valyala/fasthttp"
)

func main() {
	addr := flag.String("addr", "127.0.0.1:9999", "listen address")
	flag.Parse()
	body := []byte("hello from the app\n")
	srv := &fasthttp.Server{Handler: func(ctx *fasthttp.RequestCtx) {
		ctx.SetContentType("text/plain")
		ctx.SetBody(body)
	}, NoDefaultServerHeader: true}
	log.Fatal(srv.ListenAndServe(*addr))
}
