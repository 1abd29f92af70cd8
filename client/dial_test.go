package client

import (
	"context"
	"net"
	"testing"
)

// TestLocalhostNamesDialLoopback: deis.localhost (make run's controller)
// reaches loopback without DNS, as RFC 6761 asks.
func TestLocalhostNamesDialLoopback(t *testing.T) {
	t.Parallel()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	_, port, _ := net.SplitHostPort(ln.Addr().String())
	for _, host := range []string{"deis.localhost", "localhost", "a.b.localhost."} {
		conn, err := dialLocalhost(context.Background(), "tcp", net.JoinHostPort(host, port))
		if err != nil {
			t.Errorf("%s: %v", host, err)
			continue
		}
		conn.Close()
	}
}
