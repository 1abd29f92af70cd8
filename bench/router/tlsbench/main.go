// Command tlsbench counts TLS handshakes per second against an address,
// with SNI, from a few concurrent clients, for a bounded time: full ones
// (no session resumption), or with -resume resumed ones (TLS 1.2 session
// tickets; only handshakes that did resume count).
package main

import (
	"crypto/tls"
	"flag"
	"fmt"
	"net"
	"sync"
	"sync/atomic"
	"time"
)

func main() {
	addr := flag.String("addr", "127.0.0.1:443", "TLS address")
	name := flag.String("sni", "bench.local.deis.example", "server name")
	dur := flag.Duration("d", 5*time.Second, "duration")
	conc := flag.Int("c", 8, "concurrent clients")
	resume := flag.Bool("resume", false, "resume sessions (TLS 1.2 tickets) and count only resumed handshakes")
	classic := flag.Bool("classic", false, "offer X25519 and P-256 only: Go offers the post-quantum X25519MLKEM768 first by default, which a Go server accepts and OpenSSL 3.0 (nginx here) cannot; like for like, both then do X25519 (P-256 stays offered: TLS 1.2 needs it for a P-256 certificate)")
	flag.Parse()
	var ok, failed atomic.Int64
	deadline := time.Now().Add(*dur)
	var wg sync.WaitGroup
	for range *conc {
		wg.Go(func() {
			cfg := &tls.Config{ServerName: *name, InsecureSkipVerify: true} //nolint:gosec // a benchmark of the handshake, not of trust
			if *classic {
				cfg.CurvePreferences = []tls.CurveID{tls.X25519, tls.CurveP256}
			}
			if *resume {
				cfg.ClientSessionCache = tls.NewLRUClientSessionCache(1)
				cfg.MaxVersion = tls.VersionTLS12
			}
			for time.Now().Before(deadline) {
				conn, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", *addr, cfg)
				if err != nil {
					failed.Add(1)
					continue
				}
				resumed := conn.ConnectionState().DidResume
				conn.Close()
				if !*resume || resumed {
					ok.Add(1)
				}
			}
		})
	}
	wg.Wait()
	fmt.Printf("%.0f %d\n", float64(ok.Load())/dur.Seconds(), failed.Load())
}
