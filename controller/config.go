package controller

import (
	"encoding/json"
	"fmt"
	"maps"
	"net/http"
	"regexp"
	"sort"
	"strconv"
	"strings"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/deis/dataplane/pkg/keys"
	"github.com/deis/dataplane/pkg/release"
)

var (
	configKeyRE = regexp.MustCompile(`^[a-z_]+[a-z0-9_]*$`)
	memoryRE    = regexp.MustCompile(`^[0-9]+(MB|KB|GB|[BKMG])$`)
	tagKeyRE    = regexp.MustCompile(`^[A-Za-z]+$`)
	tagValueRE  = regexp.MustCompile(`^\w+$`)
)

func (q *request) configView(a *app, r *release.Release) map[string]any {
	values, memory, cpu, tags := map[string]string{}, map[string]string{}, map[string]int{}, map[string]string{}
	if r != nil {
		maps.Copy(values, r.Config)
		maps.Copy(memory, r.Memory)
		maps.Copy(cpu, r.CPU)
		maps.Copy(tags, r.Tags)
	}
	return map[string]any{
		"owner": a.owner, "app": a.name, "values": values, "memory": memory, "cpu": cpu, "tags": tags,
		"created": date(a.created), "updated": date(a.updated), "uuid": uuidOf(keys.ConfigPrefixFor(a.name) + "v" + strconv.Itoa(a.current)),
	}
}

func (q *request) getConfig() {
	a, ok := q.appFor(accessUse)
	if !ok {
		return
	}
	q.json(http.StatusOK, q.configView(a, a.rel()))
}

// setConfig merges values, memory, cpu and tags into the current release's
// (null deletes), writes the new release and the live config in one
// transaction, then waits for the deploy.
func (q *request) setConfig() {
	a, ok := q.appFor(accessUse)
	if !ok {
		return
	}
	var in struct {
		Values map[string]*string      `json:"values"`
		Memory map[string]*string      `json:"memory"`
		CPU    map[string]*json.Number `json:"cpu"`
		Tags   map[string]*string      `json:"tags"`
	}
	if err := q.decode(&in); err != nil {
		q.fail(err)
		return
	}
	for k, v := range in.Values {
		if !configKeyRE.MatchString(strings.ToLower(k)) {
			q.fail(fieldErr("values", fmt.Sprintf("Config keys must start with a letter or underscore and contain only letters, digits and underscores: %q", k)))
			return
		}
		if v != nil && len(*v) > 64<<10 {
			q.fail(fieldErr("values", fmt.Sprintf("%s: values are at most 64 KiB", k)))
			return
		}
	}
	for t, v := range in.Memory {
		if v != nil && !memoryRE.MatchString(strings.ToUpper(*v)) {
			q.fail(fieldErr("memory", fmt.Sprintf("Memory limit format: <number><unit>, where unit = B, K, M or G: %s=%q", t, *v)))
			return
		}
	}
	cpus := map[string]*int{}
	for t, v := range in.CPU {
		if v == nil {
			cpus[t] = nil
			continue
		}
		n, err := strconv.Atoi(v.String())
		if err != nil || n < 0 || n > 1024 {
			q.fail(fieldErr("cpu", fmt.Sprintf("CPU shares must be a whole number from 0 to 1024: %s=%s", t, v.String())))
			return
		}
		cpus[t] = &n
	}
	for k, v := range in.Tags {
		if !tagKeyRE.MatchString(k) || (v != nil && !tagValueRE.MatchString(*v)) {
			q.fail(fieldErr("tags", fmt.Sprintf("Tags are key=value with a key of letters and a value of letters, digits and underscores: %q", k)))
			return
		}
	}
	unlock, ok := q.lock(a.name, "config")
	if !ok {
		return
	}
	defer unlock()
	user := q.user.Username
	var summary string
	rel, rev, err := release.WriteWith(q.ctx, q.s.etcd, a.name, func(cur *release.Release, _ map[string]string) (*release.Release, []clientv3.Op, error) {
		next := copyRelease(cur)
		var added, changed, deleted []string
		for k, v := range in.Values {
			k = strings.ToUpper(k)
			old, had := next.Config[k]
			switch {
			case v == nil && had:
				delete(next.Config, k)
				deleted = append(deleted, k)
			case v != nil && !had:
				next.Config[k] = *v
				added = append(added, k)
			case v != nil && old != *v:
				next.Config[k] = *v
				changed = append(changed, k)
			}
		}
		var limits []string
		for t, v := range in.Memory {
			if v == nil {
				delete(next.Memory, t)
			} else {
				next.Memory[t] = strings.ToUpper(*v)
			}
			limits = appendOnce(limits, "memory")
		}
		for t, v := range cpus {
			if v == nil {
				delete(next.CPU, t)
			} else {
				next.CPU[t] = *v
			}
			limits = appendOnce(limits, "cpu")
		}
		var tagNotes []string
		for k, v := range in.Tags {
			if v == nil {
				delete(next.Tags, k)
				tagNotes = append(tagNotes, "deleted tag "+k)
			} else {
				next.Tags[k] = *v
				tagNotes = append(tagNotes, "added tag "+k)
			}
		}
		summary = configSummary(user, added, changed, deleted, limits, tagNotes)
		next.Summary, next.User = summary, user
		// The live config follows the release, in the same transaction.
		return next, configOps(a.name, cur, next), nil
	})
	if err != nil {
		q.fail(err)
		return
	}
	q.s.event(a.name, summary)
	a.current, a.releases[rel.Version] = rel.Version, rel
	q.await(a.name, rev, func() {
		q.w.Header().Set("Deis-Release", strconv.Itoa(rel.Version))
		q.w.Header().Set("X-Deis-Release", strconv.Itoa(rel.Version))
		q.json(http.StatusCreated, q.configView(a, rel))
	})
}

