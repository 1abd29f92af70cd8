package controller

import (
	"context"
	"encoding/json"
	"sort"
	"strings"
	"time"

	"go.etcd.io/etcd/api/v3/mvccpb"

	"github.com/deis/dataplane/pkg/etcdwatch"
	"github.com/deis/dataplane/pkg/keys"
)

// Run mirrors what nearly every call reads and rarely changes (tokens,
// users, admins, the platform domain, and the apps for lists) from etcd
// until ctx ends, so that a call costs one etcd read for its app rather
// than four, and a page of a 1,000-app list none. A token issued a
// moment ago and not yet mirrored is read from etcd; a revoked one stops
// working as soon as the watch delivers the deletion (milliseconds).
// Without Run, every lookup reads etcd.
func (s *Server) Run(ctx context.Context) error {
	w := etcdwatch.New(s.etcd, []string{keys.TokensPrefix, keys.UsersPrefix, keys.AdminsPrefix, keys.PlatformDomain, keys.AppsPrefix}, etcdwatch.Options{Logger: s.log})
	s.mirror.Store(w)
	defer s.mirror.Store(nil)
	return w.Run(ctx)
}

func (s *Server) snapshot() *etcdwatch.Snapshot {
	if w := s.mirror.Load(); w != nil && w.Err() == nil {
		return w.Snapshot()
	}
	return nil
}

// mirroredUser resolves a token hash from the mirror; ok is false when the
// mirror cannot answer (then etcd is asked).
func (s *Server) mirroredUser(hash string) (*User, bool) {
	snap := s.snapshot()
	if snap == nil {
		return nil, false
	}
	name, ok := snap.Get(keys.Token(hash))
	if !ok {
		return nil, false
	}
	raw, ok := snap.Get(keys.User(name))
	if !ok {
		return nil, false
	}
	var u User
	if json.Unmarshal([]byte(raw), &u) != nil {
		return nil, false
	}
	admin, _ := snap.Get(keys.Admin(name))
	u.Username, u.Admin = name, strings.TrimSpace(admin) == "true"
	return &u, true
}

// waitMirror waits (at most a second) until the mirror has seen revision
// rev, so that a token or admin right this replica just revoked is refused
// by its very next call. Other replicas follow within their watch's delay.
func (s *Server) waitMirror(ctx context.Context, rev int64) {
	w := s.mirror.Load()
	if w == nil {
		return
	}
	deadline := time.Now().Add(time.Second)
	for time.Now().Before(deadline) && ctx.Err() == nil {
		if snap := w.Snapshot(); snap != nil && snap.Revision >= rev {
			return
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// appIndex groups a snapshot's /deis/apps/ keys by app, built once per
// snapshot: lists read it instead of etcd.
type appIndex struct {
	rev  int64
	apps map[string][]*mvccpb.KeyValue
	// names are the apps with an owner, sorted.
	names []string
}

func (s *Server) appsIndex() *appIndex {
	snap := s.snapshot()
	if snap == nil {
		return nil
	}
	if idx := s.index.Load(); idx != nil && idx.rev == snap.Revision {
		return idx
	}
	idx := &appIndex{rev: snap.Revision, apps: map[string][]*mvccpb.KeyValue{}}
	for k, v := range snap.KVs {
		name, rest, err := keys.ParseAppKey(k)
		if err != nil {
			continue
		}
		idx.apps[name] = append(idx.apps[name], &mvccpb.KeyValue{Key: []byte(k), Value: []byte(v)})
		if rest == "owner" {
			idx.names = append(idx.names, name)
		}
	}
	sort.Strings(idx.names)
	s.index.Store(idx)
	return idx
}
