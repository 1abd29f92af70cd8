package logger_test

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/deis/dataplane/logger"
	"github.com/deis/dataplane/pkg/testenv"
)

// TestM5DeadDrainDoesNotStopIngest: with a drain nobody accepts on, TCP
// ingest used to block once 10,000 lines were queued for it, for every app.
// Lines are stored first and the drain drops what it cannot queue.
func TestM5DeadDrainDoesNotStopIngest(t *testing.T) {
	t.Parallel()
	e := testenv.StartEtcd(t)
	h := start(t, e, t.TempDir())
	e.Put("/deis/logs/storageAdapterType", "memory:20000")
	e.Put("/deis/logs/drain", "syslog+tcp://127.0.0.1:1")
	time.Sleep(500 * time.Millisecond) // the drain is configured
	c := dialTCP(t, h.l.Addr("syslog"))
	_ = c.SetWriteDeadline(time.Now().Add(30 * time.Second))
	for i := range 12000 {
		m := fmt.Sprintf("<14>1 - h busy web.1 - - msg %d", i)
		if _, err := fmt.Fprintf(c, "%d %s", len(m), m); err != nil {
			t.Fatalf("writing line %d: %v (ingest stalled behind the dead drain)", i, err)
		}
	}
	q := dialTCP(t, h.l.Addr("syslog"))
	for i := range 3 {
		m := fmt.Sprintf("<14>1 - h quiet2 web.1 - - q %d", i)
		fmt.Fprintf(q, "%d %s", len(m), m)
	}
	h.waitLines("quiet2", 3)
	h.waitLines("busy", 12000)
	if _, m := h.get("/metrics"); !strings.Contains(m, `logger_drops_total{reason="drain_queue_full"}`) {
		t.Fatal("drain drops not counted in /metrics")
	}
}

// TestM7ConnectionLimitsAndIdleTimeout: syslog TCP had no connection cap and
// no timeout. Connections over --max-conns-per-ip are closed at once and
// counted; one that completes no message within the idle timeout is closed.
func TestM7ConnectionLimitsAndIdleTimeout(t *testing.T) {
	t.Parallel()
	e := testenv.StartEtcd(t)
	h := startWith(t, e, logger.Config{
		SyslogAddr: "127.0.0.1:0", Host: "127.0.0.1", LogRoot: t.TempDir(),
		MaxConns: 100, MaxConnsPerIP: 3, IdleTimeout: 2 * time.Second,
	})
	var held []net.Conn
	for range 3 {
		held = append(held, dialTCP(t, h.l.Addr("syslog")))
	}
	// The three are served: each stores a line.
	for i, c := range held {
		m := fmt.Sprintf("<14>1 - h capped web.1 - - held %d", i)
		fmt.Fprintf(c, "%d %s", len(m), m)
	}
	h.waitLines("capped", 3)
	over := dialTCP(t, h.l.Addr("syslog"))
	_ = over.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := over.Read(make([]byte, 1)); err == nil || isTimeout(err) {
		t.Fatalf("a 4th connection from one address was not closed at once: %v", err)
	}
	// A trickle inside one frame: 4 s, longer than the 2 s idle timeout.
	slow := held[0]
	fmt.Fprint(slow, "100 <14>1 - h capped web.1 - - ")
	start := time.Now()
	_ = slow.SetReadDeadline(time.Now().Add(10 * time.Second))
	for time.Since(start) < 4*time.Second {
		if _, err := slow.Write([]byte("x")); err != nil {
			break
		}
		time.Sleep(200 * time.Millisecond)
	}
	if _, err := slow.Read(make([]byte, 1)); err == nil || isTimeout(err) {
		t.Fatalf("a connection trickling one frame for 4 s is still open: %v", err)
	}
	_, m := h.get("/metrics")
	for _, want := range []string{`logger_connections_refused_total{reason="max_conns_per_ip"} 1`, `logger_connections_refused_total{reason="idle"}`} {
		if !strings.Contains(m, want) {
			t.Errorf("/metrics lacks %s", want)
		}
	}
}

func isTimeout(err error) bool {
	ne, ok := err.(net.Error)
	return ok && ne.Timeout()
}

// TestL10DeisV1LinesOverNewlineTCP: Deis v1's logspout sent
// "2015-05-07T01:13:53UTC myapp[web.1]: text" lines; over newline-framed
// TCP they were taken for octet counting (they start with a digit) and
// the connection closed; their time layout was refused too.
func TestL10DeisV1LinesOverNewlineTCP(t *testing.T) {
	t.Parallel()
	e := testenv.StartEtcd(t)
	h := start(t, e, t.TempDir())
	c := dialTCP(t, h.l.Addr("syslog"))
	fmt.Fprint(c, "2015-05-07T01:13:53UTC deisv1[web.1]: first line\n2015-05-07T01:13:54UTC deisv1[web.2]: second line\n2024-05-01T10:00:00Z deisv1[run.1]: rfc3339 too\n")
	lines := h.waitLines("deisv1", 3)
	want := []string{"2015-05-07T01:13:53Z deisv1[web.1]: first line", "2015-05-07T01:13:54Z deisv1[web.2]: second line", "2024-05-01T10:00:00Z deisv1[run.1]: rfc3339 too"}
	for i, w := range want {
		if lines[i] != w {
			t.Errorf("line %d = %q, want %q", i, lines[i], w)
		}
	}
	// Over UDP too.
	u, err := net.Dial("udp", h.l.Addr("udp"))
	if err != nil {
		t.Fatal(err)
	}
	defer u.Close()
	fmt.Fprint(u, "2015-05-07T01:13:55UTC deisv1udp[web.1]: over udp")
	if got := h.waitLines("deisv1udp", 1); got[0] != "2015-05-07T01:13:55Z deisv1udp[web.1]: over udp" {
		t.Fatalf("UDP: %q", got[0])
	}
}

