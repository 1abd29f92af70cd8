package controller

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"sort"
	"strconv"
	"strings"
	"time"

	"go.etcd.io/etcd/api/v3/mvccpb"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/deis/dataplane/pkg/keys"
	"github.com/deis/dataplane/pkg/release"
	"github.com/deis/dataplane/pkg/unit"
	"github.com/deis/dataplane/scheduler"
)

// app is what the API needs of one app, read in one transaction.
type app struct {
	name     string
	owner    string
	perms    []string // collaborators
	current  int
	releases map[int]*release.Release
	failed   map[int]string
	scale    release.Scale
	created  time.Time
	updated  time.Time
}

// loadApp reads app; errNotFound when it does not exist.
func (s *Server) loadApp(ctx context.Context, name string) (*app, error) {
	if keys.ValidateAppName(name) != nil {
		return nil, errNotFound
	}
	resp, err := s.etcd.Get(ctx, keys.AppPrefix(name), clientv3.WithPrefix())
	if err != nil {
		return nil, fmt.Errorf("read app %s: %w", name, err)
	}
	a := parseApp(name, resp.Kvs)
	if a == nil {
		return nil, errNotFound
	}
	return a, nil
}

// parseApp builds an app from its keys; nil when it has no owner.
func parseApp(name string, kvs []*mvccpb.KeyValue) *app {
	a := &app{name: name, releases: map[int]*release.Release{}, failed: map[int]string{}}
	for _, kv := range kvs {
		rest := strings.TrimPrefix(string(kv.Key), keys.AppPrefix(name))
		switch {
		case rest == "owner":
			a.owner = string(kv.Value)
		case rest == "release":
			a.current, _ = strconv.Atoi(strings.TrimSpace(string(kv.Value)))
		case rest == "scale":
			a.scale, _ = release.ParseScale(kv.Value)
		case strings.HasPrefix(rest, "perms/"):
			a.perms = append(a.perms, strings.TrimPrefix(rest, "perms/"))
		case strings.HasPrefix(rest, "failed/v"):
			if n, err := strconv.Atoi(strings.TrimPrefix(rest, "failed/v")); err == nil {
				a.failed[n] = string(kv.Value)
			}
		case strings.HasPrefix(rest, "releases/v"):
			if r, err := release.Parse(kv.Value); err == nil {
				a.releases[r.Version] = r
			}
		}
	}
	if a.owner == "" {
		return nil
	}
	sort.Strings(a.perms)
	if r := a.releases[1]; r != nil {
		a.created = r.Created
	}
	a.updated = a.created
	if r := a.releases[a.current]; r != nil {
		a.updated = r.Created
	}
	if a.scale == nil {
		a.scale = release.Scale{}
	}
	return a
}

func (a *app) rel() *release.Release { return a.releases[a.current] }

func (a *app) isCollaborator(u string) bool {
	for _, p := range a.perms {
		if p == u {
			return true
		}
	}
	return false
}

// access levels of an app.
const (
	accessUse   = iota // owner, collaborators, admins
	accessOwner        // owner and admins: destroy, transfer, sharing
)

// appFor loads {app} and checks the caller may act on it. A stranger gets
// 404 (the app's existence is not theirs to learn) for reads, 403 when the
// app is visible to them only as a collaborator asking for owner rights.
func (q *request) appFor(level int) (*app, bool) {
	a, err := q.s.loadApp(q.ctx, q.params["app"])
	if err != nil {
		q.fail(err)
		return nil, false
	}
	u := q.user.Username
	switch {
	case q.user.Admin || a.owner == u:
		return a, true
	case a.isCollaborator(u) && level == accessUse:
		return a, true
	case a.isCollaborator(u):
		q.fail(errForbidden)
		return nil, false
	}
	q.fail(errForbidden)
	return nil, false
}

func (q *request) appView(a *app) map[string]any {
	domain := q.s.platformDomain(q.ctx)
	url := a.name
	if domain != "" {
		url += "." + domain
	}
	structure := map[string]int{}
	for t, n := range a.scale {
		if t != unit.TypeRun {
			structure[t] = n
		}
	}
	return map[string]any{
		"uuid": uuidOf(keys.AppPrefix(a.name)), "id": a.name, "owner": a.owner, "url": url,
		"structure": structure, "created": date(a.created), "updated": date(a.updated),
	}
}

