// Command deis is the developers' command line: Deis v1.13's commands over
// the controller's REST API (client/).
package main

import (
	"os"

	"github.com/deis/dataplane/client"
)

func main() {
	dir, _ := os.Getwd()
	c := &client.CLI{Stdout: os.Stdout, Stderr: os.Stderr, Stdin: os.Stdin, Env: os.Getenv, Dir: dir}
	os.Exit(c.Run(os.Args[1:]))
}
