package logspout

// Following containers: which to ship (at start, on events, after an
// outage), reading their logs from the cursors, and handing each line to
// the routes.

import (
	"context"
	"fmt"
	"strings"
	"time"

	docker "github.com/fsouza/go-dockerclient"

	"github.com/deis/dataplane/pkg/dockerx"
	"github.com/deis/dataplane/pkg/keys"
	"github.com/deis/dataplane/pkg/syslog/format"
)

// Resync follows every running container not yet followed, catches up
// stopped ones that may hold unshipped lines (see ship), and forgets the
// cursors of containers that no longer exist (destroyed while logspout was
// not watching).
func (l *Logspout) Resync(ctx context.Context) error {
	list, err := l.docker.ListContainers(docker.ListContainersOptions{All: true, Context: ctx})
	if err != nil {
		return fmt.Errorf("list containers: %w", err)
	}
	exists := make(map[string]bool, len(list))
	for _, c := range list {
		exists[c.ID] = true
		if c.State == "running" || c.State == "paused" {
			l.follow(ctx, c.ID)
			continue
		}
		l.mu.Lock()
		done := l.caughtUp[c.ID]
		l.mu.Unlock()
		if !done && c.State != "created" {
			l.follow(ctx, c.ID) // ship decides whether it needs catching up
		}
	}
	l.mu.Lock()
	for key := range l.cursors {
		if id, _, _ := strings.Cut(key, ":"); !exists[id] {
			delete(l.cursors, key)
			l.dirty = true
		}
	}
	for id := range l.caughtUp {
		if !exists[id] {
			delete(l.caughtUp, id)
		}
	}
	l.mu.Unlock()
	return nil
}

// Event starts following on start; a follower ends by itself when the
// container's log stream ends (die).
func (l *Logspout) Event(ctx context.Context, ev dockerx.Event) {
	switch ev.Action {
	case "start", "restart", "unpause":
		l.follow(ctx, ev.ID)
	case "destroy":
		l.mu.Lock()
		for _, pri := range []int{format.PriStdout, format.PriStderr} {
			key := cursorKey(ev.ID, pri)
			delete(l.cursors, key)
			l.destroyed[key] = time.Now()
		}
		delete(l.caughtUp, ev.ID)
		l.dirty = true
		l.mu.Unlock()
	}
}

// follow ships container id until it stops or ctx (Run's, through the
// event watcher) ends.
func (l *Logspout) follow(ctx context.Context, id string) {
	l.mu.Lock()
	if _, ok := l.following[id]; ok {
		l.mu.Unlock()
		return
	}
	ctx, cancel := context.WithCancel(ctx)
	l.following[id] = cancel
	l.mu.Unlock()
	l.wg.Go(func() {
		defer func() {
			l.mu.Lock()
			delete(l.following, id)
			l.mu.Unlock()
			cancel()
		}()
		l.ship(ctx, id)
	})
}

// ship streams one container's log from its cursor and sends each line.
func (l *Logspout) ship(ctx context.Context, id string) {
	info, err := l.docker.InspectContainerWithOptions(docker.InspectContainerOptions{ID: id, Context: ctx})
	if err != nil {
		return
	}
	name := strings.TrimPrefix(info.Name, "/")
	var labels map[string]string
	var env []string
	tty := false
	if info.Config != nil {
		labels, env, tty = info.Config.Labels, info.Config.Env, info.Config.Tty
	}
	if labels[keys.LabelLogspout] == "ignore" || containsEnv(env, "LOGSPOUT=ignore") {
		l.linesSkipped.WithLabelValues("ignored_container").Inc()
		return
	}
	app, proc := name, ""
	if c, err := keys.ParseContainer(name, labels); err == nil {
		app, proc = c.App, c.Proc()
	}
	// One cursor per stream: stdout and stderr lines interleave out of
	// timestamp order, so one cursor would skip lines.
	l.mu.Lock()
	cursors := map[int]time.Time{format.PriStdout: l.cursors[cursorKey(id, format.PriStdout)], format.PriStderr: l.cursors[cursorKey(id, format.PriStderr)]}
	l.mu.Unlock()
	flights := map[int]*inflight{
		format.PriStdout: {l: l, key: cursorKey(id, format.PriStdout)},
		format.PriStderr: {l: l, key: cursorKey(id, format.PriStderr)},
	}
	follow := info.State.Running || info.State.Paused
	if !follow {
		// A stopped container: it exited while logspout was down, or
		// during the previous run's last moments. Read it to the end from
		// its cursors when it has them (lines before are skipped), or
		// whole when it stopped after the previous run was last alive;
		// one that stopped before that was caught up by that run.
		stopped := info.State.FinishedAt
		shipped := !cursors[format.PriStdout].IsZero() || !cursors[format.PriStderr].IsZero()
		// One that stopped since this logspout started (a short-lived
		// container: its start event came after it exited) is shipped
		// whole, as any other of this run.
		before := stopped.Before(l.started)
		if !shipped && before && (l.prevRun.IsZero() || stopped.Before(l.prevRun.Add(-catchUpMargin))) {
			l.markCaughtUp(id)
			return
		}
		defer func() {
			if ctx.Err() == nil {
				l.markCaughtUp(id)
			}
		}()
	}
	var buf []byte // the message being formatted, reused
	for attempt := 0; ; attempt++ {
		if !l.readLog(ctx, id, tty, follow, cursors, func(ln logLine) bool {
			return l.shipLine(ctx, &buf, ln, name, app, proc, labels, flights)
		}) {
			return // shutting down: each cursor stays before its unsent line
		}
		if !follow || ctx.Err() != nil {
			return
		}
		// The follow stream ended. Docker ends it when the container stops,
		// sometimes before the reader has caught up with the log, so read
		// what is left once more without following; if the container still
		// runs (Docker restarted, the stream broke), follow again.
		info, err := l.docker.InspectContainerWithOptions(docker.InspectContainerOptions{ID: id, Context: ctx})
		if err != nil {
			return // gone
		}
		if !info.State.Running {
			follow = false
			continue
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(min(time.Duration(attempt+1)*time.Second, 10*time.Second)):
		}
	}
}

