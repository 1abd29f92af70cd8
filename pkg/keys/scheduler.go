package keys

import (
	"fmt"
	"strconv"
	"strings"
)

// Docker labels the agent adds to the containers it runs
// (../shared/CONTROL-PLANE.md "Units").
const (
	// LabelHost is the agent --host a container belongs to: simulated hosts
	// share one Docker engine, and an agent touches only its own.
	LabelHost = "io.deis.host"
	// LabelGeneration is the unit's generation; a restart bumps it, and a
	// container of an older generation is replaced.
	LabelGeneration = "io.deis.generation"
)

// Control-plane keys (docs/scheduler.md).
const (
	HostsPrefix = "/deis/hosts/"

	SchedulerPrefix       = "/deis/scheduler/"
	SchedulerLeaderPrefix = "/deis/scheduler/leader"
	UnitsPrefix           = "/deis/scheduler/units/"
	StatusPrefix          = "/deis/scheduler/status/"
	DeploysPrefix         = "/deis/scheduler/deploys/"
	RunsPrefix            = "/deis/scheduler/runs/"

	// PlatformPlacementOptions (Deis v1's enablePlacementOptions) = "true"
	// sends app units only to hosts labelled dataPlane=true.
	PlatformPlacementOptions = "/deis/platform/enablePlacementOptions"

	ControllerRegistrationMode = "/deis/controller/registrationMode"
	UsersPrefix                = "/deis/users/"
	TokensPrefix               = "/deis/tokens/"
	ControllerCertsPrefix      = "/deis/controller/certs/"
	AppLockPrefix              = "/deis/locks/app/"
)

// Host is the liveness and capacity record of one agent.
func Host(host string) string { return HostsPrefix + host }

// UnitsHostPrefix holds the units assigned to host; Unit is one of them.
func UnitsHostPrefix(host string) string { return UnitsPrefix + host + "/" }
func Unit(host, unit string) string      { return UnitsPrefix + host + "/" + unit }

// StatusHostPrefix holds host's unit status records; Status is one.
func StatusHostPrefix(host string) string { return StatusPrefix + host + "/" }
func Status(host, unit string) string     { return StatusPrefix + host + "/" + unit }

// Deploy is the last deploy record of app.
func Deploy(app string) string { return DeploysPrefix + app }

// RunsAppPrefix holds app's one-off run units; RunUnit is one, RunResult its outcome.
func RunsAppPrefix(app string) string    { return RunsPrefix + app + "/" }
func RunUnit(app, unit string) string    { return RunsPrefix + app + "/" + unit }
func RunResult(app, unit string) string  { return RunsPrefix + app + "/" + unit + "/result" }
func AppFailedPrefix(app string) string  { return AppsPrefix + app + "/failed/" }
func AppRestart(app string) string       { return AppsPrefix + app + "/restart" }
func AppLock(app string) string          { return AppLockPrefix + app }
func AppFailed(app string, v int) string { return AppsPrefix + app + "/failed/v" + strconv.Itoa(v) }
func User(name string) string            { return UsersPrefix + name }
func Token(sha256hex string) string      { return TokensPrefix + sha256hex }
func ControllerCert(cn string) string    { return ControllerCertsPrefix + cn }

// ParseHostKey returns the host of /deis/hosts/<host>.
func ParseHostKey(key string) (string, error) {
	h, ok := strings.CutPrefix(key, HostsPrefix)
	if !ok || h == "" || strings.Contains(h, "/") {
		return "", fmt.Errorf("host key %q: want %s<host>", key, HostsPrefix)
	}
	return h, nil
}

// ParseUnitKey splits /deis/scheduler/units/<host>/<unit> or
// /deis/scheduler/status/<host>/<unit> (prefix says which) into host and
// the parsed unit name.
func ParseUnitKey(prefix, key string) (host string, c ContainerName, err error) {
	rest, ok := strings.CutPrefix(key, prefix)
	if !ok {
		return "", c, fmt.Errorf("key %q: not under %s", key, prefix)
	}
	host, name, ok := strings.Cut(rest, "/")
	if !ok || host == "" {
		return "", c, fmt.Errorf("key %q: want %s<host>/<unit>", key, prefix)
	}
	c, err = ParseContainerName(name)
	if err != nil {
		return "", c, fmt.Errorf("key %q: %w", key, err)
	}
	return host, c, nil
}

// ParseAppKey returns the app and the rest of /deis/apps/<app>/<rest>.
func ParseAppKey(key string) (app, rest string, err error) {
	r, ok := strings.CutPrefix(key, AppsPrefix)
	if !ok {
		return "", "", fmt.Errorf("key %q: not under %s", key, AppsPrefix)
	}
	app, rest, _ = strings.Cut(r, "/")
	if err := ValidateAppName(app); err != nil {
		return "", "", fmt.Errorf("key %q: %w", key, err)
	}
	return app, rest, nil
}
