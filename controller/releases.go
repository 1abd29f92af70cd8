package controller

import (
	"fmt"
	"net/http"
	"sort"
	"strconv"
	"strings"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/deis/dataplane/pkg/keys"
	"github.com/deis/dataplane/pkg/release"
)

func (q *request) releaseView(a *app, r *release.Release) map[string]any {
	key := keys.AppRelease(a.name, r.Version)
	build := any(nil)
	if r.Image != "" {
		build = uuidOf(key + "/build")
	}
	summary := r.Summary
	v := map[string]any{
		"app": a.name, "build": build, "config": uuidOf(keys.ConfigPrefixFor(a.name) + "v" + strconv.Itoa(r.Version)),
		"version": r.Version, "owner": r.User, "created": date(r.Created), "updated": date(r.Created), "uuid": uuidOf(key),
	}
	if cause, failed := a.failed[r.Version]; failed {
		summary += " (failed)"
		v["failed"] = cause
	}
	v["summary"] = summary
	return v
}

func (a *app) versions() []int {
	var vs []int
	for v := range a.releases {
		vs = append(vs, v)
	}
	sort.Sort(sort.Reverse(sort.IntSlice(vs)))
	return vs
}

func (q *request) listReleases() {
	a, ok := q.appFor(accessUse)
	if !ok {
		return
	}
	var items []any
	for _, v := range a.versions() {
		items = append(items, q.releaseView(a, a.releases[v]))
	}
	q.page(items)
}

func (q *request) releaseInfo() {
	a, ok := q.appFor(accessUse)
	if !ok {
		return
	}
	n, err := strconv.Atoi(strings.TrimPrefix(q.params["version"], "v"))
	r := a.releases[n]
	if err != nil || r == nil {
		q.fail(errNotFound)
		return
	}
	q.json(http.StatusOK, q.releaseView(a, r))
}

// rollback writes a new release from vK's image, Procfile, config, limits
// and tags. Without a version, K is the newest release older than the
// current one that did not fail. A target without an image is refused.
func (q *request) rollback() {
	a, ok := q.appFor(accessUse)
	if !ok {
		return
	}
	var in struct {
		Version *int `json:"version"`
	}
	if err := q.decode(&in); err != nil {
		q.fail(err)
		return
	}
	target := 0
	if in.Version != nil {
		target = *in.Version
	} else {
		for v := a.current - 1; v >= 1; v-- {
			if _, failed := a.failed[v]; !failed && a.releases[v] != nil {
				target = v
				break
			}
		}
	}
	from := a.releases[target]
	switch {
	case from == nil:
		q.fail(detailErr(http.StatusNotFound, fmt.Sprintf("Release v%d not found", target)))
		return
	case from.Image == "":
		q.fail(detailErr(http.StatusBadRequest, fmt.Sprintf("Cannot roll back to v%d: it has no build", target)))
		return
	}
	unlock, ok := q.lock(a.name, "rollback")
	if !ok {
		return
	}
	defer unlock()
	user := q.user.Username
	rel, rev, err := release.WriteWith(q.ctx, q.s.etcd, a.name, func(cur *release.Release, _ map[string]string) (*release.Release, []clientv3.Op, error) {
		next := copyRelease(from)
		next.User, next.Summary = user, fmt.Sprintf("%s rolled back to v%d", user, target)
		return next, configOps(a.name, cur, next), nil
	})
	if err != nil {
		q.fail(err)
		return
	}
	q.s.event(a.name, rel.Summary)
	q.await(a.name, rev, func() { q.json(http.StatusCreated, map[string]int{"version": rel.Version}) })
}

// Builds are the releases that brought a new image.
func (q *request) buildView(a *app, r *release.Release) map[string]any {
	return map[string]any{
		"app": a.name, "owner": r.User, "image": r.Image, "sha": r.SHA, "procfile": r.Procfile, "dockerfile": "",
		"created": date(r.Created), "updated": date(r.Created), "uuid": uuidOf(keys.AppRelease(a.name, r.Version) + "/build"),
	}
}

func (a *app) builds() []*release.Release {
	var out []*release.Release
	vs := a.versions()
	for i, v := range vs {
		r := a.releases[v]
		if r.Image == "" {
			continue
		}
		if i+1 < len(vs) && a.releases[vs[i+1]].Image == r.Image && a.releases[vs[i+1]].SHA == r.SHA {
			continue // a config change, not a build
		}
		out = append(out, r)
	}
	return out
}

func (q *request) listBuilds() {
	a, ok := q.appFor(accessUse)
	if !ok {
		return
	}
	var items []any
	for _, r := range a.builds() {
		items = append(items, q.buildView(a, r))
	}
	q.page(items)
}

func (q *request) buildInfo() {
	a, ok := q.appFor(accessUse)
	if !ok {
		return
	}
	for _, r := range a.builds() {
		if uuidOf(keys.AppRelease(a.name, r.Version)+"/build") == q.params["uuid"] {
			q.json(http.StatusOK, q.buildView(a, r))
			return
		}
	}
	q.fail(errNotFound)
}

// createBuild is `deis pull`: a new release with an image from a registry.
func (q *request) createBuild() {
	a, ok := q.appFor(accessUse)
	if !ok {
		return
	}
	var in struct {
		Image    string            `json:"image"`
		Procfile map[string]string `json:"procfile"`
	}
	if err := q.decode(&in); err != nil {
		q.fail(err)
		return
	}
	name := in.Image[strings.LastIndexByte(in.Image, '/')+1:]
	if in.Image == "" || !strings.Contains(name, ":") || strings.ContainsAny(in.Image, " \t\n") {
		q.fail(fieldErr("image", "Name the image with its tag, e.g. registry.example.com/me/app:v2"))
		return
	}
	for t := range in.Procfile {
		if _, err := keys.ParseContainerName("a_v1." + t + ".1"); err != nil {
			q.fail(fieldErr("procfile", fmt.Sprintf("process type %q is not valid", t)))
			return
		}
	}
	unlock, ok := q.lock(a.name, "pull")
	if !ok {
		return
	}
	defer unlock()
	user := q.user.Username
	rel, rev, err := release.WriteWith(q.ctx, q.s.etcd, a.name, func(cur *release.Release, _ map[string]string) (*release.Release, []clientv3.Op, error) {
		next := copyRelease(cur)
		next.Image, next.SHA, next.User = in.Image, "", user
		next.Procfile = in.Procfile
		if len(next.Procfile) == 0 {
			next.Procfile = map[string]string{"cmd": ""} // the image's own CMD
		}
		next.Summary = fmt.Sprintf("%s deployed %s", user, in.Image)
		return next, nil, nil
	})
	if err != nil {
		q.fail(err)
		return
	}
	q.s.event(a.name, rel.Summary)
	a.releases[rel.Version], a.current = rel, rel.Version
	q.await(a.name, rev, func() {
		q.w.Header().Set("Deis-Release", strconv.Itoa(rel.Version))
		q.json(http.StatusCreated, q.buildView(a, rel))
	})
}
