// Command controller-bench measures the controller binary against a real
// etcd process: p50/p99 of GET /v1/apps/<app>/ and of a page of a 1,000-app
// list at a fixed rate, beside a direct etcd range read of one app's keys
// (the floor); and logins per second (bcrypt cost 10). Each figure is the
// median of -runs runs with the spread. Writes bench/out/controller.md, .csv.
package main

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"log"
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/deis/dataplane/pkg/etcdutil"
	"github.com/deis/dataplane/pkg/keys"
)

var base string

func main() {
	etcd := flag.String("etcd", "http://127.0.0.1:12779", "etcd endpoint")
	ctl := flag.String("controller", "http://127.0.0.1:18001", "controller URL")
	apps := flag.Int("apps", 1000, "apps owned by the benchmark user")
	rate := flag.Int("rate", 200, "requests per second")
	dur := flag.Duration("duration", 15*time.Second, "each measurement")
	runs := flag.Int("runs", 3, "runs of each measurement")
	out := flag.String("out", "bench/out", "where controller.md and controller.csv go")
	flag.Parse()
	base = *ctl
	cli, err := etcdutil.Connect([]string{*etcd})
	must(err)
	call("", "POST", "/v1/auth/register/", map[string]string{"username": "root", "password": "root-pw"}, 201)
	call("", "POST", "/v1/auth/register/", map[string]string{"username": "bench", "password": "bench-pw"}, 201)
	var login struct{ Token string }
	must(json.Unmarshal(call("", "POST", "/v1/auth/login/", map[string]string{"username": "bench", "password": "bench-pw"}, 200), &login))
	tok := login.Token
	for i := 0; i < *apps; i++ {
		call(tok, "POST", "/v1/apps/", map[string]string{"id": fmt.Sprintf("app%04d", i)}, 201)
	}
	floorOp := func() error {
		_, err := cli.Get(context.Background(), keys.AppPrefix("app0500"), clientv3.WithPrefix())
		return err
	}
	get := func(path string) func() error {
		return func() error {
			req, _ := http.NewRequest("GET", base+path, nil)
			req.Header.Set("Authorization", "token "+tok)
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				return err
			}
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode != 200 {
				return fmt.Errorf("%s: %d", path, resp.StatusCode)
			}
			return nil
		}
	}
	type series struct {
		name     string
		op       func() error
		p50, p99 []time.Duration
	}
	all := []*series{
		{name: "etcd range read of one app's keys (the floor)", op: floorOp},
		{name: "GET /v1/apps/<app>/", op: get("/v1/apps/app0500/")},
		{name: fmt.Sprintf("GET /v1/apps/?page_size=100 (page 5 of %d apps)", *apps), op: get("/v1/apps/?page_size=100&page=5")},
	}
	var loginsPerSec []float64
	for r := 0; r < *runs; r++ {
		for _, s := range all {
			p50, p99, errs := fixedRate(s.op, *rate, *dur)
			if errs > 0 {
				log.Fatalf("%s: %d errors", s.name, errs)
			}
			s.p50, s.p99 = append(s.p50, p50), append(s.p99, p99)
		}
		loginsPerSec = append(loginsPerSec, logins(10*time.Second))
	}
	var md, csv strings.Builder
	fmt.Fprintf(&md, "## Controller\n\n`bench/controller/run.sh` (`go run ./bench/controller`), the controller binary on a real etcd process, %s; %d apps owned by the (non-admin) caller; %d requests/s for %s per run; median of %d runs (spread min–max).\n\n", time.Now().UTC().Format("2006-01-02"), *apps, *rate, *dur, *runs)
	md.WriteString("| request | p50 | p99 | p99 ÷ floor p99 | target |\n| --- | ---: | ---: | ---: | --- |\n")
	csv.WriteString("chart,series,value,unit\n")
	floor := median(all[0].p99)
	for i, s := range all {
		ratio, target := "1.00", "the floor"
		if i > 0 {
			ratio, target = fmt.Sprintf("%.2f", float64(median(s.p99))/float64(floor)), "≤ 3"
		}
		fmt.Fprintf(&md, "| %s | %s (%s) | %s (%s) | %s | %s |\n", s.name, median(s.p50), spread(s.p50), median(s.p99), spread(s.p99), ratio, target)
		fmt.Fprintf(&csv, "controller_p99_ms,%s,%.2f,ms\n", strings.ReplaceAll(s.name, ",", ""), float64(median(s.p99).Microseconds())/1000)
	}
	sort.Float64s(loginsPerSec)
	fmt.Fprintf(&md, "\nLogins (bcrypt cost 10, 8 concurrent clients, 10 s): %.0f/s (%.0f–%.0f). bcrypt is the cost by design: it is what makes a stolen user record slow to crack.\n\n", loginsPerSec[len(loginsPerSec)/2], loginsPerSec[0], loginsPerSec[len(loginsPerSec)-1])
	fmt.Fprintf(&csv, "controller_logins_per_s,bcrypt cost 10,%.0f,logins/s\n", loginsPerSec[len(loginsPerSec)/2])
	must(os.MkdirAll(*out, 0o755))
	must(os.WriteFile(filepath.Join(*out, "controller.md"), []byte(md.String()), 0o644))
	must(os.WriteFile(filepath.Join(*out, "controller.csv"), []byte(csv.String()), 0o644))
	fmt.Print(md.String())
}

