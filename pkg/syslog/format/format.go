// Package format encodes syslog messages: RFC 5424 (the wire format of
// docs/contract.md) and RFC 3164 for old receivers. Encoders append to a
// caller's buffer and do not allocate.
package format

import "time"

// Priorities of docs/contract.md: user.info for stdout, user.err for stderr.
const (
	PriStdout = 14
	PriStderr = 11
)

// Message is what gets encoded. Empty header fields become "-".
type Message struct {
	Priority int
	Time     time.Time
	Host     string
	App      string
	ProcID   string
	MsgID    string
	Text     []byte
}

// Kind is an encoding.
type Kind int

const (
	RFC5424 Kind = iota
	RFC3164
)

// Append encodes m in kind.
func Append(dst []byte, kind Kind, m *Message) []byte {
	if kind == RFC3164 {
		return AppendRFC3164(dst, m)
	}
	return AppendRFC5424(dst, m)
}

// AppendRFC5424 encodes "<PRI>1 TIMESTAMP HOSTNAME APP-NAME PROCID MSGID -
// MSG" (RFC 5424 section 6), header fields sanitised to printable ASCII
// without spaces and cut to the RFC's lengths.
func AppendRFC5424(dst []byte, m *Message) []byte {
	dst = appendPri(dst, m.Priority)
	dst = append(dst, '1', ' ')
	if m.Time.IsZero() {
		dst = append(dst, '-')
	} else {
		dst = m.Time.UTC().AppendFormat(dst, "2006-01-02T15:04:05.000000Z07:00")
	}
	dst = append(dst, ' ')
	dst = appendField(dst, m.Host, 255)
	dst = append(dst, ' ')
	dst = appendField(dst, m.App, 48)
	dst = append(dst, ' ')
	dst = appendField(dst, m.ProcID, 128)
	dst = append(dst, ' ')
	dst = appendField(dst, m.MsgID, 32)
	dst = append(dst, " - "...)
	return append(dst, m.Text...)
}

// AppendRFC3164 encodes "<PRI>Mmm dd hh:mm:ss HOST TAG[PROC]: MSG".
func AppendRFC3164(dst []byte, m *Message) []byte {
	dst = appendPri(dst, m.Priority)
	t := m.Time
	if t.IsZero() {
		t = time.Now()
	}
	dst = t.UTC().AppendFormat(dst, time.Stamp)
	dst = append(dst, ' ')
	dst = appendField(dst, m.Host, 255)
	dst = append(dst, ' ')
	dst = appendField(dst, m.App, 32)
	if m.ProcID != "" {
		dst = append(dst, '[')
		dst = appendField(dst, m.ProcID, 128)
		dst = append(dst, ']')
	}
	dst = append(dst, ':', ' ')
	return append(dst, m.Text...)
}

func appendPri(dst []byte, pri int) []byte {
	if pri < 0 || pri > 191 {
		pri = PriStdout
	}
	dst = append(dst, '<')
	if pri >= 100 {
		dst = append(dst, byte('0'+pri/100))
	}
	if pri >= 10 {
		dst = append(dst, byte('0'+pri/10%10))
	}
	return append(dst, byte('0'+pri%10), '>')
}

// appendField writes s as a header field: printable ASCII (33-126) only,
// at most max bytes, "-" when empty.
func appendField(dst []byte, s string, max int) []byte {
	n := 0
	for i := 0; i < len(s) && n < max; i++ {
		c := s[i]
		if c < 33 || c > 126 {
			c = '_'
		}
		dst = append(dst, c)
		n++
	}
	if n == 0 {
		dst = append(dst, '-')
	}
	return dst
}
