// Command deis is the developers' command line: Deis v1.13's commands over
// the controller's REST API (client/).
package main

import (
	"os"
	"os/signal"

	"github.com/deis/dataplane/client"
)

func main() {
	dir, _ := os.Getwd()
	c := &client.CLI{Stdout: os.Stdout, Stderr: os.Stderr, Stdin: os.Stdin, Env: os.Getenv, Dir: dir, CatchInterrupt: catchCtrlC}
	os.Exit(c.Run(os.Args[1:]))
}

// catchCtrlC delivers SIGINT to a channel until stop; outside of it Ctrl-C
// ends the process as usual.
func catchCtrlC() (<-chan os.Signal, func()) {
	ch := make(chan os.Signal, 1)
	signal.Notify(ch, os.Interrupt)
	return ch, func() { signal.Stop(ch) }
}
