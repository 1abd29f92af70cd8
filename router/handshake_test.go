package router

import (
	"crypto/tls"
	"errors"
	"net"
	"testing"
	"time"

	"github.com/deis/dataplane/pkg/testenv/testcert"
)

// TestHandshakeTurns: with one turn, a second handshake waits until the
// first one's server flight is written, and fails with errNoTurn when that
// takes longer than the wait; closing a connection gives its turn back.
func TestHandshakeTurns(t *testing.T) {
	h := &handshakeTurns{turns: make(chan struct{}, 1), wait: 300 * time.Millisecond}
	conn := func() *turnConn {
		a, b := net.Pipe()
		t.Cleanup(func() { a.Close(); b.Close() })
		go func() {
			buf := make([]byte, 64)
			for {
				if _, err := b.Read(buf); err != nil {
					return
				}
			}
		}()
		return &turnConn{Conn: a, h: h}
	}
	first, second, third := conn(), conn(), conn()
	if err := first.take(); err != nil {
		t.Fatal(err)
	}
	got := make(chan error, 1)
	go func() { got <- second.take() }()
	select {
	case err := <-got:
		t.Fatalf("a second handshake took a turn while the only one was held: %v", err)
	case <-time.After(50 * time.Millisecond):
	}
	if _, err := first.Write([]byte("server flight")); err != nil {
		t.Fatal(err)
	}
	if err := <-got; err != nil {
		t.Fatalf("the turn given back at the first write: %v", err)
	}
	if err := third.take(); !errors.Is(err, errNoTurn) {
		t.Fatalf("waiting past the bound: %v, want errNoTurn", err)
	}
	second.Close()
	if err := third.take(); err != nil {
		t.Fatalf("the turn given back at close: %v", err)
	}
	third.give()
	third.give() // twice gives back once
	if len(h.turns) != 0 {
		t.Fatalf("%d turns held after every connection gave its own back", len(h.turns))
	}
}

// TestSilentClientsHoldNoTurn: with one turn, connections that never send
// a ClientHello do not stop a real handshake.
func TestSilentClientsHoldNoTurn(t *testing.T) {
	ca := testcert.NewCA(t)
	certPEM, keyPEM := ca.Issue(t, "turns.example.com")
	cert, err := tls.X509KeyPair([]byte(certPEM), []byte(keyPEM))
	if err != nil {
		t.Fatal(err)
	}
	h := &handshakeTurns{turns: make(chan struct{}, 1), wait: 5 * time.Second}
	raw, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ln := tls.NewListener(h.listener(raw), &tls.Config{GetConfigForClient: func(hello *tls.ClientHelloInfo) (*tls.Config, error) {
		if err := hello.Conn.(*turnConn).take(); err != nil {
			return nil, err
		}
		return &tls.Config{Certificates: []tls.Certificate{cert}}, nil
	}})
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() { _ = c.(*tls.Conn).Handshake(); time.Sleep(time.Second); c.Close() }()
		}
	}()
	for range 3 {
		silent, err := net.Dial("tcp", raw.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		defer silent.Close()
	}
	for i := range 3 { // one after another: each gives its turn back at the server flight
		c, err := tls.DialWithDialer(&net.Dialer{Timeout: 2 * time.Second}, "tcp", raw.Addr().String(), &tls.Config{ServerName: "turns.example.com", RootCAs: ca.Pool})
		if err != nil {
			t.Fatalf("handshake %d beside silent clients: %v", i+1, err)
		}
		c.Close()
	}
}
