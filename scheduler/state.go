package scheduler

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"strconv"
	"strings"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/deis/dataplane/pkg/keys"
	"github.com/deis/dataplane/pkg/release"
	"github.com/deis/dataplane/pkg/unit"
)

// state is everything one pass decides from, read at one etcd revision.
type state struct {
	rev              int64
	placementOptions bool
	hosts            map[string]unit.Host
	apps             map[string]*appState
	// units and status by host, then unit name.
	units  map[string]map[string]placed
	status map[string]map[string]unit.Status
	// services: app → unit name → addr.
	services map[string]map[string]string
	bad      []badKey
}

type badKey struct{ key, value, why string }

// placed is one unit key: a unit spec on a host.
type placed struct {
	host string
	spec unit.Spec
}

type appState struct {
	name       string
	exists     bool // owner or release key present
	current    int  // release
	currentRev int64
	releases   map[int]*release.Release
	rawRel     map[int][]byte
	scale      release.Scale
	scaleRev   int64
	hasScale   bool
	scaleBad   string // why the scale key cannot be read
	restart    *unit.Restart
	restartRev int64
	deploy     *unit.Deploy
	failed     map[int]string
}

func (s *state) app(name string) *appState {
	a := s.apps[name]
	if a == nil {
		a = &appState{name: name, releases: map[int]*release.Release{}, rawRel: map[int][]byte{}, failed: map[int]string{}}
		s.apps[name] = a
	}
	return a
}

// release parses release v<n> on first use.
func (a *appState) release(n int) (*release.Release, error) {
	if r := a.releases[n]; r != nil {
		return r, nil
	}
	raw, ok := a.rawRel[n]
	if !ok {
		return nil, fmt.Errorf("release v%d of %s does not exist", n, a.name)
	}
	r, err := release.Parse(raw)
	if err != nil {
		return nil, fmt.Errorf("release v%d of %s: %w", n, a.name, err)
	}
	a.releases[n] = r
	return r, nil
}

