package e2e

import (
	"os"
	"os/exec"
	"strings"
	"testing"
)

// TestComposeConfig validates docker-compose.yml with docker-compose itself
// and checks every image it names is one scripts/images.sh builds, under
// names that are not the public deis/* ones, that the platform domain is
// set, and that Docker waits longer than the router's grace on stop.
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
	if strings.Contains(string(out), "image: deis/") {
		t.Error("compose names a public deis/* image")
	}
	for _, name := range []string{"etcd", "router", "logger", "logspout", "publisher", "builder", "controller", "agent", "deisctl"} {
		if !strings.Contains(string(out), "image: localhost/deis-"+name+":latest") {
			t.Errorf("compose config lacks image localhost/deis-%s", name)
		}
		if !strings.Contains(string(script), " "+name) {
			t.Errorf("scripts/images.sh does not build %s", name)
		}
		if _, err := os.Stat("../cmd/" + name); err != nil {
			t.Errorf("no cmd/%s for image deis/%s", name, name)
		}
	}
	if !strings.Contains(string(out), "domain=localhost") {
		t.Error("compose does not set the platform domain")
	}
	if !strings.Contains(string(out), "- --grace\n    - 30s\n") || strings.Count(string(out), "stop_grace_period: 40s") < 9 {
		t.Errorf("every service must wait 40s on stop, longer than the router's 30s grace:\n%s", out)
	}
	for _, port := range []string{":80", ":443", ":2222", ":514", ":8001"} {
		if !strings.Contains(string(out), "- "+port+"\n") {
			t.Errorf("compose config does not put a daemon on %s", port)
		}
	}
}
