// Package controller serves the Deis v1 REST API (API version 1.7) over
// etcd: users, apps, config, domains, certificates, keys, releases, scale
// (../shared/DEIS-V1-API.md). It holds no state of its own, so any number
// of replicas can answer; changes reach the running containers through the
// scheduler, which it talks to only through etcd keys, and a call that
// changes an app answers once the scheduler reports the outcome.
package controller

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/google/uuid"
	"github.com/prometheus/client_golang/prometheus"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/deis/dataplane/pkg/etcdwatch"
	"github.com/deis/dataplane/pkg/keys"
)

// APIVersion is the Deis v1 API version this controller speaks.
const APIVersion = "1.7"

// Config holds the controller's settings.
type Config struct {
	// LoggerHTTPPort is the port of the logger's HTTP API on the announced
	// /deis/logs/host (8088).
	LoggerHTTPPort int
	// APIToken authenticates the controller to the logger's API ("": the
	// platform token from etcd).
	APIToken string
	// Lease is this replica's lease (locks and run units live on it); 0
	// until set with SetLease.
	LockWait time.Duration // how long a call waits for an app's lock (5 s)
	// DeployWait bounds the wait for a deploy outcome (20 min).
	DeployWait time.Duration
}

// MaxBody bounds a request body (a certificate chain with its key is the
// largest thing sent); more is refused with 413.
const MaxBody = 1 << 20

// Server is the API. Create with New; it is an http.Handler.
type Server struct {
	cfg   Config
	etcd  *clientv3.Client
	log   *slog.Logger
	lease func() clientv3.LeaseID
	limit *loginLimiter
	m     metrics
	// mirror is the watched copy of tokens, users, admins and the platform
	// domain while Run runs (nil otherwise).
	mirror atomic.Pointer[etcdwatch.Watcher]
	index  atomic.Pointer[appIndex] // the mirror's apps by name, per snapshot
	now    func() time.Time
}

type metrics struct {
	requests *prometheus.CounterVec
	logins   *prometheus.CounterVec
}

// New returns the API. lease returns this replica's etcd lease (0 while it
// has none), on which app locks and run units live.
func New(cfg Config, cli *clientv3.Client, lease func() clientv3.LeaseID, log *slog.Logger, reg prometheus.Registerer) *Server {
	if cfg.LoggerHTTPPort == 0 {
		cfg.LoggerHTTPPort = 8088
	}
	if cfg.LockWait <= 0 {
		cfg.LockWait = 5 * time.Second
	}
	if cfg.DeployWait <= 0 {
		cfg.DeployWait = 20 * time.Minute
	}
	s := &Server{cfg: cfg, etcd: cli, log: log, lease: lease, limit: newLoginLimiter(), now: time.Now}
	s.m = metrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "controller_requests_total", Help: "API requests by route and status code."}, []string{"route", "code"}),
		logins:   prometheus.NewCounterVec(prometheus.CounterOpts{Name: "controller_logins_total", Help: "Login attempts by outcome."}, []string{"outcome"}),
	}
	if reg != nil {
		reg.MustRegister(s.m.requests, s.m.logins)
	}
	return s
}

// request is one API call being served.
type request struct {
	s      *Server
	w      http.ResponseWriter
	r      *http.Request
	ctx    context.Context
	params map[string]string
	user   *User // nil: anonymous
	route  string
	status int
}

type handler func(q *request)

// route is one API path pattern: segments, "{name}" capturing one.
type route struct {
	method  string
	pattern []string
	name    string
	anon    bool // served without a token
	h       handler
}

