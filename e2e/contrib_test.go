package e2e

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestSystemdUnitPerDaemon: contrib/systemd has a unit for every daemon,
// whose reload sends SIGHUP (which reloads and never stops a daemon).
func TestSystemdUnitPerDaemon(t *testing.T) {
	for _, d := range []string{"router", "logger", "logspout", "publisher", "builder", "agent", "controller"} {
		b, err := os.ReadFile(filepath.Join("..", "contrib", "systemd", "deis-"+d+".service"))
		if err != nil {
			t.Errorf("no unit for %s: %v", d, err)
			continue
		}
		u := string(b)
		for _, want := range []string{"ExecStart=/usr/local/bin/" + d + "\n", "ExecReload=/bin/kill -HUP $MAINPID", "[Install]"} {
			if !strings.Contains(u, want) {
				t.Errorf("deis-%s.service lacks %q", d, want)
			}
		}
	}
}
