package controller

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"regexp"
	"sort"
	"strings"
	"sync"
	"time"

	"go.etcd.io/etcd/api/v3/mvccpb"
	clientv3 "go.etcd.io/etcd/client/v3"
	"golang.org/x/crypto/bcrypt"

	"github.com/deis/dataplane/pkg/keys"
)

// User is /deis/users/<name>. The password is only ever stored as a bcrypt
// hash, and never leaves the controller.
type User struct {
	Username   string    `json:"username"`
	Password   string    `json:"password"` // bcrypt hash
	Email      string    `json:"email"`
	FirstName  string    `json:"first_name"`
	LastName   string    `json:"last_name"`
	Admin      bool      `json:"admin"` // mirrors /deis/admins/<u>, which is authoritative
	DateJoined time.Time `json:"date_joined"`
	LastLogin  time.Time `json:"last_login"`
	id         int64     // the key's create revision
}

// view is the v1 User object: never the hash.
func (u *User) view() map[string]any {
	last := any(nil)
	if !u.LastLogin.IsZero() {
		last = date(u.LastLogin)
	}
	return map[string]any{
		"id": u.id, "username": u.Username, "email": u.Email, "first_name": u.FirstName, "last_name": u.LastName,
		"is_superuser": u.Admin, "is_staff": u.Admin, "is_active": true, "last_login": last,
		"date_joined": date(u.DateJoined), "groups": []any{}, "user_permissions": []any{},
	}
}

var usernameRE = regexp.MustCompile(`^[\w.@+-]{1,150}$`)

// dummyHash is compared against for unknown users, so that a login answers
// in the same time whether the user exists or not.
var dummyHash, _ = bcrypt.GenerateFromPassword([]byte("no such user"), bcrypt.DefaultCost)

// getUser reads a user and whether it is an admin (/deis/admins/<u>).
func (s *Server) getUser(ctx context.Context, name string) (*User, error) {
	if !usernameRE.MatchString(name) {
		return nil, nil
	}
	resp, err := s.etcd.Txn(ctx).Then(clientv3.OpGet(keys.User(name)), clientv3.OpGet(keys.Admin(name))).Commit()
	if err != nil {
		return nil, fmt.Errorf("read user %s: %w", name, err)
	}
	kvs := resp.Responses[0].GetResponseRange().Kvs
	if len(kvs) == 0 {
		return nil, nil
	}
	var u User
	if err := json.Unmarshal(kvs[0].Value, &u); err != nil {
		return nil, fmt.Errorf("user record %s: %w", name, err)
	}
	u.Username, u.id = name, kvs[0].CreateRevision
	u.Admin = isTrue(resp.Responses[1].GetResponseRange().Kvs)
	return &u, nil
}

func isTrue(kvs []*mvccpb.KeyValue) bool {
	return len(kvs) > 0 && strings.TrimSpace(string(kvs[0].Value)) == "true"
}

func hashToken(t string) string {
	sum := sha256.Sum256([]byte(t))
	return hex.EncodeToString(sum[:])
}

// authenticate resolves "Authorization: token <t>" to its user. Tokens are
// stored only as SHA-256 hashes; the lookup by hash is a constant-time
// comparison of what was found with what was asked.
func (s *Server) authenticate(ctx context.Context, r *http.Request) (*User, error) {
	h := r.Header.Get("Authorization")
	scheme, tok, ok := strings.Cut(h, " ")
	if h == "" || !ok || !strings.EqualFold(scheme, "token") || strings.TrimSpace(tok) == "" {
		return nil, errNoToken
	}
	hash := hashToken(strings.TrimSpace(tok))
	if u, ok := s.mirroredUser(hash); ok {
		return u, nil
	}
	resp, err := s.etcd.Get(ctx, keys.Token(hash))
	if err != nil {
		return nil, fmt.Errorf("look up the token: %w", err)
	}
	if len(resp.Kvs) == 0 || subtle.ConstantTimeCompare(resp.Kvs[0].Key, []byte(keys.Token(hash))) != 1 {
		return nil, errBadToken
	}
	u, err := s.getUser(ctx, string(resp.Kvs[0].Value))
	if err != nil {
		return nil, err
	}
	if u == nil {
		return nil, errBadToken
	}
	return u, nil
}

// newToken issues a token for user: random, returned once, stored hashed.
func (s *Server) newToken(ctx context.Context, user string) (string, error) {
	var b [24]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", err
	}
	tok := hex.EncodeToString(b[:])
	if _, err := s.etcd.Put(ctx, keys.Token(hashToken(tok)), user); err != nil {
		return "", fmt.Errorf("store the token: %w", err)
	}
	return tok, nil
}

