package scheduler

import (
	"strings"
	"testing"

	"github.com/deis/dataplane/pkg/unit"
)

func hostsFor(specs ...unit.Host) []*hostLoad {
	var out []*hostLoad
	for i, h := range specs {
		out = append(out, &hostLoad{name: "h" + string(rune('1'+i)), info: h, byGroup: map[string]int{}})
	}
	return out
}

func TestPlaceSpreadsByAppAndType(t *testing.T) {
	t.Parallel()
	hs := hostsFor(unit.Host{}, unit.Host{}, unit.Host{})
	got := map[string]int{}
	for range 3 {
		h, err := place(hs, need{app: "a", typ: "web"})
		if err != nil {
			t.Fatal(err)
		}
		got[h.name]++
	}
	if len(got) != 3 {
		t.Errorf("web=3 on 3 hosts went to %v, want one each", got)
	}
	// Another app's units count only as total load.
	hs[0].total += 5
	h, _ := place(hs, need{app: "b", typ: "web"})
	if h.name == "h1" {
		t.Errorf("placed on the busiest host")
	}
}

func TestPlaceReplacementStaysPut(t *testing.T) {
	t.Parallel()
	hs := hostsFor(unit.Host{}, unit.Host{}, unit.Host{})
	for _, h := range hs {
		h.byGroup["a/web"], h.total = 1, 1
	}
	// Replacing the unit on h2: its group there is leaving.
	h, err := place(hs, need{app: "a", typ: "web", replacing: "h2"})
	if err != nil || h.name != "h2" {
		t.Fatalf("replacement went to %v (%v), want h2 where the old unit leaves", h, err)
	}
}

func TestPlaceFiltersAndNamesTheConstraint(t *testing.T) {
	t.Parallel()
	dp := map[string]string{"dataPlane": "true", "environ": "prod"}
	hs := hostsFor(
		unit.Host{Labels: map[string]string{"controlPlane": "true"}, MemMB: 4096},
		unit.Host{Labels: dp, MemMB: 1024},
		unit.Host{Labels: map[string]string{"dataPlane": "true", "environ": "dev"}, MemMB: 8192},
	)
	h, err := place(hs, need{app: "a", typ: "web", dataPlane: true, tags: map[string]string{"environ": "prod"}, memory: 512 << 20})
	if err != nil || h.name != "h2" {
		t.Fatalf("got %v, %v; want h2, the only dataPlane host with environ=prod", h, err)
	}
	_, err = place(hs, need{app: "a", typ: "web", dataPlane: true, tags: map[string]string{"environ": "prod"}, memory: 768 << 20})
	if err == nil || !strings.Contains(err.Error(), "no host with dataPlane=true and environ=prod has 768M free") {
		t.Errorf("capacity: %v", err)
	}
	_, err = place(hs, need{app: "a", typ: "web", tags: map[string]string{"environ": "staging"}})
	if err == nil || !strings.Contains(err.Error(), "no host with environ=staging is alive") {
		t.Errorf("tags: %v", err)
	}
	_, err = place(nil, need{app: "a", typ: "web"})
	if err == nil || !strings.Contains(err.Error(), "no agent is registered") {
		t.Errorf("no hosts: %v", err)
	}
}
