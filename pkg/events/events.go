// Package events tells an app's log what happened to the app ("alice
// scaled containers web=3", "alice deployed 060da68"), as Deis v1 did: one
// syslog line to the announced logger with APP-NAME the app and PROCID
// deis-controller, so `deis logs` shows "myapp[deis-controller]: ...".
package events

import (
	"context"
	"net"
	"strconv"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/deis/dataplane/pkg/keys"
	"github.com/deis/dataplane/pkg/syslog/format"
)

// ProcID is the PROCID of lifecycle events.
const ProcID = "deis-controller"

// Send hands one event to the logger announced at /deis/logs/host,port in
// the background: it never blocks its caller, and an event with no logger
// to take it is dropped (the release records keep the history).
func Send(cli *clientv3.Client, app, text string) {
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		resp, err := cli.Txn(ctx).Then(clientv3.OpGet(keys.LogsHost), clientv3.OpGet(keys.LogsPort)).Commit()
		if err != nil {
			return
		}
		h, p := resp.Responses[0].GetResponseRange().Kvs, resp.Responses[1].GetResponseRange().Kvs
		if len(h) == 0 {
			return
		}
		port := 514
		if len(p) > 0 {
			if n, err := strconv.Atoi(string(p[0].Value)); err == nil {
				port = n
			}
		}
		msg := format.AppendRFC5424(nil, &format.Message{Priority: format.PriStdout, Time: time.Now(), Host: ProcID, App: app, ProcID: ProcID, Text: []byte(text)})
		conn, err := net.DialTimeout("udp", net.JoinHostPort(string(h[0].Value), strconv.Itoa(port)), time.Second)
		if err != nil {
			return
		}
		defer conn.Close()
		_, _ = conn.Write(msg)
	}()
}