// revokeTokens deletes every token of user.
func (s *Server) revokeTokens(ctx context.Context, user string) error {
	resp, err := s.etcd.Get(ctx, keys.TokensPrefix, clientv3.WithPrefix())
	if err != nil {
		return fmt.Errorf("list tokens: %w", err)
	}
	rev := resp.Header.Revision
	for _, kv := range resp.Kvs {
		if string(kv.Value) == user {
			d, err := s.etcd.Delete(ctx, string(kv.Key))
			if err != nil {
				return fmt.Errorf("revoke a token: %w", err)
			}
			rev = d.Header.Revision
		}
	}
	s.waitMirror(ctx, rev)
	return nil
}

func (q *request) register() {
	var in struct {
		Username  string `json:"username"`
		Password  string `json:"password"`
		Email     string `json:"email"`
		FirstName string `json:"first_name"`
		LastName  string `json:"last_name"`
	}
	if err := q.decode(&in); err != nil {
		q.fail(err)
		return
	}
	s := q.s
	mode := "enabled"
	if resp, err := s.etcd.Get(q.ctx, keys.ControllerRegistrationMode); err == nil && len(resp.Kvs) > 0 {
		mode = strings.TrimSpace(string(resp.Kvs[0].Value))
	}
	switch mode {
	case "disabled":
		q.fail(detailErr(http.StatusForbidden, "Registration is disabled"))
		return
	case "admin_only":
		u, err := s.authenticate(q.ctx, q.r)
		if err != nil || u == nil || !u.Admin {
			q.fail(detailErr(http.StatusForbidden, "Registration is restricted to administrators: log in as an admin first"))
			return
		}
	}
	switch {
	case !usernameRE.MatchString(in.Username):
		q.fail(fieldErr("username", "Enter a valid username: letters, digits and @ . + - _ only, at most 150 characters."))
		return
	case len(in.Password) < 1:
		q.fail(fieldErr("password", "This field may not be blank."))
		return
	case len(in.Password) > 72:
		q.fail(fieldErr("password", "Ensure this field has no more than 72 characters."))
		return
	case in.Email != "" && !strings.Contains(in.Email, "@"):
		q.fail(fieldErr("email", "Enter a valid email address."))
		return
	}
	hash, err := bcrypt.GenerateFromPassword([]byte(in.Password), bcrypt.DefaultCost)
	if err != nil {
		q.fail(err)
		return
	}
	now := s.now().UTC()
	u := User{Username: in.Username, Password: string(hash), Email: in.Email, FirstName: in.FirstName, LastName: in.LastName, DateJoined: now}
	plain, _ := json.Marshal(u)
	u.Admin = true
	admin, _ := json.Marshal(u)
	// The first user becomes admin, decided in the registration txn: the
	// admin flag is created only if nobody exists under /deis/users/.
	first := clientv3.Compare(clientv3.CreateRevision(keys.UsersPrefix), "=", 0).WithPrefix()
	resp, err := s.etcd.Txn(q.ctx).
		If(clientv3.Compare(clientv3.CreateRevision(keys.User(in.Username)), "=", 0)).
		Then(clientv3.OpTxn([]clientv3.Cmp{first},
			[]clientv3.Op{clientv3.OpPut(keys.User(in.Username), string(admin)), clientv3.OpPut(keys.Admin(in.Username), "true")},
			[]clientv3.Op{clientv3.OpPut(keys.User(in.Username), string(plain))})).
		Commit()
	if err != nil {
		q.fail(fmt.Errorf("register %s: %w", in.Username, err))
		return
	}
	if !resp.Succeeded {
		q.fail(fieldErr("username", "A user with that username already exists."))
		return
	}
	created, err := s.getUser(q.ctx, in.Username)
	if err != nil || created == nil {
		q.fail(fmt.Errorf("read back user %s: %v", in.Username, err))
		return
	}
	s.log.Info("user registered", "user", in.Username, "admin", created.Admin)
	q.json(http.StatusCreated, created.view())
}

func (q *request) login() {
	var in struct {
		Username string `json:"username"`
		Password string `json:"password"`
	}
	if err := q.decode(&in); err != nil {
		q.fail(err)
		return
	}
	s := q.s
	client := clientIP(q.r)
	// Slowed down per user and per client address after repeated failures.
	if wait := s.limit.delay(in.Username, client); wait > 0 {
		select {
		case <-time.After(wait):
		case <-q.ctx.Done():
			return
		}
	}
	u, err := s.getUser(q.ctx, in.Username)
	if err != nil {
		q.fail(err)
		return
	}
	hash := dummyHash // the same work for a user that does not exist
	if u != nil {
		hash = []byte(u.Password)
	}
	if bcrypt.CompareHashAndPassword(hash, []byte(in.Password)) != nil || u == nil {
		s.limit.failed(in.Username, client)
		s.m.logins.WithLabelValues("refused").Inc()
		q.fail(detailErr(http.StatusBadRequest, "Unable to log in with provided credentials."))
		return
	}
	s.limit.succeeded(in.Username, client)
	s.m.logins.WithLabelValues("ok").Inc()
	tok, err := s.newToken(q.ctx, u.Username)
	if err != nil {
		q.fail(err)
		return
	}
	u.LastLogin = s.now().UTC()
	if data, err := json.Marshal(u); err == nil {
		_, _ = s.etcd.Put(q.ctx, keys.User(u.Username), string(data))
	}
	q.json(http.StatusOK, map[string]string{"token": tok})
}

