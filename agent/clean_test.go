package agent_test

import (
	"context"
	"fmt"
	"slices"
	"testing"

	docker "github.com/fsouza/go-dockerclient"

	"github.com/deis/dataplane/agent"
	"github.com/deis/dataplane/agent/runtime"
	"github.com/deis/dataplane/internal/cptest"
	"github.com/deis/dataplane/pkg/release"
	"github.com/deis/dataplane/pkg/testenv"
)

// TestCleanImagesKeepsTheRecentReleases: with KeepReleases 2 and four
// releases, the names of v1's and v2's builds go, local and registry
// alike; of v3 and v4 exactly the name each release runs stays (v4 runs
// the registry's copy, whose local name goes: an image stays on disk
// while one name is left). The app's tags that are not builds stay, and
// so do the build-like names of an app that does not exist here.
func TestCleanImagesKeepsTheRecentReleases(t *testing.T) {
	dcli := testenv.Docker(t)
	e := testenv.StartEtcd(t)
	ctx := context.Background()
	app := appOf(t)
	stranger := app + "-none" // an app that does not exist here
	build := func(app string, v int) string { return fmt.Sprintf("%s:git-%08x", app, 0xabc00+v) }
	registry := func(ref string) string { return "127.0.0.1:5999/" + ref }

	var tags []string
	tag := func(ref string) {
		repo, tg := docker.ParseRepositoryTag(ref)
		if err := dcli.TagImage(testenv.BusyboxImage, docker.TagImageOptions{Repo: repo, Tag: tg}); err != nil {
			t.Fatalf("tag %s: %v", ref, err)
		}
		tags = append(tags, ref)
	}
	t.Cleanup(func() {
		for _, ref := range tags {
			_ = dcli.RemoveImage(ref)
		}
	})
	if err := cptest.CreateApp(ctx, e.Client(), app, "tester"); err != nil {
		t.Fatal(err)
	}
	for v := 1; v <= 4; v++ {
		tag(build(app, v))
		tag(registry(build(app, v)))
		image := build(app, v)
		if v == 4 {
			image = registry(image) // the release names the registry's copy
		}
		if _, err := release.Write(ctx, e.Client(), app, func(*release.Release, map[string]string) (*release.Release, error) {
			return &release.Release{Image: image, Procfile: map[string]string{"web": "true"}, User: "tester", Summary: "test"}, nil
		}); err != nil {
			t.Fatal(err)
		}
	}
	tag(app + ":latest")
	tag(build(stranger, 1))

	a := agent.New(agent.Config{Host: hostsFor(1)[0], KeepReleases: 2}, runtime.NewDocker(dcli, testLog(t)), e.Client(), testLog(t), nil)
	a.CleanImages(ctx)

	present := func(ref string) bool { _, err := dcli.InspectImage(ref); return err == nil }
	var gone, kept []string
	for _, ref := range tags {
		if present(ref) {
			kept = append(kept, ref)
		} else {
			gone = append(gone, ref)
		}
	}
	want := []string{build(app, 1), registry(build(app, 1)), build(app, 2), registry(build(app, 2)), registry(build(app, 3)), build(app, 4)}
	slices.Sort(gone)
	slices.Sort(want)
	if !slices.Equal(gone, want) {
		t.Fatalf("removed %v, want %v (kept %v)", gone, want, kept)
	}
	if !present(testenv.BusyboxImage) {
		t.Fatal("the stack image every build shares was removed")
	}
}
