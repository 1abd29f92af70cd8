// Package parse turns one syslog message into the fields the logger keeps:
// time, host, app, process and text. It accepts RFC 5424 and RFC 3164
// (parsed with leodido/go-syslog, the maintained influxdata/go-syslog), and
// Deis v1's form "<time> <app>[<proc>]: <msg>". Anything else is kept as a
// raw line attributed to the sending host, never dropped.
package parse

import (
	"bytes"
	"time"

	syslog "github.com/leodido/go-syslog/v4"
	"github.com/leodido/go-syslog/v4/rfc3164"
	"github.com/leodido/go-syslog/v4/rfc5424"
)

// Format says how a message was understood.
type Format int

const (
	Raw Format = iota // unparseable: kept whole
	RFC5424
	RFC3164
	DeisV1
)

func (f Format) String() string {
	return [...]string{"raw", "rfc5424", "rfc3164", "deis"}[f]
}

// Message is a parsed log line.
type Message struct {
	Format   Format
	Time     time.Time
	Host     string
	App      string
	Proc     string
	Severity int // 0-7; 6 (info) when absent
	Text     string
}

// Parser holds reusable state. Not safe for concurrent use: keep one per
// connection or goroutine.
type Parser struct {
	m5424 syslog.Machine
	m3164 syslog.Machine
}

// New returns a parser.
func New() *Parser {
	return &Parser{
		m5424: rfc5424.NewMachine(rfc5424.WithBestEffort()),
		m3164: rfc3164.NewMachine(rfc3164.WithBestEffort(), rfc3164.WithYear(rfc3164.CurrentYear{}), rfc3164.WithRFC3339()),
	}
}

// Parse understands msg; sender names the peer for raw lines and for
// messages without HOSTNAME; now stamps messages without a time.
func (p *Parser) Parse(msg []byte, sender string, now time.Time) Message {
	msg = bytes.TrimRight(msg, "\r\n\x00")
	if len(msg) > 0 && msg[0] == '<' {
		if i := bytes.IndexByte(msg, '>'); i > 1 && i < 5 && i+2 < len(msg) && msg[i+1] >= '1' && msg[i+1] <= '9' && (msg[i+2] == ' ' || (i+3 < len(msg) && msg[i+3] == ' ')) {
			if m, ok := p.rfc5424(msg, sender, now); ok {
				return m
			}
		}
		if m, ok := p.rfc3164(msg, sender, now); ok {
			return m
		}
	}
	if m, ok := deis(msg, sender); ok {
		return m
	}
	return Message{Format: Raw, Time: now, Host: sender, App: sender, Severity: 6, Text: string(msg)}
}

func (p *Parser) rfc5424(msg []byte, sender string, now time.Time) (Message, bool) {
	res, _ := p.m5424.Parse(msg)
	sm, ok := res.(*rfc5424.SyslogMessage)
	if !ok || sm == nil || sm.Priority == nil || sm.Appname == nil {
		return Message{}, false
	}
	return fill(RFC5424, &sm.Base, sender, now), true
}

func (p *Parser) rfc3164(msg []byte, sender string, now time.Time) (Message, bool) {
	res, _ := p.m3164.Parse(msg)
	sm, ok := res.(*rfc3164.SyslogMessage)
	if !ok || sm == nil || sm.Priority == nil || sm.Appname == nil {
		return Message{}, false
	}
	return fill(RFC3164, &sm.Base, sender, now), true
}

func fill(f Format, b *syslog.Base, sender string, now time.Time) Message {
	m := Message{Format: f, Time: now, Host: sender, App: *b.Appname, Severity: 6}
	if b.Timestamp != nil && !b.Timestamp.IsZero() {
		m.Time = *b.Timestamp
	}
	if b.Hostname != nil && *b.Hostname != "" {
		m.Host = *b.Hostname
	}
	if b.ProcID != nil {
		m.Proc = *b.ProcID
	}
	if b.Severity != nil {
		m.Severity = int(*b.Severity)
	}
	if b.Message != nil {
		m.Text = *b.Message
	}
	return m
}

// DeisV1TimeLayout is the time Deis v1's logspout wrote:
// "2015-05-07T01:13:53UTC" (no offset, a zone abbreviation).
const DeisV1TimeLayout = "2006-01-02T15:04:05MST"

// deis parses "<time> <app>[<proc>]: <msg>", the lines Deis v1's logspout
// sent (time in DeisV1TimeLayout) and its logger served (RFC 3339).
func deis(msg []byte, sender string) (Message, bool) {
	sp := bytes.IndexByte(msg, ' ')
	if sp < 10 {
		return Message{}, false
	}
	t, err := time.Parse(time.RFC3339Nano, string(msg[:sp]))
	if err != nil {
		if t, err = time.Parse(DeisV1TimeLayout, string(msg[:sp])); err != nil {
			return Message{}, false
		}
	}
	rest := msg[sp+1:]
	open := bytes.IndexByte(rest, '[')
	end := bytes.Index(rest, []byte("]: "))
	if open <= 0 || end < open || bytes.IndexByte(rest[:open], ' ') >= 0 {
		// Also accept "<time> <app>: <msg>" without a process.
		if c := bytes.Index(rest, []byte(": ")); c > 0 && bytes.IndexByte(rest[:c], ' ') < 0 {
			return Message{Format: DeisV1, Time: t, Host: sender, App: string(rest[:c]), Severity: 6, Text: string(rest[c+2:])}, true
		}
		return Message{}, false
	}
	return Message{Format: DeisV1, Time: t, Host: sender, App: string(rest[:open]), Proc: string(rest[open+1 : end]), Severity: 6, Text: string(rest[end+3:])}, true
}

// AppendLine formats m as the logger stores and serves it:
// "<RFC 3339 time> <app>[<proc>]: <message>".
func AppendLine(dst []byte, m *Message) []byte {
	dst = m.Time.UTC().AppendFormat(dst, time.RFC3339Nano)
	dst = append(dst, ' ')
	dst = append(dst, m.App...)
	if m.Proc != "" { // "app: text" when there is no process, not "app[]: text"
		dst = append(dst, '[')
		dst = append(dst, m.Proc...)
		dst = append(dst, ']')
	}
	dst = append(dst, ':', ' ')
	// Stored lines are one line each: embedded newlines are escaped.
	for i := 0; i < len(m.Text); i++ {
		switch c := m.Text[i]; c {
		case '\n':
			dst = append(dst, '\\', 'n')
		case '\r':
			dst = append(dst, '\\', 'r')
		default:
			dst = append(dst, c)
		}
	}
	return dst
}
