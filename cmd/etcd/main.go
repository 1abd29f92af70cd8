// Command etcd is a single-member etcd v3 server (etcd's own server code,
// embedded) so that docker-compose, `make run` and the benchmarks need no
// download. For production clusters use upstream etcd; the flags match.
package main

import (
	"crypto/tls"
	"flag"
	"fmt"
	"net"
	"net/url"
	"os"
	"strings"
	"time"

	"go.etcd.io/etcd/server/v3/embed"
	"go.uber.org/zap"

	"github.com/deis/dataplane/pkg/daemon"
	"github.com/deis/dataplane/pkg/etcdproxy"
	"github.com/deis/dataplane/pkg/etcdutil"
)

func main() {
	if len(os.Args) > 1 && os.Args[1] == "grpc-proxy" {
		grpcProxy(os.Args[2:])
		return
	}
	var (
		name, dataDir, listenClient, advertiseClient, listenPeer, advertisePeer, initialCluster, logLevel string
	)
	fs := flag.NewFlagSet("etcd", flag.ExitOnError)
	fs.StringVar(&name, "name", daemon.Env("ETCD_NAME", "default"), "member name (env ETCD_NAME)")
	fs.StringVar(&dataDir, "data-dir", daemon.Env("ETCD_DATA_DIR", "default.etcd"), "data directory (env ETCD_DATA_DIR)")
	fs.StringVar(&listenClient, "listen-client-urls", daemon.Env("ETCD_LISTEN_CLIENT_URLS", "http://127.0.0.1:2379"), "client URLs to listen on (env ETCD_LISTEN_CLIENT_URLS)")
	fs.StringVar(&advertiseClient, "advertise-client-urls", daemon.Env("ETCD_ADVERTISE_CLIENT_URLS", ""), "client URLs to advertise (default: the listen URLs; env ETCD_ADVERTISE_CLIENT_URLS)")
	fs.StringVar(&listenPeer, "listen-peer-urls", daemon.Env("ETCD_LISTEN_PEER_URLS", "http://127.0.0.1:2380"), "peer URLs to listen on (env ETCD_LISTEN_PEER_URLS)")
	fs.StringVar(&advertisePeer, "initial-advertise-peer-urls", daemon.Env("ETCD_INITIAL_ADVERTISE_PEER_URLS", ""), "peer URLs to advertise (default: the listen URLs)")
	fs.StringVar(&initialCluster, "initial-cluster", daemon.Env("ETCD_INITIAL_CLUSTER", ""), "initial cluster, name=peerURL,... (default: this member alone)")
	fs.StringVar(&logLevel, "log-level", daemon.Env("LOG_LEVEL", "warn"), "debug, info, warn or error")
	var cfg *embed.Config
	daemon.Parse(fs, os.Args[1:], func() error {
		switch logLevel {
		case "debug", "info", "warn", "error":
		default:
			// etcd's logger panics on an unknown level.
			return fmt.Errorf("--log-level: %q is not debug, info, warn or error", logLevel)
		}
		cfg = embed.NewConfig()
		cfg.Name = name
		cfg.Dir = dataDir
		cfg.LogLevel = logLevel
		var err error
		if cfg.ListenClientUrls, err = urls(listenClient); err != nil {
			return fmt.Errorf("--listen-client-urls: %w", err)
		}
		if advertiseClient == "" {
			advertiseClient = listenClient
		}
		if cfg.AdvertiseClientUrls, err = urls(advertiseClient); err != nil {
			return fmt.Errorf("--advertise-client-urls: %w", err)
		}
		if cfg.ListenPeerUrls, err = urls(listenPeer); err != nil {
			return fmt.Errorf("--listen-peer-urls: %w", err)
		}
		if advertisePeer == "" {
			advertisePeer = listenPeer
		}
		if cfg.AdvertisePeerUrls, err = urls(advertisePeer); err != nil {
			return fmt.Errorf("--initial-advertise-peer-urls: %w", err)
		}
		if initialCluster == "" {
			initialCluster = name + "=" + cfg.AdvertisePeerUrls[0].String()
		}
		cfg.InitialCluster = initialCluster
		return cfg.Validate()
	})
	srv, err := embed.StartEtcd(cfg)
	if err != nil {
		fmt.Fprintf(os.Stderr, "etcd: start: %v\n", err)
		os.Exit(1)
	}
	select {
	case <-srv.Server.ReadyNotify():
		fmt.Fprintf(os.Stderr, "etcd: ready, serving clients on %s\n", advertiseClient)
	case <-time.After(60 * time.Second):
		srv.Close()
		fmt.Fprintln(os.Stderr, "etcd: not ready after 60s")
		os.Exit(1)
	}
	ctx, stop := daemon.SignalContext()
	defer stop()
	select {
	case <-ctx.Done():
		srv.Close()
	case err := <-srv.Err():
		srv.Close()
		fmt.Fprintf(os.Stderr, "etcd: %v\n", err)
		os.Exit(1)
	}
}

