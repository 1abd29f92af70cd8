package builder

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/gliderlabs/ssh"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/client/v3/concurrency"
	gossh "golang.org/x/crypto/ssh"

	"github.com/deis/dataplane/pkg/keys"
)

// ParseCommand reads the exec request of a git client: git-receive-pack
// or git-upload-pack with one quoted repository path "<app>.git" (a
// leading "/" and a missing ".git" are accepted), or "ping".
func ParseCommand(raw string) (verb, app string, err error) {
	raw = strings.TrimSpace(raw)
	if raw == "ping" {
		return "ping", "", nil
	}
	verb, arg, _ := strings.Cut(raw, " ")
	if verb == "git" { // "git receive-pack 'app.git'"
		var sub string
		sub, arg, _ = strings.Cut(arg, " ")
		verb = "git-" + sub
	}
	if verb != "git-receive-pack" && verb != "git-upload-pack" {
		if raw == "" {
			return "", "", errors.New("this is a git server: interactive logins are not offered; push with `git push deis master`")
		}
		return "", "", fmt.Errorf("command %q is not allowed: only git-receive-pack, git-upload-pack and ping are", truncate(raw, 80))
	}
	arg = strings.TrimSpace(arg)
	if len(arg) >= 2 && (arg[0] == '\'' || arg[0] == '"') && arg[len(arg)-1] == arg[0] {
		arg = arg[1 : len(arg)-1]
	}
	repo := strings.TrimSuffix(strings.TrimPrefix(arg, "/"), "/")
	name := strings.TrimSuffix(repo, ".git")
	if err := keys.ValidateAppName(name); err != nil {
		return "", "", fmt.Errorf("repository %q: want <app>.git where %w", truncate(arg, 80), err)
	}
	return verb, name, nil
}

func truncate(s string, n int) string {
	if len(s) > n {
		return s[:n] + "..."
	}
	return s
}

func (b *Builder) handleSession(s ssh.Session) {
	b.m.sessions.Inc()
	defer b.m.sessions.Dec()
	ctx := s.Context()
	sessionStarted(ctx)
	user, _ := ctx.Value(ctxKeyUser).(string)
	go b.keepAlive(ctx)
	status := b.serve(ctx, s, user)
	_ = s.Exit(status)
}

// keepAlive sends SSH keep-alive requests so that load balancers in front
// of the router see traffic during long, silent builds.
func (b *Builder) keepAlive(ctx ssh.Context) {
	conn, ok := ctx.Value(ssh.ContextKeyConn).(gossh.Conn)
	if !ok {
		return
	}
	t := time.NewTicker(b.cfg.KeepAlive)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			if _, _, err := conn.SendRequest("keepalive@openssh.com", true, nil); err != nil {
				return
			}
		}
	}
}

// serve runs one exec request and returns the exit status for the client.
func (b *Builder) serve(ctx ssh.Context, s ssh.Session, user string) int {
	refuse := func(cause, format string, args ...any) int {
		fmt.Fprintf(s.Stderr(), "deis: "+format+"\n", args...)
		b.m.pushes.WithLabelValues("refused").Inc()
		b.m.failures.WithLabelValues(cause).Inc()
		b.log.Info("refused", "user", user, "command", truncate(s.RawCommand(), 120), "cause", cause)
		return 1
	}
	if user == "" {
		return refuse("unknown_key", "this key is not registered with any user; add it with `deis keys:add`")
	}
	verb, app, err := ParseCommand(s.RawCommand())
	if err != nil {
		return refuse("bad_command", "%v", err)
	}
	if verb == "ping" {
		fmt.Fprintf(s, "pong %s\n", user)
		return 0
	}
	if err := b.authorize(ctx, user, app); err != nil {
		return refuse("not_allowed", "%v", err)
	}
	repo, err := b.ensureRepo(app)
	if err != nil {
		b.log.Error("repository", "app", app, "err", err)
		return refuse("repository", "cannot prepare the repository of %s; try again, or ask the operator (the builder logged why)", app)
	}
	if verb == "git-upload-pack" {
		return b.runGit(ctx, s, "upload-pack", repo, nil, nil)
	}
	unlock, err := b.lock(ctx, app, user)
	if err != nil {
		return refuse("locked", "%v", err)
	}
	defer unlock()
	p := &push{b: b, app: app, user: user, repo: repo, ctx: ctx}
	untrack := b.track(p)
	defer untrack()
	status := b.runGit(ctx, s, "receive-pack", repo, []string{envSocket + "=" + b.hooks.path, envToken + "=" + p.token}, p)
	if p.failed.Load() && status == 0 {
		status = 1 // the build failed: git reports the declined push, ssh the status
	}
	return status
}

