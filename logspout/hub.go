package logspout

import "net/http"

// ServeLogs streams every shipped line as "<time> <app>[<proc>]: <text>",
// optionally only one app's (?app=<name>), until the client goes away
// (pkg/follow: capped followers, each missing lines rather than slowing
// shipping when it reads too slowly).
func (l *Logspout) ServeLogs(w http.ResponseWriter, r *http.Request) {
	l.hub.Serve(w, r, r.URL.Query().Get("app"), nil)
}
