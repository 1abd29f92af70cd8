package proxy_test

import (
	"bytes"
	"encoding/json"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"

	"github.com/valyala/fasthttp"

	"github.com/deis/dataplane/router/proxy"
	"github.com/deis/dataplane/router/table"
)

type lockedBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuf) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

// TestAccessLogCarriesWhatNginxDoes: query, protocol, user agent, referer,
// the bytes really sent for a streamed (chunked) response, and a request
// id on the router's own pages.
func TestAccessLogCarriesWhatNginxDoes(t *testing.T) {
	backendLn, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	app := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.(http.Flusher).Flush() // chunked
		_, _ = io.WriteString(w, strings.Repeat("z", 90003))
	})}
	go func() { _ = app.Serve(backendLn) }()
	defer app.Close()
	out := &lockedBuf{}
	al := proxy.NewAccessLog(out)
	p := proxy.New(slog.New(slog.DiscardHandler), al, nil)
	tb, _ := table.Build(map[string]string{
		"/deis/platform/domain":           "example.com",
		"/deis/services/app/app_v1.web.1": backendLn.Addr().String(),
	}, 1, nil, table.NewPool())
	p.Install(tb)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &fasthttp.Server{Handler: p.Handle, StreamRequestBody: true}
	go func() { _ = srv.Serve(ln) }()
	defer func() { _ = srv.Shutdown() }()
	get := func(host, path string) {
		req, _ := http.NewRequest(http.MethodGet, "http://"+ln.Addr().String()+path, nil)
		req.Host = host
		req.Header.Set("User-Agent", "curl/8.0")
		req.Header.Set("Referer", "https://ref.example/")
		resp, err := (&http.Client{Transport: &http.Transport{DisableCompression: true}}).Do(req)
		if err != nil {
			t.Fatal(err)
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
	}
	get("app.example.com", "/big?x=1")
	get("nobody.example.com", "/")
	al.Close()
	lines := strings.Split(strings.TrimSpace(out.b.String()), "\n")
	if len(lines) != 2 {
		t.Fatalf("%d access lines: %q", len(lines), out.b.String())
	}
	var streamed, own map[string]any
	if err := json.Unmarshal([]byte(lines[0]), &streamed); err != nil {
		t.Fatalf("%v: %s", err, lines[0])
	}
	if err := json.Unmarshal([]byte(lines[1]), &own); err != nil {
		t.Fatalf("%v: %s", err, lines[1])
	}
	for k, want := range map[string]any{"query": "x=1", "protocol": "HTTP/1.1", "user_agent": "curl/8.0", "referer": "https://ref.example/", "bytes": float64(90003), "component": "router"} {
		if streamed[k] != want {
			t.Errorf("streamed response: %s = %v, want %v (%s)", k, streamed[k], want, lines[0])
		}
	}
	if own["status"] != float64(404) || own["request_id"] == "" || own["bytes"].(float64) <= 0 {
		t.Errorf("router's own 404: %s", lines[1])
	}
}