// TestLogAPINeedsTheToken: with a token set, reading or deleting logs and
// /metrics need it; /healthz does not.
func TestLogAPINeedsTheToken(t *testing.T) {
	t.Parallel()
	e := testenv.StartEtcd(t)
	h := startWith(t, e, logger.Config{SyslogAddr: "127.0.0.1:0", Host: "127.0.0.1", LogRoot: t.TempDir(), APIToken: "tok"})
	do := func(method, path, token string) int {
		req, _ := http.NewRequest(method, "http://"+h.api+path, nil)
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return resp.StatusCode
	}
	for _, tc := range []struct {
		method, path, token string
		want                int
	}{
		{"GET", "/logs/someapp", "", 401}, {"DELETE", "/someapp", "", 401}, {"GET", "/metrics", "", 401},
		{"GET", "/logs/someapp", "tok", 204}, {"DELETE", "/someapp", "tok", 204}, {"GET", "/healthz", "", 0},
	} {
		got := do(tc.method, tc.path, tc.token)
		if tc.want == 0 {
			if got == 401 {
				t.Errorf("%s %s refused without a token", tc.method, tc.path)
			}
			continue
		}
		if got != tc.want {
			t.Errorf("%s %s token %q: %d, want %d", tc.method, tc.path, tc.token, got, tc.want)
		}
	}
}

// TestM6FollowersAreCapped: ?follow=true accepted any number of followers,
// each buffering up to 1,024 lines; past the per-app cap a follower now
// gets 429.
func TestM6FollowersAreCapped(t *testing.T) {
	t.Parallel()
	e := testenv.StartEtcd(t)
	h := startWith(t, e, logger.Config{SyslogAddr: "127.0.0.1:0", Host: "127.0.0.1", LogRoot: t.TempDir(), MaxFollowersPerApp: 2})
	url := "http://" + h.api + "/logs/followed?follow=true"
	for i := range 2 {
		resp, err := http.Get(url)
		if err != nil || resp.StatusCode != 200 {
			t.Fatalf("follower %d: %v %v", i, resp, err)
		}
		t.Cleanup(func() { resp.Body.Close() })
	}
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusTooManyRequests {
		t.Fatalf("third follower of one app: %d, want 429", resp.StatusCode)
	}
	// Another app is not affected.
	other, err := http.Get("http://" + h.api + "/logs/other?follow=true")
	if err != nil || other.StatusCode != 200 {
		t.Fatalf("another app's follower: %v %v", other, err)
	}
	other.Body.Close()
}

// TestDrainFormatRFC3164: ?format=rfc3164 on a drain was parsed and then
// ignored; the drain gets RFC 3164 now, another drain RFC 5424.
func TestDrainFormatRFC3164(t *testing.T) {
	t.Parallel()
	e := testenv.StartEtcd(t)
	h := start(t, e, t.TempDir())
	a3164, a5424 := testenv.FreeAddr(t), testenv.FreeAddr(t)
	s3164, s5424 := newSink(t, a3164, nil), newSink(t, a5424, nil)
	e.Put("/deis/logs/drain", "syslog+tcp://"+a3164+"?format=rfc3164,syslog+tcp://"+a5424)
	time.Sleep(500 * time.Millisecond) // drains configured
	c := dialTCP(t, h.l.Addr("syslog"))
	m := "<14>1 2026-11-23T03:00:00Z h1 fmtapp web.1 - - hello"
	fmt.Fprintf(c, "%d %s", len(m), m)
	got := func(s *sink) string {
		s.mu.Lock()
		defer s.mu.Unlock()
		if len(s.msgs) == 0 {
			return ""
		}
		return s.msgs[0]
	}
	testenv.Eventually(t, 5*time.Second, func() bool { return got(s3164) != "" && got(s5424) != "" }, "drains got nothing")
	if want := "<14>Nov 23 03:00:00 h1 fmtapp[web.1]: hello"; got(s3164) != want {
		t.Errorf("rfc3164 drain got %q, want %q", got(s3164), want)
	}
	if want := "<14>1 2026-11-23T03:00:00.000000Z h1 fmtapp web.1 - - hello"; got(s5424) != want {
		t.Errorf("rfc5424 drain got %q, want %q", got(s5424), want)
	}
}
