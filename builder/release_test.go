package builder

import (
	"context"
	"encoding/json"
	"log/slog"
	"sync"
	"testing"

	"github.com/deis/dataplane/pkg/keys"
	"github.com/deis/dataplane/pkg/testenv"
)

// TestConcurrentReleasesRetry: releases written at once from several
// places each get their own version; none is overwritten.
func TestConcurrentReleasesRetry(t *testing.T) {
	t.Parallel()
	e := testenv.StartEtcd(t)
	b := &Builder{etcd: e.Client(), log: slog.New(slog.DiscardHandler)}
	e.Put(keys.Config("app", "FOO"), "bar")
	const n = 8
	var wg sync.WaitGroup
	versions := make([]int, n)
	for i := range n {
		wg.Go(func() {
			p := &push{b: b, app: "app", user: "u", ctx: context.Background()}
			rel, _, err := p.release(context.Background(), "app:git-0123abcd", map[string]string{"web": "x"}, "0123abcd0123abcd0123abcd0123abcd0123abcd")
			if err != nil {
				t.Error(err)
				return
			}
			versions[i] = rel.Version
		})
	}
	wg.Wait()
	seen := map[int]bool{}
	for _, v := range versions {
		if seen[v] || v < 1 || v > n {
			t.Fatalf("versions %v: want 1..%d each once", versions, n)
		}
		seen[v] = true
	}
	resp, err := e.Client().Get(context.Background(), keys.AppCurrentRelease("app"))
	if err != nil || len(resp.Kvs) != 1 || string(resp.Kvs[0].Value) != "8" {
		t.Fatalf("current release = %v, %v; want 8", resp, err)
	}
	for v := 1; v <= n; v++ {
		resp, err := e.Client().Get(context.Background(), keys.AppRelease("app", v))
		if err != nil || len(resp.Kvs) != 1 {
			t.Fatalf("v%d missing", v)
		}
		var r Release
		if err := json.Unmarshal(resp.Kvs[0].Value, &r); err != nil || r.Version != v || r.Config["FOO"] != "bar" {
			t.Fatalf("v%d = %s (%v)", v, resp.Kvs[0].Value, err)
		}
	}
}
