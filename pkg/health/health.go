// Package health keeps a daemon's named health checks and serves them as
// /healthz: 200 "ok" when every check passes, else 503 listing the reasons.
package health

import (
	"net/http"
	"sort"
	"strings"
	"sync"
)

// Registry is a set of named conditions. The zero value is ready to use and
// safe for concurrent use.
type Registry struct {
	mu     sync.Mutex
	errors map[string]string
}

// Set records the state of check name: nil means healthy.
func (r *Registry) Set(name string, err error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.errors == nil {
		r.errors = make(map[string]string)
	}
	if err == nil {
		delete(r.errors, name)
		return
	}
	r.errors[name] = err.Error()
}

// Problems returns "name: reason" for every failing check, sorted.
func (r *Registry) Problems() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make([]string, 0, len(r.errors))
	for name, reason := range r.errors {
		out = append(out, name+": "+reason)
	}
	sort.Strings(out)
	return out
}

// Healthy reports whether no check fails.
func (r *Registry) Healthy() bool { return len(r.Problems()) == 0 }

// ServeHTTP answers 200 "ok" or 503 with one problem per line.
func (r *Registry) ServeHTTP(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	if p := r.Problems(); len(p) > 0 {
		w.WriteHeader(http.StatusServiceUnavailable)
		_, _ = w.Write([]byte(strings.Join(p, "\n") + "\n"))
		return
	}
	_, _ = w.Write([]byte("ok\n"))
}
