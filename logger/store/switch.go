package store

import (
	"fmt"
	"sync"
	"sync/atomic"
)

// FileOptions are the file adapter's settings (--log-root, --rotate-size,
// --rotate-keep).
type FileOptions struct {
	Root     string
	MaxBytes int64
	Keep     int
}

// Switch is the storage adapter in use, changed live as
// /deis/logs/storageAdapterType says (Apply). Callers append, tail and
// delete through it, never holding an adapter themselves: an adapter that
// is replaced is closed once the last call using it has returned, so a
// line in flight during a change lands in the old adapter or the new one,
// never nowhere. Safe for concurrent use.
type Switch struct {
	limits MemoryLimits
	file   FileOptions

	mu  sync.Mutex // serialises Apply
	cur atomic.Pointer[adapter]
}

// adapter is one Store with the count of calls using it.
type adapter struct {
	s       Store
	raw     string // the setting it was made from
	users   atomic.Int64
	retired atomic.Bool
	close   sync.Once
}

// NewSwitch starts with the default adapter (memory, 1,000 lines per app).
func NewSwitch(limits MemoryLimits, file FileOptions) *Switch {
	w := &Switch{limits: limits, file: file}
	w.cur.Store(&adapter{s: NewMemory(DefaultLinesPerApp, limits), raw: "memory"})
	return w
}

func (w *Switch) acquire() *adapter {
	for {
		a := w.cur.Load()
		a.users.Add(1)
		if w.cur.Load() == a {
			return a
		}
		w.release(a) // replaced meanwhile: use the new one
	}
}

func (w *Switch) release(a *adapter) {
	if a.users.Add(-1) == 0 && a.retired.Load() {
		a.close.Do(func() { _ = a.s.Close() })
	}
}

// retire closes a once no call uses it.
func (w *Switch) retire(a *adapter) {
	a.retired.Store(true)
	if a.users.Load() == 0 {
		a.close.Do(func() { _ = a.s.Close() })
	}
}

// Append stores a line in the current adapter.
func (w *Switch) Append(app string, line []byte) error {
	a := w.acquire()
	defer w.release(a)
	return a.s.Append(app, line)
}

// Tail reads from the current adapter.
func (w *Switch) Tail(app string, n int) ([][]byte, error) {
	a := w.acquire()
	defer w.release(a)
	return a.s.Tail(app, n)
}

// Delete drops an app's lines from the current adapter.
func (w *Switch) Delete(app string) error {
	a := w.acquire()
	defer w.release(a)
	return a.s.Delete(app)
}

// Kind names the current adapter.
func (w *Switch) Kind() string { return w.cur.Load().s.Kind() }

// Do runs f with the current adapter, held for the duration (the file
// adapter's flush and reopen).
func (w *Switch) Do(f func(Store)) {
	a := w.acquire()
	defer w.release(a)
	f(a.s)
}

// Apply makes the adapter the setting raw names the current one: memory,
// memory:N or file. Changing memory:N resizes the memory store in place,
// keeping every line; moving between memory and file starts the other
// adapter empty and closes the old one once unused. A value already
// applied changes nothing; a bad one changes nothing and is an error (once:
// the same bad value again is not reported again). changed reports a new
// adapter or size.
func (w *Switch) Apply(raw string) (changed bool, err error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	cur := w.cur.Load()
	if raw == cur.raw {
		return false, nil
	}
	kind, size, err := ParseAdapter(raw)
	if err != nil {
		// Remember the value, not to report it again; the old entry is not
		// retired, so its store stays open.
		w.cur.Store(&adapter{s: cur.s, raw: raw})
		return false, fmt.Errorf("%w; keeping %s", err, cur.s.Kind())
	}
	next := &adapter{raw: raw}
	switch old := cur.s.(type) {
	case *Memory:
		if kind == "memory" {
			old.Resize(size)
			next.s = old
		}
	case *File:
		if kind == "file" {
			next.s = old
		}
	}
	if next.s != nil { // same adapter, new setting: it lives on in next
		w.cur.Store(next)
		return kind == "memory", nil
	}
	if kind == "file" {
		f, err := NewFile(w.file.Root, w.file.MaxBytes, w.file.Keep)
		if err != nil {
			return false, fmt.Errorf("%w; keeping %s", err, cur.s.Kind())
		}
		next.s = f
	} else {
		next.s = NewMemory(size, w.limits)
	}
	w.cur.Store(next)
	w.retire(cur)
	return true, nil
}

// Close closes the current adapter.
func (w *Switch) Close() error {
	a := w.cur.Load()
	var err error
	a.close.Do(func() { err = a.s.Close() })
	return err
}
