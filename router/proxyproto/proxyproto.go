// Package proxyproto reads the PROXY protocol header (HAProxy's spec, v1
// text and v2 binary) that load balancers put in front of a connection, so
// the router sees the real client address.
package proxyproto

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

// Header is a parsed PROXY header. Local is set for v2 LOCAL commands and
// v1 "UNKNOWN": the connection is the balancer's own, and the real peer
// address is to be used.
type Header struct {
	Version  int
	Local    bool
	Src, Dst netip.AddrPort
}

var v2Sig = []byte("\r\n\r\n\x00\r\nQUIT\n")

// maxV1 is the longest v1 line, CRLF included (spec section 2.1).
const maxV1 = 107

// Read parses one v1 or v2 header from r, consuming exactly its bytes.
func Read(r *bufio.Reader) (Header, error) {
	first, err := r.Peek(1)
	if err != nil {
		return Header{}, fmt.Errorf("proxy header: %w", err)
	}
	switch first[0] {
	case 'P':
		return readV1(r)
	case '\r':
		return readV2(r)
	}
	return Header{}, fmt.Errorf("proxy header: connection does not start with a PROXY header (first byte 0x%02x)", first[0])
}

func readV1(r *bufio.Reader) (Header, error) {
	var line []byte
	for len(line) < maxV1 {
		b, err := r.ReadByte()
		if err != nil {
			return Header{}, fmt.Errorf("proxy v1 header: %w", err)
		}
		line = append(line, b)
		if b == '\n' {
			break
		}
	}
	if len(line) < 2 || line[len(line)-1] != '\n' || line[len(line)-2] != '\r' {
		return Header{}, errors.New("proxy v1 header: no CRLF within 107 bytes")
	}
	f := bytes.Split(line[:len(line)-2], []byte{' '})
	if string(f[0]) != "PROXY" || len(f) < 2 {
		return Header{}, errors.New("proxy v1 header: does not start with \"PROXY \"")
	}
	h := Header{Version: 1}
	switch string(f[1]) {
	case "UNKNOWN":
		h.Local = true
		return h, nil
	case "TCP4", "TCP6":
	default:
		return h, fmt.Errorf("proxy v1 header: unknown protocol %q", clip(f[1]))
	}
	if len(f) != 6 {
		return h, fmt.Errorf("proxy v1 header: want 6 fields, got %d", len(f))
	}
	src, err1 := netip.ParseAddr(string(f[2]))
	dst, err2 := netip.ParseAddr(string(f[3]))
	sp, err3 := port(f[4])
	dp, err4 := port(f[5])
	if err := errors.Join(err1, err2, err3, err4); err != nil {
		return h, fmt.Errorf("proxy v1 header: bad address: %w", err)
	}
	if (string(f[1]) == "TCP4") != (src.Is4() && dst.Is4()) {
		return h, fmt.Errorf("proxy v1 header: %s with addresses %s %s", f[1], src, dst)
	}
	h.Src, h.Dst = netip.AddrPortFrom(src, sp), netip.AddrPortFrom(dst, dp)
	return h, nil
}

func port(b []byte) (uint16, error) {
	if len(b) == 0 || len(b) > 5 || (b[0] == '0' && len(b) > 1) {
		return 0, fmt.Errorf("bad port %q", clip(b))
	}
	n, err := strconv.ParseUint(string(b), 10, 16)
	if err != nil {
		return 0, fmt.Errorf("bad port %q", clip(b))
	}
	return uint16(n), nil
}

func readV2(r *bufio.Reader) (Header, error) {
	var fixed [16]byte
	if _, err := io.ReadFull(r, fixed[:]); err != nil {
		return Header{}, fmt.Errorf("proxy v2 header: %w", err)
	}
	if !bytes.Equal(fixed[:12], v2Sig) {
		return Header{}, errors.New("proxy v2 header: bad signature")
	}
	if fixed[12]>>4 != 2 {
		return Header{}, fmt.Errorf("proxy v2 header: version %d", fixed[12]>>4)
	}
	length := int(binary.BigEndian.Uint16(fixed[14:16]))
	body := make([]byte, length)
	if _, err := io.ReadFull(r, body); err != nil {
		return Header{}, fmt.Errorf("proxy v2 header: body of %d bytes: %w", length, err)
	}
	h := Header{Version: 2}
	switch fixed[12] & 0x0f {
	case 0x0: // LOCAL
		h.Local = true
		return h, nil
	case 0x1: // PROXY
	default:
		return h, fmt.Errorf("proxy v2 header: unknown command %d", fixed[12]&0x0f)
	}
	switch fixed[13] {
	case 0x11: // TCP over IPv4
		if length < 12 {
			return h, errors.New("proxy v2 header: short IPv4 address block")
		}
		h.Src = netip.AddrPortFrom(netip.AddrFrom4([4]byte(body[0:4])), binary.BigEndian.Uint16(body[8:10]))
		h.Dst = netip.AddrPortFrom(netip.AddrFrom4([4]byte(body[4:8])), binary.BigEndian.Uint16(body[10:12]))
	case 0x21: // TCP over IPv6
		if length < 36 {
			return h, errors.New("proxy v2 header: short IPv6 address block")
		}
		h.Src = netip.AddrPortFrom(netip.AddrFrom16([16]byte(body[0:16])), binary.BigEndian.Uint16(body[32:34]))
		h.Dst = netip.AddrPortFrom(netip.AddrFrom16([16]byte(body[16:32])), binary.BigEndian.Uint16(body[34:36]))
	default: // UNSPEC, UDP, unix: keep the real peer address
		h.Local = true
	}
	return h, nil // TLVs after the addresses are skipped
}

