package client

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
)

// parseEnvFile reads a .env file: KEY=value lines, blank lines and #
// comments skipped, an optional "export " prefix, values optionally in
// single quotes (taken as is) or double quotes (Go escapes such as \n).
// A line that is not KEY=value is an error naming its number: config:push
// must not set half a file.
func parseEnvFile(data string) (map[string]string, error) {
	out := map[string]string{}
	for i, line := range strings.Split(strings.ReplaceAll(data, "\r\n", "\n"), "\n") {
		line = strings.TrimSpace(line)
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		line = strings.TrimPrefix(line, "export ")
		k, v, ok := strings.Cut(line, "=")
		k = strings.TrimSpace(k)
		if !ok || k == "" || strings.ContainsAny(k, " \t\"'") {
			return nil, fmt.Errorf("line %d is not KEY=value: %q", i+1, clipLine(line))
		}
		v = strings.TrimSpace(v)
		switch {
		case len(v) >= 2 && v[0] == '"' && v[len(v)-1] == '"':
			u, err := strconv.Unquote(v)
			if err != nil {
				return nil, fmt.Errorf("line %d: the value of %s is not a valid double-quoted string: %v", i+1, k, err)
			}
			v = u
		case len(v) >= 2 && v[0] == '\'' && v[len(v)-1] == '\'':
			v = v[1 : len(v)-1]
		}
		out[k] = v
	}
	return out, nil
}

func clipLine(s string) string {
	if len(s) > 60 {
		return s[:60] + "..."
	}
	return s
}

// formatEnvFile writes values sorted by key, quoting those that need it so
// that parseEnvFile reads back exactly the same map.
func formatEnvFile(values map[string]string) string {
	ks := make([]string, 0, len(values))
	for k := range values {
		ks = append(ks, k)
	}
	sort.Strings(ks)
	var b strings.Builder
	for _, k := range ks {
		v := values[k]
		if v != strings.TrimSpace(v) || strings.ContainsAny(v, "\"'\n\r\\#") {
			v = strconv.Quote(v)
		}
		b.WriteString(k + "=" + v + "\n")
	}
	return b.String()
}

// configPull writes the app's config to .env (0600: it holds secrets). An
// existing file is refused unless --overwrite; --interactive asks for each
// key whose local value differs.
func (c *CLI) configPull(f *flags) error {
	app, cfg, err := c.appConfig(f)
	if err != nil {
		return err
	}
	path := filepath.Join(c.Dir, ".env")
	values := cfg.Values
	if old, err := os.ReadFile(path); err == nil {
		local, perr := parseEnvFile(string(old))
		switch {
		case f.has("interactive") && perr == nil:
			merged := local
			for k, v := range cfg.Values {
				if lv, ok := local[k]; ok && lv != v {
					if ans := c.prompt(fmt.Sprintf("%s: overwrite %q with %q from %s? (y/N) ", k, lv, v, app)); !strings.HasPrefix(strings.ToLower(ans), "y") {
						continue
					}
				}
				merged[k] = v
			}
			values = merged
		case f.has("overwrite"):
		default:
			return errors.New(".env already exists here: use --overwrite to replace it, or --interactive to choose key by key")
		}
	} else if !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("read %s: %w", path, err)
	}
	if err := os.WriteFile(path, []byte(formatEnvFile(values)), 0o600); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	_ = os.Chmod(path, 0o600)
	fmt.Fprintf(c.Stdout, "Wrote %d values of %s to .env\n", len(values), app)
	return nil
}

// configPush sets every value of .env (or --path) in one release.
func (c *CLI) configPush(f *flags) error {
	path := f.get("path")
	if path == "" {
		path = ".env"
	}
	if !filepath.IsAbs(path) {
		path = filepath.Join(c.Dir, path)
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("read %s: %w (config:pull writes one)", path, err)
	}
	values, err := parseEnvFile(string(data))
	if err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	if len(values) == 0 {
		return fmt.Errorf("%s holds no KEY=value line: nothing to push", path)
	}
	body := map[string]any{}
	for k, v := range values {
		body[k] = v
	}
	return c.configChange(f, map[string]any{"values": body}, "Creating config")
}
