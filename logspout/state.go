package logspout

// What logspout keeps under --state-dir: the cursors (where each
// container stream was shipped up to) and when it was last running.

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

func (l *Logspout) cursorFile() string { return filepath.Join(l.cfg.StateDir, "cursors.json") }

// lastRunFile holds when logspout was last known running (RFC 3339),
// written at start, every lastRunEvery and at stop.
func (l *Logspout) lastRunFile() string { return filepath.Join(l.cfg.StateDir, "lastrun") }

// catchUpMargin: a container without cursors that stopped up to this long
// before the previous run was last known alive is read whole too, since
// that run may have died before its lines were written and its cursor
// saved (every 500 ms).
const (
	lastRunEvery  = 2 * time.Second
	catchUpMargin = 10 * time.Second
)

func (l *Logspout) readLastRun() time.Time {
	data, err := os.ReadFile(l.lastRunFile())
	if err != nil {
		return time.Time{}
	}
	t, err := time.Parse(time.RFC3339Nano, strings.TrimSpace(string(data)))
	if err != nil {
		l.log.Warn("ignoring unreadable lastrun file: containers that stopped while logspout was down are not caught up", "file", l.lastRunFile(), "err", err)
		return time.Time{}
	}
	return t
}

func (l *Logspout) saveLastRun() {
	if err := writeFileSync(l.lastRunFile(), []byte(time.Now().UTC().Format(time.RFC3339Nano))); err != nil {
		l.log.Warn("could not save lastrun", "err", err)
	}
}

func (l *Logspout) loadCursors() error {
	data, err := os.ReadFile(l.cursorFile())
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("read %s: %w", l.cursorFile(), err)
	}
	if err := json.Unmarshal(data, &l.cursors); err != nil {
		l.log.Warn("ignoring unreadable cursor file; containers are shipped from their start", "file", l.cursorFile(), "err", err)
		l.cursors = map[string]time.Time{}
	}
	return nil
}

// saveCursors writes the cursors atomically (temp file, fsync, rename).
func (l *Logspout) saveCursors() {
	l.mu.Lock()
	if !l.dirty {
		l.mu.Unlock()
		return
	}
	data, err := json.Marshal(l.cursors)
	l.dirty = false
	l.mu.Unlock()
	if err != nil {
		return
	}
	if err := writeFileSync(l.cursorFile(), data); err != nil {
		l.log.Warn("could not save cursors", "err", err)
	}
}

func cursorKey(id string, pri int) string { return id + ":" + strconv.Itoa(pri) }

// pruneDestroyed forgets destroyed containers after late acknowledgements
// can no longer arrive.
func (l *Logspout) pruneDestroyed(after time.Duration) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for k, at := range l.destroyed {
		if time.Since(at) > after {
			delete(l.destroyed, k)
		}
	}
}