// authorize: the app must exist, and the user own it, collaborate on it
// or be an admin.
func (b *Builder) authorize(ctx context.Context, user, app string) error {
	resp, err := b.etcd.Txn(ctx).Then(
		clientv3.OpGet(keys.AppOwner(app)),
		clientv3.OpGet(keys.AppPerm(app, user)),
		clientv3.OpGet(keys.Admin(user)),
	).Commit()
	if err != nil {
		return fmt.Errorf("cannot check permissions (etcd: %w); try again", err)
	}
	owner, perm, admin := first(resp, 0), first(resp, 1), first(resp, 2)
	switch {
	case owner == nil:
		return fmt.Errorf("app %s does not exist; create it with `deis apps:create %s`", app, app)
	case string(owner) == user, perm != nil, strings.TrimSpace(string(admin)) == "true":
		return nil
	default:
		return fmt.Errorf("user %s may not push to %s: not its owner, a collaborator or an admin", user, app)
	}
}

func first(resp *clientv3.TxnResponse, i int) []byte {
	kvs := resp.Responses[i].GetResponseRange().Kvs
	if len(kvs) == 0 {
		return nil
	}
	return kvs[0].Value
}

// lock takes /deis/locks/push/<app> on a lease of its own, kept alive
// while the push runs; it vanishes when the push ends, when the session
// dies, or LockTTL after the builder itself dies.
func (b *Builder) lock(ctx context.Context, app, user string) (unlock func(), err error) {
	sess, err := concurrency.NewSession(b.etcd, concurrency.WithTTL(int(b.cfg.LockTTL/time.Second)), concurrency.WithContext(ctx))
	if err != nil {
		return nil, fmt.Errorf("cannot take the push lock of %s (etcd: %w); try again", app, err)
	}
	host, _ := os.Hostname()
	holder := fmt.Sprintf("%s since %s (builder %s)", user, time.Now().UTC().Format(time.RFC3339), host)
	key := keys.PushLock(app)
	resp, err := b.etcd.Txn(ctx).
		If(clientv3.Compare(clientv3.CreateRevision(key), "=", 0)).
		Then(clientv3.OpPut(key, holder, clientv3.WithLease(sess.Lease()))).
		Else(clientv3.OpGet(key)).
		Commit()
	if err != nil {
		sess.Close()
		return nil, fmt.Errorf("cannot take the push lock of %s (etcd: %w); try again", app, err)
	}
	if !resp.Succeeded {
		sess.Close()
		held := "another push"
		if v := first(resp, 0); v != nil {
			held = "a push by " + string(v)
		}
		return nil, fmt.Errorf("%s is locked by %s; try again when it ends", app, held)
	}
	return func() {
		dctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_, _ = b.etcd.Delete(dctx, key)
		sess.Close() // revokes the lease
	}, nil
}

