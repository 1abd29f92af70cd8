package logspout_test

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	docker "github.com/fsouza/go-dockerclient"

	"github.com/deis/dataplane/logspout"
	"github.com/deis/dataplane/pkg/testenv"
	"github.com/deis/dataplane/pkg/testenv/testcert"
)

// tlsSink is a syslog-over-TLS receiver (octet counting).
type tlsSink struct {
	addr string
	mu   sync.Mutex
	msgs []string
}

func newTLSSink(t *testing.T, ca *testcert.CA) *tlsSink {
	certPEM, keyPEM := ca.IssueIP(t, "127.0.0.1")
	cert, err := tls.X509KeyPair([]byte(certPEM), []byte(keyPEM))
	if err != nil {
		t.Fatal(err)
	}
	ln, err := tls.Listen("tcp", "127.0.0.1:0", &tls.Config{Certificates: []tls.Certificate{cert}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	s := &tlsSink{addr: ln.Addr().String()}
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				r := bufio.NewReader(c)
				for {
					var n int
					if _, err := fmt.Fscanf(r, "%d ", &n); err != nil {
						return
					}
					b := make([]byte, n)
					if _, err := io.ReadFull(r, b); err != nil {
						return
					}
					s.mu.Lock()
					s.msgs = append(s.msgs, string(b))
					s.mu.Unlock()
				}
			}()
		}
	}()
	return s
}

func (s *tlsSink) count(substr string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := 0
	for _, m := range s.msgs {
		if strings.Contains(m, substr) {
			n++
		}
	}
	return n
}

// TestRoutesAPIFiltersTLSAndPersistence creates a filtered TLS route
// through the API (verified with --tls-ca), checks only matching lines
// reach it, and that the route survives a restart and can be deleted.
func TestRoutesAPIFiltersTLSAndPersistence(t *testing.T) {
	t.Parallel()
	cli := testenv.Docker(t)
	e := testenv.StartEtcd(t)
	ca := testcert.NewCA(t)
	sink := newTLSSink(t, ca)
	state := t.TempDir()
	newLS := func() (*logspout.Logspout, func()) {
		l, err := logspout.New(logspout.Config{Host: "127.0.0.1", StateDir: state, TLSRootCAs: ca.Pool}, cli, e.Client(), slog.New(slog.DiscardHandler), nil)
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan struct{})
		go func() { _ = l.Run(ctx); close(done) }()
		return l, func() { cancel(); <-done }
	}
	ls, stop := newLS()
	mux := http.NewServeMux()
	mux.HandleFunc("/routes", ls.ServeRoutes)
	mux.HandleFunc("/logs", ls.ServeLogs)
	api := httptest.NewServer(mux)
	want := fmt.Sprintf("picked%d", rand.IntN(1e9))
	other := fmt.Sprintf("other%d", rand.IntN(1e9))
	body, _ := json.Marshal(map[string]string{"uri": "syslog+tls://" + sink.addr + "?filter.name=" + want + "*&filter.sources=stderr"})
	resp, err := http.Post(api.URL+"/routes", "application/json", bytes.NewReader(body))
	if err != nil || resp.StatusCode != 201 {
		t.Fatalf("POST /routes: %v %v", resp, err)
	}
	var created logspout.RouteInfo
	_ = json.NewDecoder(resp.Body).Decode(&created)
	resp.Body.Close()
	if bad, _ := http.Post(api.URL+"/routes", "application/json", strings.NewReader(`{"uri":"http://nope"}`)); bad.StatusCode != 400 {
		t.Fatalf("bad route URI: %d, want 400", bad.StatusCode)
	}
	follow, err := http.Get(api.URL + "/logs?app=" + want)
	if err != nil {
		t.Fatal(err)
	}
	defer follow.Body.Close()
	testenv.RunContainer(t, cli, docker.CreateContainerOptions{Name: want + "_v1.web.1", Config: &docker.Config{Cmd: []string{"sh", "-c", "echo to-stdout; echo to-stderr >&2; sleep 3600"}}})
	testenv.RunContainer(t, cli, docker.CreateContainerOptions{Name: other + "_v1.web.1", Config: &docker.Config{Cmd: []string{"sh", "-c", "echo not-me >&2; sleep 3600"}}})
	testenv.Eventually(t, 15*time.Second, func() bool { return sink.count(want+" web.1 - - to-stderr") == 1 }, "stderr line never reached the TLS route")
	time.Sleep(500 * time.Millisecond)
	if sink.count("to-stdout") != 0 || sink.count("not-me") != 0 {
		t.Fatalf("filters let through lines they should not: %v", sink.msgs)
	}
	// The /logs stream showed the app's lines (and only that app's).
	fr := bufio.NewReader(follow.Body)
	line, err := fr.ReadString('\n')
	if err != nil || !strings.Contains(line, want+"[web.1]: to-") {
		t.Fatalf("/logs?app=%s: %q %v", want, line, err)
	}
	follow.Body.Close() // before api.Close, which waits for open requests
	api.Close()
	stop()

	// The API route is back after a restart; then it can be deleted.
	ls2, stop2 := newLS()
	defer stop2()
	api2 := httptest.NewServer(http.HandlerFunc(ls2.ServeRoutes))
	defer api2.Close()
	r, err := http.Get(api2.URL + "/routes/" + created.ID)
	if err != nil || r.StatusCode != 200 {
		t.Fatalf("route %s not persisted across restart: %v %v", created.ID, r, err)
	}
	r.Body.Close()
	req, _ := http.NewRequest(http.MethodDelete, api2.URL+"/routes/"+created.ID, nil)
	if r, err := http.DefaultClient.Do(req); err != nil || r.StatusCode != 204 {
		t.Fatalf("DELETE: %v %v", r, err)
	}
	if r, _ := http.Get(api2.URL + "/routes/" + created.ID); r.StatusCode != 404 {
		t.Fatalf("deleted route still listed: %d", r.StatusCode)
	}
}
