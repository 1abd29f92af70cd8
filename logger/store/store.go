// Package store keeps each app's recent log lines: in memory (a ring per
// app) or in files (one per app under a root directory, rotated by size).
package store

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
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

// Memory is a ring of the last Size lines per app.
type Memory struct {
	size  int
	mu    sync.RWMutex
	rings map[string]*ring
}

type ring struct {
	mu    sync.Mutex
	lines [][]byte
	next  int
	full  bool
}

// NewMemory keeps size lines per app (1000 if size <= 0).
func NewMemory(size int) *Memory {
	if size <= 0 {
		size = 1000
	}
	return &Memory{size: size, rings: make(map[string]*ring)}
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
		size = 1000
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if size == m.size {
		return
	}
	for _, r := range m.rings {
		r.mu.Lock()
		ordered := make([][]byte, 0, min(len(r.lines), size))
		total := len(r.lines)
		for i := max(0, total-size); i < total; i++ {
			idx := i
			if r.full {
				idx = (r.next + i) % total
			}
			ordered = append(ordered, r.lines[idx])
		}
		r.lines, r.next, r.full = ordered, 0, false
		if len(ordered) == size {
			r.full = true
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
		r = &ring{lines: make([][]byte, 0, min(m.size, 64))}
		m.rings[app] = r
	}
	return r
}

func (m *Memory) Append(app string, line []byte) error {
	m.mu.RLock()
	size := m.size
	m.mu.RUnlock()
	r := m.ring(app, true)
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.lines) < size {
		r.lines = append(r.lines, append([]byte(nil), line...))
		return nil
	}
	// Reuse the evicted line's buffer when it is big enough.
	old := r.lines[r.next]
	if cap(old) >= len(line) && cap(old) <= 4*len(line)+64 {
		r.lines[r.next] = append(old[:0], line...)
	} else {
		r.lines[r.next] = append([]byte(nil), line...)
	}
	r.next = (r.next + 1) % size
	r.full = true
	return nil
}

func (m *Memory) Tail(app string, n int) ([][]byte, error) {
	r := m.ring(app, false)
	if r == nil {
		return nil, nil
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	total := len(r.lines)
	n = min(n, total)
	out := make([][]byte, 0, n)
	start := total - n // index in logical (oldest-first) order
	for i := start; i < total; i++ {
		idx := i
		if r.full {
			idx = (r.next + i) % total
		}
		out = append(out, append([]byte(nil), r.lines[idx]...))
	}
	return out, nil
}

func (m *Memory) Delete(app string) error {
	m.mu.Lock()
	delete(m.rings, app)
	m.mu.Unlock()
	return nil
}

func (m *Memory) Close() error { return nil }

// Stats returns the number of apps, lines and bytes stored.
func (m *Memory) Stats() (apps, lines, bytes int) {
	m.mu.RLock()
	defer m.mu.RUnlock()
	for _, r := range m.rings {
		r.mu.Lock()
		lines += len(r.lines)
		for _, l := range r.lines {
			bytes += len(l)
		}
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
		data, err := os.ReadFile(p)
		if errors.Is(err, os.ErrNotExist) {
			if i == 0 {
				continue
			}
			break
		}
		if err != nil {
			return nil, fmt.Errorf("file store: read %s: %w", p, err)
		}
		fileLines := bytes.Split(bytes.TrimRight(data, "\n"), []byte{'\n'})
		if len(data) == 0 {
			fileLines = nil
		}
		need := n - len(lines)
		if len(fileLines) > need {
			fileLines = fileLines[len(fileLines)-need:]
		}
		lines = append(fileLines, lines...)
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