// listApps lists the apps the caller owns or shares (admins: all). It
// reads every app's owner in batches, then builds only the page asked for.
func (q *request) listApps() {
	// From the mirror when it runs: a list may lag a change by the watch's
	// few milliseconds; a single app is always read from etcd.
	if idx := q.s.appsIndex(); idx != nil {
		var visible []string
		owner, perm := "owner", "perms/"+q.user.Username
		for _, name := range idx.names {
			if q.user.Admin {
				visible = append(visible, name)
				continue
			}
			// Only the owner and perms keys: releases are parsed for the
			// page alone.
			for _, kv := range idx.apps[name] {
				rest := string(kv.Key[len(keys.AppPrefix(name)):])
				if (rest == owner && string(kv.Value) == q.user.Username) || rest == perm {
					visible = append(visible, name)
					break
				}
			}
		}
		q.pageOf(len(visible), func(from, to int) ([]any, error) {
			items := make([]any, 0, to-from)
			for _, name := range visible[from:to] {
				if a := parseApp(name, idx.apps[name]); a != nil {
					items = append(items, q.appView(a))
				}
			}
			return items, nil
		})
		return
	}
	names, err := q.s.visibleApps(q.ctx, q.user)
	if err != nil {
		q.fail(err)
		return
	}
	q.pageOf(len(names), func(from, to int) ([]any, error) {
		apps, err := q.s.loadApps(q.ctx, names[from:to])
		if err != nil {
			return nil, err
		}
		items := make([]any, 0, len(apps))
		for _, a := range apps {
			items = append(items, q.appView(a))
		}
		return items, nil
	})
}

// txnBatch stays under etcd's default limit of 128 operations per txn.
const txnBatch = 100

// visibleApps returns, sorted, the apps u owns or shares (every app for an
// admin).
func (s *Server) visibleApps(ctx context.Context, u *User) ([]string, error) {
	resp, err := s.etcd.Get(ctx, keys.AppsPrefix, clientv3.WithPrefix(), clientv3.WithKeysOnly())
	if err != nil {
		return nil, fmt.Errorf("list apps: %w", err)
	}
	all, shared := []string{}, map[string]bool{}
	for _, kv := range resp.Kvs {
		name, rest, err := keys.ParseAppKey(string(kv.Key))
		switch {
		case err != nil:
		case rest == "owner":
			all = append(all, name)
		case rest == "perms/"+u.Username:
			shared[name] = true
		}
	}
	sort.Strings(all)
	if u.Admin {
		return all, nil
	}
	var out []string
	for i := 0; i < len(all); i += txnBatch {
		batch := all[i:min(i+txnBatch, len(all))]
		ops := make([]clientv3.Op, len(batch))
		for j, name := range batch {
			ops[j] = clientv3.OpGet(keys.AppOwner(name))
		}
		tr, err := s.etcd.Txn(ctx).Then(ops...).Commit()
		if err != nil {
			return nil, fmt.Errorf("read app owners: %w", err)
		}
		for j, name := range batch {
			kvs := tr.Responses[j].GetResponseRange().Kvs
			if shared[name] || (len(kvs) > 0 && string(kvs[0].Value) == u.Username) {
				out = append(out, name)
			}
		}
	}
	return out, nil
}

// loadApps reads several apps in as few round trips as etcd allows.
func (s *Server) loadApps(ctx context.Context, names []string) ([]*app, error) {
	var out []*app
	for i := 0; i < len(names); i += txnBatch {
		batch := names[i:min(i+txnBatch, len(names))]
		ops := make([]clientv3.Op, len(batch))
		for j, name := range batch {
			ops[j] = clientv3.OpGet(keys.AppPrefix(name), clientv3.WithPrefix())
		}
		tr, err := s.etcd.Txn(ctx).Then(ops...).Commit()
		if err != nil {
			return nil, fmt.Errorf("read apps: %w", err)
		}
		for j, name := range batch {
			if a := parseApp(name, tr.Responses[j].GetResponseRange().Kvs); a != nil {
				out = append(out, a)
			}
		}
	}
	return out, nil
}

