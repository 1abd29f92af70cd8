package client

import (
	"maps"
	"testing"
)

// FuzzEnvFile: the parser never panics, and what config:pull writes reads
// back as the same values.
func FuzzEnvFile(f *testing.F) {
	for _, s := range []string{"A=1\n", "export B='x y'\n# c\n", `C="a\nb"` + "\n", "D= spaced \n", "bad line\n", "E=\"unterminated\n", "F=a=b#c\\\n"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, data string) {
		values, err := parseEnvFile(data)
		if err != nil {
			return
		}
		again, err := parseEnvFile(formatEnvFile(values))
		if err != nil {
			t.Fatalf("formatEnvFile(%q) does not parse: %v", values, err)
		}
		if !maps.Equal(values, again) {
			t.Fatalf("round trip of %q: %q", values, again)
		}
	})
}

func TestEnvFileValues(t *testing.T) {
	got, err := parseEnvFile("# comment\n\nexport A=1\nB='x y'\nC=\"a\\nb\"\nD=a=b\n")
	want := map[string]string{"A": "1", "B": "x y", "C": "a\nb", "D": "a=b"}
	if err != nil || !maps.Equal(got, want) {
		t.Fatalf("got %q %v, want %q", got, err, want)
	}
	if _, err := parseEnvFile("A=1\nno pair\n"); err == nil || err.Error() != `line 2 is not KEY=value: "no pair"` {
		t.Errorf("a bad line: %v", err)
	}
}
