package controller

import (
	"encoding/json"
	"fmt"
	"maps"
	"net/http"
	"sort"
	"strconv"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/deis/dataplane/pkg/keys"
	"github.com/deis/dataplane/pkg/release"
	"github.com/deis/dataplane/pkg/unit"
)

// v1States maps an agent's unit state to the v1 container states.
var v1States = map[string]string{
	unit.Pulling: "created", unit.Starting: "created", unit.Up: "up",
	unit.Draining: "down", unit.Stopping: "down", unit.Exited: "down",
	unit.Crashed: "crashed", unit.Error: "error",
}

// containers reads the app's units and their live status (never a cache).
func (q *request) containers(a *app, typ string, num int) ([]any, error) {
	resp, err := q.s.etcd.Txn(q.ctx).Then(clientv3.OpGet(keys.UnitsPrefix, clientv3.WithPrefix()), clientv3.OpGet(keys.StatusPrefix, clientv3.WithPrefix())).Commit()
	if err != nil {
		return nil, fmt.Errorf("read units: %w", err)
	}
	status := map[string]unit.Status{}
	for _, kv := range resp.Responses[1].GetResponseRange().Kvs {
		h, c, err := keys.ParseUnitKey(keys.StatusPrefix, string(kv.Key))
		var st unit.Status
		if err == nil && c.App == a.name && json.Unmarshal(kv.Value, &st) == nil {
			status[h+"/"+c.String()] = st
		}
	}
	type row struct {
		c     keys.ContainerName
		state string
		key   string
		host  string
		msg   string // why it is not up (crashed, error), for the CLI's progress
	}
	var rows []row
	for _, kv := range resp.Responses[0].GetResponseRange().Kvs {
		h, c, err := keys.ParseUnitKey(keys.UnitsPrefix, string(kv.Key))
		if err != nil || c.App != a.name || (typ != "" && c.Type != typ) || (num != 0 && c.Num != num) {
			continue
		}
		state, msg := "initialized", ""
		if st, ok := status[h+"/"+c.String()]; ok {
			if s, ok := v1States[st.State]; ok {
				state = s
			}
			if st.State == unit.Crashed || st.State == unit.Error {
				msg = st.Msg
			}
		}
		rows = append(rows, row{c, state, string(kv.Key), h, msg})
	}
	sort.Slice(rows, func(i, j int) bool {
		if rows[i].c.Type != rows[j].c.Type {
			return rows[i].c.Type < rows[j].c.Type
		}
		return rows[i].c.Num < rows[j].c.Num
	})
	items := []any{}
	for _, r := range rows {
		created := a.created
		if rel := a.releases[r.c.Version]; rel != nil {
			created = rel.Created
		}
		items = append(items, map[string]any{
			"owner": a.owner, "app": a.name, "release": "v" + strconv.Itoa(r.c.Version), "type": r.c.Type, "num": r.c.Num,
			"state": r.state, "created": date(created), "updated": date(created), "uuid": uuidOf(r.key),
			// Beyond v1: where it runs, and why it is not up.
			"host": r.host, "message": r.msg,
		})
	}
	return items, nil
}

func (q *request) listContainers() {
	a, ok := q.appFor(accessUse)
	if !ok {
		return
	}
	num := 0
	if v := q.params["num"]; v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 {
			q.fail(errNotFound)
			return
		}
		num = n
	}
	items, err := q.containers(a, q.params["type"], num)
	if err != nil {
		q.fail(err)
		return
	}
	q.page(items)
}

// scale merges the counts into the app's scale, then waits for the
// scheduler: 204 once every unit is ready, 503 with the cause otherwise
// (the old scale is then written back).
func (q *request) scale() {
	a, ok := q.appFor(accessUse)
	if !ok {
		return
	}
	var in map[string]json.Number
	if err := q.decode(&in); err != nil {
		q.fail(err)
		return
	}
	rel := a.rel()
	if rel == nil || rel.Image == "" {
		q.fail(detailErr(http.StatusBadRequest, "No build associated with this release"))
		return
	}
	want := maps.Clone(a.scale)
	if want == nil {
		want = release.Scale{}
	}
	for t, v := range in {
		n, err := strconv.Atoi(v.String())
		if err != nil || n < 0 || n > release.MaxScale {
			q.fail(fieldErr(t, fmt.Sprintf("Enter a whole number from 0 to %d.", release.MaxScale)))
			return
		}
		if _, ok := rel.Procfile[t]; !ok {
			q.fail(detailErr(http.StatusBadRequest, fmt.Sprintf("Container type %s does not exist in application", t)))
			return
		}
		want[t] = n
	}
	total := 0
	for _, n := range want {
		total += n
	}
	if total > release.MaxScale {
		// One app must not take every host's capacity from the others.
		q.fail(detailErr(http.StatusBadRequest, fmt.Sprintf("An app runs at most %d processes in all; this asks for %d", release.MaxScale, total)))
		return
	}
	unlock, ok := q.lock(a.name, "scale")
	if !ok {
		return
	}
	defer unlock()
	data, _ := json.Marshal(want)
	resp, err := q.s.etcd.Put(q.ctx, keys.AppScale(a.name), string(data))
	if err != nil {
		q.fail(err)
		return
	}
	q.s.event(a.name, fmt.Sprintf("%s scaled containers %s", q.user.Username, release.Scale(in2ints(in)).String()))
	q.await(a.name, resp.Header.Revision, q.noContent)
}

func in2ints(in map[string]json.Number) map[string]int {
	out := map[string]int{}
	for t, v := range in {
		out[t], _ = strconv.Atoi(v.String())
	}
	return out
}

// restart asks the scheduler for a rolling restart of every process, a
// type, or one process, and answers with the processes once it is done.
func (q *request) restart() {
	a, ok := q.appFor(accessUse)
	if !ok {
		return
	}
	r := unit.Restart{Type: q.params["type"], User: q.user.Username, Requested: q.s.now().UTC()}
	if v := q.params["num"]; v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 {
			q.fail(errNotFound)
			return
		}
		r.Num = n
	}
	if r.Type != "" && a.scale[r.Type] == 0 {
		q.fail(errNotFound)
		return
	}
	unlock, ok := q.lock(a.name, "restart")
	if !ok {
		return
	}
	defer unlock()
	data, _ := json.Marshal(r)
	resp, err := q.s.etcd.Put(q.ctx, keys.AppRestart(a.name), string(data))
	if err != nil {
		q.fail(err)
		return
	}
	what := "all processes"
	if r.Type != "" {
		what = r.Type
		if r.Num != 0 {
			what += "." + strconv.Itoa(r.Num)
		}
	}
	q.s.event(a.name, fmt.Sprintf("%s restarted %s", q.user.Username, what))
	q.await(a.name, resp.Header.Revision, func() {
		items, err := q.containers(a, r.Type, r.Num)
		if err != nil {
			q.fail(err)
			return
		}
		q.json(http.StatusOK, items)
	})
}
