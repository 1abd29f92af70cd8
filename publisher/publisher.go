// Package publisher turns the app containers running on this host into
// router backends in etcd: /deis/services/<app>/<container> = host:port,
// written once the port accepts connections (and the app's health URL
// answers), all on one lease kept alive by keep-alives, and deleted the
// moment the container stops.
package publisher

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	docker "github.com/fsouza/go-dockerclient"
	"github.com/prometheus/client_golang/prometheus"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/deis/dataplane/pkg/announce"
	"github.com/deis/dataplane/pkg/daemon"
	"github.com/deis/dataplane/pkg/dockerx"
	"github.com/deis/dataplane/pkg/etcdwatch"
	"github.com/deis/dataplane/pkg/health"
	"github.com/deis/dataplane/pkg/keys"
	"github.com/deis/dataplane/pkg/retry"
	"github.com/deis/dataplane/pkg/unit"
)

// Config holds the publisher's settings.
type Config struct {
	Host      string        // published address of this host
	TTL       time.Duration // lease TTL (20s)
	Reconcile time.Duration // full resync interval (10s)
	// PollInterval is how often a starting container's port is probed.
	PollInterval time.Duration
}

// Publisher publishes containers. Create with New and Run it.
type Publisher struct {
	cfg    Config
	docker *docker.Client
	etcd   *clientv3.Client
	log    *slog.Logger
	ann    *announce.Announcer
	// view mirrors /deis/services/ and /deis/config/ (version gating, health
	// URLs) and this host's unit assignments and statuses (agent units).
	view   *etcdwatch.Watcher
	events *dockerx.Watcher
	Health *health.Registry
	reg    prometheus.Registerer

	mu      sync.Mutex
	tracked map[string]*container // by container id
	noPort  map[string]bool       // ids already logged for having no port
	// badHealthURL is the last unusable healthcheck_url logged per app.
	badHealthURL map[string]string
	wg           sync.WaitGroup

	published      prometheus.Gauge
	latency        prometheus.Histogram
	dockerRecon    prometheus.CounterFunc
	leaseGrants    prometheus.CounterFunc
	skippedVersion prometheus.Counter
	badHealthURLs  prometheus.Counter
	panics         prometheus.Counter
}

// container is one app container this host runs.
type container struct {
	id   string
	name keys.ContainerName
	key  string
	addr string
	// inner is the container's own ip:port on its Docker network ("" with
	// host networking): a connection there proves the app listens, with
	// no userland proxy in between to wait out.
	inner   string
	started time.Time
	cancel  context.CancelFunc
	ready   bool // key written
	// agent: run by an agent (label io.deis.host = this host), so published
	// only while its unit is assigned here and not retiring.
	agent bool
}