func (q *request) passwd() {
	var in struct {
		Username    string `json:"username"`
		Password    string `json:"password"`
		NewPassword string `json:"new_password"`
	}
	if err := q.decode(&in); err != nil {
		q.fail(err)
		return
	}
	target := q.user
	if in.Username != "" && in.Username != q.user.Username {
		u, ok := q.otherUser(in.Username)
		if !ok {
			return
		}
		target = u
	} else if bcrypt.CompareHashAndPassword([]byte(q.user.Password), []byte(in.Password)) != nil {
		q.fail(detailErr(http.StatusBadRequest, "Current password does not match"))
		return
	}
	if in.NewPassword == "" || len(in.NewPassword) > 72 {
		q.fail(fieldErr("new_password", "Enter a new password of 1 to 72 characters."))
		return
	}
	hash, err := bcrypt.GenerateFromPassword([]byte(in.NewPassword), bcrypt.DefaultCost)
	if err != nil {
		q.fail(err)
		return
	}
	target.Password = string(hash)
	data, _ := json.Marshal(target)
	if _, err := q.s.etcd.Put(q.ctx, keys.User(target.Username), string(data)); err != nil {
		q.fail(err)
		return
	}
	q.json(http.StatusOK, map[string]string{"status": "password set"})
}

func (q *request) cancel() {
	var in struct {
		Username string `json:"username"`
	}
	if err := q.decode(&in); err != nil {
		q.fail(err)
		return
	}
	target := q.user.Username
	if in.Username != "" && in.Username != target {
		u, ok := q.otherUser(in.Username)
		if !ok {
			return
		}
		target = u.Username
	}
	apps, err := q.s.appsOwnedBy(q.ctx, target)
	if err != nil {
		q.fail(err)
		return
	}
	if len(apps) > 0 {
		q.fail(detailErr(http.StatusConflict, fmt.Sprintf("%s still owns %s: destroy or transfer them first", target, strings.Join(apps, ", "))))
		return
	}
	if err := q.s.revokeTokens(q.ctx, target); err != nil {
		q.fail(err)
		return
	}
	ctx := q.ctx
	_, err = q.s.etcd.Txn(ctx).Then(
		clientv3.OpDelete(keys.User(target)), clientv3.OpDelete(keys.Admin(target)),
		clientv3.OpDelete(keys.BuilderUserPrefix(target), clientv3.WithPrefix())).Commit()
	if err != nil {
		q.fail(err)
		return
	}
	q.s.log.Info("user cancelled", "user", target, "by", q.user.Username)
	q.noContent()
}

func (q *request) regenerate() {
	var in struct {
		Username string `json:"username"`
		All      bool   `json:"all"`
	}
	if err := q.decode(&in); err != nil {
		q.fail(err)
		return
	}
	s := q.s
	switch {
	case in.All:
		if !q.user.Admin {
			q.fail(errForbidden)
			return
		}
		d, err := s.etcd.Delete(q.ctx, keys.TokensPrefix, clientv3.WithPrefix())
		if err != nil {
			q.fail(err)
			return
		}
		s.waitMirror(q.ctx, d.Header.Revision)
		q.json(http.StatusOK, map[string]string{"token": ""})
		return
	case in.Username != "" && in.Username != q.user.Username:
		u, ok := q.otherUser(in.Username)
		if !ok {
			return
		}
		in.Username = u.Username
	default:
		in.Username = q.user.Username
	}
	if err := s.revokeTokens(q.ctx, in.Username); err != nil {
		q.fail(err)
		return
	}
	tok, err := s.newToken(q.ctx, in.Username)
	if err != nil {
		q.fail(err)
		return
	}
	q.json(http.StatusOK, map[string]string{"token": tok})
}

func (q *request) listUsers() {
	if !q.user.Admin {
		q.fail(errForbidden)
		return
	}
	users, err := q.s.allUsers(q.ctx)
	if err != nil {
		q.fail(err)
		return
	}
	items := make([]any, 0, len(users))
	for _, u := range users {
		items = append(items, u.view())
	}
	q.page(items)
}

