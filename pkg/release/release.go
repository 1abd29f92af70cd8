// Package release is an app's release history in etcd: the records at
// /deis/apps/<app>/releases/v<N>, the current pointer /deis/apps/<app>/release,
// the desired scale, and the one way every writer (builder, controller)
// adds a release.
//
// Numbering follows ../shared/CONTROL-PLANE.md "Releases": the next version is
// max(existing v<N>) + 1, never current + 1, so a failed release that was
// moved back from keeps its number and is never reused.
package release

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/deis/dataplane/pkg/keys"
)

// Release is /deis/apps/<app>/releases/v<N>. Memory, CPU and tags belong to
// the release (as Deis v1 kept them in its config), so changing them makes a
// new release.
type Release struct {
	Version  int               `json:"version"`
	Image    string            `json:"image"`
	Procfile map[string]string `json:"procfile"`
	Config   map[string]string `json:"config"`
	Memory   map[string]string `json:"memory,omitempty"` // type → "512M"
	CPU      map[string]int    `json:"cpu,omitempty"`    // type → shares 0..1024
	Tags     map[string]string `json:"tags,omitempty"`   // placement constraints k=v
	SHA      string            `json:"sha"`
	User     string            `json:"user"`
	Created  time.Time         `json:"created"`
	Summary  string            `json:"summary"`
}

// Parse decodes a release record.
func Parse(data []byte) (*Release, error) {
	var r Release
	if err := json.Unmarshal(data, &r); err != nil {
		return nil, fmt.Errorf("release record: %w", err)
	}
	if r.Version < 1 {
		return nil, fmt.Errorf("release record: version %d is not positive", r.Version)
	}
	return &r, nil
}

// Types returns the release's process types, sorted.
func (r *Release) Types() []string {
	out := make([]string, 0, len(r.Procfile))
	for t := range r.Procfile {
		out = append(out, t)
	}
	sort.Strings(out)
	return out
}

// DefaultScale is what an app with no scale key runs once it has an image:
// web=1 when the Procfile has web, else cmd=1 (a Dockerfile app), else nothing.
func (r *Release) DefaultScale() Scale {
	if _, ok := r.Procfile[keys.TypeWeb]; ok {
		return Scale{keys.TypeWeb: 1}
	}
	if _, ok := r.Procfile[keys.TypeCmd]; ok {
		return Scale{keys.TypeCmd: 1}
	}
	return Scale{}
}

// Scale is /deis/apps/<app>/scale: desired count per process type.
type Scale map[string]int

// ParseScale decodes a scale value; counts must be between 0 and MaxScale.
func ParseScale(data []byte) (Scale, error) {
	var s Scale
	if err := json.Unmarshal(data, &s); err != nil {
		return nil, fmt.Errorf("scale %q: %w", clip(string(data)), err)
	}
	for t, n := range s {
		if n < 0 || n > MaxScale {
			return nil, fmt.Errorf("scale %q: %s=%d is not between 0 and %d", clip(string(data)), t, n, MaxScale)
		}
		if _, err := keys.ParseContainerName("a_v1." + t + ".1"); err != nil {
			return nil, fmt.Errorf("scale %q: process type %q is not valid", clip(string(data)), t)
		}
	}
	return s, nil
}

// MaxScale bounds one process type's count, so a typo cannot ask for a
// million containers.
const MaxScale = 1000

// String is the v1 summary form: "web=3 worker=1", types sorted.
func (s Scale) String() string {
	ts := make([]string, 0, len(s))
	for t := range s {
		ts = append(ts, t)
	}
	sort.Strings(ts)
	var b strings.Builder
	for i, t := range ts {
		if i > 0 {
			b.WriteByte(' ')
		}
		fmt.Fprintf(&b, "%s=%d", t, s[t])
	}
	return b.String()
}

// ErrConflict is returned by Write when the app kept changing under it.
var ErrConflict = errors.New("the app kept changing; gave up after 20 attempts")

// Write adds a release to app: it reads the current release (nil when there
// is none) and the live config, calls build to make the new record, and in
// one transaction writes it as v<max+1> and points release at it. build
// must not keep the record it is given. The transaction succeeds only if
// nobody released meanwhile; otherwise it reads again (at most 20 times).
// build may return an error to stop (it is returned as is).
func Write(ctx context.Context, cli *clientv3.Client, app string, build func(current *Release, config map[string]string) (*Release, error)) (*Release, error) {
	rel, _, err := WriteWith(ctx, cli, app, func(cur *Release, config map[string]string) (*Release, []clientv3.Op, error) {
		r, err := build(cur, config)
		return r, nil, err
	})
	return rel, err
}

