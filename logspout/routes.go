package logspout

import (
	"context"
	"crypto/rand"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path"
	"path/filepath"
	"strings"
	"time"

	"github.com/deis/dataplane/pkg/etcdwatch"
	"github.com/deis/dataplane/pkg/keys"
	"github.com/deis/dataplane/pkg/syslog/format"
	"github.com/deis/dataplane/pkg/syslog/sender"
)

// route is an extra destination with its filters (URL parameters
// filter.name, filter.sources, filter.labels, as gliderlabs/logspout).
type route struct {
	ID        string
	URI       string
	Persisted bool // created through the API, kept in routes.json
	s         *sender.Sender
	stop      func()

	name    string            // glob on container name or app
	sources map[int]bool      // by priority (stdout/stderr); empty = both
	labels  map[string]string // all must match
}

func newRoute(id, uri string, log *slog.Logger, roots *x509.CertPool) (*route, error) {
	c, err := sender.ParseURL(uri)
	if err != nil {
		return nil, err
	}
	if c.TLS != nil && roots != nil {
		c.TLS.RootCAs = roots // --tls-ca instead of the system roots
	}
	r := &route{ID: id, URI: uri, name: c.Params.Get("filter.name"), labels: map[string]string{}, sources: map[int]bool{}}
	if r.name != "" {
		if _, err := path.Match(r.name, ""); err != nil {
			return nil, fmt.Errorf("filter.name %q: %w", r.name, err)
		}
	}
	for _, src := range strings.FieldsFunc(c.Params.Get("filter.sources"), func(r rune) bool { return r == ',' }) {
		switch src {
		case "stdout":
			r.sources[format.PriStdout] = true
		case "stderr":
			r.sources[format.PriStderr] = true
		default:
			return nil, fmt.Errorf("filter.sources: %q is not stdout or stderr", src)
		}
	}
	for _, kv := range strings.FieldsFunc(c.Params.Get("filter.labels"), func(r rune) bool { return r == ',' }) {
		k, v, ok := strings.Cut(kv, ":")
		if !ok {
			return nil, fmt.Errorf("filter.labels: %q is not key:value", kv)
		}
		r.labels[k] = v
	}
	r.s = sender.New(c, log)
	return r, nil
}

// matches reports whether a line of this container and stream goes to r.
func (r *route) matches(name, app string, labels map[string]string, pri int) bool {
	if len(r.sources) > 0 && !r.sources[pri] {
		return false
	}
	if r.name != "" {
		a, _ := path.Match(r.name, name)
		b, _ := path.Match(r.name, app)
		if !a && !b {
			return false
		}
	}
	for k, v := range r.labels {
		if labels[k] != v {
			return false
		}
	}
	return true
}

type routeJSON struct {
	ID  string `json:"id"`
	URI string `json:"uri"`
}

func (l *Logspout) routesFile() string { return filepath.Join(l.cfg.StateDir, "routes.json") }

// loadRoutes restores the API routes. A file that cannot be read or
// parsed (empty or cut after a crash, edited by hand) costs those routes,
// never the daemon: it is moved aside to routes.json.bad-<time> with a
// warning, and logspout starts without them.
func (l *Logspout) loadRoutes() error {
	data, err := os.ReadFile(l.routesFile())
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	var saved []routeJSON
	if err == nil {
		err = json.Unmarshal(data, &saved)
	}
	if err != nil {
		aside := l.routesFile() + ".bad-" + time.Now().UTC().Format("20060102T150405Z")
		mvErr := os.Rename(l.routesFile(), aside)
		l.log.Warn("saved API routes unreadable: starting without them", "file", l.routesFile(), "err", err, "moved_to", aside, "move_err", mvErr)
		l.badRoutesFiles.Inc()
		return nil
	}
	for _, rj := range saved {
		r, err := newRoute(rj.ID, rj.URI, l.log, l.cfg.TLSRootCAs)
		if err != nil {
			l.log.Warn("skipping a saved route that no longer parses", "id", rj.ID, "err", err)
			continue
		}
		r.Persisted = true
		l.extra[r.ID] = r
	}
	return nil
}

// saveRoutes writes the API-created routes; called with routesMu held.
func (l *Logspout) saveRoutes() error {
	var saved []routeJSON
	for _, r := range l.extra {
		if r.Persisted {
			saved = append(saved, routeJSON{r.ID, r.URI})
		}
	}
	data, _ := json.Marshal(saved)
	return writeFileSync(l.routesFile(), data)
}

// writeFileSync replaces path with data durably: the temporary file is
// synced before the rename and the directory after it, so a crash leaves
// the old file or the new one, never an empty one.
func writeFileSync(path string, data []byte) error {
	tmp := path + ".tmp"
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return err
	}
	_, err = f.Write(data)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("write %s: %w", tmp, err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return err
	}
	if d, err := os.Open(filepath.Dir(path)); err == nil {
		_ = d.Sync()
		d.Close()
	}
	return nil
}

