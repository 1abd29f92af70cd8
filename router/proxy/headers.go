package proxy

// What the request says about its host and client: normalising the Host,
// the absolute form, the client address, and the headers only trusted
// peers may set.

import (
	"net"
	"net/netip"
	"unsafe"

	"github.com/valyala/fasthttp"

	"github.com/deis/dataplane/router/settings"
)

// absoluteForm handles "GET http://host/path HTTP/1.1": the authority in
// the request target is the host (RFC 9112 3.2.2), for routing and for the
// app, which gets the origin form. Routing on the Host header while the
// app received the URI's host would let a client feed any Host to an app.
func absoluteForm(ctx *fasthttp.RequestCtx) {
	uri := ctx.Request.URI()
	if len(uri.Host()) == 0 {
		return
	}
	ctx.Request.Header.SetHostBytes(uri.Host())
	ctx.Request.Header.SetRequestURIBytes(uri.RequestURI())
}

// spoofable are the headers that name the client or the original request
// and that only a trusted peer (proxyRealIpCidr) may set, lower case.
var spoofable = [...]string{"x-forwarded-for", "x-forwarded-proto", "x-forwarded-port", "x-forwarded-host", "x-real-ip", "forwarded"}

func isSpoofable(k []byte) bool {
	for _, s := range spoofable {
		if len(k) == len(s) && equalFoldASCII(k, s) {
			return true
		}
	}
	return false
}

func equalFoldASCII(b []byte, lower string) bool {
	for i := range b {
		c := b[i]
		if c >= 'A' && c <= 'Z' {
			c += 'a' - 'A'
		}
		if c != lower[i] {
			return false
		}
	}
	return true
}

// stripSpoofable removes, whatever their case, the headers an untrusted
// client may not set; the router then sets its own. Header names are not
// normalised here, so "x-real-ip" would otherwise pass beside the
// router's "X-Real-IP". It allocates only when there is one to remove.
func stripSpoofable(h *fasthttp.RequestHeader) {
	found := false
	for k := range h.All() {
		if isSpoofable(k) {
			found = true
			break
		}
	}
	if !found {
		return
	}
	var del [][]byte
	for k := range h.All() {
		if isSpoofable(k) {
			del = append(del, append([]byte(nil), k...))
		}
	}
	for _, k := range del {
		h.DelBytes(k)
	}
}

// normalizeHost lowercases host, drops the port and trailing dots. IPv6
// literals keep their brackets stripped. It writes into dst when it must
// change the bytes.
func normalizeHost(h []byte, dst []byte) []byte {
	if len(h) > 0 && h[0] == '[' {
		if i := indexByte(h, ']'); i > 0 {
			h = h[1:i]
		}
	} else if i := lastIndexByte(h, ':'); i >= 0 {
		h = h[:i]
	}
	for len(h) > 0 && h[len(h)-1] == '.' {
		h = h[:len(h)-1]
	}
	upper := false
	for _, c := range h {
		if c >= 'A' && c <= 'Z' {
			upper = true
			break
		}
	}
	if !upper {
		return h
	}
	for _, c := range h {
		if c >= 'A' && c <= 'Z' {
			c += 'a' - 'A'
		}
		dst = append(dst, c)
	}
	return dst
}

func indexByte(b []byte, c byte) int {
	for i := range b {
		if b[i] == c {
			return i
		}
	}
	return -1
}

func lastIndexByte(b []byte, c byte) int {
	for i := len(b) - 1; i >= 0; i-- {
		if b[i] == c {
			return i
		}
	}
	return -1
}

// b2s views b as a string without copying; the string must not outlive b.
func b2s(b []byte) string {
	if len(b) == 0 {
		return ""
	}
	return unsafe.String(&b[0], len(b))
}

func peerAddr(ctx *fasthttp.RequestCtx) netip.Addr {
	if a, ok := ctx.RemoteAddr().(*net.TCPAddr); ok {
		if ip, ok := netip.AddrFromSlice(a.IP); ok {
			return ip.Unmap()
		}
	}
	return netip.Addr{}
}

func localPort(ctx *fasthttp.RequestCtx) int {
	if a, ok := ctx.LocalAddr().(*net.TCPAddr); ok {
		return a.Port
	}
	return 0
}

// realClient walks X-Forwarded-For from the right, skipping trusted
// proxies; the first untrusted address is the client.
func realClient(xff []byte, trusted []netip.Prefix, peer netip.Addr) netip.Addr {
	client := peer
	end := len(xff)
	for end > 0 {
		start := lastIndexByte(xff[:end], ',') + 1
		field := trimSpace(xff[start:end])
		end = start - 1
		ip, err := netip.ParseAddr(b2s(field))
		if err != nil {
			break
		}
		client = ip.Unmap()
		if !settings.Allowed(trusted, client) {
			break
		}
	}
	return client
}

func trimSpace(b []byte) []byte {
	for len(b) > 0 && (b[0] == ' ' || b[0] == '\t') {
		b = b[1:]
	}
	for len(b) > 0 && (b[len(b)-1] == ' ' || b[len(b)-1] == '\t') {
		b = b[:len(b)-1]
	}
	return b
}