func clip(b []byte) string {
	if len(b) > 32 {
		return string(b[:32]) + "..."
	}
	return string(b)
}

// Listener wraps a listener whose peers may send PROXY headers.
type Listener struct {
	net.Listener
	enabled func() bool
	trusted func(netip.Addr) bool
	timeout time.Duration
	log     *slog.Logger
	// Rejected counts connections closed for a missing or bad header.
	Rejected atomic.Int64
	// Untrusted counts headers whose source was ignored because the peer
	// that sent them is not trusted.
	Untrusted atomic.Int64
}

// NewListener wraps ln. While enabled() is true each accepted connection
// must start with a PROXY v1 or v2 header, read within timeout on the
// connection's first use (never inside Accept, so one slow peer cannot hold
// up the others). Its RemoteAddr becomes the header's source only when the
// real peer is trusted (the load balancer: trusted(peer) is true, e.g. in
// proxyRealIpCidr); from any other peer the header is read and its address
// ignored, as nginx's set_real_ip_from does, so that a client reaching the
// router directly cannot claim an address past whitelists. While enabled()
// is false connections pass through untouched.
func NewListener(ln net.Listener, enabled func() bool, trusted func(netip.Addr) bool, timeout time.Duration, log *slog.Logger) *Listener {
	if log == nil {
		log = slog.Default()
	}
	return &Listener{Listener: ln, enabled: enabled, trusted: trusted, timeout: timeout, log: log}
}

// Accept returns the next connection, wrapped when PROXY is enabled.
func (l *Listener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil || !l.enabled() {
		return c, err
	}
	return &Conn{Conn: c, l: l}, nil
}

// Conn is a connection whose first bytes were a PROXY header.
type Conn struct {
	net.Conn
	l      *Listener
	once   sync.Once
	br     *bufio.Reader
	remote net.Addr
	err    error
}

func (c *Conn) init() {
	c.once.Do(func() {
		_ = c.Conn.SetReadDeadline(time.Now().Add(c.l.timeout))
		c.br = bufio.NewReaderSize(c.Conn, 256)
		h, err := Read(c.br)
		_ = c.Conn.SetReadDeadline(time.Time{})
		if err != nil {
			c.err = err
			level := slog.LevelDebug
			if c.l.Rejected.Add(1) == 1 {
				level = slog.LevelWarn
			}
			c.l.log.Log(context.Background(), level, "closing connection without a valid PROXY header", "peer", c.Conn.RemoteAddr().String(), "err", err)
			c.Conn.Close()
			return
		}
		if h.Local || !h.Src.IsValid() {
			return
		}
		if c.l.trusted == nil || !c.l.trusted(peerIP(c.Conn.RemoteAddr())) {
			level := slog.LevelDebug
			if c.l.Untrusted.Add(1) == 1 {
				level = slog.LevelWarn // the first one says so; the counter tells the rest
			}
			c.l.log.Log(context.Background(), level, "ignoring the PROXY source of an untrusted peer", "peer", c.Conn.RemoteAddr().String(), "claimed", h.Src.String())
			return
		}
		c.remote = net.TCPAddrFromAddrPort(h.Src)
	})
}

func peerIP(a net.Addr) netip.Addr {
	if ta, ok := a.(*net.TCPAddr); ok {
		ip, _ := netip.AddrFromSlice(ta.IP)
		return ip.Unmap()
	}
	ap, err := netip.ParseAddrPort(a.String())
	if err != nil {
		return netip.Addr{}
	}
	return ap.Addr().Unmap()
}

// Read reads after the header (parsing it on first use).
func (c *Conn) Read(p []byte) (int, error) {
	c.init()
	if c.err != nil {
		return 0, c.err
	}
	if c.br.Buffered() > 0 {
		return c.br.Read(p)
	}
	return c.Conn.Read(p)
}

// RemoteAddr is the client address from the header, or the peer's.
func (c *Conn) RemoteAddr() net.Addr {
	c.init()
	if c.remote != nil {
		return c.remote
	}
	return c.Conn.RemoteAddr()
}

// CloseWrite half-closes the underlying TCP connection if it can.
func (c *Conn) CloseWrite() error {
	if cw, ok := c.Conn.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return nil
}