// ensureRepo creates the app's bare repository on first push and
// (re)installs its pre-receive hook.
func (b *Builder) ensureRepo(app string) (string, error) {
	repo := filepath.Join(b.cfg.RepoRoot, app+".git")
	if _, err := os.Stat(filepath.Join(repo, "HEAD")); errors.Is(err, os.ErrNotExist) {
		tmp, err := os.MkdirTemp(b.cfg.RepoRoot, ".new-"+app+"-")
		if err != nil {
			return "", err
		}
		out, err := exec.Command("git", "init", "--quiet", "--bare", tmp).CombinedOutput()
		if err != nil {
			os.RemoveAll(tmp)
			return "", fmt.Errorf("git init: %w: %s", err, out)
		}
		if err := os.Rename(tmp, repo); err != nil {
			os.RemoveAll(tmp)
			if _, serr := os.Stat(filepath.Join(repo, "HEAD")); serr != nil {
				return "", err
			} // else another builder process created it meanwhile
		}
	}
	if err := b.configureRepo(repo); err != nil {
		return "", err
	}
	hook := fmt.Sprintf("#!/bin/sh\n# Installed by the deis builder: builds the pushed revision.\nexec %s hook\n", shellQuote(b.cfg.HookBin))
	path := filepath.Join(repo, "hooks", "pre-receive")
	if cur, err := os.ReadFile(path); err != nil || string(cur) != hook {
		if err := os.WriteFile(path+".tmp", []byte(hook), 0o755); err != nil {
			return "", err
		}
		if err := os.Rename(path+".tmp", path); err != nil {
			return "", err
		}
	}
	return repo, nil
}

// configureRepo sets git's limit on repo: the largest push
// (receive.maxInputSize, --max-push-size), which git refuses whole.
func (b *Builder) configureRepo(repo string) error {
	size := "0"
	if b.cfg.MaxPushSize > 0 {
		size = strconv.FormatInt(b.cfg.MaxPushSize, 10)
	}
	cmd := exec.Command("git", "config", "receive.maxInputSize", size)
	cmd.Env = append(os.Environ(), "GIT_DIR="+repo)
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("git config receive.maxInputSize: %w: %s", err, out)
	}
	return nil
}

func shellQuote(s string) string { return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'" }

// runGit runs git receive-pack or upload-pack on repo with the session as
// its stdin/stdout, and returns git's exit status. When the client goes
// away the whole process group (git and its hook) is killed; so it is when
// a push (p non-nil) sends nothing for PushIdleTimeout before its build
// starts, since it holds the app's push lock.
func (b *Builder) runGit(ctx context.Context, s ssh.Session, sub, repo string, env []string, p *push) int {
	cmd := exec.Command("git", sub, repo)
	cmd.Env = append(os.Environ(), env...)
	// git reads the session through a pipe of our own: os/exec would wait
	// for its copier, blocked reading a silent client, after git is gone.
	in := newIdleInput(s)
	stdinR, stdinW, err := os.Pipe()
	if err != nil {
		fmt.Fprintf(s.Stderr(), "deis: cannot run git %s: %v\n", sub, err)
		return 1
	}
	go func() { _, _ = io.Copy(stdinW, in); _ = stdinW.Close() }()
	cmd.Stdin, cmd.Stdout, cmd.Stderr = stdinR, s, s.Stderr()
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.WaitDelay = 5 * time.Second // a client that never closes its side does not hold the session
	err = cmd.Start()
	_ = stdinR.Close() // git has its own copy
	if err != nil {
		_ = stdinW.Close()
		fmt.Fprintf(s.Stderr(), "deis: cannot run git %s: %v\n", sub, err)
		return 1
	}
	done := make(chan struct{})
	go func() {
		tick := time.NewTicker(time.Second)
		defer tick.Stop()
		for {
			select {
			case <-ctx.Done():
				_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
				return
			case <-done:
				return
			case <-tick.C:
				if p == nil || p.hooked.Load() || in.idle() < b.cfg.PushIdleTimeout {
					continue
				}
				b.m.refusedConns.WithLabelValues("push_idle").Inc()
				b.log.Info("push aborted: the client sent nothing", "app", p.app, "user", p.user, "idle", b.cfg.PushIdleTimeout.String())
				fmt.Fprintf(s.Stderr(), "deis: the push sent nothing for %v; aborted, and %s's push lock released\n", b.cfg.PushIdleTimeout, p.app)
				_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
				return
			}
		}
	}()
	err = cmd.Wait()
	_ = stdinW.Close()
	close(done)
	var exitErr *exec.ExitError
	switch {
	case err == nil:
		return 0
	case errors.As(err, &exitErr) && exitErr.ExitCode() > 0:
		return exitErr.ExitCode()
	default:
		return 1
	}
}
