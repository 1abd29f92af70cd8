// Command stackimage makes the builder's default stack image,
// deis/busybox:latest, from /bin/busybox (Debian's busybox-static) unless
// the engine has it already: nothing can be pulled here. scripts/setup.sh,
// `make run` and the benchmarks run it; the Docker tests do the same
// through testenv.
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