// fixedRate runs op rate times a second for d (open loop: a slow answer
// does not slow the schedule) and returns p50, p99 and the error count.
func fixedRate(op func() error, rate int, d time.Duration) (time.Duration, time.Duration, int64) {
	var mu sync.Mutex
	var lat []time.Duration
	var errs atomic.Int64
	var wg sync.WaitGroup
	tick := time.NewTicker(time.Second / time.Duration(rate))
	defer tick.Stop()
	end := time.Now().Add(d)
	for time.Now().Before(end) {
		<-tick.C
		wg.Go(func() {
			t0 := time.Now()
			if err := op(); err != nil {
				errs.Add(1)
				return
			}
			l := time.Since(t0)
			mu.Lock()
			lat = append(lat, l)
			mu.Unlock()
		})
	}
	wg.Wait()
	sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
	if len(lat) == 0 {
		return 0, 0, errs.Load()
	}
	return lat[len(lat)/2], lat[len(lat)*99/100], errs.Load()
}

func logins(d time.Duration) float64 {
	var n atomic.Int64
	var wg sync.WaitGroup
	end := time.Now().Add(d)
	for c := 0; c < 8; c++ {
		wg.Go(func() {
			for time.Now().Before(end) {
				call("", "POST", "/v1/auth/login/", map[string]string{"username": "root", "password": "root-pw"}, 200)
				n.Add(1)
			}
		})
	}
	wg.Wait()
	return float64(n.Load()) / d.Seconds()
}

func call(tok, method, path string, body any, want int) []byte {
	b, _ := json.Marshal(body)
	req, _ := http.NewRequest(method, base+path, bytes.NewReader(b))
	req.Header.Set("Content-Type", "application/json")
	if tok != "" {
		req.Header.Set("Authorization", "token "+tok)
	}
	resp, err := http.DefaultClient.Do(req)
	must(err)
	defer resp.Body.Close()
	data, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != want {
		log.Fatalf("%s %s: %d %s", method, path, resp.StatusCode, data)
	}
	return data
}

func median(d []time.Duration) time.Duration {
	s := append([]time.Duration(nil), d...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	return s[len(s)/2].Round(10 * time.Microsecond)
}

func spread(d []time.Duration) string {
	s := append([]time.Duration(nil), d...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	return fmt.Sprintf("%s–%s", s[0].Round(10*time.Microsecond), s[len(s)-1].Round(10*time.Microsecond))
}

func must(err error) {
	if err != nil {
		log.Fatal(err)
	}
}
