package controller

import (
	"context"
	"fmt"
	"net/http"
	"regexp"
	"sort"
	"strings"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/deis/dataplane/pkg/keys"
)

type domain struct {
	domain string
	rev    int64
}

func (s *Server) domainsOf(ctx context.Context, app string) ([]domain, error) {
	resp, err := s.etcd.Get(ctx, keys.DomainsPrefix, clientv3.WithPrefix())
	if err != nil {
		return nil, fmt.Errorf("list domains: %w", err)
	}
	var out []domain
	for _, kv := range resp.Kvs {
		if string(kv.Value) == app {
			out = append(out, domain{strings.TrimPrefix(string(kv.Key), keys.DomainsPrefix), kv.CreateRevision})
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].domain < out[j].domain })
	return out, nil
}

var domainLabelRE = regexp.MustCompile(`^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$`)

// validDomain applies v1's rules: at most 255 characters, one trailing dot
// stripped, no wildcard, labels of letters, digits and inner dashes (no
// "--"), not all digits.
func validDomain(d string) (string, error) {
	d = strings.ToLower(strings.TrimSuffix(strings.TrimSpace(d), "."))
	switch {
	case d == "" || len(d) > 255:
		return "", fieldErr("domain", "Hostname must be 1 to 255 characters.")
	case strings.Contains(d, "*"):
		return "", fieldErr("domain", "Adding a wildcard subdomain is currently not supported.")
	case strings.Trim(d, "0123456789.") == "":
		return "", fieldErr("domain", "Hostname does not look valid: it is all digits.")
	}
	for _, l := range strings.Split(d, ".") {
		if !domainLabelRE.MatchString(l) || strings.Contains(l, "--") {
			return "", fieldErr("domain", fmt.Sprintf("Hostname does not look valid: label %q.", l))
		}
	}
	return d, nil
}

func (q *request) domainView(a *app, d domain) map[string]any {
	return map[string]any{"app": a.name, "domain": d.domain, "owner": a.owner, "created": date(a.created), "updated": date(a.created), "uuid": uuidOf(keys.Domain(d.domain))}
}

func (q *request) listDomains() {
	a, ok := q.appFor(accessUse)
	if !ok {
		return
	}
	ds, err := q.s.domainsOf(q.ctx, a.name)
	if err != nil {
		q.fail(err)
		return
	}
	var items []any
	for _, d := range ds {
		items = append(items, q.domainView(a, d))
	}
	q.page(items)
}

func (q *request) addDomain() {
	a, ok := q.appFor(accessUse)
	if !ok {
		return
	}
	var in struct {
		Domain string `json:"domain"`
	}
	if err := q.decode(&in); err != nil {
		q.fail(err)
		return
	}
	d, err := validDomain(in.Domain)
	if err != nil {
		q.fail(err)
		return
	}
	if pd := q.s.platformDomain(q.ctx); pd != "" && (d == pd || strings.HasSuffix(d, "."+pd)) {
		q.fail(fieldErr("domain", "Names under the platform domain "+pd+" are the platform's."))
		return
	}
	resp, err := q.s.etcd.Txn(q.ctx).If(clientv3.Compare(clientv3.CreateRevision(keys.Domain(d)), "=", 0)).
		Then(clientv3.OpPut(keys.Domain(d), a.name)).Else(clientv3.OpGet(keys.Domain(d))).Commit()
	if err != nil {
		q.fail(err)
		return
	}
	if !resp.Succeeded {
		q.fail(fieldErr("domain", "Domain is already in use by another app"))
		return
	}
	q.s.event(a.name, fmt.Sprintf("%s added domain %s", q.user.Username, d))
	q.json(http.StatusCreated, q.domainView(a, domain{d, resp.Header.Revision}))
}

func (q *request) removeDomain() {
	a, ok := q.appFor(accessUse)
	if !ok {
		return
	}
	d := strings.ToLower(strings.TrimSuffix(q.params["domain"], "."))
	resp, err := q.s.etcd.Txn(q.ctx).If(clientv3.Compare(clientv3.Value(keys.Domain(d)), "=", a.name)).
		Then(clientv3.OpDelete(keys.Domain(d))).Commit()
	if err != nil {
		q.fail(err)
		return
	}
	if !resp.Succeeded {
		q.fail(errNotFound)
		return
	}
	q.s.event(a.name, fmt.Sprintf("%s removed domain %s", q.user.Username, d))
	q.noContent()
}
