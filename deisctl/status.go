package deisctl

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/deis/dataplane/pkg/daemon"
	"github.com/deis/dataplane/pkg/keys"
	"github.com/deis/dataplane/pkg/unit"
)

// Check is one component instance's state as status reports it.
type Check struct {
	Component, Where, State, Detail string
}

// ProbeTimeout bounds each health probe status makes.
const ProbeTimeout = 2 * time.Second

// Status finds every component from what it announces in etcd (its leased
// keys go when it stops or within their TTL when it dies) and probes each:
// etcd members; the services' endpoints (the controller's API, each
// router's port, the logger's and the builder's); every daemon on every
// host (its /healthz and version, /deis/components/); the hosts the
// scheduler places on, and apps with units that are not running.
// unhealthy is how many are not ok.
func Status(ctx context.Context, cli *clientv3.Client) (checks []Check, unhealthy int) {
	add := func(c Check) {
		if c.State != "ok" {
			unhealthy++
		}
		checks = append(checks, c)
	}
	for _, ep := range cli.Endpoints() {
		sctx, cancel := context.WithTimeout(ctx, ProbeTimeout)
		st, err := cli.Status(sctx, ep)
		cancel()
		if err != nil {
			add(Check{"etcd", ep, "down", err.Error()})
			continue
		}
		role := "follower"
		if st.Header.MemberId == st.Leader {
			role = "leader"
		}
		detail := fmt.Sprintf("v%s %s, raft index %d", st.Version, role, st.RaftIndex)
		if len(st.Errors) > 0 {
			add(Check{"etcd", ep, "unhealthy", detail + ": " + strings.Join(st.Errors, "; ")})
			continue
		}
		add(Check{"etcd", ep, "ok", detail})
	}
	resp, err := cli.Get(ctx, keys.Root, clientv3.WithPrefix())
	if err != nil {
		add(Check{"etcd", keys.Root, "down", "read: " + err.Error()})
		return checks, unhealthy
	}
	kv := map[string]string{}
	for _, x := range resp.Kvs {
		kv[string(x.Key)] = string(x.Value)
	}
	// The controller: one leader announces where the API is.
	if h, p := kv[keys.ControllerHost], kv[keys.ControllerPort]; h != "" && p != "" {
		add(probeHealthz(ctx, "controller", "http://"+net.JoinHostPort(h, p)+"/healthz"))
	} else {
		add(Check{"controller", "-", "missing", "no controller announces " + keys.ControllerHost + " (none runs, or none leads the scheduler)"})
	}
	routers := 0
	for k, v := range kv {
		if h, ok := strings.CutPrefix(k, keys.RouterHostsPrefix); ok {
			routers++
			c := probeTCP(ctx, "router", v)
			c.Where = h + " (" + v + ")"
			add(c)
		}
	}
	if routers == 0 {
		add(Check{"router", "-", "missing", "no router announces itself under " + keys.RouterHostsPrefix})
	}
	if h, p := kv[keys.LogsHost], kv[keys.LogsPort]; h != "" && p != "" {
		add(probeTCP(ctx, "logger", net.JoinHostPort(h, p)))
	} else {
		add(Check{"logger", "-", "missing", "no logger announces " + keys.LogsHost})
	}
	if h, p := kv[keys.BuilderHost], kv[keys.BuilderPort]; h != "" && p != "" {
		add(probeTCP(ctx, "builder", net.JoinHostPort(h, p)))
	} else {
		add(Check{"builder", "-", "missing", "no builder announces " + keys.BuilderHost})
	}
	// Every daemon announces itself with its /healthz URL and version.
	for k, v := range kv {
		rest, ok := strings.CutPrefix(k, keys.ComponentsPrefix)
		if !ok {
			continue
		}
		name, host, _ := strings.Cut(rest, "/")
		var p daemon.Presence
		if err := json.Unmarshal([]byte(v), &p); err != nil {
			add(Check{name, host, "unhealthy", "its announcement is not JSON: " + err.Error()})
			continue
		}
		c := probeHealthz(ctx, name, p.Health)
		c.Where = host
		c.Detail = fmt.Sprintf("%s, up since %s: %s", p.Version, p.Started.Format(time.RFC3339), c.Detail)
		add(c)
	}
	// Hosts: a host key exists while its agent keeps its lease (the
	// scheduler places units on these).
	hosts := map[string]bool{}
	for k, v := range kv {
		h, err := keys.ParseHostKey(k)
		if err != nil {
			continue
		}
		hosts[h] = true
		var host unit.Host
		_ = json.Unmarshal([]byte(v), &host)
		add(Check{"host", h, "ok", fmt.Sprintf("agent %s holds its lease; labels %v", host.AgentVersion, host.Labels)})
	}
	// Units: assigned to a host without an agent, or not running.
	problems := map[string][]string{}
	for k, v := range kv {
		h, c, err := keys.ParseUnitKey(keys.StatusPrefix, k)
		if err != nil {
			continue
		}
		var st unit.Status
		if json.Unmarshal([]byte(v), &st) != nil {
			continue
		}
		if st.State == unit.Crashed || st.State == unit.Error {
			problems[c.App] = append(problems[c.App], fmt.Sprintf("%s on %s %s: %s", c.String(), h, st.State, st.Msg))
		}
	}
	for k := range kv {
		h, c, err := keys.ParseUnitKey(keys.UnitsPrefix, k)
		if err == nil && !hosts[h] {
			problems[c.App] = append(problems[c.App], fmt.Sprintf("%s assigned to %s, which has no agent", c.String(), h))
		}
	}
	apps := make([]string, 0, len(problems))
	for a := range problems {
		apps = append(apps, a)
	}
	sort.Strings(apps)
	for _, a := range apps {
		sort.Strings(problems[a])
		add(Check{"app", a, "unhealthy", strings.Join(problems[a], "; ")})
	}
	sort.SliceStable(checks, func(i, j int) bool { return order(checks[i].Component) < order(checks[j].Component) })
	return checks, unhealthy
}

func order(component string) int {
	for i, c := range []string{"etcd", "controller", "router", "logger", "builder", "publisher", "logspout", "agent", "host", "app"} {
		if c == component {
			return i
		}
	}
	return 99
}

// probeHealthz asks a daemon's /healthz: 200 is ok, anything else is
// unhealthy with what the daemon says is wrong.
func probeHealthz(ctx context.Context, component, url string) Check {
	ctx, cancel := context.WithTimeout(ctx, ProbeTimeout)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return Check{component, url, "down", err.Error()}
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 2048))
	if resp.StatusCode != http.StatusOK {
		return Check{component, url, "unhealthy", strings.Join(strings.Fields(resp.Status+" "+string(body)), " ")}
	}
	return Check{component, url, "ok", "/healthz answers 200"}
}

func probeTCP(ctx context.Context, component, addr string) Check {
	var d net.Dialer
	ctx, cancel := context.WithTimeout(ctx, ProbeTimeout)
	defer cancel()
	conn, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return Check{component, addr, "down", err.Error()}
	}
	conn.Close()
	return Check{component, addr, "ok", "accepts connections"}
}

// PrintStatus writes the checks as a table.
func PrintStatus(w *tabwriter.Writer, checks []Check) {
	fmt.Fprintln(w, "COMPONENT\tWHERE\tSTATE\tDETAIL")
	for _, c := range checks {
		fmt.Fprintf(w, "%s\t%s\t%s\t%s\n", c.Component, c.Where, c.State, c.Detail)
	}
	_ = w.Flush()
}
