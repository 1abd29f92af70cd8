package builder

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/pem"
	"errors"
	"fmt"
	"log/slog"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	gossh "golang.org/x/crypto/ssh"

	"github.com/deis/dataplane/pkg/keys"
	"github.com/deis/dataplane/pkg/retry"
)

// HostKey returns the SSH host key every builder instance shares: the one
// in etcd at /deis/builder/sshHostKey, or, on the very first start, a new
// ed25519 key stored there (create-if-absent, so two builders starting at
// once still agree on one key).
func HostKey(ctx context.Context, cli *clientv3.Client) (gossh.Signer, error) {
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("generate host key: %w", err)
	}
	block, err := gossh.MarshalPrivateKey(priv, "deis builder")
	if err != nil {
		return nil, fmt.Errorf("encode host key: %w", err)
	}
	fresh := string(pem.EncodeToMemory(block))
	resp, err := cli.Txn(ctx).
		If(clientv3.Compare(clientv3.CreateRevision(keys.BuilderSSHHostKey), "=", 0)).
		Then(clientv3.OpPut(keys.BuilderSSHHostKey, fresh)).
		Else(clientv3.OpGet(keys.BuilderSSHHostKey)).
		Commit()
	if err != nil {
		return nil, fmt.Errorf("read or store %s: %w", keys.BuilderSSHHostKey, err)
	}
	stored := fresh
	if !resp.Succeeded {
		kvs := resp.Responses[0].GetResponseRange().Kvs
		if len(kvs) == 0 {
			return nil, fmt.Errorf("%s vanished while being read", keys.BuilderSSHHostKey)
		}
		stored = string(kvs[0].Value)
	}
	signer, err := gossh.ParsePrivateKey([]byte(stored))
	if err != nil {
		return nil, fmt.Errorf("%s: not a usable PEM private key: %w (%w)", keys.BuilderSSHHostKey, err, ErrBadHostKey)
	}
	return signer, nil
}

// ErrBadHostKey marks a stored host key that cannot be used: waiting does
// not help, an operator must fix or delete the key.
var ErrBadHostKey = errors.New("bad host key")

// WaitHostKey is HostKey, retried with backoff while etcd is unreachable,
// so a builder started before etcd comes up when etcd does.
func WaitHostKey(ctx context.Context, cli *clientv3.Client, log *slog.Logger) (gossh.Signer, error) {
	backoff := retry.New(500*time.Millisecond, 5*time.Second)
	for {
		actx, cancel := context.WithTimeout(ctx, 5*time.Second)
		signer, err := HostKey(actx, cli)
		cancel()
		if err == nil || errors.Is(err, ErrBadHostKey) || ctx.Err() != nil {
			return signer, err
		}
		wait := backoff.Next()
		log.Warn("cannot read the shared SSH host key yet; retrying", "err", err, "retry_in", wait)
		if !retry.Sleep(ctx, wait) {
			return nil, err
		}
	}
}
