package logspout

// Cutting Docker's timestamped streams into lines: rejoining its 16 KiB
// pieces, cutting at --max-line, and telling odd (binary, invalid) text.

import (
	"bytes"
	"errors"
	"time"
	"unicode/utf8"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/deis/dataplane/pkg/syslog/format"
)

type logLine struct {
	ts   time.Time
	pri  int
	text []byte
}

// lineSplitter is the writer one of Docker's streams (stdout or stderr)
// is copied into: it cuts the timestamped stream into lines and hands each
// to emit. Lines longer than MaxLine are cut (the rest is dropped and
// counted).
type lineSplitter struct {
	l       *Logspout
	pri     int
	counter prometheus.Counter
	rawMax  int
	emit    func(logLine) bool
	buf     []byte // the current line so far
	cut     bool   // bytes of the current line were dropped
	stopped bool   // emit refused a line: shutting down
}

var errStopped = errors.New("logspout is stopping")

func (l *Logspout) newSplitter(pri int, emit func(logLine) bool) *lineSplitter {
	stream := "stdout"
	if pri == format.PriStderr {
		stream = "stderr"
	}
	return &lineSplitter{l: l, pri: pri, emit: emit, counter: l.linesIn.WithLabelValues(stream),
		// Room for MaxLine of text plus the timestamp Docker puts before
		// each of its 16 KiB chunks.
		rawMax: l.cfg.MaxLine + (l.cfg.MaxLine/dockerChunk+2)*48}
}

func (s *lineSplitter) Write(p []byte) (int, error) {
	n := len(p)
	for len(p) > 0 {
		end := bytes.IndexByte(p, '\n')
		chunk := p
		if end >= 0 {
			chunk = p[:end+1]
		}
		if room := s.rawMax - len(s.buf); room > 0 {
			take := min(room, len(chunk))
			s.buf = append(s.buf, chunk[:take]...)
			s.cut = s.cut || take < len(chunk)
		} else {
			s.cut = true
		}
		p = p[len(chunk):]
		if end >= 0 && !s.line() {
			return 0, errStopped
		}
	}
	return n, nil
}

// flush hands over a last line that ended without a newline.
func (s *lineSplitter) flush() bool {
	return len(s.buf) == 0 || s.line()
}

// line parses and emits the buffered line, then empties the buffer.
func (s *lineSplitter) line() bool {
	defer func() { s.buf, s.cut = s.buf[:0], false }()
	full := bytes.TrimRight(s.buf, "\r\n")
	if len(full) == 0 {
		return true
	}
	sp := bytes.IndexByte(full, ' ')
	var ts time.Time
	var err error
	if sp > 0 {
		ts, err = time.Parse(time.RFC3339Nano, string(full[:sp]))
	}
	if sp <= 0 || err != nil {
		s.l.linesSkipped.WithLabelValues("no_timestamp").Inc()
		return true
	}
	text, cut := rejoin(full[sp+1:]), s.cut
	if len(text) > s.l.cfg.MaxLine {
		text, cut = text[:s.l.cfg.MaxLine], true
	}
	if cut {
		s.l.linesOdd.WithLabelValues("truncated").Inc()
	}
	if !utf8.Valid(text) {
		s.l.linesOdd.WithLabelValues("invalid_utf8").Inc()
	} else if hasControl(text) {
		s.l.linesOdd.WithLabelValues("binary").Inc()
	}
	s.counter.Inc()
	if !s.emit(logLine{ts: ts, pri: s.pri, text: text}) {
		s.stopped = true
		return false
	}
	return true
}

// dockerChunk is where Docker's json-file driver splits long lines; with
// timestamps on, every following chunk carries its own "<time> " prefix
// and no newline separates them.
const dockerChunk = 16 << 10

// rejoin removes the timestamp prefixes Docker put inside a long line, so
// the line is shipped whole.
func rejoin(text []byte) []byte {
	if len(text) <= dockerChunk {
		return text
	}
	var out []byte
	for len(text) > dockerChunk {
		rest := text[dockerChunk:]
		j := bytes.IndexByte(rest, ' ')
		if j < 20 || j > 40 {
			break
		}
		if _, err := time.Parse(time.RFC3339Nano, string(rest[:j])); err != nil {
			break
		}
		out = append(out, text[:dockerChunk]...)
		text = rest[j+1:]
	}
	if out == nil {
		return text
	}
	return append(out, text...)
}

// hasControl reports control characters other than tab: binary output.
func hasControl(b []byte) bool {
	for _, c := range b {
		if c < 0x20 && c != '\t' || c == 0x7f {
			return true
		}
	}
	return false
}
