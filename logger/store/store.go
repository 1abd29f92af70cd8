// Package store keeps each app's recent log lines: in memory (a ring per
// app) or in files (one per app under a root directory, rotated by size).
package store

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
)

// Store holds lines per app. Implementations are safe for concurrent use.
type Store interface {
	// Append stores one line (without newline) for app.
	Append(app string, line []byte) error
	// Tail returns up to n of the app's newest lines, oldest first.
	Tail(app string, n int) ([][]byte, error)
	// Delete drops every line of app.
	Delete(app string) error
	// Close releases resources.
	Close() error
	// Kind names the adapter ("memory:1000", "file").
	Kind() string
}

// Memory limits: an app's ring is cut by line count (the adapter's N) and
// by bytes; the whole store by bytes and by number of apps. Anyone who can
// reach the syslog port can name apps, so without the global limits memory
// would grow with every new name.
const (
	DefaultMaxBytes       = 256 << 20 // whole store
	DefaultMaxAppBytes    = 32 << 20  // one app: memory:300000 of 100-byte lines fits
	DefaultMaxApps        = 10000
	DefaultLinesPerApp    = 1000
	evictionHeadroomRatio = 10 // evict down to 90 % of MaxBytes at once
)

// MemoryLimits bound a Memory store. Zero values take the defaults.
type MemoryLimits struct {
	MaxBytes    int64 // all apps together
	MaxAppBytes int   // one app
	MaxApps     int
	// Log, when set, is told once when the limits first evict an app.
	Log *slog.Logger
	// Evictions, when set, counts what the limits removed; the caller
	// may share it between successive stores so the counts only grow.
	Evictions *Evictions
}

// Evictions count what a Memory store's limits removed (lines pushed out by
// an app's own line count are the ring working, not counted).
type Evictions struct{ Apps, Lines atomic.Int64 }

func (l MemoryLimits) withDefaults() MemoryLimits {
	if l.MaxBytes <= 0 {
		l.MaxBytes = DefaultMaxBytes
	}
	if l.MaxAppBytes <= 0 {
		l.MaxAppBytes = DefaultMaxAppBytes
	}
	if l.MaxApps <= 0 {
		l.MaxApps = DefaultMaxApps
	}
	if l.Evictions == nil {
		l.Evictions = new(Evictions)
	}
	return l
}

// Memory keeps the last N lines of each app, within MemoryLimits. When the
// store passes MaxBytes, or a new app would pass MaxApps, the apps written
// to least recently are evicted whole; when one app passes MaxAppBytes its
// oldest lines go. Every eviction is counted (MemoryLimits.Evictions).
type Memory struct {
	size     int
	limits   MemoryLimits
	mu       sync.RWMutex
	rings    map[string]*ring
	bytes    atomic.Int64
	clock    atomic.Int64 // logical time of appends, for least recently used
	warnOnce sync.Once
}

// ring is one app's lines, oldest first, in a circular buffer.
type ring struct {
	mu       sync.Mutex
	buf      [][]byte
	head, n  int
	bytes    int
	lastUsed atomic.Int64
}

func (r *ring) at(i int) []byte { return r.buf[(r.head+i)%len(r.buf)] }

// popOldest drops the oldest line and returns it.
func (r *ring) popOldest() []byte {
	old := r.buf[r.head]
	r.buf[r.head] = nil
	r.head = (r.head + 1) % len(r.buf)
	r.n--
	r.bytes -= len(old)
	return old
}

// push appends a copy of line, keeping at most size lines and maxBytes
// bytes. It returns the change in bytes and the lines cut for bytes.
func (r *ring) push(line []byte, size, maxBytes int) (delta, cut int) {
	var reuse []byte // the evicted line's buffer, when it fits this one
	for r.n > 0 && r.n >= size {
		reuse = r.popOldest()
		delta -= len(reuse)
	}
	for r.n > 0 && r.bytes+len(line) > maxBytes {
		delta -= len(r.popOldest())
		cut++
	}
	if r.n == len(r.buf) { // grow: the ring starts small for quiet apps
		grown := make([][]byte, min(max(2*len(r.buf), 16), size))
		for i := 0; i < r.n; i++ {
			grown[i] = r.at(i)
		}
		r.buf, r.head = grown, 0
	}
	if cap(reuse) >= len(line) && cap(reuse) <= 4*len(line)+64 {
		r.buf[(r.head+r.n)%len(r.buf)] = append(reuse[:0], line...)
	} else {
		r.buf[(r.head+r.n)%len(r.buf)] = append([]byte(nil), line...)
	}
	r.n++
	r.bytes += len(line)
	return delta + len(line), cut
}

