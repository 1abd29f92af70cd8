// Command publisher-bench measures the publisher against a real Docker
// engine and a real etcd (bin/etcd at -etcd):
//   - time from `docker start` to the key being visible in etcd (p50, p99),
//     against the time to the first real TCP connect (the floor);
//   - the cost of a full reconcile with N running app containers;
//   - etcd key writes while nothing changes (the target: none; the lease is
//     kept alive by keep-alives, which are not writes).
package main

import (
	"context"
	"flag"
	"fmt"
	"log"
	"log/slog"
	"os"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	docker "github.com/fsouza/go-dockerclient"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/deis/dataplane/pkg/dockerx"
	"github.com/deis/dataplane/pkg/etcdutil"
	"github.com/deis/dataplane/pkg/testenv"
	"github.com/deis/dataplane/publisher"
)

func main() {
	etcd := flag.String("etcd", "http://127.0.0.1:12379", "etcd endpoint")
	starts := flag.Int("starts", 30, "containers started one by one for the latency measurement")
	fleet := flag.Int("fleet", 200, "running containers for the reconcile measurement")
	idle := flag.Duration("idle", 30*time.Second, "quiet period over which etcd writes are counted")
	out := flag.String("out", "bench/out", "where publisher.md and publisher.csv go")
	flag.Parse()

	dcli, err := dockerx.Connect("unix:///var/run/docker.sock")
	must(err)
	must(testenv.EnsureBusyboxImage(dcli))
	ecli, err := etcdutil.Connect([]string{*etcd})
	must(err)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()

	p := publisher.New(publisher.Config{Host: "127.0.0.1"}, dcli, ecli, slog.New(slog.DiscardHandler), nil)
	go func() { _ = p.Run(ctx) }()

	app := fmt.Sprintf("pbench%d", time.Now().Unix()%100000)
	var created []string
	defer func() {
		for _, id := range created {
			_ = dcli.RemoveContainer(docker.RemoveContainerOptions{ID: id, Force: true})
		}
	}()

	// 1. Start-to-published latency against the TCP floor.
	var toKey, toTCP []time.Duration
	for i := 1; i <= *starts; i++ {
		name := fmt.Sprintf("%s_v1.web.%d", app, i)
		opts := testenv.HTTPDOptions(name, nil)
		c, err := dcli.CreateContainer(opts)
		must(err)
		created = append(created, c.ID)
		key := "/deis/services/" + app + "/" + name
		watch := ecli.Watch(ctx, key)
		t0 := time.Now()
		must(dcli.StartContainer(c.ID, nil))
		info, err := dcli.InspectContainerWithOptions(docker.InspectContainerOptions{ID: c.ID})
		must(err)
		addr := "127.0.0.1:" + info.NetworkSettings.Ports["8080/tcp"][0].HostPort
		var tcp time.Duration
		var wg sync.WaitGroup
		wg.Go(func() {
			for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); time.Sleep(5 * time.Millisecond) {
				if publisher.Accepts(addr) {
					tcp = time.Since(t0)
					return
				}
			}
		})
		select {
		case <-watch:
			toKey = append(toKey, time.Since(t0))
		case <-time.After(30 * time.Second):
			log.Fatalf("%s not published within 30s", name)
		}
		wg.Wait()
		toTCP = append(toTCP, tcp)
	}

	// 2. Reconcile cost with a fleet of running app containers.
	var mu sync.Mutex
	jobs := make(chan int)
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			for i := range jobs {
				name := fmt.Sprintf("%s_v1.cmd.%d", app, i)
				c, err := dcli.CreateContainer(testenv.HTTPDOptions(name, nil))
				if err != nil {
					log.Printf("create %s: %v", name, err)
					continue
				}
				mu.Lock()
				created = append(created, c.ID)
				mu.Unlock()
				if err := dcli.StartContainer(c.ID, nil); err != nil {
					log.Printf("start %s: %v", name, err)
				}
			}
		})
	}
	for i := 1; i <= *fleet; i++ {
		jobs <- i
	}
	close(jobs)
	wg.Wait()
	waitKeys(ecli, app, *starts+*fleet, 5*time.Minute)
	var recon []time.Duration
	for range 5 {
		t0 := time.Now()
		must(p.Resync(ctx))
		recon = append(recon, time.Since(t0))
	}

	// 3. Key writes while nothing changes.
	var writes atomic.Int64
	wctx, stop := context.WithTimeout(ctx, *idle)
	go func() {
		for resp := range ecli.Watch(wctx, "/deis/services/", clientv3.WithPrefix()) {
			writes.Add(int64(len(resp.Events)))
		}
	}()
	<-wctx.Done()
	stop()
	perMin := float64(writes.Load()) * float64(time.Minute) / float64(*idle)

	sortD(toKey)
	sortD(toTCP)
	sortD(recon)
	var md strings.Builder
	fmt.Fprintf(&md, "## Publisher\n\nReal Docker engine and etcd, `bench/publisher/run.sh` (`go run ./bench/publisher`).\n\n")
	fmt.Fprintf(&md, "| measure | p50 | p99 |\n| --- | ---: | ---: |\n")
	fmt.Fprintf(&md, "| docker start → key in etcd (%d containers) | %s | %s |\n", len(toKey), pct(toKey, 50), pct(toKey, 99))
	fmt.Fprintf(&md, "| docker start → first real TCP connect (the floor) | %s | %s |\n", pct(toTCP, 50), pct(toTCP, 99))
	fmt.Fprintf(&md, "\nPublish latency over the floor (p50): %s.\n\n", (pct(toKey, 50) - pct(toTCP, 50)).Round(time.Millisecond))
	fmt.Fprintf(&md, "Full reconcile with %d running app containers: median %s (5 runs).\n\n", *starts+*fleet, pct(recon, 50).Round(time.Microsecond))
	fmt.Fprintf(&md, "etcd key writes while nothing changed: %d in %s (%.1f per minute; lease keep-alives are not writes).\n", writes.Load(), *idle, perMin)
	must(os.MkdirAll(*out, 0o755))
	must(os.WriteFile(*out+"/publisher.md", []byte(md.String()), 0o644))
	csv := fmt.Sprintf("chart,series,value,unit\npublisher_latency_p50_ms,start to key,%.1f,ms\npublisher_latency_p50_ms,start to tcp (floor),%.1f,ms\npublisher_latency_p99_ms,start to key,%.1f,ms\npublisher_latency_p99_ms,start to tcp (floor),%.1f,ms\n",
		ms(pct(toKey, 50)), ms(pct(toTCP, 50)), ms(pct(toKey, 99)), ms(pct(toTCP, 99)))
	must(os.WriteFile(*out+"/publisher.csv", []byte(csv), 0o644))
	fmt.Print(md.String())
}

func waitKeys(cli *clientv3.Client, app string, n int, timeout time.Duration) {
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		resp, err := cli.Get(context.Background(), "/deis/services/"+app+"/", clientv3.WithPrefix(), clientv3.WithCountOnly())
		if err == nil && resp.Count >= int64(n) {
			return
		}
		time.Sleep(200 * time.Millisecond)
	}
	log.Printf("warning: not all %d containers published within %s", n, timeout)
}

func sortD(d []time.Duration) { sort.Slice(d, func(i, j int) bool { return d[i] < d[j] }) }

func pct(d []time.Duration, p int) time.Duration {
	if len(d) == 0 {
		return 0
	}
	return d[min(len(d)-1, (len(d)*p+99)/100-1)]
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

func must(err error) {
	if err != nil {
		log.Fatal(err)
	}
}
