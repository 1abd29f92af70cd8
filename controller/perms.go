package controller

import (
	"fmt"
	"net/http"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/deis/dataplane/pkg/keys"
)

func (q *request) listPerms() {
	a, ok := q.appFor(accessUse)
	if !ok {
		return
	}
	users := a.perms
	if users == nil {
		users = []string{}
	}
	q.json(http.StatusOK, map[string]any{"users": users})
}

func (q *request) addPerm() {
	a, ok := q.appFor(accessOwner)
	if !ok {
		return
	}
	var in struct {
		Username string `json:"username"`
	}
	if err := q.decode(&in); err != nil {
		q.fail(err)
		return
	}
	u, err := q.s.getUser(q.ctx, in.Username)
	if err != nil || u == nil {
		q.fail(orNotFound(err))
		return
	}
	if u.Username == a.owner {
		q.fail(fieldErr("username", u.Username+" owns the app"))
		return
	}
	put, err := q.s.etcd.Put(q.ctx, keys.AppPerm(a.name, u.Username), "collaborator")
	if err != nil {
		q.fail(err)
		return
	}
	q.s.waitMirror(q.ctx, put.Header.Revision)
	q.s.event(a.name, fmt.Sprintf("%s added %s as a collaborator", q.user.Username, u.Username))
	q.json(http.StatusCreated, nil)
}

// removePerm: the owner or an admin, or a collaborator removing himself.
func (q *request) removePerm() {
	target := q.params["user"]
	level := accessOwner
	if target == q.user.Username {
		level = accessUse
	}
	a, ok := q.appFor(level)
	if !ok {
		return
	}
	resp, err := q.s.etcd.Txn(q.ctx).If(clientv3.Compare(clientv3.CreateRevision(keys.AppPerm(a.name, target)), ">", 0)).
		Then(clientv3.OpDelete(keys.AppPerm(a.name, target))).Commit()
	if err != nil {
		q.fail(err)
		return
	}
	if !resp.Succeeded {
		q.fail(errNotFound)
		return
	}
	q.s.waitMirror(q.ctx, resp.Header.Revision)
	q.s.event(a.name, fmt.Sprintf("%s removed %s as a collaborator", q.user.Username, target))
	q.noContent()
}
