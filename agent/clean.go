package agent

import (
	"context"
	"encoding/json"
	"sort"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/deis/dataplane/pkg/keys"
	"github.com/deis/dataplane/pkg/release"
)

// cleanLoop removes old app images, a minute after start and then every
// CleanEvery: disk filling up with images was Deis v1 operators' top pain.
func (a *Agent) cleanLoop(ctx context.Context) {
	wait := time.Minute
	for {
		select {
		case <-ctx.Done():
			return
		case <-time.After(wait):
		}
		wait = a.cfg.CleanEvery
		a.CleanImages(ctx)
	}
}

// CleanImages removes the images of each app that none of its last
// KeepReleases releases uses. An image a container still uses stays: the
// engine refuses to remove it, and that is fine.
func (a *Agent) CleanImages(ctx context.Context) {
	images, err := a.rt.Images(ctx)
	if err != nil {
		a.log.Debug("disk hygiene: list images", "err", err)
		return
	}
	keep := map[string]map[string]bool{} // app → image refs to keep
	for _, img := range images {
		if img.App == "" || keep[img.App] != nil {
			continue
		}
		if keys.ValidateAppName(img.App) != nil {
			continue
		}
		refs, err := a.recentImages(ctx, img.App)
		if err != nil {
			a.log.Debug("disk hygiene: read releases", "app", img.App, "err", err)
			keep[img.App] = map[string]bool{"*": true} // unknown: keep everything
			continue
		}
		keep[img.App] = refs
	}
	for _, img := range images {
		k := keep[img.App]
		if k == nil || k["*"] {
			continue
		}
		for _, ref := range img.Refs {
			if k[ref] || ref == "<none>:<none>" {
				continue
			}
			if err := a.rt.RemoveImage(ctx, ref); err == nil {
				a.m.imagesGone.Inc()
				a.log.Info("removed an old app image", "app", img.App, "image", ref)
			}
		}
	}
}

// recentImages are the images of app's newest KeepReleases releases, plus
// the current one.
func (a *Agent) recentImages(ctx context.Context, app string) (map[string]bool, error) {
	resp, err := a.etcd.Get(ctx, keys.AppReleasesPrefix(app), clientv3.WithPrefix())
	if err != nil {
		return nil, err
	}
	var rels []release.Release
	for _, kv := range resp.Kvs {
		var r release.Release
		if json.Unmarshal(kv.Value, &r) == nil {
			rels = append(rels, r)
		}
	}
	sort.Slice(rels, func(i, j int) bool { return rels[i].Version > rels[j].Version })
	out := map[string]bool{}
	for i := 0; i < len(rels) && i < a.cfg.KeepReleases; i++ {
		out[rels[i].Image] = true
	}
	if len(rels) == 0 {
		out["*"] = true // an app we know nothing of (yet): keep its images
	}
	return out, nil
}
