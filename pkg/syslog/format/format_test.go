package format

import (
	"testing"
	"time"

	"github.com/deis/dataplane/pkg/syslog/parse"
)

func TestRoundTripThroughParser(t *testing.T) {
	t.Parallel()
	ts := time.Date(2026, 11, 23, 4, 5, 6, 789000000, time.UTC)
	m := Message{Priority: PriStderr, Time: ts, Host: "host 1", App: "shop", ProcID: "web.1", Text: []byte("hello world")}
	b := AppendRFC5424(nil, &m)
	if string(b) != "<11>1 2026-11-23T04:05:06.789000Z host_1 shop web.1 - - hello world" {
		t.Fatalf("RFC5424 = %q", b)
	}
	p := parse.New()
	got := p.Parse(b, "x", time.Now())
	if got.Format != parse.RFC5424 || got.App != "shop" || got.Proc != "web.1" || got.Text != "hello world" || got.Severity != 3 || !got.Time.Equal(ts) {
		t.Fatalf("parsed back %+v", got)
	}
	b3 := AppendRFC3164(nil, &m)
	got = p.Parse(b3, "x", time.Now())
	if got.Format != parse.RFC3164 || got.App != "shop" || got.Text != "hello world" {
		t.Fatalf("RFC3164 %q parsed back %+v", b3, got)
	}
}

func BenchmarkAppendRFC5424(b *testing.B) {
	m := Message{Priority: PriStdout, Time: time.Now(), Host: "10.0.0.1", App: "shop", ProcID: "web.1", Text: []byte("GET / 200")}
	buf := make([]byte, 0, 256)
	b.ReportAllocs()
	for b.Loop() {
		buf = AppendRFC5424(buf[:0], &m)
	}
}
