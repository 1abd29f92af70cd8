package proxy

import (
	"strings"
	"testing"
)

func TestNormalizeHost(t *testing.T) {
	t.Parallel()
	for in, want := range map[string]string{
		"App.Example.COM":      "app.example.com",
		"app.example.com:8080": "app.example.com",
		"app.example.com.":     "app.example.com",
		"APP.example.com.:443": "app.example.com",
		"[::1]:80":             "::1",
		"[2001:DB8::1]":        "2001:db8::1",
		"":                     "",
	} {
		if got := string(normalizeHost([]byte(in), nil)); got != want {
			t.Errorf("normalizeHost(%q) = %q, want %q", in, got, want)
		}
	}
}

func FuzzNormalizeHost(f *testing.F) {
	for _, s := range []string{"a.b.c", "A.B:1", "[::1]:80", "[", "]:", "a.:", "...", "[Ab::]"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, in string) {
		var buf [256]byte
		got := string(normalizeHost([]byte(in), buf[:0]))
		if strings.IndexFunc(got, func(r rune) bool { return r >= 'A' && r <= 'Z' }) >= 0 {
			t.Fatalf("normalizeHost(%q) = %q still has ASCII upper case", in, got)
		}
		if len(got) > len(in) {
			t.Fatalf("normalizeHost(%q) = %q grew", in, got)
		}
		if again := string(normalizeHost([]byte(got), nil)); strings.IndexByte(got, ':') < 0 && again != got {
			t.Fatalf("not idempotent: %q -> %q -> %q", in, got, again)
		}
	})
}
