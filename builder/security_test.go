package builder_test

import (
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/deis/dataplane/builder"
	"github.com/deis/dataplane/pkg/keys"
	"github.com/deis/dataplane/pkg/testenv"
)

// TestM8PreAuthLimits: connections that never authenticate used to stay
// open for good (at least 300 s) and any number were accepted. Now they
// are closed after LoginGrace, and past MaxUnauthenticated new ones are
// refused at once; an authenticated push is unaffected.
func TestM8PreAuthLimits(t *testing.T) {
	t.Parallel()
	v := start(t, func(c *builder.Config) { c.LoginGrace = 2 * time.Second; c.MaxUnauthenticated = 3 })
	var parked []net.Conn
	for range 3 {
		c, err := net.Dial("tcp", v.addr)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		fmt.Fprint(c, "SSH-2.0-Parked\r\n") // then silence
		parked = append(parked, c)
	}
	time.Sleep(300 * time.Millisecond)
	over, err := net.Dial("tcp", v.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer over.Close()
	_ = over.SetReadDeadline(time.Now().Add(time.Second))
	if _, err := io.ReadAll(over); err != nil {
		t.Fatalf("a 4th unauthenticated connection was not closed at once: %v", err)
	}
	start := time.Now()
	for i, c := range parked {
		_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
		if _, err := io.ReadAll(c); err != nil {
			t.Fatalf("parked connection %d still open after 10s: %v", i, err)
		}
	}
	if waited := time.Since(start); waited > 5*time.Second {
		t.Fatalf("parked connections closed after %v, want about the 2s grace", waited)
	}
	// The places are free again: a real user gets in.
	alice := v.user("alice", true)
	_, port, _ := net.SplitHostPort(v.addr)
	if out, err := exec.Command("sh", "-c", v.sshCommand(alice)+" -p "+port+" git@127.0.0.1 ping").CombinedOutput(); err != nil {
		t.Fatalf("ssh after the parked connections: %v %s", err, out)
	}
}

// TestL8IdlePushReleasesTheLock: an authorized session that opened
// receive-pack and then sent nothing used to hold the app's push lock
// forever (the builder's own keep-alives kept the router's idle timer
// from firing).
func TestL8IdlePushReleasesTheLock(t *testing.T) {
	t.Parallel()
	v := start(t, func(c *builder.Config) { c.PushIdleTimeout = 2 * time.Second })
	alice := v.user("alice", true)
	app := appName("idle")
	v.app(app, "alice")
	_, port, _ := net.SplitHostPort(v.addr)
	idle := exec.Command("sh", "-c", "sleep 30 | "+v.sshCommand(alice)+" -p "+port+" git@127.0.0.1 \"git-receive-pack '"+app+".git'\"")
	if err := idle.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = idle.Process.Kill(); _ = idle.Wait() })
	lockHeld := func() bool {
		resp, err := v.e.Client().Get(context.Background(), keys.PushLock(app))
		return err == nil && len(resp.Kvs) == 1
	}
	testenv.Eventually(t, 10*time.Second, lockHeld, "the idle session never took the lock")
	testenv.Eventually(t, 10*time.Second, func() bool { return !lockHeld() }, "an idle push still holds the lock")
	dir := v.repo(map[string]string{"Dockerfile": "FROM " + testenv.BusyboxImage + "\nCMD [\"true\"]\n"})
	cleanupImages(t, app)
	if out, err := v.gitErr(dir, alice, "push", v.remote(app), "master"); err != nil || !strings.Contains(out, app+":v1 released") {
		t.Fatalf("push after the idle one: %v\n%s", err, out)
	}
}

// TestL9DeclinedPushesDoNotPileUp: each declined push used to leave its
// objects in the repository for good; now only the last one's are kept.
// A push over --max-push-size is refused by git.
func TestL9DeclinedPushesDoNotPileUp(t *testing.T) {
	t.Parallel()
	v := start(t, func(c *builder.Config) { c.MaxPushSize = 4 << 20; c.BuildMemory = 64 << 20; c.BuildCPUs = 1 })
	alice := v.user("alice", true)
	app := appName("bloat")
	v.app(app, "alice")
	cleanupImages(t, app)
	repoSize := func() int64 {
		var n int64
		_ = filepath.Walk(filepath.Join(v.dir, "repos", app+".git", "objects"), func(_ string, fi os.FileInfo, err error) error {
			if err == nil && !fi.IsDir() {
				n += fi.Size()
			}
			return nil
		})
		return n
	}
	random := func(n int) string {
		b := make([]byte, n)
		f, _ := os.Open("/dev/urandom")
		defer f.Close()
		_, _ = io.ReadFull(f, b)
		return string(b)
	}
	dir := v.repo(map[string]string{"Dockerfile": "FROM " + testenv.BusyboxImage + "\nRUN false\n", "blob": random(3 << 20)})
	for i := range 3 {
		if i > 0 {
			// A new revision that does not contain the last one: each
			// declined push leaves objects nothing refers to.
			if err := os.WriteFile(filepath.Join(dir, "blob"), []byte(random(3<<20)), 0o644); err != nil {
				t.Fatal(err)
			}
			v.git(dir, "", "add", "-A")
			v.git(dir, "", "commit", "--quiet", "--amend", "-m", fmt.Sprintf("again %d", i))
		}
		if out, err := v.gitErr(dir, alice, "push", "--force", v.remote(app), "master"); err == nil {
			t.Fatalf("a build that fails was accepted:\n%s", out)
		}
	}
	if size := repoSize(); size > 5<<20 {
		t.Fatalf("after 3 declined pushes of 3 MiB the repository holds %d MiB of objects", size>>20)
	}
	// A good build runs under the memory and CPU limits.
	good := v.repo(map[string]string{"Dockerfile": "FROM " + testenv.BusyboxImage + "\nRUN echo built\nCMD [\"true\"]\n"})
	if out, err := v.gitErr(good, alice, "push", "--force", v.remote(app), "master"); err != nil || !strings.Contains(out, "released") {
		t.Fatalf("a good push with build limits: %v\n%s", err, out)
	}
	// Over --max-push-size: git refuses the pack.
	big := v.repo(map[string]string{"Dockerfile": "FROM " + testenv.BusyboxImage + "\n", "big": random(6 << 20)})
	if out, err := v.gitErr(big, alice, "push", "--force", v.remote(app), "master"); err == nil || !strings.Contains(out, "maximum") && !strings.Contains(out, "too large") {
		t.Fatalf("a 6 MiB push with a 4 MiB limit: %v\n%s", err, out)
	}
}
