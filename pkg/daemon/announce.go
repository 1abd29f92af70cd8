package daemon

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"net"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/deis/dataplane/pkg/announce"
	"github.com/deis/dataplane/pkg/keys"
	"github.com/deis/dataplane/pkg/version"
)

// Presence is what a daemon announces about itself at
// /deis/components/<component>/<host>, for deisctl status.
type Presence struct {
	Health  string    `json:"health"` // its /healthz URL
	Version string    `json:"version"`
	Started time.Time `json:"started"`
}

// Announce keeps /deis/components/<component>/<host> on a lease until ctx
// ends: the daemon's /healthz URL (on host when the admin address names no
// host) and its version. The key goes when the daemon stops, or a lease
// TTL after it dies.
func (a *Admin) Announce(ctx context.Context, cli *clientv3.Client, component, host string, log *slog.Logger) error {
	h, port, err := net.SplitHostPort(a.Addr())
	if err != nil {
		return err
	}
	if ip := net.ParseIP(h); h == "" || ip != nil && ip.IsUnspecified() {
		h = host
	}
	data, _ := json.Marshal(Presence{Health: "http://" + net.JoinHostPort(h, port) + "/healthz", Version: version.Version, Started: time.Now().UTC()})
	ann := announce.New(cli, announce.DefaultTTL, log)
	_ = ann.Put(ctx, keys.Component(component, host), string(data)) // written once a lease is held
	if err := ann.Run(ctx); err != nil && !errors.Is(err, context.Canceled) {
		return err
	}
	return nil
}
