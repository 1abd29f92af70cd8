package store

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// TestH5MemoryStoreIsBounded: new app names used to grow memory without
// limit (≈65 MB per name). Now the store stays within MaxBytes and
// MaxApps, evicting the least recently written apps whole, counted.
func TestH5MemoryStoreIsBounded(t *testing.T) {
	t.Parallel()
	ev := new(Evictions)
	m := NewMemory(1000, MemoryLimits{MaxBytes: 4 << 20, MaxAppBytes: 1 << 20, MaxApps: 50, Evictions: ev})
	big := bytes.Repeat([]byte("x"), 60000)
	for a := range 400 {
		for range 4 {
			if err := m.Append(fmt.Sprintf("app%d", a), big); err != nil {
				t.Fatal(err)
			}
		}
		if apps, _, b := m.Stats(); b > 4<<20 || apps > 50 {
			t.Fatalf("after app %d: %d apps, %d bytes: over the limits", a, apps, b)
		}
	}
	if ev.Apps.Load() == 0 || ev.Lines.Load() == 0 {
		t.Fatalf("evictions not counted: %d apps, %d lines", ev.Apps.Load(), ev.Lines.Load())
	}
	// The newest app is whole; the oldest is gone.
	if got, _ := m.Tail("app399", 10); len(got) != 4 {
		t.Fatalf("newest app has %d lines, want 4", len(got))
	}
	if got, _ := m.Tail("app0", 10); len(got) != 0 {
		t.Fatalf("oldest app kept %d lines", len(got))
	}
}

// TestMemoryPerAppBytesAndLines: one app is cut by its line count and its
// byte limit, oldest first, and other apps are untouched.
func TestMemoryPerAppBytesAndLines(t *testing.T) {
	t.Parallel()
	m := NewMemory(5, MemoryLimits{MaxAppBytes: 100})
	_ = m.Append("quiet", []byte("hello"))
	for i := range 10 {
		_ = m.Append("noisy", []byte(fmt.Sprintf("line %d", i)))
	}
	got, _ := m.Tail("noisy", 100)
	if len(got) != 5 || string(got[0]) != "line 5" || string(got[4]) != "line 9" {
		t.Fatalf("line cap: %q", got)
	}
	_ = m.Append("noisy", bytes.Repeat([]byte("y"), 90))
	got, _ = m.Tail("noisy", 100)
	if len(got) != 2 || string(got[0]) != "line 9" {
		t.Fatalf("byte cap: %q", got)
	}
	if q, _ := m.Tail("quiet", 10); len(q) != 1 {
		t.Fatal("another app was touched")
	}
	m.Resize(1)
	if got, _ := m.Tail("noisy", 100); len(got) != 1 || len(got[0]) != 90 {
		t.Fatalf("after Resize(1): %q", got)
	}
	if _, lines, b := m.Stats(); lines != 2 || b != 95 {
		t.Fatalf("stats after resize: %d lines, %d bytes", lines, b)
	}
	_ = m.Delete("noisy")
	if apps, _, b := m.Stats(); apps != 1 || b != 5 {
		t.Fatalf("stats after delete: %d apps, %d bytes", apps, b)
	}
}

func BenchmarkMemoryAppend(b *testing.B) {
	m := NewMemory(1000, MemoryLimits{})
	line := bytes.Repeat([]byte("x"), 200)
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		_ = m.Append("app", line)
	}
}

// TestM6FileTailReadsFromTheEnd: Tail used to read whole files (up to
// 600 MB) for log_lines=1. tailFile reads backwards; it must give what
// reading the whole file gives, whatever the block boundaries.
func TestM6FileTailReadsFromTheEnd(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	var content []byte
	for i := range 5000 {
		content = append(content, fmt.Sprintf("line %d %s\n", i, bytes.Repeat([]byte("z"), i%97))...)
	}
	path := filepath.Join(dir, "a.log")
	if err := os.WriteFile(path, content, 0o600); err != nil {
		t.Fatal(err)
	}
	all := bytes.Split(bytes.TrimRight(content, "\n"), []byte{'\n'})
	for _, n := range []int{1, 2, 100, 1234, 4999, 5000, 9000} {
		got, err := tailFile(path, n)
		if err != nil {
			t.Fatal(err)
		}
		want := all[max(0, len(all)-n):]
		if len(got) != len(want) || !bytes.Equal(got[0], want[0]) || !bytes.Equal(got[len(got)-1], want[len(want)-1]) {
			t.Fatalf("tailFile(%d): %d lines, first %q, want %d lines, first %q", n, len(got), got[0], len(want), want[0])
		}
	}
	empty := filepath.Join(dir, "empty.log")
	_ = os.WriteFile(empty, nil, 0o600)
	if got, err := tailFile(empty, 10); err != nil || len(got) != 0 {
		t.Fatalf("empty file: %q %v", got, err)
	}
}

