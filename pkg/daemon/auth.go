package daemon

import (
	"context"
	"crypto/subtle"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/prometheus/client_golang/prometheus"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/deis/dataplane/pkg/etcdwatch"
	"github.com/deis/dataplane/pkg/keys"
)

// Auth guards the internal HTTP APIs (the logger's log API, logspout's
// /routes and /logs, every /metrics). A request passes when it carries
// "Authorization: Bearer <token>" with the platform API token, or, while no
// token is set, when it comes from a loopback address: app containers reach
// the host through the Docker bridge, never through loopback, so they are
// refused either way. The token comes from a flag (which wins) or from etcd
// (keys.PlatformAPIToken), live.
//
// Every refusal is counted (http_api_refused_total) and logged once per
// client address.
type Auth struct {
	flagToken string
	etcdToken atomic.Pointer[string]
	log       *slog.Logger
	refused   prometheus.Counter

	mu     sync.Mutex
	logged map[string]bool // client addresses already logged
}

// maxLoggedPeers bounds the memory kept to log each refused peer once.
const maxLoggedPeers = 1024

// NewAuth returns a guard. token is the --api-token flag ("" to use etcd's);
// reg (may be nil) receives the refusal counter.
func NewAuth(token string, log *slog.Logger, reg prometheus.Registerer) *Auth {
	a := &Auth{flagToken: token, log: log, logged: make(map[string]bool)}
	a.refused = prometheus.NewCounter(prometheus.CounterOpts{Name: "http_api_refused_total", Help: "Requests to an internal API refused for want of the API token."})
	if reg != nil {
		reg.MustRegister(a.refused)
	}
	return a
}

// Token is the token in force ("" when none is set).
func (a *Auth) Token() string {
	if a.flagToken != "" {
		return a.flagToken
	}
	if t := a.etcdToken.Load(); t != nil {
		return *t
	}
	return ""
}

// Watch follows keys.PlatformAPIToken in etcd until ctx ends. Until the
// first read, no etcd token is known (loopback only).
func (a *Auth) Watch(ctx context.Context, cli *clientv3.Client) error {
	w := etcdwatch.New(cli, []string{keys.PlatformAPIToken}, etcdwatch.Options{Logger: a.log})
	go func() {
		for {
			select {
			case <-ctx.Done():
				return
			case snap := <-w.Updates():
				v, _ := snap.Get(keys.PlatformAPIToken)
				v = strings.TrimSpace(v)
				a.etcdToken.Store(&v)
			}
		}
	}()
	if err := w.Run(ctx); err != nil && ctx.Err() == nil {
		return err
	}
	return nil
}

// Allowed reports whether req may use a guarded API.
func (a *Auth) Allowed(req *http.Request) bool {
	token := a.Token()
	if token == "" {
		return isLoopback(req.RemoteAddr)
	}
	got, ok := strings.CutPrefix(req.Header.Get("Authorization"), "Bearer ")
	return ok && subtle.ConstantTimeCompare([]byte(got), []byte(token)) == 1
}

// Wrap guards h: a refused request gets 401 with the reason.
func (a *Auth) Wrap(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		if a.Allowed(req) {
			h.ServeHTTP(w, req)
			return
		}
		a.refused.Inc()
		host, _, _ := net.SplitHostPort(req.RemoteAddr)
		a.mu.Lock()
		first := !a.logged[host] && len(a.logged) < maxLoggedPeers
		if first {
			a.logged[host] = true
		}
		a.mu.Unlock()
		reason := "this API needs the platform API token: Authorization: Bearer <token> (--api-token or etcd " + keys.PlatformAPIToken + ")"
		if a.Token() == "" {
			reason = "this API answers loopback clients only until an API token is set (--api-token or etcd " + keys.PlatformAPIToken + ")"
		}
		if first {
			a.log.Warn("internal API request refused", "client", host, "path", req.URL.Path, "reason", reason)
		}
		w.Header().Set("WWW-Authenticate", `Bearer realm="deis"`)
		http.Error(w, reason, http.StatusUnauthorized)
	})
}

func isLoopback(remoteAddr string) bool {
	host, _, err := net.SplitHostPort(remoteAddr)
	if err != nil {
		host = remoteAddr
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}