func (l *Logspout) markCaughtUp(id string) {
	l.mu.Lock()
	l.caughtUp[id] = true
	l.mu.Unlock()
}

// readLog streams one container's log after the per-stream cursors and
// hands each newer line to ship, stopping early when ship returns false.
// It reports whether it read to the end.
func (l *Logspout) readLog(ctx context.Context, id string, tty, follow bool, cursors map[int]time.Time, ship func(logLine) bool) bool {
	var since int64
	if a, b := cursors[format.PriStdout], cursors[format.PriStderr]; !a.IsZero() && !b.IsZero() {
		since = min(a.Unix(), b.Unix()) // second granularity: older lines are skipped below
	} // else a stream never shipped anything: read the whole log; the other
	// stream's cursor still skips what it already sent
	emit := func(ln logLine) bool {
		if !ln.ts.After(cursors[ln.pri]) {
			l.linesSkipped.WithLabelValues("already_shipped").Inc()
			return true
		}
		if !ship(ln) {
			return false
		}
		cursors[ln.pri] = ln.ts
		return true
	}
	// Docker's stream is demultiplexed, cut into lines and shipped in this
	// one goroutine: a line costs no pipe or channel handoff, and a route
	// that is full stops the reading of Docker's stream (back-pressure).
	stdout, stderr := l.newSplitter(format.PriStdout, emit), l.newSplitter(format.PriStderr, emit)
	err := l.docker.Logs(docker.LogsOptions{
		Context: ctx, Container: id, OutputStream: stdout, ErrorStream: stderr,
		Follow: follow, Stdout: true, Stderr: true, Timestamps: true, Since: since, RawTerminal: tty,
	})
	if stdout.stopped || stderr.stopped {
		return false
	}
	if ctx.Err() != nil {
		return true // stopping: a partial line stays unshipped, after the cursor
	}
	if err != nil {
		l.log.Debug("log stream ended", "container", id, "err", err)
	}
	return stdout.flush() && stderr.flush()
}

// shipLine formats a line and hands it to every route that wants it,
// waiting for room (Docker's log is the buffer). False when ctx ended.
func (l *Logspout) shipLine(ctx context.Context, buf *[]byte, ln logLine, name, app, proc string, labels map[string]string, flights map[int]*inflight) bool {
	msg := format.Message{Priority: ln.pri, Time: ln.ts, Host: l.cfg.Host, App: app, ProcID: proc, Text: ln.text}
	encoded := format.Kind(-1) // what buf holds
	routes, any := l.targets(name, app, labels, ln.pri)
	for !any {
		// No destination at all (the logger is not announced yet):
		// wait; the line stays in Docker's log and the cursor before it.
		select {
		case <-ctx.Done():
			return false
		case <-time.After(100 * time.Millisecond):
		}
		routes, any = l.targets(name, app, labels, ln.pri)
	}
	if len(routes) == 0 {
		l.linesSkipped.WithLabelValues("filtered").Inc()
	}
	// The cursor moves past this line once every route has written it.
	flight := flights[ln.pri]
	seq := flight.add(ln.ts, len(routes))
	for _, t := range routes {
		// Each route gets its own ?format=; most share one encoding.
		if k := t.s.Format(); k != encoded {
			*buf = format.Append((*buf)[:0], k, &msg)
			encoded = k
		}
		if t.lossy {
			// A route added through the API never holds the others
			// back: when its queue is full the line is dropped for it
			// alone (counted in its dropped figure).
			t.s.TrySendAcked(*buf, flight, seq)
			continue
		}
		if err := t.s.SendAcked(ctx, *buf, flight, seq); err != nil {
			return false // shutting down: the cursor stays before this line
		}
	}
	if l.hub.Active() {
		line := ln.ts.UTC().AppendFormat(nil, time.RFC3339Nano)
		line = append(append(append(append(append(line, ' '), app...), '['), proc...), "]: "...)
		l.hub.Publish(app, append(line, ln.text...))
	}
	return true
}

func containsEnv(env []string, kv string) bool {
	for _, e := range env {
		if e == kv {
			return true
		}
	}
	return false
}