// WriteWith is Write where build may also return operations committed in
// the same transaction (the controller rewrites /deis/config/<app>/ with
// the release, so the live config always matches it). It also returns the
// revision the release landed at: a deploy record with a rev at least this
// covers it.
func WriteWith(ctx context.Context, cli *clientv3.Client, app string, build func(current *Release, config map[string]string) (*Release, []clientv3.Op, error)) (*Release, int64, error) {
	cur := keys.AppCurrentRelease(app)
	for attempt := 0; attempt < 20; attempt++ {
		resp, err := cli.Txn(ctx).Then(
			clientv3.OpGet(cur),
			clientv3.OpGet(keys.AppReleasesPrefix(app), clientv3.WithPrefix(), clientv3.WithKeysOnly()),
			clientv3.OpGet(keys.ConfigPrefixFor(app), clientv3.WithPrefix()),
		).Commit()
		if err != nil {
			return nil, 0, fmt.Errorf("read the releases of %s: %w", app, err)
		}
		var curRev int64
		var current *Release
		if kvs := resp.Responses[0].GetResponseRange().Kvs; len(kvs) > 0 {
			curRev = kvs[0].ModRevision
			n, err := strconv.Atoi(strings.TrimSpace(string(kvs[0].Value)))
			if err != nil || n < 0 {
				return nil, 0, fmt.Errorf("%s holds %q, not a release number", cur, kvs[0].Value)
			}
			if n > 0 {
				if current, err = Get(ctx, cli, app, n); err != nil {
					return nil, 0, err
				}
			}
		}
		maxV := 0
		for _, kv := range resp.Responses[1].GetResponseRange().Kvs {
			if v, ok := VersionOf(app, string(kv.Key)); ok && v > maxV {
				maxV = v
			}
		}
		config := map[string]string{}
		for _, kv := range resp.Responses[2].GetResponseRange().Kvs {
			name := strings.TrimPrefix(string(kv.Key), keys.ConfigPrefixFor(app))
			config[strings.ToUpper(name)] = string(kv.Value)
		}
		rel, extra, err := build(current, config)
		if err != nil {
			return nil, 0, err
		}
		rel.Version = maxV + 1
		if rel.Created.IsZero() {
			rel.Created = time.Now().UTC()
		}
		data, err := json.Marshal(rel)
		if err != nil {
			return nil, 0, fmt.Errorf("encode release: %w", err)
		}
		next := keys.AppRelease(app, rel.Version)
		cmp := []clientv3.Cmp{clientv3.Compare(clientv3.CreateRevision(next), "=", 0)}
		if curRev == 0 {
			cmp = append(cmp, clientv3.Compare(clientv3.CreateRevision(cur), "=", 0))
		} else {
			cmp = append(cmp, clientv3.Compare(clientv3.ModRevision(cur), "=", curRev))
		}
		ops := append([]clientv3.Op{clientv3.OpPut(next, string(data)), clientv3.OpPut(cur, strconv.Itoa(rel.Version))}, extra...)
		tx, err := cli.Txn(ctx).If(cmp...).Then(ops...).Commit()
		if err != nil {
			return nil, 0, fmt.Errorf("write release v%d of %s: %w", rel.Version, app, err)
		}
		if tx.Succeeded {
			return rel, tx.Header.Revision, nil
		}
	}
	return nil, 0, fmt.Errorf("write a release of %s: %w", app, ErrConflict)
}

// Get reads release v<n> of app.
func Get(ctx context.Context, cli *clientv3.Client, app string, n int) (*Release, error) {
	resp, err := cli.Get(ctx, keys.AppRelease(app, n))
	if err != nil {
		return nil, fmt.Errorf("read release v%d of %s: %w", n, app, err)
	}
	if len(resp.Kvs) == 0 {
		return nil, fmt.Errorf("release v%d of %s does not exist", n, app)
	}
	r, err := Parse(resp.Kvs[0].Value)
	if err != nil {
		return nil, fmt.Errorf("release v%d of %s: %w", n, app, err)
	}
	return r, nil
}

// VersionOf parses N from /deis/apps/<app>/releases/v<N>.
func VersionOf(app, key string) (int, bool) {
	s, ok := strings.CutPrefix(key, keys.AppReleasesPrefix(app)+"v")
	if !ok {
		return 0, false
	}
	n, err := strconv.Atoi(s)
	return n, err == nil && n > 0
}

// ParseMemory converts a v1 memory limit ("512M", "1GB", "256MB", "1024")
// to bytes. v1 accepted ^[0-9]+(MB|KB|GB|[BKMG])$ (DEIS-V1-API.md); a bare
// number is bytes.
func ParseMemory(s string) (int64, error) {
	u := strings.ToUpper(strings.TrimSpace(s))
	mult := int64(1)
	for _, sfx := range []struct {
		s string
		m int64
	}{{"GB", 1 << 30}, {"MB", 1 << 20}, {"KB", 1 << 10}, {"G", 1 << 30}, {"M", 1 << 20}, {"K", 1 << 10}, {"B", 1}} {
		if strings.HasSuffix(u, sfx.s) {
			u, mult = strings.TrimSuffix(u, sfx.s), sfx.m
			break
		}
	}
	n, err := strconv.ParseInt(u, 10, 64)
	if err != nil || n <= 0 || n > (1<<50)/mult {
		return 0, fmt.Errorf("memory limit %q: want a positive number with an optional unit B, K, M, G (KB, MB, GB)", clip(s))
	}
	return n * mult, nil
}

func clip(s string) string {
	if len(s) > 80 {
		return s[:80] + "..."
	}
	return s
}