// New returns a publisher. reg receives its metrics.
func New(cfg Config, dcli *docker.Client, ecli *clientv3.Client, log *slog.Logger, reg prometheus.Registerer) *Publisher {
	if cfg.TTL <= 0 {
		cfg.TTL = announce.DefaultTTL
	}
	if cfg.Reconcile <= 0 {
		cfg.Reconcile = 10 * time.Second
	}
	if cfg.PollInterval <= 0 {
		cfg.PollInterval = 50 * time.Millisecond
	}
	p := &Publisher{
		cfg: cfg, docker: dcli, etcd: ecli, log: log, reg: reg,
		ann: announce.New(ecli, cfg.TTL, log),
		view: etcdwatch.New(ecli, []string{keys.ServicesPrefix, keys.ConfigPrefix,
			keys.UnitsHostPrefix(cfg.Host), keys.StatusHostPrefix(cfg.Host)}, etcdwatch.Options{Logger: log}),
		Health:  &health.Registry{},
		tracked: make(map[string]*container),
		noPort:  make(map[string]bool),

		badHealthURL: make(map[string]string),
	}
	p.events = dockerx.NewWatcher(dcli, p, log)
	p.published = prometheus.NewGauge(prometheus.GaugeOpts{Name: "publisher_published_containers", Help: "Containers whose route is in etcd."})
	p.latency = prometheus.NewHistogram(prometheus.HistogramOpts{Name: "publisher_publish_latency_seconds", Help: "From Docker start event to route written.", Buckets: prometheus.ExponentialBuckets(0.005, 2, 14)})
	p.dockerRecon = prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "publisher_docker_reconnects_total", Help: "Docker event stream reconnects."}, func() float64 { return float64(p.events.Reconnects()) })
	p.leaseGrants = prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "publisher_etcd_lease_grants_total", Help: "etcd leases granted (1 + one per lease lost)."}, func() float64 { return float64(p.ann.Grants()) })
	p.skippedVersion = prometheus.NewCounter(prometheus.CounterOpts{Name: "publisher_skipped_old_release_total", Help: "Containers not published because a newer release of the app is published."})
	p.badHealthURLs = prometheus.NewCounter(prometheus.CounterOpts{Name: "publisher_bad_healthcheck_url_total", Help: "Unusable healthcheck_url values ignored (each app and value counted once)."})
	p.panics = prometheus.NewCounter(prometheus.CounterOpts{Name: "publisher_panics_total", Help: "Panics recovered while publishing a container."})
	if reg != nil {
		reg.MustRegister(p.published, p.latency, p.dockerRecon, p.leaseGrants, p.skippedVersion, p.badHealthURLs, p.panics)
	}
	p.Health.Set("docker", errors.New("not connected yet"))
	return p
}

// Run publishes until ctx ends, then revokes the lease (removing this
// host's keys) and returns.
func (p *Publisher) Run(ctx context.Context) error {
	var wg sync.WaitGroup
	annCtx, stopAnn := context.WithCancel(context.WithoutCancel(ctx))
	wg.Go(func() { _ = p.ann.Run(annCtx) })
	wg.Go(func() { _ = p.view.Run(ctx) })
	// Wait (bounded) for the first view so version gating and health URLs
	// are known before anything is published.
	deadline := time.After(5 * time.Second)
	for p.view.Snapshot() == nil {
		select {
		case <-ctx.Done():
		case <-deadline:
		case <-time.After(20 * time.Millisecond):
			continue
		}
		break
	}
	// The loops that start trackers (p.wg.Go) end before p.wg.Wait: a
	// WaitGroup must not grow while it is waited on.
	var feeders sync.WaitGroup
	feeders.Go(func() { _ = p.events.Run(ctx) })
	feeders.Go(func() { p.healthLoop(ctx) })
	feeders.Go(func() { p.reconcileLoop(ctx) })
	feeders.Go(func() { p.assignmentLoop(ctx) })
	<-ctx.Done()
	feeders.Wait()
	p.mu.Lock()
	for _, c := range p.tracked {
		c.cancel()
	}
	p.mu.Unlock()
	p.wg.Wait()
	stopAnn()
	wg.Wait()
	return nil
}

func (p *Publisher) healthLoop(ctx context.Context) {
	t := time.NewTicker(time.Second)
	defer t.Stop()
	for {
		p.Health.Set("docker", p.events.Err())
		err := p.ann.Err()
		if err == nil && p.ann.Lease() == 0 {
			err = errors.New("no etcd lease yet")
		}
		if err == nil {
			err = p.view.Err()
		}
		p.Health.Set("etcd", err)
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

func (p *Publisher) reconcileLoop(ctx context.Context) {
	t := time.NewTicker(p.cfg.Reconcile)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			if err := p.Resync(ctx); err != nil {
				p.log.Warn("reconcile failed; retrying next round", "err", err)
			}
		}
	}
}