// Generated app names: adjective-noun, as v1's.
var (
	adjectives = []string{"ablest", "absurd", "actual", "aerial", "amber", "amused", "bright", "brisk", "calm", "candid", "dapper", "eager", "early", "fancy", "gentle", "glossy", "happy", "hearty", "jolly", "keen", "lively", "lucky", "merry", "nimble", "peachy", "plucky", "quiet", "rapid", "sunny", "tidy", "vivid", "witty"}
	nouns      = []string{"anchor", "badger", "beacon", "bishop", "cactus", "comet", "dingo", "falcon", "gazelle", "harbor", "island", "jigsaw", "kettle", "lantern", "magnet", "meadow", "nectar", "oyster", "pebble", "quasar", "rocket", "saddle", "tundra", "urchin", "velvet", "walrus", "waxworks", "yonder", "zephyr"}
)

func (q *request) createApp() {
	var in struct {
		ID *string `json:"id"`
	}
	if err := q.decode(&in); err != nil {
		q.fail(err)
		return
	}
	generated := in.ID == nil || *in.ID == ""
	for attempt := 0; attempt < 20; attempt++ {
		name := ""
		if generated {
			name = adjectives[rand.IntN(len(adjectives))] + "-" + nouns[rand.IntN(len(nouns))]
		} else {
			name = *in.ID
			if err := keys.ValidateAppName(name); err != nil {
				q.fail(fieldErr("id", err.Error()))
				return
			}
			if name == "deis" {
				q.fail(fieldErr("id", "deis is a reserved name."))
				return
			}
		}
		now := q.s.now().UTC()
		v1 := release.Release{Version: 1, Procfile: map[string]string{}, Config: map[string]string{}, User: q.user.Username, Created: now,
			Summary: q.user.Username + " created initial release"}
		data, _ := json.Marshal(v1)
		resp, err := q.s.etcd.Txn(q.ctx).
			If(clientv3.Compare(clientv3.CreateRevision(keys.AppOwner(name)), "=", 0),
				clientv3.Compare(clientv3.CreateRevision(keys.AppCurrentRelease(name)), "=", 0)).
			Then(clientv3.OpPut(keys.AppOwner(name), q.user.Username), clientv3.OpPut(keys.AppRelease(name, 1), string(data)),
				clientv3.OpPut(keys.AppCurrentRelease(name), "1")).
			Commit()
		if err != nil {
			q.fail(fmt.Errorf("create app %s: %w", name, err))
			return
		}
		if !resp.Succeeded {
			if generated {
				continue
			}
			q.fail(fieldErr("id", "App with this id already exists."))
			return
		}
		q.s.event(name, v1.Summary)
		q.s.waitMirror(q.ctx, resp.Header.Revision) // this replica's lists show it at once
		a, err := q.s.loadApp(q.ctx, name)
		if err != nil {
			q.fail(err)
			return
		}
		q.json(http.StatusCreated, q.appView(a))
		return
	}
	q.fail(detailErr(http.StatusConflict, "could not find a free app name; give one"))
}

func (q *request) appInfo() {
	a, ok := q.appFor(accessUse)
	if !ok {
		return
	}
	q.json(http.StatusOK, q.appView(a))
}

func (q *request) transferApp() {
	a, ok := q.appFor(accessOwner)
	if !ok {
		return
	}
	var in struct {
		Owner string `json:"owner"`
	}
	if err := q.decode(&in); err != nil {
		q.fail(err)
		return
	}
	u, err := q.s.getUser(q.ctx, in.Owner)
	if err != nil || u == nil {
		q.fail(orNotFound(err))
		return
	}
	unlock, ok := q.lock(a.name, "transfer")
	if !ok {
		return
	}
	defer unlock()
	put, err := q.s.etcd.Put(q.ctx, keys.AppOwner(a.name), u.Username)
	if err != nil {
		q.fail(err)
		return
	}
	q.s.waitMirror(q.ctx, put.Header.Revision)
	q.s.event(a.name, fmt.Sprintf("%s transferred the app to %s", q.user.Username, u.Username))
	q.json(http.StatusOK, nil)
}