func BenchmarkFileTailOneLineOf50MB(b *testing.B) {
	path := filepath.Join(b.TempDir(), "big.log")
	line := append(bytes.Repeat([]byte("x"), 199), '\n')
	f, _ := os.Create(path)
	for range 250000 {
		_, _ = f.Write(line)
	}
	f.Close()
	b.ReportAllocs()
	for b.Loop() {
		if got, err := tailFile(path, 1); err != nil || len(got) != 1 {
			b.Fatal(got, err)
		}
	}
}

// TestSwitchAppliesTheSetting: memory:N resizes in place (every line kept),
// file starts the file store, a bad value changes nothing and is reported
// once, and no line appended during a change is lost: each lands in the
// adapter in use when it was appended (the old one is closed only once
// unused; there is no sleep before closing).
func TestSwitchAppliesTheSetting(t *testing.T) {
	t.Parallel()
	w := NewSwitch(MemoryLimits{}, FileOptions{Root: t.TempDir(), MaxBytes: 1 << 20, Keep: 1})
	for i := range 10 {
		_ = w.Append("a", []byte(fmt.Sprintf("line %d", i)))
	}
	if changed, err := w.Apply("memory:5000"); err != nil || !changed || w.Kind() != "memory:5000" {
		t.Fatalf("memory:5000: %v %v %s", changed, err, w.Kind())
	}
	if got, _ := w.Tail("a", 100); len(got) != 10 {
		t.Fatalf("resize lost lines: %d of 10", len(got))
	}
	if changed, err := w.Apply("memory:5000"); err != nil || changed {
		t.Fatalf("the same value again: %v %v", changed, err)
	}
	if _, err := w.Apply("disk"); err == nil || w.Kind() != "memory:5000" {
		t.Fatalf("a bad value: %v, now %s", err, w.Kind())
	}
	if _, err := w.Apply("disk"); err != nil {
		t.Fatalf("the same bad value was reported again: %v", err)
	}
	// Appends racing a change of adapter: every line lands somewhere.
	var wg sync.WaitGroup
	const n = 2000
	wg.Go(func() {
		for i := range n {
			if err := w.Append("race", []byte(fmt.Sprintf("r %d", i))); err != nil {
				t.Errorf("append %d during a change: %v", i, err)
				return
			}
		}
	})
	if changed, err := w.Apply("file"); err != nil || !changed || w.Kind() != "file" {
		t.Fatalf("file: %v %v", changed, err)
	}
	wg.Wait()
	if _, err := w.Apply("memory"); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
}

// TestSwitchClosesTheOldAdapterWhenUnused: a replaced adapter is closed
// once the last call holding it returns, not before.
func TestSwitchClosesTheOldAdapterWhenUnused(t *testing.T) {
	t.Parallel()
	w := NewSwitch(MemoryLimits{}, FileOptions{Root: t.TempDir(), MaxBytes: 1 << 20, Keep: 1})
	if _, err := w.Apply("file"); err != nil {
		t.Fatal(err)
	}
	_ = w.Append("a", []byte("x"))
	held := make(chan struct{})
	release := make(chan struct{})
	var closedWhileHeld atomic.Bool
	done := make(chan struct{})
	go w.Do(func(s Store) {
		defer close(done)
		close(held)
		<-release
		// Still usable: the file store was not closed under us.
		if err := s.Append("a", []byte("late")); err != nil {
			closedWhileHeld.Store(true)
		}
	})
	<-held
	if _, err := w.Apply("memory"); err != nil {
		t.Fatal(err)
	}
	close(release)
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("the held call never returned")
	}
	if closedWhileHeld.Load() {
		t.Fatal("the old adapter was closed while a call held it")
	}
}