// ErrTooManyRoutes refuses an API route beyond Config.MaxRoutes.
var ErrTooManyRoutes = errors.New("too many routes")

// AddRoute creates a persisted route and starts it.
func (l *Logspout) AddRoute(uri string) (RouteInfo, error) {
	var b [6]byte
	_, _ = rand.Read(b[:])
	r, err := newRoute(hex.EncodeToString(b[:]), uri, l.log, l.cfg.TLSRootCAs)
	if err != nil {
		return RouteInfo{}, err
	}
	r.Persisted = true
	l.routesMu.Lock()
	if n := l.apiRoutesLocked(); n >= l.cfg.MaxRoutes {
		l.routesMu.Unlock()
		l.routesRefused.Inc()
		return RouteInfo{}, fmt.Errorf("%w: %d routes added through the API already (the limit); delete one first", ErrTooManyRoutes, n)
	}
	l.extra[r.ID] = r
	err = l.saveRoutes()
	l.routesMu.Unlock()
	if err != nil {
		return RouteInfo{}, fmt.Errorf("persist route: %w", err)
	}
	l.startRoute(r)
	return r.info("api"), nil
}

func (l *Logspout) apiRoutesLocked() int {
	n := 0
	for _, r := range l.extra {
		if r.Persisted {
			n++
		}
	}
	return n
}

// RemoveRoute stops and forgets a route; false if there is none.
func (l *Logspout) RemoveRoute(id string) (bool, error) {
	l.routesMu.Lock()
	r := l.extra[id]
	delete(l.extra, id)
	var err error
	if r != nil && r.Persisted {
		err = l.saveRoutes()
	}
	l.routesMu.Unlock()
	if r == nil {
		return false, nil
	}
	if r.stop != nil {
		r.stop()
	}
	return true, err
}

func (r *route) info(src string) RouteInfo {
	s := r.s
	// The URL as configured may carry a password or a token: show it
	// redacted, as logs and metrics do.
	ri := RouteInfo{ID: r.ID, URL: s.Config().URL, Source: src, Sent: s.Sent.Load(), Dropped: s.Dropped.Load(), Queued: s.QueueLen()}
	if err := s.Err(); err != nil {
		ri.Error = err.Error()
	}
	return ri
}

// ServeRoutes is the /routes API: GET lists, POST {"uri": "..."} creates,
// GET /routes/<id> shows one, DELETE /routes/<id> removes.
func (l *Logspout) ServeRoutes(w http.ResponseWriter, req *http.Request) {
	id := strings.Trim(strings.TrimPrefix(req.URL.Path, "/routes"), "/")
	w.Header().Set("Content-Type", "application/json")
	switch {
	case req.Method == http.MethodGet && id == "":
		_ = json.NewEncoder(w).Encode(l.Routes())
	case req.Method == http.MethodGet:
		for _, ri := range l.Routes() {
			if ri.ID == id {
				_ = json.NewEncoder(w).Encode(ri)
				return
			}
		}
		http.Error(w, `{"error":"no such route"}`, http.StatusNotFound)
	case req.Method == http.MethodPost && id == "":
		var body routeJSON
		if err := json.NewDecoder(http.MaxBytesReader(w, req.Body, 64<<10)).Decode(&body); err != nil || body.URI == "" {
			http.Error(w, `{"error":"want JSON {\"uri\": \"syslog+tls://host:port\"}"}`, http.StatusBadRequest)
			return
		}
		ri, err := l.AddRoute(body.URI)
		if err != nil {
			code := http.StatusBadRequest
			if errors.Is(err, ErrTooManyRoutes) {
				code = http.StatusConflict
			}
			w.WriteHeader(code)
			_ = json.NewEncoder(w).Encode(map[string]string{"error": err.Error()})
			return
		}
		w.WriteHeader(http.StatusCreated)
		_ = json.NewEncoder(w).Encode(ri)
	case req.Method == http.MethodDelete && id != "":
		ok, err := l.RemoveRoute(id)
		switch {
		case !ok:
			http.Error(w, `{"error":"no such route"}`, http.StatusNotFound)
		case err != nil:
			w.WriteHeader(http.StatusInternalServerError)
			_ = json.NewEncoder(w).Encode(map[string]string{"error": err.Error()})
		default:
			w.WriteHeader(http.StatusNoContent)
		}
	default:
		http.Error(w, `{"error":"method not allowed"}`, http.StatusMethodNotAllowed)
	}
}

func (l *Logspout) startRoute(r *route) {
	l.routesMu.Lock()
	defer l.routesMu.Unlock()
	l.startRouteLocked(r)
}

