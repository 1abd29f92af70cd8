package e2e

import (
	"os"
	"os/exec"
	"strings"
	"testing"
)

// TestComposeConfig validates docker-compose.yml with docker-compose itself
// and checks every image it names is one scripts/images.sh builds.
func TestComposeConfig(t *testing.T) {
	bin, err := exec.LookPath("docker-compose")
	if err != nil {
		if os.Getenv("REQUIRE_DOCKER") == "1" {
			t.Fatal("REQUIRE_DOCKER=1 but docker-compose is not installed (scripts/setup.sh installs it)")
		}
		t.Skip("docker-compose not installed; run scripts/setup.sh")
	}
	out, err := exec.Command(bin, "-f", "../docker-compose.yml", "config").CombinedOutput()
	if err != nil {
		t.Fatalf("docker-compose config: %v\n%s", err, out)
	}
	script, err := os.ReadFile("../scripts/images.sh")
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"etcd", "router", "logger", "logspout", "publisher", "builder"} {
		if !strings.Contains(string(out), "image: deis/"+name+":latest") {
			t.Errorf("compose config lacks image deis/%s", name)
		}
		if !strings.Contains(string(script), " "+name) {
			t.Errorf("scripts/images.sh does not build %s", name)
		}
		if _, err := os.Stat("../cmd/" + name); err != nil {
			t.Errorf("no cmd/%s for image deis/%s", name, name)
		}
	}
	for _, port := range []string{":80", ":443", ":2222", ":514"} {
		if !strings.Contains(string(out), "- "+port+"\n") {
			t.Errorf("compose config does not put a daemon on %s", port)
		}
	}
}
