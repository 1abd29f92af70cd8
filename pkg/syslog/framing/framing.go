// Package framing is syslog's stream framing (RFC 6587), both ways: Reader
// splits a TCP stream into messages and Append frames one for writing,
// with octet counting ("LEN SP MSG") or non-transparent framing (messages
// ended by LF, or NUL on reading). A Reader detects the framing once per
// connection from its first bytes: a length and a space mean octet
// counting, anything else newline framing. Framing is kept apart from
// message parsing (package parse) and encoding (package format).
package framing

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"strconv"
)

// Mode is a framing method.
type Mode int

const (
	Unknown Mode = iota
	OctetCounting
	NonTransparent
)

func (m Mode) String() string {
	switch m {
	case OctetCounting:
		return "octet-counting"
	case NonTransparent:
		return "newline"
	}
	return "unknown"
}

// Append appends msg to dst framed with mode: "LEN SP MSG" for
// OctetCounting, "MSG LF" for NonTransparent, msg alone for Unknown (a
// datagram carries one message, unframed).
func Append(dst []byte, mode Mode, msg []byte) []byte {
	switch mode {
	case OctetCounting:
		dst = strconv.AppendInt(dst, int64(len(msg)), 10)
		dst = append(dst, ' ')
		return append(dst, msg...)
	case NonTransparent:
		return append(append(dst, msg...), '\n')
	default:
		return append(dst, msg...)
	}
}

// DefaultMaxSize is the largest message accepted by default: 64 KiB of
// payload plus room for the header.
const DefaultMaxSize = 64<<10 + 1024

// ErrFraming is wrapped by every error that means the stream is not valid
// syslog framing; the connection should be closed.
var ErrFraming = errors.New("bad syslog framing")

// Reader yields one message at a time. Not safe for concurrent use.
type Reader struct {
	br     *bufio.Reader
	max    int
	mode   Mode
	buf    []byte
	offset int64 // bytes consumed, for error messages
}

// NewReader reads messages of at most max bytes (DefaultMaxSize if 0).
func NewReader(r io.Reader, max int) *Reader {
	if max <= 0 {
		max = DefaultMaxSize
	}
	return &Reader{br: bufio.NewReaderSize(r, 64<<10), max: max}
}

// Mode is the framing detected so far.
func (r *Reader) Mode() Mode { return r.mode }

// Next returns the next message. The slice is valid until the next call.
// At the end of the stream it returns io.EOF; an error wrapping ErrFraming
// means the stream cannot be resynchronised.
func (r *Reader) Next() ([]byte, error) {
	if r.mode == Unknown {
		mode, err := r.detect()
		if err != nil {
			return nil, err
		}
		r.mode = mode
	}
	if r.mode == OctetCounting {
		return r.nextOctet()
	}
	return r.nextLine()
}

// maxLengthDigits is the most digits an octet-counting length may have
// before the space (more than any message this reader accepts).
const maxLengthDigits = 10

// detect chooses the connection's framing from its first bytes: a length
// (a digit 1-9, then digits, then a space) means octet counting (RFC 6587
// 3.4.1); anything else, including a line that starts with a digit such
// as a Deis v1 "2015-05-07T01:13:53UTC app[web.1]: ..." line, is newline
// framed. rsyslog looks at the first byte only and drops such lines.
func (r *Reader) detect() (Mode, error) {
	for n := 1; n <= maxLengthDigits+1; n++ {
		b, err := r.br.Peek(n)
		if err != nil {
			if len(b) > 0 && err == io.EOF {
				return NonTransparent, nil // a last line without its newline
			}
			return Unknown, err
		}
		c := b[n-1]
		switch {
		case n == 1 && (c < '1' || c > '9'):
			return NonTransparent, nil
		case c == ' ':
			return OctetCounting, nil
		case c < '0' || c > '9':
			return NonTransparent, nil
		}
	}
	return NonTransparent, nil
}

func (r *Reader) nextOctet() ([]byte, error) {
	n := 0
	digits := 0
	for {
		c, err := r.br.ReadByte()
		if err != nil {
			if err == io.EOF && digits > 0 {
				return nil, fmt.Errorf("%w: stream ended inside a length at byte %d", ErrFraming, r.offset)
			}
			return nil, err
		}
		r.offset++
		if c == ' ' && digits > 0 {
			break
		}
		if c < '0' || c > '9' || (digits == 0 && c == '0') {
			return nil, fmt.Errorf("%w: octet counting expects a length at byte %d, got %q", ErrFraming, r.offset-1, c)
		}
		n = n*10 + int(c-'0')
		digits++
		if n > r.max {
			return nil, fmt.Errorf("%w: message of %d+ bytes at byte %d exceeds the %d byte limit", ErrFraming, n, r.offset-int64(digits), r.max)
		}
	}
	if cap(r.buf) < n {
		r.buf = make([]byte, n, max(n, 4096))
	}
	r.buf = r.buf[:n]
	if _, err := io.ReadFull(r.br, r.buf); err != nil {
		return nil, fmt.Errorf("%w: stream ended inside a %d byte message at byte %d", ErrFraming, n, r.offset)
	}
	r.offset += int64(n)
	return r.buf, nil
}

func (r *Reader) nextLine() ([]byte, error) {
	r.buf = r.buf[:0]
	for {
		chunk, err := r.br.ReadSlice('\n')
		r.offset += int64(len(chunk))
		if len(r.buf)+len(chunk) > r.max+1 {
			return nil, fmt.Errorf("%w: line at byte %d exceeds the %d byte limit", ErrFraming, r.offset-int64(len(r.buf)+len(chunk)), r.max)
		}
		r.buf = append(r.buf, chunk...)
		switch {
		case err == nil:
			line := bytes.TrimRight(r.buf, "\r\n\x00")
			if len(line) == 0 {
				r.buf = r.buf[:0]
				continue // blank line: keep-alive noise
			}
			return line, nil
		case errors.Is(err, bufio.ErrBufferFull):
			continue
		case err == io.EOF && len(bytes.TrimRight(r.buf, "\r\n\x00")) > 0:
			return bytes.TrimRight(r.buf, "\r\n\x00"), nil // last line without LF
		default:
			return nil, err
		}
	}
}
