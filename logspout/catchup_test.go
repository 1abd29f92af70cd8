package logspout_test

import (
	"fmt"
	"math/rand/v2"
	"testing"
	"time"

	docker "github.com/fsouza/go-dockerclient"

	"github.com/deis/dataplane/pkg/testenv"
)

// TestExitedWhileDownIsCaughtUp is the acceptance finding: a container
// writes 20,000 lines in 40 bursts over 4 s; logspout is stopped 1.5 s
// after it starts and comes back 6 s later, after the container exited.
// Only 7,500 lines used to arrive, ever. Every line must arrive once.
func TestExitedWhileDownIsCaughtUp(t *testing.T) {
	t.Parallel()
	cli := testenv.Docker(t)
	e := testenv.StartEtcd(t)
	lg := startLogger(t, e)
	state := t.TempDir()
	stop := runLogspout(t, e, cli, state)
	app := fmt.Sprintf("burst%d", rand.IntN(1e9))
	const n = 20000
	script := "i=0; for b in $(seq 1 40); do seq $((i+1)) $((i+500)) | sed 's/^/line /'; i=$((i+500)); sleep 0.1; done"
	start := time.Now()
	testenv.RunContainer(t, cli, docker.CreateContainerOptions{Name: app + "_v1.web.1", Config: &docker.Config{Cmd: []string{"sh", "-c", script}}})
	time.Sleep(1500*time.Millisecond - time.Since(start))
	stop()
	// Down for 6 s: the container exits meanwhile.
	time.Sleep(6 * time.Second)
	runLogspout(t, e, cli, state)
	testenv.Eventually(t, 60*time.Second, func() bool { return len(lines(t, lg, app)) >= n }, "only %d of %d lines arrived", len(lines(t, lg, app)), n)
	time.Sleep(time.Second) // duplicates would arrive now
	requireOnce(t, texts(lines(t, lg, app)), n, "after logspout was down while the container exited")
}

// TestStartedAndExitedWhileDownShippedOnce: containers that started and
// exited entirely while logspout was down (after its last recorded run)
// are shipped when it comes back, once: a further restart adds nothing.
func TestStartedAndExitedWhileDownShippedOnce(t *testing.T) {
	t.Parallel()
	cli := testenv.Docker(t)
	e := testenv.StartEtcd(t)
	lg := startLogger(t, e)
	state := t.TempDir()
	stop := runLogspout(t, e, cli, state)
	time.Sleep(time.Second) // a run is recorded
	stop()
	const n = 3000
	var apps []string
	for i := range 3 {
		app := fmt.Sprintf("brief%d%d", i, rand.IntN(1e9))
		apps = append(apps, app)
		c := testenv.RunContainer(t, cli, docker.CreateContainerOptions{Name: app + "_v1.web.1", Config: &docker.Config{Cmd: []string{"sh", "-c", fmt.Sprintf("seq 1 %d | sed 's/^/line /'", n)}}})
		if code, err := cli.WaitContainer(c.ID); err != nil || code != 0 {
			t.Fatalf("container %s: exit %d %v", app, code, err)
		}
	}
	stop = runLogspout(t, e, cli, state)
	for _, app := range apps {
		testenv.Eventually(t, 30*time.Second, func() bool { return len(lines(t, lg, app)) >= n }, "%s: %d of %d lines arrived", app, len(lines(t, lg, app)), n)
	}
	stop()
	runLogspout(t, e, cli, state)
	time.Sleep(2 * time.Second) // a resync passes; duplicates would arrive now
	for _, app := range apps {
		requireOnce(t, texts(lines(t, lg, app)), n, app+" after two restarts")
	}
}

// TestShortLivedContainersOnTheFirstRun: a container that exits before its
// start event is handled (stopped when logspout inspects it) is shipped
// whole, on the very first run too (no earlier run recorded).
func TestShortLivedContainersOnTheFirstRun(t *testing.T) {
	t.Parallel()
	cli := testenv.Docker(t)
	e := testenv.StartEtcd(t)
	lg := startLogger(t, e)
	runLogspout(t, e, cli, t.TempDir())
	var apps []string
	for i := range 10 {
		app := fmt.Sprintf("brief%d%d", i, rand.IntN(1e9))
		apps = append(apps, app)
		testenv.RunContainer(t, cli, docker.CreateContainerOptions{Name: app + "_v1.web.1", Config: &docker.Config{Cmd: []string{"sh", "-c", "echo line 1; echo line 2"}}})
	}
	for _, app := range apps {
		testenv.Eventually(t, 20*time.Second, func() bool { return len(lines(t, lg, app)) >= 2 }, "%s: the lines of a container that exited at once never arrived", app)
		requireOnce(t, texts(lines(t, lg, app)), 2, app)
	}
}
