package controller

import (
	"context"
	"fmt"
	"net/http"
	"sort"
	"strings"

	clientv3 "go.etcd.io/etcd/client/v3"
	gossh "golang.org/x/crypto/ssh"

	"github.com/deis/dataplane/builder"
	"github.com/deis/dataplane/pkg/keys"
)

type sshKey struct {
	id, owner, public, fingerprint string
	rev                            int64
}

// keysOf lists SSH keys: the user's own, or every user's with owner "".
func (s *Server) keysOf(ctx context.Context, owner string) ([]sshKey, error) {
	prefix := keys.BuilderUsersPrefix
	if owner != "" {
		prefix = keys.BuilderUserPrefix(owner)
	}
	resp, err := s.etcd.Get(ctx, prefix, clientv3.WithPrefix())
	if err != nil {
		return nil, fmt.Errorf("list keys: %w", err)
	}
	var out []sshKey
	for _, kv := range resp.Kvs {
		rest := strings.TrimPrefix(string(kv.Key), keys.BuilderUsersPrefix)
		user, fp, _ := strings.Cut(rest, "/")
		line := strings.TrimSpace(string(kv.Value))
		f := strings.Fields(line)
		id := fp
		if len(f) >= 3 {
			id = strings.Join(f[2:], " ")
		}
		out = append(out, sshKey{id: id, owner: user, public: line, fingerprint: fp, rev: kv.CreateRevision})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].id < out[j].id })
	return out, nil
}

func keyView(k sshKey, created string) map[string]any {
	return map[string]any{"id": k.id, "owner": k.owner, "public": k.public, "fingerprint": k.fingerprint, "created": created, "updated": created, "uuid": uuidOf(keys.BuilderUserKey(k.owner, k.fingerprint))}
}

func (q *request) listKeys() {
	ks, err := q.s.keysOf(q.ctx, q.user.Username)
	if err != nil {
		q.fail(err)
		return
	}
	var items []any
	for _, k := range ks {
		items = append(items, keyView(k, date(q.user.DateJoined)))
	}
	q.page(items)
}

func (q *request) findKey() (sshKey, bool) {
	ks, err := q.s.keysOf(q.ctx, q.user.Username)
	if err != nil {
		q.fail(err)
		return sshKey{}, false
	}
	for _, k := range ks {
		if k.id == q.params["id"] {
			return k, true
		}
	}
	q.fail(errNotFound)
	return sshKey{}, false
}

func (q *request) keyInfo() {
	if k, ok := q.findKey(); ok {
		q.json(http.StatusOK, keyView(k, date(q.user.DateJoined)))
	}
}

// addKey stores an SSH public key for the builder: the line's comment is
// its id (unique per user), and a fingerprint belongs to one user only (the
// builder knows the user by the key).
func (q *request) addKey() {
	var in struct {
		ID     string `json:"id"`
		Public string `json:"public"`
	}
	if err := q.decode(&in); err != nil {
		q.fail(err)
		return
	}
	pub, comment, _, rest, err := gossh.ParseAuthorizedKey([]byte(in.Public))
	if err != nil || strings.TrimSpace(string(rest)) != "" {
		q.fail(fieldErr("public", "Enter an OpenSSH public key: <type> <base64> [comment]"))
		return
	}
	id := strings.TrimSpace(in.ID)
	if id == "" {
		id = comment
	}
	if id == "" || strings.ContainsAny(id, "\n/") || len(id) > 128 {
		q.fail(fieldErr("id", "Give the key an id (its comment), without slashes"))
		return
	}
	fp := builder.Fingerprint(pub)
	all, err := q.s.keysOf(q.ctx, "")
	if err != nil {
		q.fail(err)
		return
	}
	for _, k := range all {
		if k.fingerprint == fp {
			q.fail(fieldErr("public", "This key is already registered"+map[bool]string{true: " (as " + k.id + ")", false: " by another user"}[k.owner == q.user.Username]))
			return
		}
		if k.owner == q.user.Username && k.id == id {
			q.fail(fieldErr("id", "You already have a key with this id"))
			return
		}
	}
	line := strings.TrimSpace(string(gossh.MarshalAuthorizedKey(pub))) + " " + id
	resp, err := q.s.etcd.Txn(q.ctx).
		If(clientv3.Compare(clientv3.CreateRevision(keys.BuilderUserKey(q.user.Username, fp)), "=", 0)).
		Then(clientv3.OpPut(keys.BuilderUserKey(q.user.Username, fp), line)).Commit()
	if err != nil {
		q.fail(err)
		return
	}
	if !resp.Succeeded {
		q.fail(fieldErr("public", "This key is already registered"))
		return
	}
	q.json(http.StatusCreated, keyView(sshKey{id: id, owner: q.user.Username, public: line, fingerprint: fp, rev: resp.Header.Revision}, date(q.s.now())))
}

func (q *request) removeKey() {
	k, ok := q.findKey()
	if !ok {
		return
	}
	if _, err := q.s.etcd.Delete(q.ctx, keys.BuilderUserKey(k.owner, k.fingerprint)); err != nil {
		q.fail(err)
		return
	}
	q.noContent()
}
