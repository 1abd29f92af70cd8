package sender

import (
	"bufio"
	"context"
	"log/slog"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/deis/dataplane/pkg/testenv"
)

type recordingAcker struct {
	mu   sync.Mutex
	seqs []uint64
}

func (a *recordingAcker) Ack(seq uint64) {
	a.mu.Lock()
	a.seqs = append(a.seqs, seq)
	a.mu.Unlock()
}

func (a *recordingAcker) acked() []uint64 {
	a.mu.Lock()
	defer a.mu.Unlock()
	return append([]uint64(nil), a.seqs...)
}

// TestAckOnlyAfterWrite: nothing is acknowledged while the destination is
// down; once a listener appears every message is written and acknowledged
// in order.
func TestAckOnlyAfterWrite(t *testing.T) {
	t.Parallel()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close() // down at first
	cfg, _ := ParseURL("syslog+tcp://" + addr + "?framing=newline")
	s := New(cfg, slog.New(slog.DiscardHandler))
	run(t, s)
	a := &recordingAcker{}
	for i := range 5 {
		if err := s.SendAcked(context.Background(), []byte("m"), a, uint64(i)); err != nil {
			t.Fatal(err)
		}
	}
	time.Sleep(300 * time.Millisecond)
	if got := a.acked(); len(got) != 0 {
		t.Fatalf("acknowledged %v while the destination was down", got)
	}
	ln, err = net.Listen("tcp", addr)
	if err != nil {
		t.Skipf("could not listen again on %s: %v", addr, err)
	}
	defer ln.Close()
	lines := make(chan string, 10)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		sc := bufio.NewScanner(c)
		for sc.Scan() {
			lines <- sc.Text()
		}
	}()
	for i := range 5 {
		select {
		case <-lines:
		case <-time.After(15 * time.Second):
			t.Fatalf("line %d never arrived", i)
		}
	}
	testenv.Eventually(t, 10*time.Second, func() bool { return len(a.acked()) == 5 }, "5 acknowledgements")
	for i, seq := range a.acked() {
		if seq != uint64(i) {
			t.Fatalf("acks out of order: %v", a.acked())
		}
	}
}

// TestRetire: a stopped sender hands its unwritten messages to a
// successor (which writes and acknowledges them), or, with none,
// acknowledges them as abandoned; later sends follow the same way.
func TestRetire(t *testing.T) {
	t.Parallel()
	cfg, _ := ParseURL("syslog+tcp://127.0.0.1:1") // never reachable
	old := New(cfg, slog.New(slog.DiscardHandler))
	a := &recordingAcker{}
	for i := range 3 {
		_ = old.SendAcked(context.Background(), []byte("x"), a, uint64(i))
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { _ = old.Run(ctx); close(done) }()
	time.Sleep(100 * time.Millisecond) // Run takes one message and fails to dial
	cancel()
	<-done

	next := New(cfg, slog.New(slog.DiscardHandler))
	old.Retire(context.Background(), next)
	if n := next.QueueLen(); n != 3 {
		t.Fatalf("successor got %d messages, want 3", n)
	}
	_ = old.SendAcked(context.Background(), []byte("late"), a, 3)
	if n := next.QueueLen(); n != 4 {
		t.Fatalf("a send after Retire did not follow: successor has %d", n)
	}
	if got := a.acked(); len(got) != 0 {
		t.Fatalf("handed-over messages were acknowledged: %v", got)
	}
	// A retired sender with no successor (a deleted route) abandons.
	next.Retire(context.Background(), nil)
	if got := a.acked(); len(got) != 4 || next.Dropped.Load() != 4 {
		t.Fatalf("abandoned: acked %v, dropped %d; want 4 and 4", got, next.Dropped.Load())
	}
}
