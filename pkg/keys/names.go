package keys

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
)

// MaxAppNameLen is the longest app name: it must fit one DNS label.
const MaxAppNameLen = 63

// ValidateAppName checks name against ^[a-z0-9]+(-[a-z0-9]+)*$ and the
// length limit. The error says what is wrong so it can be shown to users.
func ValidateAppName(name string) error {
	if name == "" {
		return errors.New("app name is empty")
	}
	if len(name) > MaxAppNameLen {
		return fmt.Errorf("app name %q is longer than %d characters", truncate(name), MaxAppNameLen)
	}
	prevDash := true // a leading dash is as bad as a double one
	for i := 0; i < len(name); i++ {
		c := name[i]
		switch {
		case c >= 'a' && c <= 'z', c >= '0' && c <= '9':
			prevDash = false
		case c == '-':
			if prevDash {
				return fmt.Errorf("app name %q: dash at position %d must separate letters or digits", truncate(name), i)
			}
			prevDash = true
		default:
			return fmt.Errorf("app name %q: character %q at position %d is not a lowercase letter, digit or dash", truncate(name), c, i)
		}
	}
	if prevDash {
		return fmt.Errorf("app name %q must not end with a dash", truncate(name))
	}
	return nil
}

// ValidateDomain does a cheap syntactic check of a DNS name (no wildcard):
// dot-separated labels of letters, digits and dashes, at most 253 bytes.
func ValidateDomain(d string) error {
	if d == "" {
		return errors.New("domain is empty")
	}
	if len(d) > 253 {
		return fmt.Errorf("domain %q is longer than 253 characters", truncate(d))
	}
	for _, label := range strings.Split(d, ".") {
		if label == "" || len(label) > 63 {
			return fmt.Errorf("domain %q has an empty or over-long label", truncate(d))
		}
		for i := 0; i < len(label); i++ {
			c := label[i]
			if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
				return fmt.Errorf("domain %q: character %q is not allowed", truncate(d), c)
			}
		}
	}
	return nil
}

// Process types the router sends traffic to.
const (
	TypeWeb = "web"
	TypeCmd = "cmd"
)

// ContainerName is a parsed app container name <app>_v<N>.<type>.<num>,
// e.g. myapp_v3.web.1.
type ContainerName struct {
	App     string
	Version int
	Type    string
	Num     int
}

// String formats the name back to <app>_v<N>.<type>.<num>.
func (c ContainerName) String() string {
	return c.App + "_v" + strconv.Itoa(c.Version) + "." + c.Type + "." + strconv.Itoa(c.Num)
}

// Proc is the <type>.<num> part, used as syslog PROCID and in log lines.
func (c ContainerName) Proc() string { return c.Type + "." + strconv.Itoa(c.Num) }

// Routable reports whether the router sends traffic to this process type.
func (c ContainerName) Routable() bool { return c.Type == TypeWeb || c.Type == TypeCmd }

// ParseContainerName parses <app>_v<N>.<type>.<num>. A leading "/" (as
// Docker reports names) is ignored. Process types are lowercase letters,
// digits, dashes and underscores, as Procfile names are.
func ParseContainerName(s string) (ContainerName, error) {
	var c ContainerName
	s = strings.TrimPrefix(s, "/")
	us := strings.LastIndex(s, "_v")
	if us <= 0 {
		return c, fmt.Errorf("container name %q: want <app>_v<N>.<type>.<num>", truncate(s))
	}
	c.App = s[:us]
	if err := ValidateAppName(c.App); err != nil {
		return c, fmt.Errorf("container name %q: %w", truncate(s), err)
	}
	parts := strings.Split(s[us+2:], ".")
	if len(parts) != 3 {
		return c, fmt.Errorf("container name %q: want <app>_v<N>.<type>.<num>", truncate(s))
	}
	var err error
	if c.Version, err = positiveInt(parts[0]); err != nil {
		return c, fmt.Errorf("container name %q: version: %w", truncate(s), err)
	}
	if err := validateProcType(parts[1]); err != nil {
		return c, fmt.Errorf("container name %q: %w", truncate(s), err)
	}
	c.Type = parts[1]
	if c.Num, err = positiveInt(parts[2]); err != nil {
		return c, fmt.Errorf("container name %q: process number: %w", truncate(s), err)
	}
	return c, nil
}

