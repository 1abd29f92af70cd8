// Package builder is the SSH git server behind `git push deis master`: it
// authenticates developers by their registered public keys, checks they
// may push to the app, holds a per-app push lock in etcd, runs the real
// git-receive-pack, builds an image from the pushed revision on Docker
// (from its Dockerfile, or on the stack image), and records a release.
package builder

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	docker "github.com/fsouza/go-dockerclient"
	"github.com/gliderlabs/ssh"
	"github.com/prometheus/client_golang/prometheus"
	clientv3 "go.etcd.io/etcd/client/v3"
	gossh "golang.org/x/crypto/ssh"

	"github.com/deis/dataplane/pkg/announce"
	"github.com/deis/dataplane/pkg/etcdwatch"
	"github.com/deis/dataplane/pkg/health"
	"github.com/deis/dataplane/pkg/keys"
)

// Config holds the builder's settings.
type Config struct {
	SSHAddr    string // --ssh-addr (:2223)
	Host       string // announced at /deis/builder/host
	RepoRoot   string // bare repositories, one per app (--repo-root)
	StackImage string // base image of apps without a Dockerfile (--stack-image)
	// HookBin is the executable git runs as the pre-receive hook, with the
	// argument "hook" (the builder binary itself).
	HookBin      string
	KeepReleases int           // build images kept per app (5)
	KeepAlive    time.Duration // SSH keep-alive interval (30s)
	LockTTL      time.Duration // lease of the push lock (10s): how long a dead builder's lock lingers
	AnnounceTTL  time.Duration // lease of /deis/builder/host,port (20s)
	BuildTimeout time.Duration // longest build (30m)
	// DeployTimeout is how long a push waits for the scheduler to deploy
	// the release it wrote (10m); negative: do not wait (a builder without
	// a control plane, and the builder's own tests).
	DeployTimeout time.Duration
	// LoginGrace and MaxUnauthenticated bound connections that have not
	// authenticated yet (30s, 64): see DefaultLoginGrace.
	LoginGrace         time.Duration
	MaxUnauthenticated int
	// PushIdleTimeout aborts a push (releasing the app's push lock) when
	// the client sends nothing for this long before the build starts (60s).
	PushIdleTimeout time.Duration
	// MaxPushSize is git's receive.maxInputSize for every repository
	// (500 MiB; 0 = none); BuildMemory and BuildCPUs bound each build
	// (2 GiB, 2; 0 = none).
	MaxPushSize int64
	BuildMemory int64
	BuildCPUs   float64
	// Health receives the builder's health (a new registry when nil); the
	// caller may serve it before New returns.
	Health *health.Registry
}

// Builder is a running SSH git server.
type Builder struct {
	cfg    Config
	etcd   *clientv3.Client
	docker *docker.Client
	log    *slog.Logger
	Health *health.Registry

	users   atomic.Pointer[users]
	hostKey gossh.Signer
	server  *ssh.Server
	ln      net.Listener
	hooks   *hookServer
	ann     *announce.Announcer

	mu     sync.Mutex
	active map[string]*push // by token

	unauthed       atomic.Int64 // connections still authenticating
	warnedStartups atomic.Bool

	m metrics
}

type metrics struct {
	pushes   *prometheus.CounterVec   // by result
	failures *prometheus.CounterVec   // by cause
	duration *prometheus.HistogramVec // build seconds, by kind
	sessions prometheus.Gauge
	// refusedConns counts SSH connections refused or cut by the limits:
	// max_unauthenticated, push_idle.
	refusedConns *prometheus.CounterVec
}