// startRouteLocked runs r's sender until it is removed or logspout stops.
func (l *Logspout) startRouteLocked(r *route) {
	if l.sendCtx == nil || r.stop != nil {
		return // not running yet: Run starts it
	}
	ctx, cancel := context.WithCancel(l.sendCtx)
	done := make(chan struct{})
	// Stopping a deleted route abandons what it had queued: its lines
	// count as shipped for the cursors, which must not wait for it.
	r.stop = func() { cancel(); <-done; r.s.Retire(l.sendCtx, nil) }
	l.routeWG.Go(func() { defer close(done); _ = r.s.Run(ctx) })
}

// target is a sender a line goes to. Lines wait for room in a sender
// (back-pressure: Docker's log is the buffer) except in a lossy one.
type target struct {
	s     *sender.Sender
	lossy bool
}

// targets are the senders a line of this container and stream goes to;
// any reports whether there is a route at all. The platform logger and
// --route flags get back-pressure; routes added through the API are lossy,
// so that one dead destination someone added cannot stop every container's
// shipping (gliderlabs/logspout drops a route that stalls).
func (l *Logspout) targets(name, app string, labels map[string]string, pri int) (out []target, any bool) {
	l.routesMu.RLock()
	defer l.routesMu.RUnlock()
	any = l.logger != nil || len(l.extra) > 0
	if l.logger != nil {
		out = append(out, target{s: l.logger})
	}
	for _, r := range l.extra {
		if r.matches(name, app, labels, pri) {
			out = append(out, target{s: r.s, lossy: r.Persisted})
		}
	}
	return out, any
}

// followLogger keeps a sender to /deis/logs/host:port over
// /deis/logs/protocol (tcp by default), replaced when they change.
func (l *Logspout) followLogger(ctx context.Context, set *sender.Set, w *etcdwatch.Watcher) {
	var cur string
	for {
		var snap *etcdwatch.Snapshot
		select {
		case <-ctx.Done():
			return
		case snap = <-w.Updates():
		}
		host, port := snap.KVs[keys.LogsHost], snap.KVs[keys.LogsPort]
		proto := strings.TrimSpace(snap.KVs[keys.LogsProtocol])
		scheme := "syslog+tcp"
		if proto == "udp" {
			scheme = "syslog"
		}
		want := ""
		if host != "" && port != "" {
			want = scheme + "://" + net.JoinHostPort(strings.TrimSpace(host), strings.TrimSpace(port))
		}
		if want == cur {
			continue
		}
		if want == "" && cur != "" {
			// The logger's keys went away (it restarts, or its lease
			// lapsed): keep the last route, which retries until the logger
			// is back, rather than lose what it has queued.
			l.log.Warn("logger no longer announced in etcd; keeping the last route", "url", cur)
			continue
		}
		cur = want
		var s *sender.Sender
		if want != "" {
			c, err := sender.ParseURL(want)
			if err != nil {
				l.log.Warn("invalid logger address in etcd", "url", want, "err", err)
				continue
			}
			s = sender.New(c, l.log)
		}
		// The new route starts at once; the old one delivers what it has
		// queued (bounded), then hands the rest to the new one: the logger
		// moved, its lines did not become optional.
		var next []*sender.Sender
		if s != nil {
			next = append(next, s)
		}
		set.Replace(next, func(*sender.Sender) *sender.Sender { return s })
		l.routesMu.Lock()
		l.logger = s
		l.routesMu.Unlock()
		l.log.Info("logger route", "url", want)
	}
}

func (l *Logspout) routes() []*sender.Sender {
	l.routesMu.RLock()
	defer l.routesMu.RUnlock()
	var out []*sender.Sender
	for _, r := range l.extra {
		out = append(out, r.s)
	}
	if l.logger != nil {
		out = append(out, l.logger)
	}
	return out
}

// RouteInfo describes a route for the /routes API.
type RouteInfo struct {
	ID      string `json:"id"`
	URL     string `json:"uri"`
	Source  string `json:"source"` // "etcd" (the platform logger), "flag" or "api"
	Sent    int64  `json:"sent"`
	Dropped int64  `json:"dropped"`
	Queued  int    `json:"queued"`
	Error   string `json:"error,omitempty"`
}

// Routes lists the current routes.
func (l *Logspout) Routes() []RouteInfo {
	l.routesMu.RLock()
	defer l.routesMu.RUnlock()
	out := []RouteInfo{}
	if l.logger != nil {
		out = append(out, (&route{ID: "logger", URI: l.logger.Config().URL, s: l.logger}).info("etcd"))
	}
	for _, r := range l.extra {
		src := "flag"
		if r.Persisted {
			src = "api"
		}
		out = append(out, r.info(src))
	}
	return out
}