// Resync lists running containers, starts tracking new ones, forgets gone
// ones, and deletes this host's keys that match no running container. It
// is called after every Docker (re)connect and every Reconcile interval.
func (p *Publisher) Resync(ctx context.Context) error {
	list, err := p.docker.ListContainers(docker.ListContainersOptions{Context: ctx})
	if err != nil {
		return fmt.Errorf("list containers: %w", err)
	}
	running := make(map[string]bool, len(list))
	for _, c := range list {
		running[c.ID] = true
		p.mu.Lock()
		_, known := p.tracked[c.ID]
		p.mu.Unlock()
		if !known && strings.HasPrefix(c.State, "running") {
			p.track(ctx, c.ID, time.Now())
		}
	}
	p.mu.Lock()
	var gone []*container
	for id, c := range p.tracked {
		if !running[id] {
			gone = append(gone, c)
		}
	}
	p.mu.Unlock()
	for _, c := range gone {
		p.untrack(ctx, c.id, "not running at resync")
	}
	return p.removeStale(ctx)
}

// removeStale deletes keys under /deis/services/ that this publisher wrote
// on its current lease but that no tracked container owns any more (a
// container that vanished while an event was missed). It never touches a key
// on another lease: an operator's static backend, another publisher that
// shares this --host, or a crashed publisher's keys, which expire with their
// own lease within its TTL.
func (p *Publisher) removeStale(ctx context.Context) error {
	resp, err := p.etcd.Get(ctx, keys.ServicesPrefix, clientv3.WithPrefix())
	if err != nil {
		return fmt.Errorf("list %s: %w", keys.ServicesPrefix, err)
	}
	// Read our own keys after listing: a key published meanwhile is in both.
	mine := p.ann.Keys()
	lease := p.ann.Lease()
	for _, kv := range resp.Kvs {
		k, v := string(kv.Key), string(kv.Value)
		if lease == 0 || clientv3.LeaseID(kv.Lease) != lease {
			continue // not written by this publisher: never touch it
		}
		if want, ok := mine[k]; ok && want == v {
			continue
		}
		if _, err := p.etcd.Delete(ctx, k); err == nil {
			p.log.Info("removed stale route", "key", k, "addr", v)
		}
	}
	return nil
}

// Event handles one Docker container event.
func (p *Publisher) Event(ctx context.Context, ev dockerx.Event) {
	switch ev.Action {
	case "start", "unpause", "restart":
		p.track(ctx, ev.ID, ev.Time)
	case "die", "stop", "kill", "pause", "destroy", "oom":
		p.untrack(ctx, ev.ID, ev.Action)
	}
}

// track inspects a container and, if it is a routable app container,
// starts waiting for it to be ready.
func (p *Publisher) track(ctx context.Context, id string, started time.Time) {
	info, err := p.docker.InspectContainerWithOptions(docker.InspectContainerOptions{ID: id, Context: ctx})
	if err != nil {
		p.log.Debug("inspect failed", "id", id, "err", err)
		return
	}
	if info.State.Paused || !info.State.Running {
		return
	}
	var labels map[string]string
	if info.Config != nil {
		labels = info.Config.Labels
	}
	name, err := keys.ParseContainer(info.Name, labels)
	if err != nil {
		p.log.Debug("ignoring container: not an app container", "name", info.Name, "err", err)
		return
	}
	if !name.Routable() {
		return
	}
	host, byAgent := labels[keys.LabelHost]
	if byAgent && host != p.cfg.Host {
		return // another (simulated) host's agent runs it
	}
	port, containerPort, err := publicPort(info, labels)
	if err != nil {
		p.mu.Lock()
		first := !p.noPort[id]
		p.noPort[id] = true
		p.mu.Unlock()
		if first {
			p.log.Warn("app container not published", "container", name.String(), "err", err)
		}
		return
	}
	addr := net.JoinHostPort(p.cfg.Host, strconv.Itoa(port))
	cctx, cancel := context.WithCancel(ctx)
	c := &container{id: id, name: name, key: keys.Service(name.App, name.String()), addr: addr, inner: innerAddr(info, containerPort), started: started, cancel: cancel, agent: byAgent}
	p.mu.Lock()
	if old := p.tracked[id]; old != nil {
		if old.addr == addr {
			p.mu.Unlock()
			cancel()
			return // already tracked
		}
		old.cancel()
	}
	p.tracked[id] = c
	p.mu.Unlock()
	p.wg.Go(func() {
		// A panic while waiting for one container must not take every
		// other tenant's routes on this host down with the process.
		defer func() {
			if r := recover(); r != nil {
				p.panics.Inc()
				p.log.Error("panic while publishing a container; it stays unpublished", "container", c.name.String(), "panic", r)
			}
		}()
		p.publishWhenReady(cctx, c)
	})
}

