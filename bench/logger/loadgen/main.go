// Command loadgen sends RFC 5424 messages with octet counting over TCP
// from several connections, as fast as the receiver takes them, and can
// time GET requests against the logger's API.
package main

import (
	"bufio"
	"flag"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"sort"
	"strconv"
	"sync"
	"time"
)

func main() {
	addr := flag.String("addr", "127.0.0.1:514", "syslog TCP address")
	conns := flag.Int("c", 4, "connections")
	n := flag.Int("n", 200000, "messages per connection")
	apps := flag.Int("apps", 1, "spread messages over this many apps")
	get := flag.String("get", "", "instead of sending: time GET requests to this URL prefix + app<i>?log_lines=1000")
	reqs := flag.Int("reqs", 500, "GET requests")
	flag.Parse()
	if *get != "" {
		timeGets(*get, *apps, *reqs)
		return
	}
	var wg sync.WaitGroup
	start := time.Now()
	for c := range *conns {
		wg.Go(func() {
			conn, err := net.Dial("tcp", *addr)
			if err != nil {
				log.Fatal(err)
			}
			defer conn.Close()
			w := bufio.NewWriterSize(conn, 64<<10)
			var msg, frame []byte
			for i := range *n {
				app := "bench"
				if *apps > 1 {
					app = "app" + strconv.Itoa(i%*apps)
				}
				msg = fmt.Appendf(msg[:0], "<14>1 2026-11-23T05:00:00.000000Z host %s web.%d - - message %d of connection %d with some typical log text", app, c+1, i, c)
				frame = strconv.AppendInt(frame[:0], int64(len(msg)), 10)
				frame = append(append(frame, ' '), msg...)
				if _, err := w.Write(frame); err != nil {
					log.Fatal(err)
				}
			}
			if err := w.Flush(); err != nil {
				log.Fatal(err)
			}
		})
	}
	wg.Wait()
	fmt.Printf("sent %d in %.3fs\n", *conns**n, time.Since(start).Seconds())
}

func timeGets(prefix string, apps, reqs int) {
	var d []time.Duration
	for i := range reqs {
		t0 := time.Now()
		resp, err := http.Get(fmt.Sprintf("%sapp%d?log_lines=1000", prefix, i%apps))
		if err != nil {
			log.Fatal(err)
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		d = append(d, time.Since(t0))
	}
	sort.Slice(d, func(i, j int) bool { return d[i] < d[j] })
	fmt.Printf("p50 %.3f p99 %.3f\n", float64(d[len(d)/2].Microseconds())/1000, float64(d[len(d)*99/100].Microseconds())/1000)
}
