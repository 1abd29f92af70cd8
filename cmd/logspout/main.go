// Command logspout will ship every container's output as syslog (issue 6).
// Until that lands it is the daemon shell every component starts from: it
// parses the contract's flags, reports etcd and Docker reachability on
// /healthz, serves /metrics, and stops cleanly on SIGTERM.
package main

import (
	"os"

	"github.com/deis/dataplane/pkg/daemon"
)

func main() {
	os.Exit(daemon.RunShell("logspout", "web-addr", "WEB_ADDR", ":8000", os.Args[1:]))
}