// untrack deletes the container's key at once and stops waiting for it.
func (p *Publisher) untrack(ctx context.Context, id, why string) {
	p.mu.Lock()
	c := p.tracked[id]
	delete(p.tracked, id)
	delete(p.noPort, id)
	p.mu.Unlock()
	if c == nil {
		return
	}
	c.cancel()
	dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 3*time.Second)
	defer cancel()
	// Only our own route: after a move the same unit name may be published
	// by another host, whose key must stay.
	if err := p.ann.DeleteOwn(dctx, c.key); err != nil {
		p.log.Warn("could not delete route; reconcile will retry", "key", c.key, "err", err)
	}
	if c.ready {
		p.published.Dec()
	}
	p.log.Info("unpublished", "container", c.name.String(), "reason", why)
}

// publishWhenReady waits for the port (and health URL), checks the release
// is not older than the newest published one, then writes the key.
func (p *Publisher) publishWhenReady(ctx context.Context, c *container) {
	if !p.waitTCP(ctx, c) {
		return
	}
	if !p.waitHealthURL(ctx, c) {
		return
	}
	if c.agent {
		// The scheduler decides which release serves; the version gate would
		// block its surge-first return to the previous release.
		if !p.waitAssigned(ctx, c) {
			return
		}
	} else if newest := p.newestPublished(c.name.App); newest > c.name.Version {
		p.skippedVersion.Inc()
		p.log.Info("not publishing an older release", "container", c.name.String(), "newest_published", newest)
		return
	}
	if ctx.Err() != nil {
		return
	}
	wctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	err := p.ann.Put(wctx, c.key, c.addr)
	cancel()
	if err != nil && !errors.Is(err, announce.ErrNoLease) {
		p.log.Warn("route kept for the next lease", "key", c.key, "err", err)
	}
	// If the container stopped while we wrote, untrack may have deleted
	// the key before our write landed: delete it again.
	p.mu.Lock()
	still := p.tracked[c.id] == c
	if still {
		c.ready = true
		p.published.Inc()
	}
	p.mu.Unlock()
	if !still {
		dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 3*time.Second)
		_ = p.ann.DeleteOwn(dctx, c.key)
		cancel()
		return
	}
	p.latency.Observe(time.Since(c.started).Seconds())
	p.log.Info("published", "container", c.name.String(), "addr", c.addr)
}

// waitTCP waits until the app listens. It probes often at first (most
// apps listen within milliseconds of their start, and a push waits for
// this route), then every PollInterval.
func (p *Publisher) waitTCP(ctx context.Context, c *container) bool {
	wait := 5 * time.Millisecond
	inner := c.inner
	for {
		if inner != "" {
			switch probeInner(inner) {
			case innerListening:
				return true
			case innerUnreachable:
				inner = "" // a network this host cannot reach: the host port only
			}
		}
		if Accepts(c.addr) {
			return true
		}
		if !retry.Sleep(ctx, wait) {
			return false
		}
		wait = min(2*wait, p.cfg.PollInterval)
	}
}

type innerProbe int

const (
	innerListening innerProbe = iota
	innerNotYet
	innerUnreachable
)

// probeInner dials the container's own address. On a local Docker bridge
// a connection is set up in well under a millisecond; no answer within
// innerDialTimeout means a network the publisher does not reach.
func probeInner(addr string) innerProbe {
	conn, err := net.DialTimeout("tcp", addr, innerDialTimeout)
	if err == nil {
		conn.Close()
		return innerListening
	}
	if errors.Is(err, syscall.ECONNREFUSED) {
		return innerNotYet
	}
	return innerUnreachable
}

const innerDialTimeout = 100 * time.Millisecond