// destroyApp deletes the desired state first, in one transaction; the
// scheduler then retires every unit. ?wait=true answers once no unit of the
// app reports a status any more.
func (q *request) destroyApp() {
	a, ok := q.appFor(accessOwner)
	if !ok {
		return
	}
	unlock, ok := q.lock(a.name, "destroy")
	if !ok {
		return
	}
	defer unlock()
	ops := []clientv3.Op{
		clientv3.OpDelete(keys.AppPrefix(a.name), clientv3.WithPrefix()),
		clientv3.OpDelete(keys.ConfigPrefixFor(a.name), clientv3.WithPrefix()),
		clientv3.OpDelete(keys.ServicePrefixFor(a.name), clientv3.WithPrefix()),
		clientv3.OpDelete(keys.Deploy(a.name)),
	}
	domains, err := q.s.domainsOf(q.ctx, a.name)
	if err != nil {
		q.fail(err)
		return
	}
	for _, d := range domains {
		ops = append(ops, clientv3.OpDelete(keys.Domain(d.domain)))
	}
	tr, err := q.s.etcd.Txn(q.ctx).Then(ops...).Commit()
	if err != nil {
		q.fail(fmt.Errorf("destroy %s: %w", a.name, err))
		return
	}
	q.s.waitMirror(q.ctx, tr.Header.Revision)
	q.s.log.Info("app destroyed", "app", a.name, "by", q.user.Username)
	q.s.deleteLogs(q.ctx, a.name)
	if q.r.URL.Query().Get("wait") == "true" {
		for ctx := q.ctx; ctx.Err() == nil; time.Sleep(250 * time.Millisecond) {
			if n, err := q.s.statusCount(ctx, a.name); err == nil && n == 0 {
				break
			}
		}
	}
	q.noContent()
}

func (s *Server) statusCount(ctx context.Context, app string) (int, error) {
	resp, err := s.etcd.Get(ctx, keys.StatusPrefix, clientv3.WithPrefix(), clientv3.WithKeysOnly())
	if err != nil {
		return 0, err
	}
	n := 0
	for _, kv := range resp.Kvs {
		if _, c, err := keys.ParseUnitKey(keys.StatusPrefix, string(kv.Key)); err == nil && c.App == app {
			n++
		}
	}
	return n, nil
}

func (s *Server) appsOwnedBy(ctx context.Context, user string) ([]string, error) {
	resp, err := s.etcd.Get(ctx, keys.AppsPrefix, clientv3.WithPrefix())
	if err != nil {
		return nil, err
	}
	var out []string
	for _, kv := range resp.Kvs {
		if name, rest, err := keys.ParseAppKey(string(kv.Key)); err == nil && rest == "owner" && string(kv.Value) == user {
			out = append(out, name)
		}
	}
	return out, nil
}

// loggerURL is the logger's HTTP API on the announced logger host.
func (s *Server) loggerURL(ctx context.Context) (string, error) {
	resp, err := s.etcd.Get(ctx, keys.LogsHost)
	if err != nil || len(resp.Kvs) == 0 {
		return "", errors.New("no logger is announced at " + keys.LogsHost)
	}
	return "http://" + net.JoinHostPort(string(resp.Kvs[0].Value), strconv.Itoa(s.cfg.LoggerHTTPPort)), nil
}

func (s *Server) loggerToken(ctx context.Context) string {
	if s.cfg.APIToken != "" {
		return s.cfg.APIToken
	}
	if resp, err := s.etcd.Get(ctx, keys.PlatformAPIToken); err == nil && len(resp.Kvs) > 0 {
		return strings.TrimSpace(string(resp.Kvs[0].Value))
	}
	return ""
}

var loggerClient = &http.Client{Timeout: 10 * time.Second}

