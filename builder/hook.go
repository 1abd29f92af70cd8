package builder

import (
	"bufio"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strings"
	"time"

	"github.com/deis/dataplane/pkg/retry"
)

// The pre-receive hook of every repository runs `builder hook`, which
// connects back to the builder over a unix socket and hands it the pushed
// refs together with the hook's object directories (git keeps pushed
// objects in a quarantine until the hook accepts them). The builder builds
// in its own process and streams the output back; the hook prints it (git
// relays it to the client as "remote:" lines) and exits with the build's
// status, so a failed build declines the push and `git push` fails.

// Environment passed from the SSH session through git to the hook.
const (
	envSocket = "DEIS_BUILDER_SOCKET"
	envToken  = "DEIS_PUSH_TOKEN"
)

// hookRequest is what the hook sends, as one JSON line.
type hookRequest struct {
	Token      string   `json:"token"`
	Refs       []string `json:"refs"` // "<old> <new> <ref>" lines from stdin
	ObjectDir  string   `json:"objectDir"`
	Alternates string   `json:"alternates"`
	Quarantine string   `json:"quarantine"`
}

// Frames from builder to hook: a type byte, a 4-byte length, the payload.
const (
	frameOutput byte = 'o' // text for the client
	frameExit   byte = 'x' // payload: exit status as decimal text
)

func writeFrame(w io.Writer, typ byte, p []byte) error {
	var hdr [5]byte
	hdr[0] = typ
	binary.BigEndian.PutUint32(hdr[1:], uint32(len(p)))
	if _, err := w.Write(hdr[:]); err != nil {
		return err
	}
	_, err := w.Write(p)
	return err
}

// frameWriter turns writes into output frames.
type frameWriter struct{ w io.Writer }

func (f frameWriter) Write(p []byte) (int, error) {
	total := len(p)
	for len(p) > 0 {
		n := min(len(p), 32<<10)
		if err := writeFrame(f.w, frameOutput, p[:n]); err != nil {
			return 0, err
		}
		p = p[n:]
	}
	return total, nil
}

// RunHook is `builder hook`: the pre-receive hook. It returns the exit
// status git should see.
func RunHook(stdin io.Reader, stdout, stderr io.Writer) int {
	sock, token := os.Getenv(envSocket), os.Getenv(envToken)
	if sock == "" || token == "" {
		fmt.Fprintln(stderr, "push refused: this repository only accepts pushes through the builder's SSH server")
		return 1
	}
	req := hookRequest{
		Token:      token,
		ObjectDir:  os.Getenv("GIT_OBJECT_DIRECTORY"),
		Alternates: os.Getenv("GIT_ALTERNATE_OBJECT_DIRECTORIES"),
		Quarantine: os.Getenv("GIT_QUARANTINE_PATH"),
	}
	sc := bufio.NewScanner(stdin)
	for sc.Scan() {
		if line := strings.TrimSpace(sc.Text()); line != "" {
			req.Refs = append(req.Refs, line)
		}
	}
	conn, err := net.Dial("unix", sock)
	if err != nil {
		fmt.Fprintf(stderr, "push refused: builder unreachable: %v\n", err)
		return 1
	}
	defer conn.Close()
	if err := json.NewEncoder(conn).Encode(req); err != nil {
		fmt.Fprintf(stderr, "push refused: builder unreachable: %v\n", err)
		return 1
	}
	r := bufio.NewReader(conn)
	var hdr [5]byte
	for {
		if _, err := io.ReadFull(r, hdr[:]); err != nil {
			fmt.Fprintf(stderr, "push refused: the builder went away mid-build (%v)\n", err)
			return 1
		}
		p := make([]byte, binary.BigEndian.Uint32(hdr[1:]))
		if _, err := io.ReadFull(r, p); err != nil {
			fmt.Fprintf(stderr, "push refused: the builder went away mid-build (%v)\n", err)
			return 1
		}
		switch hdr[0] {
		case frameOutput:
			_, _ = stdout.Write(p)
		case frameExit:
			var status int
			if _, err := fmt.Sscan(string(p), &status); err != nil {
				return 1
			}
			return status
		}
	}
}

// hookServer accepts hook connections and hands each to the push that
// owns its token.
type hookServer struct {
	ln     net.Listener
	path   string
	pushes func(token string) *push
}

func listenHooks(path string, pushes func(string) *push) (*hookServer, error) {
	_ = os.Remove(path) // a socket left by an earlier builder
	ln, err := net.Listen("unix", path)
	if err != nil {
		return nil, fmt.Errorf("hook socket %s: %w", path, err)
	}
	if err := os.Chmod(path, 0o600); err != nil {
		ln.Close()
		return nil, fmt.Errorf("hook socket %s: %w", path, err)
	}
	return &hookServer{ln: ln, path: path, pushes: pushes}, nil
}

func (h *hookServer) serve() {
	backoff := retry.New(5*time.Millisecond, time.Second) // e.g. out of file descriptors
	for {
		conn, err := h.ln.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			time.Sleep(backoff.Next())
			continue
		}
		backoff.Reset()
		go h.handle(conn)
	}
}

func (h *hookServer) handle(conn net.Conn) {
	defer conn.Close()
	var req hookRequest
	if err := json.NewDecoder(bufio.NewReader(conn)).Decode(&req); err != nil {
		_ = writeFrame(conn, frameOutput, []byte("push refused: bad request from the hook\n"))
		_ = writeFrame(conn, frameExit, []byte("1"))
		return
	}
	p := h.pushes(req.Token)
	if p == nil {
		_ = writeFrame(conn, frameOutput, []byte("push refused: unknown push (the session ended?)\n"))
		_ = writeFrame(conn, frameExit, []byte("1"))
		return
	}
	status := p.onHook(&req, frameWriter{conn})
	_ = writeFrame(conn, frameExit, []byte(fmt.Sprint(status)))
}

func (h *hookServer) close() { h.ln.Close(); os.Remove(h.path) }