// innerAddr is the container's ip:port on its first Docker network, or ""
// when it has none (host networking, or not yet attached).
func innerAddr(info *docker.Container, port int) string {
	ns := info.NetworkSettings
	if ns == nil || port == 0 {
		return ""
	}
	ip := ns.IPAddress
	if ip == "" {
		names := make([]string, 0, len(ns.Networks))
		for n := range ns.Networks {
			names = append(names, n)
		}
		sort.Strings(names)
		for _, n := range names {
			if a := ns.Networks[n].IPAddress; a != "" {
				ip = a
				break
			}
		}
	}
	if ip == "" {
		return ""
	}
	return net.JoinHostPort(ip, strconv.Itoa(port))
}

// Accepts reports whether something listens behind addr. Docker's
// userland proxy accepts on the host port even when nothing listens in the
// container, then closes the connection at once; so a connection counts
// only if it stays open (or sends a banner) for a moment.
func Accepts(addr string) bool {
	conn, err := net.DialTimeout("tcp", addr, time.Second)
	if err != nil {
		return false
	}
	defer conn.Close()
	_ = conn.SetReadDeadline(time.Now().Add(50 * time.Millisecond))
	var b [1]byte
	n, err := conn.Read(b[:])
	if n > 0 {
		return true
	}
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// waitHealthURL implements Deis v1's healthcheck_url: after
// healthcheck_initial_delay seconds, GET http://addr<url> must answer 200
// within healthcheck_timeout seconds (default 1); it is retried each
// second until it does or the container stops.
func (p *Publisher) waitHealthURL(ctx context.Context, c *container) bool {
	snap := p.view.Snapshot()
	if snap == nil {
		return true
	}
	path, ok := snap.Get(keys.Config(c.name.App, "healthcheck_url"))
	if !ok || strings.TrimSpace(path) == "" {
		return true
	}
	delay, _ := daemon.ParseDuration(snapGet(snap, keys.Config(c.name.App, "healthcheck_initial_delay"), "0"))
	timeout, err := daemon.ParseDuration(snapGet(snap, keys.Config(c.name.App, "healthcheck_timeout"), "1"))
	if err != nil || timeout <= 0 {
		timeout = time.Second
	}
	select {
	case <-ctx.Done():
		return false
	case <-time.After(delay):
	}
	target, err := HealthURL(c.addr, path)
	if err != nil {
		// The tenant's value is unusable: say so once per app and value, and
		// publish without the check rather than keep the app down forever.
		p.warnBadHealthURL(c.name.App, path, err)
		return true
	}
	client := &http.Client{
		Timeout: timeout,
		// The check is of the container itself: following a redirect would
		// let an app make the publisher, on the host network, probe
		// host-internal addresses and learn whether they answer 200.
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
	for {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, target, nil)
		if err != nil {
			p.warnBadHealthURL(c.name.App, path, err)
			return true
		}
		resp, err := client.Do(req)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return true
			}
		}
		select {
		case <-ctx.Done():
			return false
		case <-time.After(time.Second):
		}
	}
}

// HealthURL is the URL a container at addr is checked on for an app's
// healthcheck_url: always http://addr, with the value's path and query only.
// A value that is not a path (a control character, a bad %-escape, a scheme
// or host of its own) is an error.
func HealthURL(addr, path string) (string, error) {
	path = strings.TrimSpace(path)
	if !strings.HasPrefix(path, "/") {
		path = "/" + path
	}
	u, err := url.ParseRequestURI(path)
	if err != nil {
		return "", fmt.Errorf("healthcheck_url %q is not a URL path: %w", path, err)
	}
	if u.Scheme != "" || u.Host != "" || u.Opaque != "" {
		return "", fmt.Errorf("healthcheck_url %q must be a path on the container, not a URL", path)
	}
	u.Scheme, u.Host = "http", addr
	return u.String(), nil
}

// warnBadHealthURL logs an unusable healthcheck_url once per app and value
// and counts it.
func (p *Publisher) warnBadHealthURL(app, value string, err error) {
	p.mu.Lock()
	first := p.badHealthURL[app] != value
	p.badHealthURL[app] = value
	p.mu.Unlock()
	if first {
		p.badHealthURLs.Inc()
		p.log.Warn("healthcheck_url ignored: publishing without the check", "app", app, "err", err)
	}
}

