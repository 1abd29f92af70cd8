package framing

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"strings"
	"testing"
)

func all(t testing.TB, in string, max int) ([]string, error) {
	r := NewReader(strings.NewReader(in), max)
	var out []string
	for {
		m, err := r.Next()
		if err == io.EOF {
			return out, nil
		}
		if err != nil {
			return out, err
		}
		out = append(out, string(m))
	}
}

func TestFraming(t *testing.T) {
	t.Parallel()
	big := strings.Repeat("x", 64<<10)
	for _, tc := range []struct {
		name string
		in   string
		want []string
		err  bool
	}{
		{"octet", "5 hello11 hello world", []string{"hello", "hello world"}, false},
		{"octet with newline inside", "11 line1\nline2", []string{"line1\nline2"}, false},
		{"newline", "<14>1 a\n<14>1 b\r\n\n<14>1 c", []string{"<14>1 a", "<14>1 b", "<14>1 c"}, false},
		{"nul terminated", "<14>a\x00\n", []string{"<14>a"}, false},
		{"64KiB octet", fmt.Sprintf("%d %s", len(big), big), []string{big}, false},
		{"64KiB line", big + "\n", []string{big}, false},
		{"octet bad length", "5 hello x", []string{"hello"}, true},
		{"octet truncated", "50 short", nil, true},
		{"octet too big", "99999999 x", nil, true},
		{"line too long", strings.Repeat("y", DefaultMaxSize+10) + "\n", nil, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := all(t, tc.in, 0)
			if (err != nil) != tc.err {
				t.Fatalf("err = %v, want err=%v", err, tc.err)
			}
			if err != nil && !errors.Is(err, ErrFraming) {
				t.Fatalf("error %v does not wrap ErrFraming", err)
			}
			if len(got) != len(tc.want) {
				t.Fatalf("got %d messages, want %d", len(got), len(tc.want))
			}
			for i := range got {
				if got[i] != tc.want[i] {
					t.Fatalf("message %d = %.40q, want %.40q", i, got[i], tc.want[i])
				}
			}
		})
	}
}

func BenchmarkOctetCounting(b *testing.B) {
	msg := "<14>1 2026-11-23T04:00:00Z host app web.1 - - hello world from the app"
	var buf bytes.Buffer
	for range 1000 {
		fmt.Fprintf(&buf, "%d %s", len(msg), msg)
	}
	data := buf.Bytes()
	b.ReportAllocs()
	b.SetBytes(int64(len(data)))
	rd := bytes.NewReader(data)
	r := NewReader(rd, 0)
	for b.Loop() {
		rd.Reset(data)
		r.br.Reset(rd)
		for {
			if _, err := r.Next(); err != nil {
				break
			}
		}
	}
}

func FuzzReader(f *testing.F) {
	for _, s := range []string{"5 hello", "<14>1 a\n", "10 short", "0 x", "3 abc4 defg", "\n\n\n", "1 a1 b", "2015-05-07T01:13:53UTC app[web.1]: x\n", "12345678901 x\n", "42\n"} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		r := NewReader(bytes.NewReader(in), 1024)
		for i := 0; i < len(in)+2; i++ {
			m, err := r.Next()
			if err != nil {
				return
			}
			if len(m) > 1024 {
				t.Fatalf("message of %d bytes over the limit", len(m))
			}
		}
		t.Fatal("more messages than input bytes")
	})
}

// TestL10NewlineLinesStartingWithDigits: framing is octet counting only
// when the first bytes are a length and a space; a newline-framed line
// that starts with a digit (a Deis v1 line, a year) is a line.
func TestL10NewlineLinesStartingWithDigits(t *testing.T) {
	for in, want := range map[string][]string{
		"2015-05-07T01:13:53UTC app[web.1]: a\n2015-05-07T01:13:54UTC app[web.1]: b\n": {"2015-05-07T01:13:53UTC app[web.1]: a", "2015-05-07T01:13:54UTC app[web.1]: b"},
		"5 hello3 abc": {"hello", "abc"},
		"42\n7 more\n": {"42", "7 more"},
	} {
		r := NewReader(strings.NewReader(in), 1024)
		var got []string
		for {
			m, err := r.Next()
			if err != nil {
				break
			}
			got = append(got, string(m))
		}
		if strings.Join(got, "|") != strings.Join(want, "|") {
			t.Errorf("%q: got %q, want %q", in, got, want)
		}
	}
}