// configOps rewrites /deis/config/<app>/ from cur's config to next's: etcd
// refuses a transaction that deletes a range and puts inside it, so keys
// are deleted one by one.
func configOps(app string, cur, next *release.Release) []clientv3.Op {
	var ops []clientv3.Op
	if cur != nil {
		for k := range cur.Config {
			if _, ok := next.Config[k]; !ok {
				ops = append(ops, clientv3.OpDelete(keys.Config(app, k)))
			}
		}
	}
	for k, v := range next.Config {
		if cur == nil || cur.Config[k] != v {
			ops = append(ops, clientv3.OpPut(keys.Config(app, k), v))
		}
	}
	return ops
}

func appendOnce(s []string, v string) []string {
	for _, x := range s {
		if x == v {
			return s
		}
	}
	return append(s, v)
}

// configSummary is v1's release summary for a config change.
func configSummary(user string, added, changed, deleted, limits, tags []string) string {
	var parts []string
	for _, p := range []struct {
		verb string
		keys []string
	}{{"added", added}, {"changed", changed}, {"deleted", deleted}} {
		if len(p.keys) > 0 {
			sort.Strings(p.keys)
			parts = append(parts, p.verb+" "+strings.Join(p.keys, ", "))
		}
	}
	if len(limits) > 0 {
		parts = append(parts, "changed limits for "+strings.Join(limits, ", "))
	}
	sort.Strings(tags)
	parts = append(parts, tags...)
	if len(parts) == 0 {
		return user + " changed nothing"
	}
	return user + " " + strings.Join(parts, ", ")
}

// copyRelease is a new release record based on cur (nil: empty).
func copyRelease(cur *release.Release) *release.Release {
	next := &release.Release{Procfile: map[string]string{}, Config: map[string]string{}, Memory: map[string]string{}, CPU: map[string]int{}, Tags: map[string]string{}}
	if cur != nil {
		next.Image, next.SHA = cur.Image, cur.SHA
		maps.Copy(next.Procfile, cur.Procfile)
		maps.Copy(next.Config, cur.Config)
		maps.Copy(next.Memory, cur.Memory)
		maps.Copy(next.CPU, cur.CPU)
		maps.Copy(next.Tags, cur.Tags)
	}
	return next
}
