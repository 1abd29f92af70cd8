// Command builder will be the SSH git server behind `git push deis master`
// (issue 7). Until that lands it is the daemon shell every component starts
// from: it parses the contract's flags, reports etcd and Docker reachability
// on /healthz, serves /metrics, and stops cleanly on SIGTERM.
package main

import (
	"os"

	"github.com/deis/dataplane/pkg/daemon"
)

func main() {
	os.Exit(daemon.RunShell("builder", "health-addr", "HEALTH_ADDR", ":9092", os.Args[1:]))
}
