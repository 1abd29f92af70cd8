package follow

import (
	"bufio"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

func TestFollowersOfOneKeyAndOfAll(t *testing.T) {
	t.Parallel()
	h := New(3, 2)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h.Serve(w, r, r.URL.Query().Get("app"), [][]byte{[]byte("backlog")})
	}))
	defer srv.Close()
	get := func(q string) (*http.Response, *bufio.Reader) {
		resp, err := http.Get(srv.URL + q)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { resp.Body.Close() })
		return resp, bufio.NewReader(resp.Body)
	}
	_, a := get("?app=a")
	_, all := get("")
	_, a2 := get("?app=a")
	if resp, _ := get("?app=a"); resp.StatusCode != http.StatusTooManyRequests {
		t.Fatalf("third follower of a: %d, want 429", resp.StatusCode)
	}
	if resp, _ := get("?app=b"); resp.StatusCode != http.StatusTooManyRequests {
		t.Fatalf("fourth follower in all: %d, want 429", resp.StatusCode)
	}
	deadline := time.Now().Add(5 * time.Second)
	for h.total.Load() != 3 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	h.Publish("b", []byte("for b"))
	h.Publish("a", []byte("for a"))
	read := func(r *bufio.Reader) string {
		l, _ := r.ReadString('\n')
		return strings.TrimSpace(l)
	}
	for name, r := range map[string]*bufio.Reader{"a": a, "a2": a2} {
		if got := read(r) + "|" + read(r); got != "backlog|for a" {
			t.Errorf("follower %s got %q", name, got)
		}
	}
	if got := read(all) + "|" + read(all) + "|" + read(all); got != "backlog|for b|for a" {
		t.Errorf("follower of all got %q", got)
	}
	if h.Refused.Load() != 2 {
		t.Errorf("refused %d, want 2", h.Refused.Load())
	}
	h.Close()
}

func TestASlowFollowerMissesLinesBoundedByBytes(t *testing.T) {
	t.Parallel()
	h := New(0, 0)
	f, err := h.subscribe("a")
	if err != nil {
		t.Fatal(err)
	}
	line := []byte(strings.Repeat("x", 64<<10))
	for range 100 { // 6.4 MB to a follower that never reads
		h.Publish("a", line)
	}
	if p := f.pending.Load(); p > bufferBytes {
		t.Fatalf("a stalled follower holds %d bytes", p)
	}
	if h.Dropped.Load() == 0 {
		t.Fatal("no line counted as missed")
	}
}
