// Command ensureimage imports deis/busybox:latest from /bin/busybox unless
// the engine has it already, exactly as the Docker tests do (nothing can be
// pulled).
package main

import (
	"log"
	"os"

	docker "github.com/fsouza/go-dockerclient"

	"github.com/deis/dataplane/pkg/testenv"
)

func main() {
	endpoint := os.Getenv("DOCKER_HOST")
	if endpoint == "" {
		endpoint = "unix:///var/run/docker.sock"
	}
	cli, err := docker.NewClient(endpoint)
	if err != nil {
		log.Fatal(err)
	}
	if err := testenv.EnsureBusyboxImage(cli); err != nil {
		log.Fatal(err)
	}
}
