package proxyproto

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"
)

func v2(cmd, fam byte, addrs []byte, tlv []byte) []byte {
	var b bytes.Buffer
	b.Write(v2Sig)
	b.WriteByte(0x20 | cmd)
	b.WriteByte(fam)
	_ = binary.Write(&b, binary.BigEndian, uint16(len(addrs)+len(tlv)))
	b.Write(addrs)
	b.Write(tlv)
	return b.Bytes()
}

func TestRead(t *testing.T) {
	t.Parallel()
	v4 := []byte{192, 0, 2, 1, 198, 51, 100, 2, 0x30, 0x39, 0x01, 0xbb}
	v6 := append(append(netip.MustParseAddr("2001:db8::1").AsSlice(), netip.MustParseAddr("2001:db8::2").AsSlice()...), 0x30, 0x39, 0x01, 0xbb)
	for _, tc := range []struct {
		name string
		in   []byte
		want Header
		ok   bool
	}{
		{"v1 tcp4", []byte("PROXY TCP4 192.0.2.1 198.51.100.2 12345 443\r\nGET"), Header{1, false, netip.MustParseAddrPort("192.0.2.1:12345"), netip.MustParseAddrPort("198.51.100.2:443")}, true},
		{"v1 tcp6", []byte("PROXY TCP6 2001:db8::1 2001:db8::2 12345 443\r\n"), Header{1, false, netip.MustParseAddrPort("[2001:db8::1]:12345"), netip.MustParseAddrPort("[2001:db8::2]:443")}, true},
		{"v1 unknown", []byte("PROXY UNKNOWN\r\n"), Header{Version: 1, Local: true}, true},
		{"v2 tcp4", v2(1, 0x11, v4, nil), Header{2, false, netip.MustParseAddrPort("192.0.2.1:12345"), netip.MustParseAddrPort("198.51.100.2:443")}, true},
		{"v2 tcp4 with TLV", v2(1, 0x11, v4, []byte{0x04, 0, 1, 'x'}), Header{2, false, netip.MustParseAddrPort("192.0.2.1:12345"), netip.MustParseAddrPort("198.51.100.2:443")}, true},
		{"v2 tcp6", v2(1, 0x21, v6, nil), Header{2, false, netip.MustParseAddrPort("[2001:db8::1]:12345"), netip.MustParseAddrPort("[2001:db8::2]:443")}, true},
		{"v2 local", v2(0, 0, nil, nil), Header{Version: 2, Local: true}, true},
		{"plain http", []byte("GET / HTTP/1.1\r\n"), Header{}, false},
		{"v1 no crlf", []byte("PROXY TCP4 1.1.1.1 2.2.2.2 1 2\n"), Header{}, false},
		{"v1 too long", []byte("PROXY TCP4 " + strings.Repeat("1", 200) + "\r\n"), Header{}, false},
		{"v1 family mismatch", []byte("PROXY TCP4 2001:db8::1 1.1.1.1 1 2\r\n"), Header{}, false},
		{"v1 bad port", []byte("PROXY TCP4 1.1.1.1 2.2.2.2 70000 2\r\n"), Header{}, false},
		{"v2 short", v2(1, 0x11, v4[:6], nil), Header{}, false},
		{"v2 bad sig", append([]byte("\r\n\r\n\x00\r\nQUIX\n"), 0x21, 0x11, 0, 0), Header{}, false},
		{"v2 truncated", v2(1, 0x11, v4, nil)[:20], Header{}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := Read(bufio.NewReader(bytes.NewReader(tc.in)))
			if (err == nil) != tc.ok {
				t.Fatalf("err = %v, want ok=%v", err, tc.ok)
			}
			if tc.ok && got != tc.want {
				t.Fatalf("got %+v, want %+v", got, tc.want)
			}
		})
	}
}

func TestListener(t *testing.T) {
	t.Parallel()
	inner, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ln := NewListener(inner, func() bool { return true }, func(netip.Addr) bool { return true }, time.Second, slog.New(slog.DiscardHandler))
	defer ln.Close()
	type result struct {
		remote string
		data   string
		err    error
	}
	results := make(chan result, 4)
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				data, err := io.ReadAll(c)
				results <- result{c.RemoteAddr().String(), string(data), err}
			}()
		}
	}()
	send := func(b []byte) result {
		c, err := net.Dial("tcp", inner.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		_, _ = c.Write(b)
		_ = c.(*net.TCPConn).CloseWrite()
		defer c.Close()
		select {
		case r := <-results:
			return r
		case <-time.After(5 * time.Second):
			t.Fatal("no result")
		}
		return result{}
	}
	r := send([]byte("PROXY TCP4 203.0.113.9 127.0.0.1 5555 80\r\nhello"))
	if r.remote != "203.0.113.9:5555" || r.data != "hello" {
		t.Fatalf("got %+v", r)
	}
	r = send([]byte("hello without header"))
	if r.err == nil || ln.Rejected.Load() != 1 {
		t.Fatalf("connection without header accepted: %+v", r)
	}
	// A silent peer is dropped after the timeout, not held forever.
	c, _ := net.Dial("tcp", inner.Addr().String())
	defer c.Close()
	select {
	case r := <-results:
		if r.err == nil {
			t.Fatalf("silent peer: %+v", r)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("silent peer not dropped after the header timeout")
	}
}

func BenchmarkReadV1(b *testing.B) {
	in := []byte("PROXY TCP4 192.0.2.1 198.51.100.2 12345 443\r\n")
	br := bufio.NewReader(nil)
	rd := bytes.NewReader(in)
	b.ReportAllocs()
	for b.Loop() {
		rd.Reset(in)
		br.Reset(rd)
		if _, err := Read(br); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkReadV2(b *testing.B) {
	in := v2(1, 0x11, []byte{192, 0, 2, 1, 198, 51, 100, 2, 0x30, 0x39, 0x01, 0xbb}, nil)
	br := bufio.NewReader(nil)
	rd := bytes.NewReader(in)
	b.ReportAllocs()
	for b.Loop() {
		rd.Reset(in)
		br.Reset(rd)
		if _, err := Read(br); err != nil {
			b.Fatal(err)
		}
	}
}

func FuzzRead(f *testing.F) {
	f.Add([]byte("PROXY TCP4 192.0.2.1 198.51.100.2 12345 443\r\n"))
	f.Add([]byte("PROXY TCP6 ::1 ::1 1 2\r\n"))
	f.Add([]byte("PROXY UNKNOWN\r\n"))
	f.Add(v2(1, 0x11, []byte{1, 2, 3, 4, 5, 6, 7, 8, 0, 1, 0, 2}, nil))
	f.Add(v2(0, 0, nil, nil))
	f.Add(v2(1, 0x21, make([]byte, 36), []byte{1, 0, 0}))
	f.Fuzz(func(t *testing.T, in []byte) {
		r := bufio.NewReader(bytes.NewReader(in))
		h, err := Read(r)
		if err != nil {
			return
		}
		if h.Version != 1 && h.Version != 2 {
			t.Fatalf("version %d", h.Version)
		}
		if !h.Local && !h.Src.IsValid() {
			t.Fatalf("non-local header without source: %+v", h)
		}
	})
}