// New prepares a builder: it loads or creates the shared host key (waiting
// for etcd until ctx ends) and listens on --ssh-addr. Run serves.
func New(ctx context.Context, cfg Config, ecli *clientv3.Client, dcli *docker.Client, log *slog.Logger, reg prometheus.Registerer) (*Builder, error) {
	if cfg.KeepReleases <= 0 {
		cfg.KeepReleases = 5
	}
	if cfg.Health == nil {
		cfg.Health = &health.Registry{}
	}
	if cfg.KeepAlive <= 0 {
		cfg.KeepAlive = 30 * time.Second
	}
	if cfg.LockTTL <= 0 {
		cfg.LockTTL = 10 * time.Second
	}
	if cfg.AnnounceTTL <= 0 {
		cfg.AnnounceTTL = 20 * time.Second
	}
	if cfg.DeployTimeout == 0 {
		cfg.DeployTimeout = 10 * time.Minute
	}
	if cfg.BuildTimeout <= 0 {
		cfg.BuildTimeout = 30 * time.Minute
	}
	if cfg.LoginGrace <= 0 {
		cfg.LoginGrace = DefaultLoginGrace
	}
	if cfg.MaxUnauthenticated <= 0 {
		cfg.MaxUnauthenticated = DefaultMaxUnauthenticated
	}
	if cfg.PushIdleTimeout <= 0 {
		cfg.PushIdleTimeout = 60 * time.Second
	}
	if cfg.HookBin == "" {
		exe, err := os.Executable()
		if err != nil {
			return nil, fmt.Errorf("find the builder binary for the git hook: %w", err)
		}
		cfg.HookBin = exe
	}
	if err := os.MkdirAll(cfg.RepoRoot, 0o755); err != nil {
		return nil, fmt.Errorf("--repo-root %s: %w", cfg.RepoRoot, err)
	}
	cfg.Health.Set("ssh", errors.New("starting: reading the shared SSH host key from etcd"))
	hostKey, err := WaitHostKey(ctx, ecli, log)
	if err != nil {
		return nil, err
	}
	cfg.Health.Set("ssh", nil)
	b := &Builder{cfg: cfg, etcd: ecli, docker: dcli, log: log, Health: cfg.Health, hostKey: hostKey, active: map[string]*push{}}
	b.users.Store(&users{})
	b.m = metrics{
		pushes:       prometheus.NewCounterVec(prometheus.CounterOpts{Name: "builder_pushes_total", Help: "Pushes by result (released, failed, refused, stored)."}, []string{"result"}),
		failures:     prometheus.NewCounterVec(prometheus.CounterOpts{Name: "builder_failures_total", Help: "Failed pushes by cause."}, []string{"cause"}),
		duration:     prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "builder_build_duration_seconds", Help: "Build time from hook to release, by kind (dockerfile, stack).", Buckets: prometheus.ExponentialBuckets(0.25, 2, 12)}, []string{"kind"}),
		sessions:     prometheus.NewGauge(prometheus.GaugeOpts{Name: "builder_ssh_sessions", Help: "Open SSH sessions."}),
		refusedConns: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "builder_ssh_refused_total", Help: "SSH connections refused or cut by the limits, by reason (max_unauthenticated, push_idle)."}, []string{"reason"}),
	}
	if reg != nil {
		reg.MustRegister(b.m.pushes, b.m.failures, b.m.duration, b.m.sessions, b.m.refusedConns)
	}
	b.hooks, err = listenHooks(filepath.Join(cfg.RepoRoot, ".builder.sock"), b.push)
	if err != nil {
		return nil, err
	}
	b.ln, err = net.Listen("tcp", cfg.SSHAddr)
	if err != nil {
		b.hooks.close()
		return nil, fmt.Errorf("--ssh-addr %s: %w", cfg.SSHAddr, err)
	}
	b.server = &ssh.Server{
		Handler:                    b.handleSession,
		PublicKeyHandler:           b.checkKey,
		KeyboardInteractiveHandler: b.explainRefusal,
		HostSigners:                []ssh.Signer{hostKey},
		Version:                    "DeisBuilder",
		ConnCallback:               b.admitConn,
	}
	b.ann = announce.New(ecli, cfg.AnnounceTTL, log)
	return b, nil
}

// Addr is the SSH listener's address.
func (b *Builder) Addr() string { return b.ln.Addr().String() }

// HostPublicKey is the public half of the shared host key, for known_hosts.
func (b *Builder) HostPublicKey() gossh.PublicKey { return b.hostKey.PublicKey() }