// ContainerFromLabels builds a name from the io.deis.* labels, for
// containers not named by the convention.
func ContainerFromLabels(labels map[string]string) (ContainerName, error) {
	var c ContainerName
	c.App = labels[LabelApp]
	if err := ValidateAppName(c.App); err != nil {
		return c, fmt.Errorf("label io.deis.app: %w", err)
	}
	var err error
	if c.Version, err = positiveInt(strings.TrimPrefix(labels[LabelVersion], "v")); err != nil {
		return c, fmt.Errorf("label io.deis.version: %w", err)
	}
	c.Type = labels[LabelType]
	if err := validateProcType(c.Type); err != nil {
		return c, fmt.Errorf("label io.deis.type: %w", err)
	}
	if c.Num, err = positiveInt(labels[LabelNum]); err != nil {
		return c, fmt.Errorf("label io.deis.num: %w", err)
	}
	return c, nil
}

// ParseContainer tries the name first, then the io.deis.* labels.
func ParseContainer(name string, labels map[string]string) (ContainerName, error) {
	c, err := ParseContainerName(name)
	if err == nil {
		return c, nil
	}
	if labels[LabelApp] != "" {
		return ContainerFromLabels(labels)
	}
	return c, err
}

func validateProcType(t string) error {
	if t == "" || len(t) > 63 {
		return fmt.Errorf("process type %q must be 1 to 63 characters", truncate(t))
	}
	for i := 0; i < len(t); i++ {
		c := t[i]
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
			return fmt.Errorf("process type %q: character %q is not allowed", truncate(t), c)
		}
	}
	return nil
}

// positiveInt parses a decimal integer >= 1 without sign or leading zeros.
func positiveInt(s string) (int, error) {
	if s == "" || len(s) > 9 || s[0] == '0' {
		return 0, fmt.Errorf("%q is not a positive integer", truncate(s))
	}
	n := 0
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return 0, fmt.Errorf("%q is not a positive integer", truncate(s))
		}
		n = n*10 + int(s[i]-'0')
	}
	return n, nil
}

// truncate keeps error messages short when the input is hostile.
func truncate(s string) string {
	if len(s) > 80 {
		return s[:80] + "..."
	}
	return s
}

// BuildTagPrefix starts the tag of every image the builder makes:
// <app>:git-<first 8 of the sha>, and <registry>/<app>:git-<...> once
// pushed. The name is how the builder and the agents know an app's build
// images; a build label would cost the legacy builder one more step (a
// container created and committed) on every push.
const BuildTagPrefix = "git-"

// BuildImage is the local name of app's image built from sha.
func BuildImage(app, sha string) string {
	if len(sha) > 8 {
		sha = sha[:8]
	}
	return app + ":" + BuildTagPrefix + sha
}

// BuildImageApp returns the app whose build image ref names
// ([<registry>/]<app>:git-<hex>), or "" when ref is not one.
func BuildImageApp(ref string) string {
	colon := strings.LastIndexByte(ref, ':')
	if colon < 0 {
		return ""
	}
	repo, tag := ref[:colon], ref[colon+1:]
	hex, ok := strings.CutPrefix(tag, BuildTagPrefix)
	if !ok || len(hex) < 7 || len(hex) > 40 || strings.Trim(hex, "0123456789abcdef") != "" {
		return ""
	}
	app := repo[strings.LastIndexByte(repo, '/')+1:]
	if ValidateAppName(app) != nil {
		return ""
	}
	return app
}
