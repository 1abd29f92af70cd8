package builder

import (
	"bufio"
	"errors"
	"fmt"
	"sort"
	"strings"

	"gopkg.in/yaml.v3"

	"github.com/deis/dataplane/pkg/keys"
)

// ParseProcfile reads a Procfile: YAML mapping process types to commands
// (`web: ./server --port $PORT`). Lines that YAML rejects but that are
// plainly "<type>: <command>" (a command containing ": ", say) are read
// the way Heroku reads them. Process types follow the app-name rules, as
// they become part of container names.
func ParseProcfile(data []byte) (map[string]string, error) {
	procs := map[string]string{}
	var doc map[string]any
	if err := yaml.Unmarshal(data, &doc); err == nil {
		for k, v := range doc {
			switch v := v.(type) {
			case string:
				procs[k] = v
			case nil:
				return nil, fmt.Errorf("process type %q in the Procfile has no command", k)
			case map[string]any, []any:
				return nil, fmt.Errorf("process type %q in the Procfile: want a command line, not a %T", k, v)
			default:
				procs[k] = fmt.Sprint(v)
			}
		}
	} else {
		sc := bufio.NewScanner(strings.NewReader(string(data)))
		for n := 1; sc.Scan(); n++ {
			line := strings.TrimSpace(sc.Text())
			if line == "" || strings.HasPrefix(line, "#") {
				continue
			}
			name, cmd, ok := strings.Cut(line, ":")
			if !ok {
				return nil, fmt.Errorf("line %d of the Procfile: want <type>: <command> (%v)", n, err)
			}
			procs[strings.TrimSpace(name)] = strings.TrimSpace(cmd)
		}
	}
	names := make([]string, 0, len(procs))
	for name, cmd := range procs {
		if err := keys.ValidateAppName(name); err != nil {
			return nil, fmt.Errorf("process type %q in the Procfile: %v", name, err)
		}
		if strings.TrimSpace(cmd) == "" {
			return nil, fmt.Errorf("process type %q in the Procfile has no command", name)
		}
		names = append(names, name)
	}
	sort.Strings(names)
	if len(names) == 0 {
		return nil, errors.New("the Procfile names no process types")
	}
	return procs, nil
}
