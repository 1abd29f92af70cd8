// Package keys is the etcd key layout of docs/contract.md in one place: every
// component builds and parses keys through it, so a path is spelled once.
//
// All keys use the etcd v3 API with the Deis v1 paths. Builders do not
// validate their arguments (callers validate names at the boundary with
// ValidateAppName and friends); parsers always validate.
package keys

import (
	"fmt"
	"strconv"
	"strings"
)

// Docker labels of app containers (docs/contract.md "Names") and of the images
// and containers the platform makes.
const (
	LabelApp      = "io.deis.app"
	LabelVersion  = "io.deis.version"
	LabelType     = "io.deis.type"
	LabelNum      = "io.deis.num"
	LabelPort     = "io.deis.port"     // the container port to publish, when several
	LabelLogspout = "io.deis.logspout" // "ignore": not shipped
)

// Root is the prefix under which every platform key lives.
const Root = "/deis/"

// Platform-wide keys.
const (
	PlatformPrefix = "/deis/platform/"
	PlatformDomain = "/deis/platform/domain"
	// PlatformAPIToken is the shared secret of the internal HTTP APIs
	// (logger, logspout, /metrics): "Authorization: Bearer <token>".
	PlatformAPIToken = "/deis/platform/apiToken"

	ServicesPrefix = "/deis/services/"
	DomainsPrefix  = "/deis/domains/"
	CertsPrefix    = "/deis/certs/"
	ConfigPrefix   = "/deis/config/"
	AppsPrefix     = "/deis/apps/"
	AdminsPrefix   = "/deis/admins/"

	RouterPrefix      = "/deis/router/"
	RouterHostsPrefix = "/deis/router/hosts/"

	BuilderPrefix      = "/deis/builder/"
	BuilderHost        = "/deis/builder/host"
	BuilderPort        = "/deis/builder/port"
	BuilderUsersPrefix = "/deis/builder/users/"
	BuilderSSHHostKey  = "/deis/builder/sshHostKey"

	ControllerPrefix = "/deis/controller/"
	ControllerHost   = "/deis/controller/host"
	ControllerPort   = "/deis/controller/port"

	LogsPrefix             = "/deis/logs/"
	LogsHost               = "/deis/logs/host"
	LogsPort               = "/deis/logs/port"
	LogsProtocol           = "/deis/logs/protocol"
	LogsDrain              = "/deis/logs/drain"
	LogsStorageAdapterType = "/deis/logs/storageAdapterType"

	RegistryHost = "/deis/registry/host"
	RegistryPort = "/deis/registry/port"
)

// ServicePrefixFor is the prefix holding every published container of app.
func ServicePrefixFor(app string) string { return ServicesPrefix + app + "/" }

// Service is the key a publisher writes for one running container.
func Service(app, container string) string { return ServicesPrefix + app + "/" + container }

// ParseService splits a /deis/services/<app>/<container> key. The container
// part must be a valid container name belonging to app.
func ParseService(key string) (app string, c ContainerName, err error) {
	rest, ok := strings.CutPrefix(key, ServicesPrefix)
	if !ok {
		return "", c, fmt.Errorf("service key %q: not under %s", key, ServicesPrefix)
	}
	app, name, ok := strings.Cut(rest, "/")
	if !ok {
		return "", c, fmt.Errorf("service key %q: want %s<app>/<container>", key, ServicesPrefix)
	}
	if err := ValidateAppName(app); err != nil {
		return "", c, fmt.Errorf("service key %q: %w", key, err)
	}
	c, err = ParseContainerName(name)
	if err != nil {
		return "", c, fmt.Errorf("service key %q: %w", key, err)
	}
	if c.App != app {
		return "", c, fmt.Errorf("service key %q: container %q belongs to app %q", key, name, c.App)
	}
	return app, c, nil
}

// Domain is the key mapping a custom domain to an app.
func Domain(domain string) string { return DomainsPrefix + domain }

// CertPEM and KeyPEM are the keys of a domain's certificate chain and key.
// domain may be a wildcard such as "*.example.com".
func CertPEM(domain string) string { return CertsPrefix + domain + "/cert" }
func KeyPEM(domain string) string  { return CertsPrefix + domain + "/key" }

// ParseCert splits /deis/certs/<domain>/{cert,key} into domain and part
// ("cert" or "key").
func ParseCert(key string) (domain, part string, err error) {
	rest, ok := strings.CutPrefix(key, CertsPrefix)
	if !ok {
		return "", "", fmt.Errorf("cert key %q: not under %s", key, CertsPrefix)
	}
	i := strings.LastIndexByte(rest, '/')
	if i <= 0 {
		return "", "", fmt.Errorf("cert key %q: want %s<domain>/cert or /key", key, CertsPrefix)
	}
	domain, part = rest[:i], rest[i+1:]
	if part != "cert" && part != "key" {
		return "", "", fmt.Errorf("cert key %q: last element %q is neither cert nor key", key, part)
	}
	if err := ValidateDomain(strings.TrimPrefix(domain, "*.")); err != nil {
		return "", "", fmt.Errorf("cert key %q: %w", key, err)
	}
	return domain, part, nil
}

// ConfigPrefixFor is the prefix of app's config; Config is one entry. KEY is
// lowercased as in Deis v1.
func ConfigPrefixFor(app string) string { return ConfigPrefix + app + "/" }
func Config(app, name string) string    { return ConfigPrefix + app + "/" + strings.ToLower(name) }

// ComponentsPrefix holds one leased key per running daemon:
// /deis/components/<component>/<host> = JSON {health, version, started}
// (deisctl status).
const ComponentsPrefix = "/deis/components/"

// Component is the key of component's daemon on host.
func Component(component, host string) string { return ComponentsPrefix + component + "/" + host }

// Router settings.
func RouterSetting(name string) string { return RouterPrefix + name }
func RouterHost(host string) string    { return RouterHostsPrefix + host }

// Builder users: one key per authorised public key.
func BuilderUserPrefix(user string) string { return BuilderUsersPrefix + user + "/" }
func BuilderUserKey(user, fingerprint string) string {
	return BuilderUsersPrefix + user + "/" + fingerprint
}

// App metadata.
func AppPrefix(app string) string         { return AppsPrefix + app + "/" }
func AppOwner(app string) string          { return AppsPrefix + app + "/owner" }
func AppPermsPrefix(app string) string    { return AppsPrefix + app + "/perms/" }
func AppPerm(app, user string) string     { return AppsPrefix + app + "/perms/" + user }
func AppReleasesPrefix(app string) string { return AppsPrefix + app + "/releases/" }
func AppRelease(app string, version int) string {
	return AppsPrefix + app + "/releases/v" + strconv.Itoa(version)
}
func AppCurrentRelease(app string) string { return AppsPrefix + app + "/release" }
func AppScale(app string) string          { return AppsPrefix + app + "/scale" }
func Admin(user string) string            { return AdminsPrefix + user }

// LockPrefix is where lease-backed locks live (builder push locks, the
// scheduler's leader election).
const LockPrefix = "/deis/locks/"

// PushLock is the lock held while one push to app is being built.
func PushLock(app string) string { return LockPrefix + "push/" + app }
