// Package unit holds the records the scheduler and the agents exchange
// through etcd (../shared/CONTROL-PLANE.md, docs/scheduler.md): a host's
// registration, a unit's spec (what the leader assigns), its status (what
// the agent reports) and an app's deploy record.
package unit

import (
	"encoding/json"
	"fmt"
	"time"

	"github.com/deis/dataplane/pkg/keys"
)

// Host is /deis/hosts/<host>, written by the agent on its 10 s lease.
type Host struct {
	Addr         string            `json:"addr"`
	Labels       map[string]string `json:"labels"`
	MemMB        int64             `json:"memMB"`
	CPUs         int               `json:"cpus"`
	AgentVersion string            `json:"agentVersion"`
	Started      time.Time         `json:"started"`
}

// Spec is /deis/scheduler/units/<host>/<unit>: one container the leader
// wants on that host. Memory is bytes (0: no limit), CPU shares (0: none).
// Port is the container port of a routed type (0: the agent picks PORT from
// the release config, else the image's lowest exposed TCP port, else 5000).
type Spec struct {
	App        string `json:"app"`
	Version    int    `json:"version"`
	Type       string `json:"type"`
	Num        int    `json:"num"`
	Image      string `json:"image"`
	Command    string `json:"command"`
	Port       int    `json:"port,omitempty"`
	Memory     int64  `json:"memory,omitempty"`
	CPU        int    `json:"cpu,omitempty"`
	Generation int    `json:"generation"`
	Deploy     string `json:"deploy,omitempty"` // the deploy record id that placed it
}

// Name is the unit's container name <app>_v<N>.<type>.<num>.
func (s Spec) Name() keys.ContainerName {
	return keys.ContainerName{App: s.App, Version: s.Version, Type: s.Type, Num: s.Num}
}

// Routed reports whether the router sends traffic to this unit.
func (s Spec) Routed() bool { return s.Name().Routable() }

// ParseSpec decodes and checks a unit spec against the name in its key.
func ParseSpec(name keys.ContainerName, data []byte) (Spec, error) {
	var s Spec
	if err := json.Unmarshal(data, &s); err != nil {
		return s, fmt.Errorf("unit %s: %w", name, err)
	}
	if s.Name() != name {
		return s, fmt.Errorf("unit %s: spec names %s", name, s.Name())
	}
	if s.Image == "" {
		return s, fmt.Errorf("unit %s: no image", name)
	}
	return s, nil
}

// Unit states an agent reports.
const (
	Pulling  = "pulling"
	Starting = "starting"
	Up       = "up"
	Draining = "draining"
	Stopping = "stopping"
	Crashed  = "crashed"
	Exited   = "exited"
	Error    = "error"
)

// Status is /deis/scheduler/status/<host>/<unit>, on the agent's lease.
type Status struct {
	State      string    `json:"state"`
	Container  string    `json:"container,omitempty"`
	Port       int       `json:"port,omitempty"` // host port of a routed unit
	Restarts   int       `json:"restarts"`
	Exit       int       `json:"exit"`
	Since      time.Time `json:"since"`
	Msg        string    `json:"msg,omitempty"`
	Tail       string    `json:"tail,omitempty"` // last log lines after a crash
	Generation int       `json:"generation"`
}

// Retiring reports whether the unit is on its way out: it must not be routed.
func (s Status) Retiring() bool { return s.State == Draining || s.State == Stopping }

// Deploy record kinds and states.
const (
	KindDeploy  = "deploy"
	KindScale   = "scale"
	KindRestart = "restart"

	Running    = "running"
	Succeeded  = "succeeded"
	Failed     = "failed"
	Superseded = "superseded"
)

// Target is what an app converges to: a release and a scale.
type Target struct {
	Release int            `json:"release"`
	Scale   map[string]int `json:"scale"`
}

// Deploy is /deis/scheduler/deploys/<app>: the last change the leader
// carried out for the app. Rev is the etcd revision of the desired state it
// converges to: a writer at revision R waits for a record with Rev >= R that
// succeeded or failed.
type Deploy struct {
	ID      string    `json:"id"`
	Kind    string    `json:"kind"`
	Rev     int64     `json:"rev"`
	From    Target    `json:"from"`
	To      Target    `json:"to"`
	State   string    `json:"state"`
	Step    string    `json:"step"`
	Started time.Time `json:"started"`
	Updated time.Time `json:"updated"`
	Msg     string    `json:"msg,omitempty"`
	// RevertRev is the revision at which a failed deploy moved the desired
	// state back; that move is part of this record, not a new change.
	RevertRev int64 `json:"revertRev,omitempty"`
}

// Done reports whether the record reached a terminal state.
func (d Deploy) Done() bool { return d.State == Succeeded || d.State == Failed }

// Restart is /deis/apps/<app>/restart: a rolling restart request. Type ""
// restarts every type; Num 0 every process of the type.
type Restart struct {
	Type      string    `json:"type,omitempty"`
	Num       int       `json:"num,omitempty"`
	User      string    `json:"user,omitempty"`
	Requested time.Time `json:"requested"`
}

// TypeRun is the process type of one-off `deis run` units: never routed,
// never listed by ps, never in the desired set.
const TypeRun = "run"

// Run is /deis/scheduler/runs/<app>/<unit>: a one-off command placed by the
// replica that received `deis run`, on that replica's lease (Lease), so
// that it goes away with the replica or when the client leaves.
type Run struct {
	Spec
	Host  string `json:"host"`
	Lease int64  `json:"lease"`
}

// RunResult is /deis/scheduler/runs/<app>/<unit>/result, on the same lease.
type RunResult struct {
	RC        int    `json:"rc"`
	Output    string `json:"output"`
	Truncated bool   `json:"truncated"`
}

// MaxRunOutput is the most output a run keeps: its last 1 MiB.
const MaxRunOutput = 1 << 20