// grpcProxy is `etcd grpc-proxy start`: etcd's v3 gRPC proxy
// (pkg/etcdproxy), with upstream's flag names.
func grpcProxy(args []string) {
	if len(args) == 0 || args[0] != "start" {
		fmt.Fprintln(os.Stderr, "usage: etcd grpc-proxy start --endpoints <cluster URLs> [--listen-addr 127.0.0.1:23790]")
		os.Exit(2)
	}
	var endpoints, listen, advertise, ca, cert, key string
	fs := flag.NewFlagSet("grpc-proxy", flag.ExitOnError)
	fs.StringVar(&endpoints, "endpoints", "127.0.0.1:2379", "comma-separated endpoints of the etcd cluster")
	fs.StringVar(&listen, "listen-addr", "127.0.0.1:23790", "where the proxy serves etcd v3 clients")
	fs.StringVar(&advertise, "advertise-client-url", "", "URL clients use to reach this proxy (default http://<listen-addr>)")
	fs.StringVar(&ca, "cacert", "", "CA of the cluster's certificate, for https:// endpoints")
	fs.StringVar(&cert, "cert", "", "client certificate for the cluster, with --key")
	fs.StringVar(&key, "key", "", "key of --cert")
	var eps []string
	var tlsCfg *tls.Config
	daemon.Parse(fs, args[1:], func() (err error) {
		if eps, err = daemon.ParseEndpoints(endpoints); err != nil {
			return fmt.Errorf("--endpoints: %w", err)
		}
		if advertise == "" {
			advertise = "http://" + listen
		}
		tlsCfg, err = daemon.EtcdTLS(ca, cert, key)
		return err
	})
	cli, err := etcdutil.Connect(eps, etcdutil.WithTLS(tlsCfg))
	if err != nil {
		daemon.Fail("etcd grpc-proxy", "--endpoints", err)
	}
	defer cli.Close()
	ln, err := net.Listen("tcp", listen)
	if err != nil {
		daemon.Fail("etcd grpc-proxy", "--listen-addr", err)
	}
	ctx, stop := daemon.SignalContext()
	defer stop()
	fmt.Fprintf(os.Stderr, "etcd grpc-proxy: serving %s for %s\n", ln.Addr(), strings.Join(eps, ","))
	if err := etcdproxy.Serve(ctx, ln, cli, advertise, zap.NewNop()); err != nil {
		fmt.Fprintln(os.Stderr, "etcd grpc-proxy:", err)
		os.Exit(1)
	}
}

func urls(s string) ([]url.URL, error) {
	var out []url.URL
	for _, raw := range strings.Split(s, ",") {
		u, err := url.Parse(strings.TrimSpace(raw))
		if err != nil || u.Host == "" {
			return nil, fmt.Errorf("%q is not a URL", raw)
		}
		out = append(out, *u)
	}
	return out, nil
}