func (q *request) appLogs() {
	a, ok := q.appFor(accessUse)
	if !ok {
		return
	}
	base, err := q.s.loggerURL(q.ctx)
	if err != nil {
		q.detail(http.StatusInternalServerError, "Error accessing logs for "+a.name)
		return
	}
	n := q.r.URL.Query().Get("log_lines")
	if n == "" {
		n = "100"
	}
	if v, err := strconv.Atoi(n); err != nil || v < 1 {
		q.fail(fieldErr("log_lines", "Enter a positive whole number."))
		return
	}
	follow := q.r.URL.Query().Get("follow") == "true"
	target := base + "/logs/" + a.name + "?log_lines=" + n
	client := loggerClient
	if follow {
		// Beyond v1: the logger's live stream, for `deis logs -f`, until
		// the client leaves.
		target += "&follow=true"
		client = &http.Client{}
	}
	req, _ := http.NewRequestWithContext(q.ctx, http.MethodGet, target, nil)
	if tok := q.s.loggerToken(q.ctx); tok != "" {
		req.Header.Set("Authorization", "Bearer "+tok)
	}
	resp, err := client.Do(req)
	if err != nil {
		q.detail(http.StatusInternalServerError, "Error accessing logs for "+a.name)
		return
	}
	defer resp.Body.Close()
	switch resp.StatusCode {
	case http.StatusOK:
		q.status = http.StatusOK
		q.w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		q.w.WriteHeader(http.StatusOK)
		if !follow {
			_, _ = io.Copy(q.w, io.LimitReader(resp.Body, 64<<20))
			return
		}
		flusher, _ := q.w.(http.Flusher)
		buf := make([]byte, 32<<10)
		for {
			n, err := resp.Body.Read(buf)
			if n > 0 {
				if _, werr := q.w.Write(buf[:n]); werr != nil {
					return
				}
				if flusher != nil {
					flusher.Flush()
				}
			}
			if err != nil {
				return
			}
		}
	case http.StatusNoContent, http.StatusNotFound:
		q.noContent()
	default:
		q.detail(http.StatusInternalServerError, "Error accessing logs for "+a.name)
	}
}

func (s *Server) deleteLogs(ctx context.Context, name string) {
	base, err := s.loggerURL(ctx)
	if err != nil {
		return
	}
	req, _ := http.NewRequestWithContext(context.WithoutCancel(ctx), http.MethodDelete, base+"/logs/"+name, nil)
	if tok := s.loggerToken(ctx); tok != "" {
		req.Header.Set("Authorization", "Bearer "+tok)
	}
	if resp, err := loggerClient.Do(req); err == nil {
		resp.Body.Close()
	}
}

func (q *request) appRun() {
	a, ok := q.appFor(accessUse)
	if !ok {
		return
	}
	var in struct {
		Command string `json:"command"`
	}
	if err := q.decode(&in); err != nil {
		q.fail(err)
		return
	}
	if strings.TrimSpace(in.Command) == "" {
		q.fail(fieldErr("command", "This field may not be blank."))
		return
	}
	rel := a.rel()
	if rel == nil || rel.Image == "" {
		q.fail(detailErr(http.StatusBadRequest, "No build associated with this release to run this command"))
		return
	}
	lease := q.s.lease()
	if lease == 0 {
		q.fail(detailErr(http.StatusServiceUnavailable, "this controller holds no etcd lease yet; try again"))
		return
	}
	res, err := scheduler.RunOnce(q.ctx, q.s.etcd, lease, a.name, rel, in.Command)
	if err != nil {
		if q.ctx.Err() != nil {
			return
		}
		if errors.Is(err, scheduler.ErrTooManyRuns) {
			q.fail(detailErr(http.StatusConflict, err.Error()))
			return
		}
		q.fail(detailErr(http.StatusServiceUnavailable, err.Error()))
		return
	}
	q.json(http.StatusOK, []any{res.RC, res.Output})
}

// await waits for the scheduler's outcome of a change written at rev and
// answers ok() on success, 503 with the cause on failure.
func (q *request) await(name string, rev int64, ok func()) {
	leaders, err := q.s.etcd.Get(q.ctx, keys.SchedulerLeaderPrefix, clientv3.WithPrefix(), clientv3.WithCountOnly())
	if err == nil && leaders.Count == 0 {
		q.fail(detailErr(http.StatusServiceUnavailable, "the change is recorded, but no scheduler is running to carry it out"))
		return
	}
	ctx, cancel := context.WithTimeout(q.ctx, q.s.cfg.DeployWait)
	defer cancel()
	d, err := scheduler.Wait(ctx, q.s.etcd, name, rev, nil)
	switch {
	case q.ctx.Err() != nil:
		return // the client left; the change goes on
	case err != nil:
		q.fail(detailErr(http.StatusServiceUnavailable, "no outcome yet: "+err.Error()))
	case d.State == unit.Failed:
		q.s.event(name, "deploy failed: "+d.Msg)
		q.fail(detailErr(http.StatusServiceUnavailable, d.Msg))
	default:
		ok()
	}
}
