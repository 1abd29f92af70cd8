package sender

import (
	"bufio"
	"context"
	"net"
	"strings"
	"sync"
	"testing"
	"time"
)

// lineSink counts newline-framed messages received on a TCP listener.
type lineSink struct {
	ln   net.Listener
	mu   sync.Mutex
	msgs []string
}

func newLineSink(t *testing.T) *lineSink {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := &lineSink{ln: ln}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				sc := bufio.NewScanner(c)
				for sc.Scan() {
					s.mu.Lock()
					s.msgs = append(s.msgs, sc.Text())
					s.mu.Unlock()
				}
			}()
		}
	}()
	return s
}

func (s *lineSink) count() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.msgs)
}

type countAcks struct {
	mu sync.Mutex
	n  int
}

func (c *countAcks) Ack(uint64) { c.mu.Lock(); c.n++; c.mu.Unlock() }

// TestSetHandsTheQueueToTheSuccessor: a sender replaced while its
// destination is down hands what it holds to its successor (after the
// grace), which delivers it; WaitIdle then returns, with every message
// acknowledged once.
func TestSetHandsTheQueueToTheSuccessor(t *testing.T) {
	t.Parallel()
	dead := newLineSink(t)
	deadAddr := dead.ln.Addr().String()
	dead.ln.Close() // nothing listens: the first sender cannot deliver
	live := newLineSink(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	set := NewSet(ctx)
	set.Grace = 200 * time.Millisecond
	first := New(mustURL(t, "syslog+tcp://"+deadAddr+"?framing=newline"), nil)
	set.Replace([]*Sender{first}, nil)
	acks := &countAcks{}
	for i := range 50 {
		if err := first.SendAcked(ctx, []byte("msg "+strings.Repeat("x", i%7)), acks, uint64(i)); err != nil {
			t.Fatal(err)
		}
	}
	second := New(mustURL(t, "syslog+tcp://"+live.ln.Addr().String()+"?framing=newline"), nil)
	set.Replace([]*Sender{second}, func(*Sender) *Sender { return second })
	if got := set.Senders(); len(got) != 1 || got[0] != second {
		t.Fatalf("current set: %v", got)
	}
	deadline := time.Now().Add(10 * time.Second)
	for live.count() < 50 && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	if live.count() != 50 {
		t.Fatalf("the successor delivered %d of 50", live.count())
	}
	wctx, wcancel := context.WithTimeout(ctx, 5*time.Second)
	defer wcancel()
	if !first.WaitIdle(wctx) || !second.WaitIdle(wctx) {
		t.Fatal("WaitIdle did not return once everything was delivered")
	}
	acks.mu.Lock()
	defer acks.mu.Unlock()
	if acks.n != 50 {
		t.Fatalf("%d acknowledgements, want 50", acks.n)
	}
	set.Close()
}

func mustURL(t *testing.T, u string) Config {
	c, err := ParseURL(u)
	if err != nil {
		t.Fatal(err)
	}
	return c
}