// readState reads the scheduler's whole world in one transaction.
func readState(ctx context.Context, cli *clientv3.Client) (*state, error) {
	resp, err := cli.Txn(ctx).Then(
		clientv3.OpGet(keys.AppsPrefix, clientv3.WithPrefix()),
		clientv3.OpGet(keys.HostsPrefix, clientv3.WithPrefix()),
		clientv3.OpGet(keys.UnitsPrefix, clientv3.WithPrefix()),
		clientv3.OpGet(keys.StatusPrefix, clientv3.WithPrefix()),
		clientv3.OpGet(keys.DeploysPrefix, clientv3.WithPrefix()),
		clientv3.OpGet(keys.ServicesPrefix, clientv3.WithPrefix()),
		clientv3.OpGet(keys.PlatformPlacementOptions),
	).Commit()
	if err != nil {
		return nil, fmt.Errorf("read the desired and observed state: %w", err)
	}
	s := &state{
		rev:   resp.Header.Revision,
		hosts: map[string]unit.Host{}, apps: map[string]*appState{},
		units: map[string]map[string]placed{}, status: map[string]map[string]unit.Status{},
		services: map[string]map[string]string{},
	}
	r := func(i int) []*kv {
		var out []*kv
		for _, x := range resp.Responses[i].GetResponseRange().Kvs {
			out = append(out, &kv{key: string(x.Key), value: x.Value, mod: x.ModRevision})
		}
		return out
	}
	for _, x := range r(0) {
		s.readAppKey(x)
	}
	for _, x := range r(1) {
		h, err := keys.ParseHostKey(x.key)
		var rec unit.Host
		if err == nil {
			err = json.Unmarshal(x.value, &rec)
		}
		if err == nil && net.ParseIP(rec.Addr) == nil && rec.Addr != "" {
			err = fmt.Errorf("addr %q is not an IP address", rec.Addr)
		}
		if err != nil {
			s.bad = append(s.bad, badKey{x.key, string(x.value), err.Error()})
			continue
		}
		if rec.Addr == "" {
			rec.Addr = h
		}
		s.hosts[h] = rec
	}
	for _, x := range r(2) {
		h, name, err := keys.ParseUnitKey(keys.UnitsPrefix, x.key)
		var spec unit.Spec
		if err == nil {
			spec, err = unit.ParseSpec(name, x.value)
		}
		if err != nil {
			s.bad = append(s.bad, badKey{x.key, string(x.value), err.Error()})
			continue
		}
		if s.units[h] == nil {
			s.units[h] = map[string]placed{}
		}
		s.units[h][name.String()] = placed{host: h, spec: spec}
	}
	for _, x := range r(3) {
		h, name, err := keys.ParseUnitKey(keys.StatusPrefix, x.key)
		var st unit.Status
		if err == nil {
			err = json.Unmarshal(x.value, &st)
		}
		if err != nil {
			s.bad = append(s.bad, badKey{x.key, string(x.value), err.Error()})
			continue
		}
		if s.status[h] == nil {
			s.status[h] = map[string]unit.Status{}
		}
		s.status[h][name.String()] = st
	}
	for _, x := range r(4) {
		app := strings.TrimPrefix(x.key, keys.DeploysPrefix)
		var d unit.Deploy
		err := keys.ValidateAppName(app)
		if err == nil {
			err = json.Unmarshal(x.value, &d)
		}
		if err != nil {
			s.bad = append(s.bad, badKey{x.key, string(x.value), err.Error()})
			continue
		}
		s.app(app).deploy = &d
	}
	for _, x := range r(5) {
		app, c, err := keys.ParseService(x.key)
		if err != nil {
			continue // not a unit's route (an operator's static backend): not ours
		}
		if s.services[app] == nil {
			s.services[app] = map[string]string{}
		}
		s.services[app][c.String()] = string(x.value)
	}
	if kvs := resp.Responses[6].GetResponseRange().Kvs; len(kvs) > 0 {
		s.placementOptions = strings.TrimSpace(string(kvs[0].Value)) == "true"
	}
	return s, nil
}

type kv struct {
	key   string
	value []byte
	mod   int64
}

func (s *state) readAppKey(x *kv) {
	app, rest, err := keys.ParseAppKey(x.key)
	if err != nil {
		s.bad = append(s.bad, badKey{x.key, string(x.value), err.Error()})
		return
	}
	a := s.app(app)
	switch {
	case rest == "owner":
		a.exists = true
	case rest == "release":
		n, err := strconv.Atoi(strings.TrimSpace(string(x.value)))
		if err != nil || n < 0 {
			s.bad = append(s.bad, badKey{x.key, string(x.value), "not a release number"})
			return
		}
		a.exists, a.current, a.currentRev = true, n, x.mod
	case rest == "scale":
		sc, err := release.ParseScale(x.value)
		if err != nil {
			s.bad = append(s.bad, badKey{x.key, string(x.value), err.Error()})
			// Present but unreadable: the app is left exactly as it runs
			// (never scaled to nothing, never given a default) until fixed.
			a.hasScale, a.scaleRev, a.scaleBad = true, x.mod, err.Error()
			return
		}
		a.scale, a.scaleRev, a.hasScale = sc, x.mod, true
	case rest == "restart":
		var r unit.Restart
		if err := json.Unmarshal(x.value, &r); err != nil {
			s.bad = append(s.bad, badKey{x.key, string(x.value), err.Error()})
			return
		}
		a.restart, a.restartRev = &r, x.mod
	case strings.HasPrefix(rest, "releases/v"):
		if n, ok := release.VersionOf(app, x.key); ok {
			a.rawRel[n] = x.value
		}
	case strings.HasPrefix(rest, "failed/v"):
		if n, err := strconv.Atoi(strings.TrimPrefix(rest, "failed/v")); err == nil {
			a.failed[n] = string(x.value)
		}
	}
}