func (s *Server) allUsers(ctx context.Context) ([]*User, error) {
	resp, err := s.etcd.Txn(ctx).Then(clientv3.OpGet(keys.UsersPrefix, clientv3.WithPrefix()), clientv3.OpGet(keys.AdminsPrefix, clientv3.WithPrefix())).Commit()
	if err != nil {
		return nil, fmt.Errorf("list users: %w", err)
	}
	admins := map[string]bool{}
	for _, kv := range resp.Responses[1].GetResponseRange().Kvs {
		admins[strings.TrimPrefix(string(kv.Key), keys.AdminsPrefix)] = strings.TrimSpace(string(kv.Value)) == "true"
	}
	var out []*User
	for _, kv := range resp.Responses[0].GetResponseRange().Kvs {
		var u User
		if json.Unmarshal(kv.Value, &u) != nil {
			continue
		}
		u.Username = strings.TrimPrefix(string(kv.Key), keys.UsersPrefix)
		u.id, u.Admin = kv.CreateRevision, admins[u.Username]
		out = append(out, &u)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Username < out[j].Username })
	return out, nil
}

func (q *request) listAdmins() {
	if !q.user.Admin {
		q.fail(errForbidden)
		return
	}
	users, err := q.s.allUsers(q.ctx)
	if err != nil {
		q.fail(err)
		return
	}
	var items []any
	for _, u := range users {
		if u.Admin {
			items = append(items, map[string]any{"username": u.Username, "is_superuser": true})
		}
	}
	q.page(items)
}

func (q *request) grantAdmin() {
	q.setAdmin(true)
}

func (q *request) revokeAdmin() {
	q.setAdmin(false)
}

func (q *request) setAdmin(on bool) {
	if !q.user.Admin {
		q.fail(errForbidden)
		return
	}
	name := q.params["user"]
	if on {
		var in struct {
			Username string `json:"username"`
		}
		if err := q.decode(&in); err != nil {
			q.fail(err)
			return
		}
		name = in.Username
	}
	u, err := q.s.getUser(q.ctx, name)
	if err != nil || u == nil {
		q.fail(orNotFound(err))
		return
	}
	u.Admin = on
	data, _ := json.Marshal(u)
	op := clientv3.OpDelete(keys.Admin(u.Username))
	if on {
		op = clientv3.OpPut(keys.Admin(u.Username), "true")
	}
	tr, err := q.s.etcd.Txn(q.ctx).Then(op, clientv3.OpPut(keys.User(u.Username), string(data))).Commit()
	if err != nil {
		q.fail(err)
		return
	}
	q.s.waitMirror(q.ctx, tr.Header.Revision)
	if on {
		q.json(http.StatusCreated, nil)
		return
	}
	q.noContent()
}

// otherUser is the user an admin acts on (passwd, cancel, regenerate for
// someone else); anyone else gets 403, an unknown name 404.
func (q *request) otherUser(name string) (*User, bool) {
	if !q.user.Admin {
		q.fail(errForbidden)
		return nil, false
	}
	u, err := q.s.getUser(q.ctx, name)
	if err != nil || u == nil {
		q.fail(orNotFound(err))
		return nil, false
	}
	return u, true
}

func orNotFound(err error) error {
	if err != nil {
		return err
	}
	return errNotFound
}

func clientIP(r *http.Request) string {
	h, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return r.RemoteAddr
	}
	return h
}

// loginLimiter slows down repeated failed logins, per user name and per
// client address: after 3 failures in 15 minutes each attempt waits 1 s,
// doubling to 16 s. A success clears both.
type loginLimiter struct {
	mu       sync.Mutex
	failures map[string]*failures
}

type failures struct {
	n    int
	last time.Time
}

func newLoginLimiter() *loginLimiter { return &loginLimiter{failures: map[string]*failures{}} }

func (l *loginLimiter) delay(user, ip string) time.Duration {
	l.mu.Lock()
	defer l.mu.Unlock()
	worst := 0
	for _, k := range []string{"u:" + user, "ip:" + ip} {
		if f := l.failures[k]; f != nil && time.Since(f.last) < 15*time.Minute && f.n > worst {
			worst = f.n
		}
	}
	if worst < 3 {
		return 0
	}
	return time.Duration(1<<min(worst-3, 4)) * time.Second
}

func (l *loginLimiter) failed(user, ip string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.failures) > 100000 { // bounded: forget everything rather than grow
		l.failures = map[string]*failures{}
	}
	for _, k := range []string{"u:" + user, "ip:" + ip} {
		f := l.failures[k]
		if f == nil || time.Since(f.last) >= 15*time.Minute {
			f = &failures{}
			l.failures[k] = f
		}
		f.n++
		f.last = time.Now()
	}
}

func (l *loginLimiter) succeeded(user, ip string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	delete(l.failures, "u:"+user)
	delete(l.failures, "ip:"+ip)
}
