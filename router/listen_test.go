package router

import (
	"net"
	"syscall"
	"testing"
	"time"
)

// TestListenKeepalive: accepted HTTP and HTTPS connections carry no TCP
// keepalive (their waits are all bounded by timeouts), SSH ones keep Go's.
func TestListenKeepalive(t *testing.T) {
	for name, want := range map[string]int{"http": 0, "https": 0, "ssh": 1} {
		ln, err := listen(name, "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		client, err := net.DialTimeout("tcp", ln.Addr().String(), 5*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		c, err := ln.Accept()
		if err != nil {
			t.Fatal(err)
		}
		raw, err := c.(*net.TCPConn).SyscallConn()
		if err != nil {
			t.Fatal(err)
		}
		got, serr := -1, error(nil)
		if err := raw.Control(func(fd uintptr) {
			got, serr = syscall.GetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_KEEPALIVE)
		}); err != nil || serr != nil {
			t.Fatal(err, serr)
		}
		if got != want {
			t.Errorf("%s: SO_KEEPALIVE on an accepted connection = %d, want %d", name, got, want)
		}
		c.Close()
		client.Close()
		ln.Close()
	}
}
