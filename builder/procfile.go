package builder

import (
	"bufio"
	"errors"
	"fmt"
	"regexp"
	"strings"

	"github.com/deis/dataplane/pkg/keys"
)

// procLine is a Procfile line as Heroku reads it: "<type>: <command>".
var procLine = regexp.MustCompile(`^([A-Za-z0-9_-]+):\s*(.+)$`)

// ParseProcfile reads a Procfile the way Heroku does: one
// "<type>: <command>" per line, the command taken literally (a YAML parser
// would turn `&x ./server` into `./server` and `0x1F` into `31`). Blank
// lines and lines starting with # are skipped. A command wholly inside one
// pair of quotes loses them, as Deis v1's YAML reading did for the quoted
// Procfiles written for it. A process type given twice is an error, and
// types follow the app-name rules, as they become part of container names.
func ParseProcfile(data []byte) (map[string]string, error) {
	procs := map[string]string{}
	sc := bufio.NewScanner(strings.NewReader(string(data)))
	sc.Buffer(make([]byte, 0, 4096), 1<<20)
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		m := procLine.FindStringSubmatch(line)
		if m == nil {
			return nil, fmt.Errorf("line %d of the Procfile: want <type>: <command>, got %q", n, truncate(line, 60))
		}
		name, cmd := m[1], unquote(strings.TrimSpace(m[2]))
		if err := keys.ValidateAppName(name); err != nil {
			return nil, fmt.Errorf("process type %q in the Procfile: %w", name, err)
		}
		if _, dup := procs[name]; dup {
			return nil, fmt.Errorf("line %d of the Procfile: process type %q is given twice", n, name)
		}
		if strings.TrimSpace(cmd) == "" {
			return nil, fmt.Errorf("process type %q in the Procfile has no command", name)
		}
		procs[name] = cmd
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("read the Procfile: %w", err)
	}
	if len(procs) == 0 {
		return nil, errors.New("the Procfile names no process types")
	}
	return procs, nil
}

// unquote removes one pair of quotes around the whole of s when no quote
// of that kind is inside.
func unquote(s string) string {
	if len(s) >= 2 {
		q := s[0]
		if (q == '"' || q == '\'') && s[len(s)-1] == q && !strings.ContainsRune(s[1:len(s)-1], rune(q)) {
			return s[1 : len(s)-1]
		}
	}
	return s
}
