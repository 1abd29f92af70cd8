// Command backup fills an etcd with a platform of -apps apps (owner,
// releases, config, scale, domain, certificate, perms) and writes -logs
// bytes of app log files under -logs-dir: the data bench/backup/run.sh
// backs up and restores.
package main

import (
	"bufio"
	"context"
	"flag"
	"fmt"
	"log"
	"os"
	"path/filepath"
	"strings"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/deis/dataplane/pkg/keys"
)

func main() {
	endpoint := flag.String("etcd", "http://127.0.0.1:2379", "etcd endpoint")
	apps := flag.Int("apps", 100, "apps to create")
	logsDir := flag.String("logs-dir", "", "where to write log files")
	logBytes := flag.Int64("logs", 1<<30, "bytes of logs in all")
	flag.Parse()
	cli, err := clientv3.New(clientv3.Config{Endpoints: []string{*endpoint}, DialTimeout: 5 * time.Second})
	if err != nil {
		log.Fatal(err)
	}
	defer cli.Close()
	ctx := context.Background()
	pem := "-----BEGIN CERTIFICATE-----\n" + strings.Repeat(strings.Repeat("A", 64)+"\n", 20) + "-----END CERTIFICATE-----\n"
	for i := range 20 {
		put(ctx, cli, keys.User(fmt.Sprintf("user%d", i)), `{"password":"$2a$10$`+strings.Repeat("x", 53)+`","email":"u@example.test"}`)
	}
	for a := range *apps {
		app := fmt.Sprintf("app%03d", a)
		put(ctx, cli, keys.AppOwner(app), "user0")
		put(ctx, cli, keys.AppPerm(app, "user1"), "{}")
		for v := 1; v <= 10; v++ {
			put(ctx, cli, keys.AppRelease(app, v), fmt.Sprintf(`{"version":%d,"image":"%s:git-%07x","config":{"A":"1","B":"%s"},"procfile":{"web":"serve"},"summary":"user0 deployed","created":"2026-11-30T00:00:00Z"}`, v, app, v, strings.Repeat("b", 200)))
		}
		put(ctx, cli, keys.AppCurrentRelease(app), "10")
		put(ctx, cli, keys.AppScale(app), `{"web":3}`)
		for k := range 10 {
			put(ctx, cli, keys.Config(app, fmt.Sprintf("KEY%d", k)), strings.Repeat("v", 40))
		}
		put(ctx, cli, keys.Domain(app+".example.org"), app)
		put(ctx, cli, keys.CertPEM(app+".example.org"), pem)
		put(ctx, cli, keys.KeyPEM(app+".example.org"), pem)
	}
	if *logsDir == "" {
		return
	}
	if err := os.MkdirAll(*logsDir, 0o755); err != nil {
		log.Fatal(err)
	}
	per := *logBytes / int64(*apps)
	for a := range *apps {
		f, err := os.Create(filepath.Join(*logsDir, fmt.Sprintf("app%03d.log", a)))
		if err != nil {
			log.Fatal(err)
		}
		w := bufio.NewWriterSize(f, 1<<20)
		var n int64
		for i := 0; n < per; i++ {
			k, _ := fmt.Fprintf(w, "2026-11-30T12:%02d:%02d.%06dZ app%03d[web.%d]: GET /items/%d 200 %d bytes in %d ms\n", i/60000%60, i/1000%60, i%1000000, a, i%3+1, i*7919%100000, i%5000, i%97)
			n += int64(k)
		}
		if err := w.Flush(); err != nil {
			log.Fatal(err)
		}
		f.Close()
	}
}

func put(ctx context.Context, cli *clientv3.Client, k, v string) {
	if _, err := cli.Put(ctx, k, v); err != nil {
		log.Fatal(err)
	}
}
