package logspout

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/deis/dataplane/pkg/syslog/format"
)

func testLogspout(maxLine int) *Logspout {
	return &Logspout{
		cfg:          Config{MaxLine: maxLine},
		linesIn:      prometheus.NewCounterVec(prometheus.CounterOpts{Name: "in"}, []string{"stream"}),
		linesSkipped: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "skipped"}, []string{"reason"}),
		linesOdd:     prometheus.NewCounterVec(prometheus.CounterOpts{Name: "odd"}, []string{"kind"}),
	}
}

// TestSplitterAcrossWrites: lines arrive in pieces of any size; each is
// emitted whole, once, with its timestamp; a line over the limit is cut;
// a line without a timestamp is skipped; the last line needs no newline.
func TestSplitterAcrossWrites(t *testing.T) {
	t.Parallel()
	ts := "2026-11-23T05:32:14.736496919Z "
	stream := ts + "one\n" + "garbage-without-timestamp\n" + ts + strings.Repeat("x", 3000) + "\n" + ts + "two\r\n" + ts + "last"
	for _, piece := range []int{1, 7, 64, len(stream)} {
		var got []string
		s := testLogspout(1024).newSplitter(format.PriStdout, func(ln logLine) bool {
			if ln.ts.IsZero() || ln.pri != format.PriStdout {
				t.Errorf("line %q: ts %v pri %d", ln.text, ln.ts, ln.pri)
			}
			got = append(got, string(ln.text))
			return true
		})
		for p := stream; len(p) > 0; {
			n := min(piece, len(p))
			if _, err := s.Write([]byte(p[:n])); err != nil {
				t.Fatal(err)
			}
			p = p[n:]
		}
		if !s.flush() {
			t.Fatal("flush refused")
		}
		want := []string{"one", strings.Repeat("x", 1024), "two", "last"}
		if fmt.Sprint(got) != fmt.Sprint(want) {
			t.Fatalf("pieces of %d: got %.60q", piece, got)
		}
	}
}

// TestSplitterStops: when emit refuses (shutting down), Write fails so
// Docker's stream stops being read.
func TestSplitterStops(t *testing.T) {
	t.Parallel()
	s := testLogspout(1024).newSplitter(format.PriStderr, func(logLine) bool { return false })
	if _, err := s.Write([]byte("2026-11-23T05:32:14Z a\n2026-11-23T05:32:15Z b\n")); err == nil || !s.stopped {
		t.Fatalf("Write = %v, stopped %v; want errStopped", err, s.stopped)
	}
}

func BenchmarkSplitter(b *testing.B) {
	s := testLogspout(64<<10).newSplitter(format.PriStdout, func(logLine) bool { return true })
	chunk := []byte(time.Now().UTC().Format(time.RFC3339Nano) + " l1 line 123456 some more text of a typical log line\n")
	b.ReportAllocs()
	b.SetBytes(int64(len(chunk)))
	for b.Loop() {
		_, _ = s.Write(chunk)
	}
}