func (s *Server) routes() []route {
	r := func(method, pattern string, h handler) route {
		return route{method: method, pattern: strings.Split(pattern, "/"), name: method + " " + pattern, h: h}
	}
	anon := func(rt route) route { rt.anon = true; return rt }
	return []route{
		r("GET", "", func(q *request) { q.json(http.StatusOK, map[string]string{"detail": "Deis controller"}) }),
		anon(r("POST", "auth/register", (*request).register)),
		anon(r("POST", "auth/login", (*request).login)),
		r("POST", "auth/passwd", (*request).passwd),
		r("DELETE", "auth/cancel", (*request).cancel),
		r("POST", "auth/tokens", (*request).regenerate),
		r("GET", "users", (*request).listUsers),
		r("GET", "admin/perms", (*request).listAdmins),
		r("POST", "admin/perms", (*request).grantAdmin),
		r("DELETE", "admin/perms/{user}", (*request).revokeAdmin),
		r("GET", "apps", (*request).listApps),
		r("POST", "apps", (*request).createApp),
		r("GET", "apps/{app}", (*request).appInfo),
		r("POST", "apps/{app}", (*request).transferApp),
		r("DELETE", "apps/{app}", (*request).destroyApp),
		r("GET", "apps/{app}/logs", (*request).appLogs),
		r("POST", "apps/{app}/run", (*request).appRun),
		r("GET", "apps/{app}/builds", (*request).listBuilds),
		r("POST", "apps/{app}/builds", (*request).createBuild),
		r("GET", "apps/{app}/builds/{uuid}", (*request).buildInfo),
		r("GET", "apps/{app}/config", (*request).getConfig),
		r("POST", "apps/{app}/config", (*request).setConfig),
		r("GET", "apps/{app}/domains", (*request).listDomains),
		r("POST", "apps/{app}/domains", (*request).addDomain),
		r("DELETE", "apps/{app}/domains/{domain}", (*request).removeDomain),
		r("GET", "apps/{app}/perms", (*request).listPerms),
		r("POST", "apps/{app}/perms", (*request).addPerm),
		r("DELETE", "apps/{app}/perms/{user}", (*request).removePerm),
		r("GET", "apps/{app}/containers", (*request).listContainers),
		r("GET", "apps/{app}/containers/{type}", (*request).listContainers),
		r("GET", "apps/{app}/containers/{type}/{num}", (*request).listContainers),
		r("POST", "apps/{app}/containers/restart", (*request).restart),
		r("POST", "apps/{app}/containers/{type}/restart", (*request).restart),
		r("POST", "apps/{app}/containers/{type}/{num}/restart", (*request).restart),
		r("POST", "apps/{app}/scale", (*request).scale),
		r("GET", "apps/{app}/releases", (*request).listReleases),
		r("POST", "apps/{app}/releases/rollback", (*request).rollback),
		r("GET", "apps/{app}/releases/{version}", (*request).releaseInfo),
		r("GET", "certs", (*request).listCerts),
		r("POST", "certs", (*request).addCert),
		r("GET", "certs/{cn}", (*request).certInfo),
		r("DELETE", "certs/{cn}", (*request).removeCert),
		r("GET", "keys", (*request).listKeys),
		r("POST", "keys", (*request).addKey),
		r("GET", "keys/{id}", (*request).keyInfo),
		r("DELETE", "keys/{id}", (*request).removeKey),
	}
}

// Handler returns the API with /healthz (no token) mounted beside /v1/.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	// Set directly: Go's canonical form would be Deis_api_version.
	w.Header()["DEIS_API_VERSION"] = []string{APIVersion}
	q := &request{s: s, w: w, r: r, ctx: r.Context(), status: http.StatusOK}
	defer func() {
		if v := recover(); v != nil {
			s.log.Error("panic serving an API call", "route", q.route, "panic", v)
			q.detail(http.StatusInternalServerError, "internal error")
		}
		s.m.requests.WithLabelValues(q.route, strconv.Itoa(q.status)).Inc()
	}()
	path, ok := strings.CutPrefix(r.URL.Path, "/v1")
	if !ok || (path != "" && path[0] != '/') {
		q.route = "unknown"
		q.detail(http.StatusNotFound, "Not found.")
		return
	}
	path = strings.Trim(path, "/")
	var segs []string
	if path != "" {
		segs = strings.Split(path, "/")
	}
	methodSeen := false
	for _, rt := range s.routes() {
		params, ok := match(rt.pattern, segs)
		if !ok {
			continue
		}
		methodSeen = true
		if rt.method != r.Method {
			continue
		}
		q.route, q.params = rt.name, params
		if !rt.anon {
			u, err := s.authenticate(q.ctx, r)
			if err != nil {
				q.fail(err)
				return
			}
			q.user = u
		}
		rt.h(q)
		return
	}
	if methodSeen {
		q.route = "bad method"
		q.detail(http.StatusMethodNotAllowed, fmt.Sprintf("Method \"%s\" not allowed.", r.Method))
		return
	}
	q.route = "unknown"
	q.detail(http.StatusNotFound, "Not found.")
}

func match(pattern, segs []string) (map[string]string, bool) {
	if len(pattern) == 1 && pattern[0] == "" {
		return nil, len(segs) == 0
	}
	if len(pattern) != len(segs) {
		return nil, false
	}
	params := map[string]string{}
	for i, p := range pattern {
		if strings.HasPrefix(p, "{") {
			v, err := url.PathUnescape(segs[i])
			if err != nil || v == "" {
				return nil, false
			}
			params[p[1:len(p)-1]] = v
			continue
		}
		if p != segs[i] {
			return nil, false
		}
	}
	return params, true
}

// apiError is an answer other than success.
type apiError struct {
	status int
	body   any
}

func (e *apiError) Error() string { return fmt.Sprintf("%d %v", e.status, e.body) }

func detailErr(status int, msg string) error {
	return &apiError{status, map[string]string{"detail": msg}}
}

func fieldErr(field, msg string) error {
	return &apiError{http.StatusBadRequest, map[string][]string{field: {msg}}}
}

var (
	errNoToken   = detailErr(http.StatusUnauthorized, "Authentication credentials were not provided.")
	errBadToken  = detailErr(http.StatusUnauthorized, "Invalid token.")
	errForbidden = detailErr(http.StatusForbidden, "You do not have permission to perform this action.")
	errNotFound  = detailErr(http.StatusNotFound, "Not found.")
)

