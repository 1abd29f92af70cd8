package logspout

import (
	"bytes"
	"strings"
	"testing"
)

func TestRejoin(t *testing.T) {
	t.Parallel()
	long := strings.Repeat("a", dockerChunk) + "2026-11-23T05:32:14.736496919Z " + strings.Repeat("b", dockerChunk) + "2026-11-23T05:32:14.736496919Z " + "tail"
	want := strings.Repeat("a", dockerChunk) + strings.Repeat("b", dockerChunk) + "tail"
	if got := string(rejoin([]byte(long))); got != want {
		t.Fatalf("rejoin lost or kept prefixes: len %d, want %d", len(got), len(want))
	}
	plain := strings.Repeat("z", dockerChunk+100)
	if got := string(rejoin([]byte(plain))); got != plain {
		t.Fatal("a long line without inner timestamps was changed")
	}
}

func FuzzRejoin(f *testing.F) {
	f.Add([]byte("short"))
	f.Add([]byte(strings.Repeat("a", dockerChunk) + "2026-11-23T05:32:14.736496919Z b"))
	f.Add(bytes.Repeat([]byte(" "), dockerChunk+40))
	f.Fuzz(func(t *testing.T, in []byte) {
		out := rejoin(in)
		if len(out) > len(in) {
			t.Fatalf("rejoin grew %d -> %d bytes", len(in), len(out))
		}
	})
}
