// Command seed writes the bench app's route and certificate into etcd.
package main

import (
	"context"
	"flag"
	"log"
	"os"
	"time"

	"github.com/deis/dataplane/pkg/etcdutil"
	"github.com/deis/dataplane/pkg/keys"
)

func main() {
	etcd := flag.String("etcd", "http://127.0.0.1:2379", "etcd endpoint")
	backend := flag.String("backend", "127.0.0.1:18999", "backend host:port")
	cert := flag.String("cert", "", "certificate PEM file")
	key := flag.String("key", "", "key PEM file")
	flag.Parse()
	cli, err := etcdutil.Connect([]string{*etcd})
	if err != nil {
		log.Fatal(err)
	}
	defer cli.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	put := func(k, v string) {
		if _, err := cli.Put(ctx, k, v); err != nil {
			log.Fatalf("put %s: %v", k, err)
		}
	}
	put(keys.PlatformDomain, "local.deis.example")
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
