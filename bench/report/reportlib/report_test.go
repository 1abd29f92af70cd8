package reportlib

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestWrite(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "router.md"), []byte("## Router\n\n| proxy | req/s |\n| router | 100 |\n"), 0o644)
	os.WriteFile(filepath.Join(dir, "router.csv"), []byte("chart,series,value,unit\nrps,router,100,req/s\nrps,nginx,80,req/s\n"), 0o644)
	if err := Write(dir, "logspout"); err != nil {
		t.Fatal(err)
	}
	md, err := os.ReadFile(filepath.Join(dir, "report.md"))
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"| router | 100 |", "![rps](rps.png)", "Failed benchmarks:** logspout"} {
		if !strings.Contains(string(md), want) {
			t.Errorf("report lacks %q:\n%s", want, md)
		}
	}
	png, err := os.ReadFile(filepath.Join(dir, "rps.png"))
	if err != nil || len(png) < 100 || string(png[1:4]) != "PNG" {
		t.Fatalf("chart not a PNG: %v", err)
	}
}

func TestReadCSVRejectsBadRows(t *testing.T) {
	t.Parallel()
	p := filepath.Join(t.TempDir(), "x.csv")
	os.WriteFile(p, []byte("chart,series,value,unit\nrps,router,fast,req/s\n"), 0o644)
	if _, err := ReadCSV(p); err == nil || !strings.Contains(err.Error(), "line 2") {
		t.Fatalf("want an error naming line 2, got %v", err)
	}
}
