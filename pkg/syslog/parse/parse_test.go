package parse

import (
	"strings"
	"testing"
	"time"
)

func TestParse(t *testing.T) {
	t.Parallel()
	now := time.Date(2026, 11, 23, 4, 0, 0, 0, time.UTC)
	p := New()
	for _, tc := range []struct {
		in              string
		format          Format
		app, proc, text string
		host            string
		severity        int
	}{
		{"<14>1 2026-11-23T03:00:00.5Z h1 shop web.1 - - hello world", RFC5424, "shop", "web.1", "hello world", "h1", 6},
		{"<11>1 2026-11-23T03:00:00Z h1 shop web.2 ID7 [x@1 a=\"b\"] oops", RFC5424, "shop", "web.2", "oops", "h1", 3},
		{"<13>Nov 23 03:00:00 h2 blog[123]: legacy line", RFC3164, "blog", "123", "legacy line", "h2", 5},
		{"2026-11-23T03:00:00Z shop[web.1]: deis form", DeisV1, "shop", "web.1", "deis form", "10.0.0.9", 6},
		{"2026-11-23T03:00:00Z shop: no proc", DeisV1, "shop", "", "no proc", "10.0.0.9", 6},
		{"complete garbage \x01\x02", Raw, "10.0.0.9", "", "complete garbage \x01\x02", "10.0.0.9", 6},
		{"<999>1 broken", Raw, "10.0.0.9", "", "<999>1 broken", "10.0.0.9", 6},
	} {
		m := p.Parse([]byte(tc.in), "10.0.0.9", now)
		if m.Format != tc.format || m.App != tc.app || m.Proc != tc.proc || m.Text != tc.text || m.Host != tc.host || m.Severity != tc.severity {
			t.Errorf("Parse(%q) = %+v", tc.in, m)
		}
	}
}

func TestAppendLine(t *testing.T) {
	t.Parallel()
	m := Message{Time: time.Date(2026, 11, 23, 4, 5, 6, 0, time.UTC), App: "shop", Proc: "web.1", Text: "a\nb"}
	if got := string(AppendLine(nil, &m)); got != `2026-11-23T04:05:06Z shop[web.1]: a\nb` {
		t.Fatalf("AppendLine = %q", got)
	}
}

func BenchmarkParseRFC5424(b *testing.B) {
	p := New()
	msg := []byte("<14>1 2026-11-23T03:00:00.123456Z host1 shop web.1 - - GET /index.html 200 1234 bytes in 3ms")
	now := time.Now()
	b.ReportAllocs()
	for b.Loop() {
		_ = p.Parse(msg, "h", now)
	}
}

func FuzzParse(f *testing.F) {
	for _, s := range []string{
		"<14>1 2026-11-23T03:00:00Z h app web.1 - - hi", "<13>Nov 23 03:00:00 h app[1]: x",
		"2026-11-23T03:00:00Z app[web.1]: y", "2015-05-07T01:13:53UTC app[web.1]: z", "2015-05-07T01:13:53PST app: w", "<", "<1>", "<14>1 ", strings.Repeat("[", 100),
	} {
		f.Add([]byte(s))
	}
	p := New()
	f.Fuzz(func(t *testing.T, in []byte) {
		m := p.Parse(in, "sender", time.Unix(0, 0))
		if m.App == "" && m.Format == Raw {
			t.Fatal("raw message without app attribution")
		}
		_ = AppendLine(nil, &m)
	})
}

func TestAppendLineWithoutProcess(t *testing.T) {
	ts := time.Date(2026, 11, 30, 12, 0, 0, 0, time.UTC)
	if got := string(AppendLine(nil, &Message{Time: ts, App: "myapp", Text: "hello"})); got != "2026-11-30T12:00:00Z myapp: hello" {
		t.Fatalf("no process: %q (want no empty brackets)", got)
	}
	if got := string(AppendLine(nil, &Message{Time: ts, App: "myapp", Proc: "web.1", Text: "a\nb"})); got != `2026-11-30T12:00:00Z myapp[web.1]: a\nb` {
		t.Fatalf("with process: %q", got)
	}
}
