package controller

import (
	"context"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"net/http"
	"sort"
	"strings"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/deis/dataplane/pkg/keys"
	"github.com/deis/dataplane/router/certs"
)

type certRecord struct {
	Owner   string    `json:"owner"`
	Created time.Time `json:"created"`
	cn      string
	id      int64
	expires time.Time
}

func (s *Server) certs(ctx context.Context) ([]*certRecord, error) {
	resp, err := s.etcd.Txn(ctx).Then(clientv3.OpGet(keys.ControllerCertsPrefix, clientv3.WithPrefix()), clientv3.OpGet(keys.CertsPrefix, clientv3.WithPrefix())).Commit()
	if err != nil {
		return nil, fmt.Errorf("list certificates: %w", err)
	}
	pems := map[string][]byte{}
	for _, kv := range resp.Responses[1].GetResponseRange().Kvs {
		if d, part, err := keys.ParseCert(string(kv.Key)); err == nil && part == "cert" {
			pems[d] = kv.Value
		}
	}
	var out []*certRecord
	for _, kv := range resp.Responses[0].GetResponseRange().Kvs {
		var c certRecord
		if json.Unmarshal(kv.Value, &c) != nil {
			continue
		}
		c.cn, c.id = strings.TrimPrefix(string(kv.Key), keys.ControllerCertsPrefix), kv.CreateRevision
		if b, _ := pem.Decode(pems[c.cn]); b != nil {
			if x, err := x509.ParseCertificate(b.Bytes); err == nil {
				c.expires = x.NotAfter
			}
		}
		out = append(out, &c)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].cn < out[j].cn })
	return out, nil
}

func certView(c *certRecord) map[string]any {
	return map[string]any{"common_name": c.cn, "expires": date(c.expires), "owner": c.Owner, "id": c.id, "created": date(c.Created), "updated": date(c.Created)}
}

func (q *request) listCerts() {
	all, err := q.s.certs(q.ctx)
	if err != nil {
		q.fail(err)
		return
	}
	var items []any
	for _, c := range all {
		if q.user.Admin || c.Owner == q.user.Username {
			items = append(items, certView(c))
		}
	}
	q.page(items)
}

func (q *request) certInfo() {
	c, ok := q.cert()
	if ok {
		q.json(http.StatusOK, certView(c))
	}
}

// cert finds {cn} among the caller's certificates (all, for admins).
func (q *request) cert() (*certRecord, bool) {
	all, err := q.s.certs(q.ctx)
	if err != nil {
		q.fail(err)
		return nil, false
	}
	for _, c := range all {
		if c.cn == q.params["cn"] {
			if !q.user.Admin && c.Owner != q.user.Username {
				q.fail(errForbidden)
				return nil, false
			}
			return c, true
		}
	}
	q.fail(errNotFound)
	return nil, false
}

// addCert validates a PEM chain and key (they must match; the common name
// comes from the certificate unless given; wildcards are refused as v1
// did) and writes /deis/certs/<cn>/{cert,key}, which the router serves.
func (q *request) addCert() {
	var in struct {
		Certificate string `json:"certificate"`
		Key         string `json:"key"`
		CommonName  string `json:"common_name"`
	}
	if err := q.decode(&in); err != nil {
		q.fail(err)
		return
	}
	// One pair, or an ECDSA and an RSA one for the same names (the router
	// serves each client the one it can verify, ECDSA first).
	pairs, err := certs.Parse(in.Certificate, in.Key)
	if err != nil {
		// Never echo the key: name the problem only.
		q.fail(fieldErr("certificate", "The certificate and key are not a valid PEM pair: "+strings.SplitN(err.Error(), ": tls:", 2)[0]))
		return
	}
	leaf := pairs[0].Leaf
	cn := strings.ToLower(strings.TrimSpace(in.CommonName))
	if cn == "" {
		cn = strings.ToLower(leaf.Subject.CommonName)
		if cn == "" && len(leaf.DNSNames) > 0 {
			cn = strings.ToLower(leaf.DNSNames[0])
		}
	}
	if strings.Contains(cn, "*") {
		q.fail(fieldErr("common_name", "Wildcard certificates are not supported: add one certificate per name"))
		return
	}
	if _, err := validDomain(cn); err != nil {
		q.fail(fieldErr("common_name", fmt.Sprintf("%q is not a host name", cn)))
		return
	}
	if leaf.VerifyHostname(cn) != nil {
		q.fail(fieldErr("common_name", fmt.Sprintf("The certificate is not valid for %s", cn)))
		return
	}
	if time.Now().After(leaf.NotAfter) {
		q.fail(fieldErr("certificate", "The certificate expired on "+date(leaf.NotAfter)))
		return
	}
	rec, _ := json.Marshal(certRecord{Owner: q.user.Username, Created: q.s.now().UTC()})
	resp, err := q.s.etcd.Txn(q.ctx).If(clientv3.Compare(clientv3.CreateRevision(keys.ControllerCert(cn)), "=", 0)).
		Then(clientv3.OpPut(keys.ControllerCert(cn), string(rec)), clientv3.OpPut(keys.CertPEM(cn), in.Certificate), clientv3.OpPut(keys.KeyPEM(cn), in.Key)).
		Commit()
	if err != nil {
		q.fail(err)
		return
	}
	if !resp.Succeeded {
		q.fail(fieldErr("common_name", "Certificate with this common name already exists."))
		return
	}
	q.json(http.StatusCreated, certView(&certRecord{Owner: q.user.Username, Created: q.s.now().UTC(), cn: cn, id: resp.Header.Revision, expires: leaf.NotAfter}))
}

func (q *request) removeCert() {
	c, ok := q.cert()
	if !ok {
		return
	}
	_, err := q.s.etcd.Txn(q.ctx).Then(clientv3.OpDelete(keys.ControllerCert(c.cn)), clientv3.OpDelete(keys.CertPEM(c.cn)), clientv3.OpDelete(keys.KeyPEM(c.cn))).Commit()
	if err != nil {
		q.fail(err)
		return
	}
	q.noContent()
}