// Run serves SSH until ctx ends, then lets running pushes finish (bounded
// by the caller's patience: the listener closes at once).
func (b *Builder) Run(ctx context.Context) error {
	w := etcdwatch.New(b.etcd, []string{keys.BuilderUsersPrefix}, etcdwatch.Options{Logger: b.log})
	var wg sync.WaitGroup
	wg.Go(func() { _ = w.Run(ctx) })
	wg.Go(func() {
		for {
			select {
			case <-ctx.Done():
				return
			case snap := <-w.Updates():
				idx := indexUsers(snap, func(key, why string) { b.log.Warn("ignoring builder user key", "key", key, "err", why) })
				b.users.Store(&idx)
			}
		}
	})
	wg.Go(func() { _ = b.ann.Run(ctx) })
	_, port, _ := net.SplitHostPort(b.Addr())
	// Without a lease yet the keys are written as soon as one is granted.
	for key, value := range map[string]string{keys.BuilderHost: b.cfg.Host, keys.BuilderPort: port} {
		if err := b.ann.Put(ctx, key, value); err != nil && !errors.Is(err, announce.ErrNoLease) {
			b.log.Warn("announce", "key", key, "err", err)
		}
	}
	wg.Go(func() {
		t := time.NewTicker(2 * time.Second)
		defer t.Stop()
		for {
			// The users watch probes etcd already; the announcer knows its lease.
			etcdErr := w.Err()
			if etcdErr == nil {
				etcdErr = b.ann.Err()
			}
			b.Health.Set("etcd", etcdErr)
			pctx, cancel := context.WithTimeout(ctx, time.Second)
			if err := b.docker.PingWithContext(pctx); err != nil && ctx.Err() == nil {
				b.Health.Set("docker", fmt.Errorf("docker unreachable: %w", err))
			} else {
				b.Health.Set("docker", nil)
			}
			cancel()
			select {
			case <-ctx.Done():
				return
			case <-t.C:
			}
		}
	})
	go b.hooks.serve()
	errc := make(chan error, 1)
	go func() { errc <- b.server.Serve(b.ln) }()
	b.log.Info("builder serving", "ssh", b.Addr(), "repos", b.cfg.RepoRoot)
	var err error
	select {
	case <-ctx.Done():
	case err = <-errc:
		err = fmt.Errorf("ssh server: %w", err)
	}
	sctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_ = b.server.Shutdown(sctx) // running pushes get up to 10 s
	b.hooks.close()
	wg.Wait()
	return err
}

// checkKey accepts a registered key. Only the first key accepted on a
// connection can ever be accepted: the SSH library remembers earlier
// answers per key, so accepting a second key could leave the session
// attributed to a key that was only offered, never proven.
func (b *Builder) checkKey(ctx ssh.Context, key ssh.PublicKey) bool {
	if prev, ok := ctx.Value(ctxKeyAccepted).(ssh.PublicKey); ok {
		return ssh.KeysEqual(prev, key)
	}
	user, ok := b.users.Load().lookup(key)
	if !ok {
		tried, _ := ctx.Value(ctxKeyTried).([]string)
		ctx.SetValue(ctxKeyTried, append(tried, Fingerprint(key)))
		return false
	}
	ctx.SetValue(ctxKeyAccepted, key)
	ctx.SetValue(ctxKeyUser, user)
	return true
}

// explainRefusal runs when no offered key was accepted: it tells the
// client why (OpenSSH prints the instruction) and refuses.
func (b *Builder) explainRefusal(ctx ssh.Context, challenge gossh.KeyboardInteractiveChallenge) bool {
	tried, _ := ctx.Value(ctxKeyTried).([]string)
	msg := "deis builder: no public key offered"
	if len(tried) > 0 {
		msg = fmt.Sprintf("deis builder: no user has registered the key %s", tried[0])
		if len(tried) > 1 {
			msg = fmt.Sprintf("deis builder: no user has registered any of the keys %v", tried)
		}
	}
	msg += "; add yours with `deis keys:add`"
	_, _ = challenge("", msg, nil, nil)
	b.m.pushes.WithLabelValues("refused").Inc()
	b.m.failures.WithLabelValues("unknown_key").Inc()
	return false
}

type ctxKey string

const (
	ctxKeyAccepted ctxKey = "accepted-key"
	ctxKeyUser     ctxKey = "user"
	ctxKeyTried    ctxKey = "tried-keys"
)

func (b *Builder) push(token string) *push {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.active[token]
}

func (b *Builder) track(p *push) (untrack func()) {
	var raw [16]byte
	_, _ = rand.Read(raw[:])
	p.token = hex.EncodeToString(raw[:])
	b.mu.Lock()
	b.active[p.token] = p
	b.mu.Unlock()
	return func() {
		b.mu.Lock()
		delete(b.active, p.token)
		b.mu.Unlock()
	}
}