// NewMemory keeps size lines per app (1000 if size <= 0) within limits.
func NewMemory(size int, limits MemoryLimits) *Memory {
	if size <= 0 {
		size = DefaultLinesPerApp
	}
	return &Memory{size: size, limits: limits.withDefaults(), rings: make(map[string]*ring)}
}

func (m *Memory) Kind() string {
	m.mu.RLock()
	defer m.mu.RUnlock()
	return "memory:" + strconv.Itoa(m.size)
}

// Resize changes how many lines each app keeps, in place: switching from
// memory:1000 to memory:5000 keeps every stored line.
func (m *Memory) Resize(size int) {
	if size <= 0 {
		size = DefaultLinesPerApp
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, r := range m.rings {
		r.mu.Lock()
		for r.n > size {
			m.bytes.Add(-int64(len(r.popOldest())))
		}
		r.mu.Unlock()
	}
	m.size = size
}

func (m *Memory) ring(app string, create bool) *ring {
	m.mu.RLock()
	r := m.rings[app]
	m.mu.RUnlock()
	if r != nil || !create {
		return r
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if r = m.rings[app]; r == nil {
		for len(m.rings) >= m.limits.MaxApps && m.evictLRULocked("") {
		}
		r = &ring{}
		m.rings[app] = r
	}
	return r
}

func (m *Memory) Append(app string, line []byte) error {
	m.mu.RLock()
	size := m.size
	m.mu.RUnlock()
	r := m.ring(app, true)
	r.lastUsed.Store(m.clock.Add(1))
	r.mu.Lock()
	delta, cut := r.push(line, size, m.limits.MaxAppBytes)
	r.mu.Unlock()
	if cut > 0 {
		m.limits.Evictions.Lines.Add(int64(cut))
	}
	if m.bytes.Add(int64(delta)) > m.limits.MaxBytes {
		m.shrink(app)
	}
	return nil
}

// shrink evicts whole apps, least recently written first, until the store
// is 10 % under MaxBytes (so that one scan serves many appends). The app
// being written is evicted last.
func (m *Memory) shrink(writing string) {
	target := m.limits.MaxBytes - m.limits.MaxBytes/evictionHeadroomRatio
	m.mu.Lock()
	defer m.mu.Unlock()
	for m.bytes.Load() > target && m.evictLRULocked(writing) {
	}
	for m.bytes.Load() > m.limits.MaxBytes && m.evictLRULocked("") {
	}
}

// evictLRULocked drops the least recently written app other than spare;
// false when there is none. Called with m.mu held.
func (m *Memory) evictLRULocked(spare string) bool {
	var oldest string
	var at int64
	for name, r := range m.rings {
		if name == spare {
			continue
		}
		if u := r.lastUsed.Load(); oldest == "" || u < at {
			oldest, at = name, u
		}
	}
	if oldest == "" {
		return false
	}
	r := m.rings[oldest]
	delete(m.rings, oldest)
	r.mu.Lock()
	m.bytes.Add(-int64(r.bytes))
	m.limits.Evictions.Lines.Add(int64(r.n))
	r.mu.Unlock()
	m.limits.Evictions.Apps.Add(1)
	if m.limits.Log != nil {
		m.warnOnce.Do(func() {
			m.limits.Log.Warn("memory store full: evicting the apps written to least recently (logger_evicted_apps_total counts them)",
				"first_evicted", oldest, "max_bytes", m.limits.MaxBytes, "max_apps", m.limits.MaxApps)
		})
	}
	return true
}

func (m *Memory) Tail(app string, n int) ([][]byte, error) {
	r := m.ring(app, false)
	if r == nil {
		return nil, nil
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	n = min(n, r.n)
	out := make([][]byte, 0, n)
	for i := r.n - n; i < r.n; i++ {
		out = append(out, append([]byte(nil), r.at(i)...))
	}
	return out, nil
}

func (m *Memory) Delete(app string) error {
	m.mu.Lock()
	r := m.rings[app]
	delete(m.rings, app)
	m.mu.Unlock()
	if r != nil {
		r.mu.Lock()
		m.bytes.Add(-int64(r.bytes))
		r.mu.Unlock()
	}
	return nil
}

func (m *Memory) Close() error { return nil }

// Stats returns the number of apps, lines and bytes stored.
func (m *Memory) Stats() (apps, lines, bytes int) {
	m.mu.RLock()
	defer m.mu.RUnlock()
	for _, r := range m.rings {
		r.mu.Lock()
		lines += r.n
		bytes += r.bytes
		r.mu.Unlock()
	}
	return len(m.rings), lines, bytes
}

// File appends each app's lines to <root>/<app>.log, rotating to
// <app>.log.1 ... .<Keep> when the file passes MaxBytes.
type File struct {
	root     string
	maxBytes int64
	keep     int
	mu       sync.Mutex
	files    map[string]*appFile
}

type appFile struct {
	mu   sync.Mutex
	f    *os.File
	w    *bufio.Writer
	size int64
}

// NewFile stores under root (created if missing).
func NewFile(root string, maxBytes int64, keep int) (*File, error) {
	if root == "" {
		return nil, errors.New("file store: --log-root is empty")
	}
	if err := os.MkdirAll(root, 0o755); err != nil {
		return nil, fmt.Errorf("file store: create %s: %w", root, err)
	}
	if maxBytes <= 0 {
		maxBytes = 100 << 20
	}
	if keep < 0 {
		keep = 0
	}
	return &File{root: root, maxBytes: maxBytes, keep: keep, files: make(map[string]*appFile)}, nil
}

func (f *File) Kind() string { return "file" }

func (f *File) path(app string) string { return filepath.Join(f.root, app+".log") }

func (f *File) get(app string) (*appFile, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if af := f.files[app]; af != nil {
		return af, nil
	}
	fh, err := os.OpenFile(f.path(app), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, fmt.Errorf("file store: open %s: %w", f.path(app), err)
	}
	st, _ := fh.Stat()
	af := &appFile{f: fh, w: bufio.NewWriterSize(fh, 32<<10)}
	if st != nil {
		af.size = st.Size()
	}
	f.files[app] = af
	return af, nil
}

func (f *File) Append(app string, line []byte) error {
	af, err := f.get(app)
	if err != nil {
		return err
	}
	af.mu.Lock()
	defer af.mu.Unlock()
	if af.f == nil {
		return fmt.Errorf("file store: %s was closed", app)
	}
	if af.size+int64(len(line))+1 > f.maxBytes && af.size > 0 {
		if err := f.rotate(app, af); err != nil {
			return err
		}
	}
	_, _ = af.w.Write(line)
	if err := af.w.WriteByte('\n'); err != nil {
		return fmt.Errorf("file store: write %s: %w", app, err)
	}
	af.size += int64(len(line)) + 1
	// Flush when the buffer is idle-ish: keep lines visible to readers.
	if af.w.Buffered() > 16<<10 {
		return af.w.Flush()
	}
	return nil
}

// rotate shifts app.log.N-1 to .N and app.log to .1; called with af.mu.
func (f *File) rotate(app string, af *appFile) error {
	_ = af.w.Flush()
	_ = af.f.Close()
	base := f.path(app)
	if f.keep == 0 {
		_ = os.Remove(base)
	} else {
		for i := f.keep - 1; i >= 1; i-- {
			_ = os.Rename(base+"."+strconv.Itoa(i), base+"."+strconv.Itoa(i+1))
		}
		_ = os.Rename(base, base+".1")
	}
	fh, err := os.OpenFile(base, os.O_CREATE|os.O_WRONLY|os.O_APPEND|os.O_TRUNC, 0o644)
	if err != nil {
		af.f = nil
		return fmt.Errorf("file store: reopen %s after rotation: %w", base, err)
	}
	af.f, af.size = fh, 0
	af.w.Reset(fh)
	return nil
}

// Flush writes buffered lines of every app to their files.
func (f *File) Flush() {
	f.mu.Lock()
	files := make([]*appFile, 0, len(f.files))
	for _, af := range f.files {
		files = append(files, af)
	}
	f.mu.Unlock()
	for _, af := range files {
		af.mu.Lock()
		if af.f != nil {
			_ = af.w.Flush()
		}
		af.mu.Unlock()
	}
}

// Reopen closes every file so the next line opens it again (after an
// external rotation; the logger calls it on SIGUSR1).
func (f *File) Reopen() {
	f.mu.Lock()
	files := f.files
	f.files = make(map[string]*appFile)
	f.mu.Unlock()
	for _, af := range files {
		af.mu.Lock()
		if af.f != nil {
			_ = af.w.Flush()
			_ = af.f.Close()
			af.f = nil
		}
		af.mu.Unlock()
	}
}

func (f *File) Tail(app string, n int) ([][]byte, error) {
	if af, _ := f.existing(app); af != nil {
		af.mu.Lock()
		if af.f != nil {
			_ = af.w.Flush()
		}
		af.mu.Unlock()
	}
	var lines [][]byte
	base := f.path(app)
	// Newest file first, then older rotations until n lines are found.
	for i := 0; i <= f.keep && len(lines) < n; i++ {
		p := base
		if i > 0 {
			p = base + "." + strconv.Itoa(i)
		}
		fileLines, err := tailFile(p, n-len(lines))
		if errors.Is(err, os.ErrNotExist) {
			if i == 0 {
				continue
			}
			break
		}
		if err != nil {
			return nil, fmt.Errorf("file store: read %s: %w", p, err)
		}
		lines = append(fileLines, lines...)
	}
	return lines, nil
}

// tailBlock is how much tailFile reads at a time, from the end.
const tailBlock = 64 << 10

// tailFile returns the last n lines of the file at path, oldest first,
// reading backwards from the end in blocks as tail -n does: the cost is
// that of the lines asked for, not of the file (up to --rotate-size).
func tailFile(path string, n int) ([][]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, err
	}
	end := st.Size()
	var data []byte // the file's last bytes read so far
	for off := end; off > 0; {
		// Enough once the data holds n newlines before the final one.
		if bytes.Count(bytes.TrimRight(data, "\n"), []byte{'\n'}) >= n {
			break
		}
		size := min(int64(tailBlock), off)
		off -= size
		block := make([]byte, size, int(size)+len(data))
		if _, err := f.ReadAt(block, off); err != nil && !errors.Is(err, io.EOF) {
			return nil, err
		}
		data = append(block, data...)
		if off == 0 {
			break
		}
	}
	data = bytes.TrimRight(data, "\n")
	if len(data) == 0 || n <= 0 {
		return nil, nil
	}
	lines := bytes.Split(data, []byte{'\n'})
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return lines, nil
}

func (f *File) existing(app string) (*appFile, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	af, ok := f.files[app]
	return af, ok
}

func (f *File) Delete(app string) error {
	f.mu.Lock()
	af := f.files[app]
	delete(f.files, app)
	f.mu.Unlock()
	if af != nil {
		af.mu.Lock()
		if af.f != nil {
			_ = af.f.Close()
			af.f = nil
		}
		af.mu.Unlock()
	}
	base := f.path(app)
	var errs []error
	for i := 0; i <= f.keep; i++ {
		p := base
		if i > 0 {
			p = base + "." + strconv.Itoa(i)
		}
		if err := os.Remove(p); err != nil && !errors.Is(err, os.ErrNotExist) {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

func (f *File) Close() error {
	f.Reopen()
	return nil
}

// ParseAdapter reads /deis/logs/storageAdapterType: "memory", "memory:N"
// or "file". It returns the kind and the ring size.
func ParseAdapter(v string) (kind string, size int, err error) {
	v = strings.TrimSpace(v)
	switch {
	case v == "" || v == "memory":
		return "memory", 1000, nil
	case v == "file":
		return "file", 0, nil
	case strings.HasPrefix(v, "memory:"):
		n, err := strconv.Atoi(v[len("memory:"):])
		if err != nil || n < 1 || n > 10_000_000 {
			return "", 0, fmt.Errorf("storageAdapterType %q: memory:N needs N from 1 to 10000000", v)
		}
		return "memory", n, nil
	}
	return "", 0, fmt.Errorf("storageAdapterType %q: want memory, memory:N or file", v)
}

var _ io.Closer = (*File)(nil)