func snapGet(s *etcdwatch.Snapshot, k, def string) string {
	if v, ok := s.Get(k); ok && strings.TrimSpace(v) != "" {
		return strings.TrimSpace(v)
	}
	return def
}

// newestPublished is the highest release of app with a route in etcd, on
// any host.
func (p *Publisher) newestPublished(app string) int {
	snap := p.view.Snapshot()
	if snap == nil {
		return 0
	}
	prefix := keys.ServicePrefixFor(app)
	newest := 0
	for k := range snap.KVs {
		if !strings.HasPrefix(k, prefix) {
			continue
		}
		if _, c, err := keys.ParseService(k); err == nil && c.Version > newest {
			newest = c.Version
		}
	}
	return newest
}

// publicPort is the host port to publish: the binding of the container port
// named by label io.deis.port, else of the lowest published TCP port.
func publicPort(info *docker.Container, labels map[string]string) (host, container int, err error) {
	if info.NetworkSettings == nil || len(info.NetworkSettings.Ports) == 0 {
		return 0, 0, errors.New("no published TCP port")
	}
	type binding struct{ container, host int }
	var all []binding
	for port, bs := range info.NetworkSettings.Ports {
		if port.Proto() != "tcp" || len(bs) == 0 {
			continue
		}
		cp, err1 := strconv.Atoi(port.Port())
		hp, err2 := strconv.Atoi(bs[0].HostPort)
		if err1 != nil || err2 != nil || hp == 0 {
			continue
		}
		all = append(all, binding{cp, hp})
	}
	if len(all) == 0 {
		return 0, 0, errors.New("no published TCP port")
	}
	sort.Slice(all, func(i, j int) bool { return all[i].container < all[j].container })
	if want := labels[keys.LabelPort]; want != "" {
		n, err := strconv.Atoi(want)
		if err != nil {
			return 0, 0, fmt.Errorf("label %s=%q is not a port", keys.LabelPort, want)
		}
		for _, b := range all {
			if b.container == n {
				return b.host, b.container, nil
			}
		}
		return 0, 0, fmt.Errorf("label %s=%d is not a published port", keys.LabelPort, n)
	}
	return all[0].host, all[0].container, nil
}

// assigned reports whether an agent's container may be routed: its unit is
// assigned to this host and its status is not draining or stopping.
func (p *Publisher) assigned(name keys.ContainerName) bool {
	snap := p.view.Snapshot()
	if snap == nil {
		return false
	}
	if _, ok := snap.Get(keys.Unit(p.cfg.Host, name.String())); !ok {
		return false
	}
	if v, ok := snap.Get(keys.Status(p.cfg.Host, name.String())); ok {
		var st unit.Status
		if json.Unmarshal([]byte(v), &st) == nil && st.Retiring() {
			return false
		}
	}
	return true
}

// waitAssigned waits until an agent's container may be routed, or ctx ends.
func (p *Publisher) waitAssigned(ctx context.Context, c *container) bool {
	t := time.NewTicker(p.cfg.PollInterval)
	defer t.Stop()
	for !p.assigned(c.name) {
		select {
		case <-ctx.Done():
			return false
		case <-t.C:
		}
	}
	return ctx.Err() == nil
}

// assignmentLoop unpublishes an agent's container the moment its unit is
// no longer assigned here or starts draining, so that no new request
// reaches a container about to stop, also across a lease renewal (the
// announcer would otherwise write its key again).
func (p *Publisher) assignmentLoop(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			return
		case <-p.view.Updates():
		}
		p.mu.Lock()
		var retiring []string
		for id, c := range p.tracked {
			if c.agent && !p.assigned(c.name) {
				retiring = append(retiring, id)
			}
		}
		p.mu.Unlock()
		for _, id := range retiring {
			p.untrack(ctx, id, "unit retiring or no longer assigned to this host")
		}
	}
}
