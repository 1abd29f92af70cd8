// Command seed writes the bench app's route and certificate into etcd.
package main

import (
	"context"
	"flag"
	"fmt"
	"log"
	"os"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/deis/dataplane/pkg/etcdutil"
	"github.com/deis/dataplane/pkg/keys"
)

func main() {
	etcd := flag.String("etcd", "http://127.0.0.1:2379", "etcd endpoint")
	backend := flag.String("backend", "127.0.0.1:18999", "backend host:port")
	cert := flag.String("cert", "", "certificate PEM file")
	key := flag.String("key", "", "key PEM file")
	apps := flag.Int("apps", 0, "also write this many extra apps with 3 backends each (scale test)")
	flag.Parse()
	cli, err := etcdutil.Connect([]string{*etcd})
	if err != nil {
		log.Fatal(err)
	}
	defer cli.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 120*time.Second)
	defer cancel()
	put := func(k, v string) {
		if _, err := cli.Put(ctx, k, v); err != nil {
			log.Fatalf("put %s: %v", k, err)
		}
	}
	put(keys.PlatformDomain, "local.deis.example")
	var ops []clientv3.Op
	flush := func() {
		if len(ops) == 0 {
			return
		}
		if _, err := cli.Txn(ctx).Then(ops...).Commit(); err != nil {
			log.Fatalf("txn: %v", err)
		}
		ops = ops[:0]
	}
	for i := range *apps {
		app := fmt.Sprintf("scale%d", i)
		for n := 1; n <= 3; n++ {
			ops = append(ops, clientv3.OpPut(keys.Service(app, fmt.Sprintf("%s_v1.web.%d", app, n)), fmt.Sprintf("10.%d.%d.%d:%d", i>>16&255, i>>8&255, i&255, 5000+n)))
		}
		if len(ops) >= 96 {
			flush()
		}
	}
	flush()
	put(keys.Service("bench", "bench_v1.web.1"), *backend)
	if *cert != "" {
		c, err := os.ReadFile(*cert)
		if err != nil {
			log.Fatal(err)
		}
		k, err := os.ReadFile(*key)
		if err != nil {
			log.Fatal(err)
		}
		put(keys.RouterSetting("sslCert"), string(c))
		put(keys.RouterSetting("sslKey"), string(k))
	}
}