func (q *request) fail(err error) {
	var ae *apiError
	if errors.As(err, &ae) {
		q.json(ae.status, ae.body)
		return
	}
	if errors.Is(err, context.Canceled) {
		q.status = 499 // the client left; nobody reads this
		return
	}
	q.s.log.Error("API call failed", "route", q.route, "err", err)
	q.detail(http.StatusInternalServerError, "internal error: "+err.Error())
}

func (q *request) detail(status int, msg string) {
	q.json(status, map[string]string{"detail": msg})
}

func (q *request) json(status int, v any) {
	q.status = status
	q.w.Header().Set("Content-Type", "application/json")
	q.w.WriteHeader(status)
	if v != nil {
		_ = json.NewEncoder(q.w).Encode(v)
	}
}

func (q *request) noContent() {
	q.status = http.StatusNoContent
	q.w.WriteHeader(http.StatusNoContent)
}

// decode reads the JSON body into v; an empty body leaves v as it is.
func (q *request) decode(v any) error {
	body := http.MaxBytesReader(q.w, q.r.Body, MaxBody)
	dec := json.NewDecoder(body)
	err := dec.Decode(v)
	var tooBig *http.MaxBytesError
	switch {
	case errors.As(err, &tooBig):
		return detailErr(http.StatusRequestEntityTooLarge, fmt.Sprintf("The request body is larger than %d bytes.", MaxBody))
	case err != nil && !errors.Is(err, io.EOF):
		return detailErr(http.StatusBadRequest, "JSON parse error - "+err.Error())
	}
	return nil
}

// page answers a paginated list: page_size (default 100), page (from 1),
// and {count, next, previous, results} with absolute URLs.
func (q *request) page(items []any) {
	q.pageOf(len(items), func(from, to int) ([]any, error) { return items[from:to], nil })
}

// pageOf is page for a list of total items of which only the page asked
// for is built (fetch gets [from, to)): a list of 1,000 apps loads 100.
func (q *request) pageOf(total int, fetch func(from, to int) ([]any, error)) {
	size, page := 100, 1
	if v := q.r.URL.Query().Get("page_size"); v != "" {
		if n, err := strconv.Atoi(v); err == nil && n > 0 {
			size = min(n, 1000)
		}
	}
	if v := q.r.URL.Query().Get("page"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || (n-1)*size >= max(total, 1) {
			q.fail(detailErr(http.StatusNotFound, "Invalid page."))
			return
		}
		page = n
	}
	from, to := min((page-1)*size, total), min(page*size, total)
	link := func(p int) any {
		u := *q.r.URL
		v := u.Query()
		v.Set("page", strconv.Itoa(p))
		u.RawQuery = v.Encode()
		scheme := "http"
		if q.r.TLS != nil || q.r.Header.Get("X-Forwarded-Proto") == "https" {
			scheme = "https"
		}
		return scheme + "://" + q.r.Host + u.RequestURI()
	}
	var next, prev any
	if to < total {
		next = link(page + 1)
	}
	if page > 1 {
		prev = link(page - 1)
	}
	results, err := fetch(from, to)
	if err != nil {
		q.fail(err)
		return
	}
	if results == nil {
		results = []any{}
	}
	q.json(http.StatusOK, map[string]any{"count": total, "next": next, "previous": prev, "results": results})
}

// Dates are served as v1 did: 2014-01-01T00:00:00UTC.
const dateLayout = "2006-01-02T15:04:05MST"

func date(t time.Time) string { return t.UTC().Format(dateLayout) }

// uuidOf is the stable name-based (v5) UUID of an object's etcd key.
func uuidOf(key string) string { return uuid.NewSHA1(uuid.NameSpaceURL, []byte("etcd:"+key)).String() }

// platformDomain is /deis/platform/domain, "" when unset.
func (s *Server) platformDomain(ctx context.Context) string {
	if snap := s.snapshot(); snap != nil {
		v, _ := snap.Get(keys.PlatformDomain)
		return strings.TrimSpace(v)
	}
	resp, err := s.etcd.Get(ctx, keys.PlatformDomain)
	if err != nil || len(resp.Kvs) == 0 {
		return ""
	}
	return strings.TrimSpace(string(resp.Kvs[0].Value))
}

// Announce writes /deis/controller/host and /port on the leader's lease
// (CONTROL-PLANE.md) and removes them when ctx ends, if the lease has not
// taken them already.
func Announce(ctx context.Context, cli *clientv3.Client, lease clientv3.LeaseID, host, port string, log *slog.Logger) {
	_, err := cli.Txn(ctx).Then(
		clientv3.OpPut(keys.ControllerHost, host, clientv3.WithLease(lease)),
		clientv3.OpPut(keys.ControllerPort, port, clientv3.WithLease(lease))).Commit()
	if err != nil {
		log.Warn("announce the controller", "err", err)
		return
	}
	<-ctx.Done()
	dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Second)
	defer cancel()
	_, _ = cli.Txn(dctx).If(clientv3.Compare(clientv3.LeaseValue(keys.ControllerHost), "=", lease)).
		Then(clientv3.OpDelete(keys.ControllerHost), clientv3.OpDelete(keys.ControllerPort)).Commit()
}
