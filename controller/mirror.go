package controller

import (
	"context"
	"encoding/json"
	"strings"
	"time"

	"github.com/deis/dataplane/pkg/etcdwatch"
	"github.com/deis/dataplane/pkg/keys"
)

// Run mirrors what nearly every call reads and rarely changes (tokens,
// users, admins, the platform domain) from etcd until ctx ends, so that a
// call costs one etcd read for its app rather than four. A token issued a
// moment ago and not yet mirrored is read from etcd; a revoked one stops
// working as soon as the watch delivers the deletion (milliseconds).
// Without Run, every lookup reads etcd.
func (s *Server) Run(ctx context.Context) error {
	w := etcdwatch.New(s.etcd, []string{keys.TokensPrefix, keys.UsersPrefix, keys.AdminsPrefix, keys.PlatformDomain}, etcdwatch.Options{Logger: s.log})
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
