package logger

import (
	"net/http"
	"strconv"
	"strings"

	"github.com/deis/dataplane/pkg/daemon"
	"github.com/deis/dataplane/pkg/keys"
)

// NewAdmin binds the logger's HTTP server on addr (--http-addr): the log API
// of docs/contract.md beside /healthz and /metrics, every request but
// /healthz behind the API token. The caller (main) owns it and runs it
// beside Run, with its Auth's Watch.
//
//	GET    /<app>?log_lines=N, /logs/<app>?log_lines=N  (default 100)
//	GET    /logs/<app>?follow=true                      (streams new lines)
//	DELETE /<app>, /logs/<app>
func NewAdmin(l *Logger, addr string) (*daemon.Admin, error) {
	reg := l.reg
	if reg == nil {
		reg = daemon.NewMetrics()
	}
	admin, err := daemon.NewAdmin(addr, l.Health, reg, l.auth)
	if err != nil {
		return nil, err
	}
	// Reading and deleting logs needs the API token (or loopback while none
	// is set): app containers reach this port through the Docker bridge.
	admin.Mux.Handle("/", l.auth.Wrap(http.HandlerFunc(l.serveLogs)))
	return admin, nil
}

func (l *Logger) serveLogs(w http.ResponseWriter, r *http.Request) {
	app := strings.TrimPrefix(r.URL.Path, "/")
	app = strings.TrimPrefix(app, "logs/")
	if err := keys.ValidateAppName(app); err != nil {
		http.Error(w, "bad app name: "+err.Error(), http.StatusBadRequest)
		return
	}
	switch r.Method {
	case http.MethodDelete:
		if err := l.Store().Delete(app); err != nil {
			http.Error(w, "could not delete logs: "+err.Error(), http.StatusInternalServerError)
			return
		}
		w.WriteHeader(http.StatusNoContent)
	case http.MethodGet, http.MethodHead:
		n := 100
		if v := r.URL.Query().Get("log_lines"); v != "" {
			var err error
			n, err = strconv.Atoi(v)
			if err != nil || n < 1 || n > 1_000_000 {
				http.Error(w, "log_lines must be an integer from 1 to 1000000", http.StatusBadRequest)
				return
			}
		}
		follow := false
		if v := r.URL.Query().Get("follow"); v != "" {
			var err error
			if follow, err = strconv.ParseBool(v); err != nil {
				http.Error(w, "follow must be true or false", http.StatusBadRequest)
				return
			}
		}
		if follow {
			l.follow(w, r, app, n)
			return
		}
		lines, err := l.Store().Tail(app, n)
		if err != nil {
			http.Error(w, "could not read logs: "+err.Error(), http.StatusInternalServerError)
			return
		}
		if len(lines) == 0 {
			w.WriteHeader(http.StatusNoContent)
			return
		}
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		size := 0
		for _, ln := range lines {
			size += len(ln) + 1
		}
		buf := make([]byte, 0, size)
		for _, ln := range lines {
			buf = append(append(buf, ln...), '\n')
		}
		_, _ = w.Write(buf)
	default:
		w.Header().Set("Allow", "GET, HEAD, DELETE")
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
	}
}

// follow sends the last n lines (only if log_lines was given), then every
// new line as it arrives, until the client goes away.
func (l *Logger) follow(w http.ResponseWriter, r *http.Request, app string, n int) {
	var backlog [][]byte
	if r.URL.Query().Get("log_lines") != "" {
		backlog, _ = l.Store().Tail(app, n)
	}
	l.hub.Serve(w, r, app, backlog)
}
