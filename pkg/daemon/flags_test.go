package daemon

import (
	"flag"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/deis/dataplane/pkg/health"
)

func TestCommonFlagsEnvAndPrecedence(t *testing.T) {
	t.Setenv("ETCD_ENDPOINTS", "http://10.1.1.1:2379,http://10.1.1.2:2379")
	t.Setenv("HOST", "10.9.9.9")
	t.Setenv("LOG_LEVEL", "debug")
	t.Setenv("DOCKER_HOST", "")

	var c Common
	fs := flag.NewFlagSet("t", flag.ContinueOnError)
	c.Register(fs)
	if err := fs.Parse([]string{"--host", "192.0.2.7"}); err != nil {
		t.Fatal(err)
	}
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	if len(c.Etcd) != 2 || c.Etcd[1] != "http://10.1.1.2:2379" {
		t.Errorf("Etcd from env = %v", c.Etcd)
	}
	if c.Host != "192.0.2.7" {
		t.Errorf("flag must beat env: Host = %q", c.Host)
	}
	if c.LogLevel != slog.LevelDebug {
		t.Errorf("LogLevel = %v", c.LogLevel)
	}
	if c.Docker != DefaultDocker {
		t.Errorf("Docker default = %q", c.Docker)
	}
}

func TestCommonFlagsBadValuesNameTheFlag(t *testing.T) {
	for _, tc := range []struct {
		args []string
		flag string
	}{
		{[]string{"--etcd", "127.0.0.1:2379"}, "--etcd"},
		{[]string{"--etcd", ","}, "--etcd"},
		{[]string{"--log-level", "loud"}, "--log-level"},
		{[]string{"--host", "a b/c"}, "--host"},
	} {
		t.Run(strings.Join(tc.args, " "), func(t *testing.T) {
			var c Common
			fs := flag.NewFlagSet("t", flag.ContinueOnError)
			c.Register(fs)
			if err := fs.Parse(tc.args); err != nil {
				t.Fatal(err)
			}
			err := c.Validate()
			if err == nil || !strings.HasPrefix(err.Error(), tc.flag+":") {
				t.Fatalf("Validate() = %v, want an error starting with %s:", err, tc.flag)
			}
		})
	}
}

func TestDefaultHost(t *testing.T) {
	t.Setenv("HOST", "")
	var c Common
	fs := flag.NewFlagSet("t", flag.ContinueOnError)
	c.Register(fs)
	_ = fs.Parse(nil)
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	if c.Host == "" || strings.HasPrefix(c.Host, "127.") && c.Host != "127.0.0.1" {
		t.Fatalf("default host = %q", c.Host)
	}
}

func TestParseDuration(t *testing.T) {
	t.Parallel()
	for in, want := range map[string]time.Duration{
		"30s": 30 * time.Second, "30": 30 * time.Second, "1.5": 1500 * time.Millisecond,
		"20m": 20 * time.Minute, "1300": 1300 * time.Second, "0": 0,
	} {
		got, err := ParseDuration(in)
		if err != nil || got != want {
			t.Errorf("ParseDuration(%q) = %v, %v; want %v", in, got, err, want)
		}
	}
	for _, bad := range []string{"", "-1", "-5s", "abc", "10x", "1e300"} {
		if _, err := ParseDuration(bad); err == nil {
			t.Errorf("ParseDuration(%q): want error", bad)
		}
	}
}

func FuzzParseDuration(f *testing.F) {
	for _, s := range []string{"30s", "1300", "1.5", "1h2m", "-1", "NaN", "Inf", "1e9"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		d, err := ParseDuration(s)
		if err == nil && d < 0 {
			t.Fatalf("ParseDuration(%q) = %v: negative accepted", s, d)
		}
	})
}

func TestAdminServesHealthAndMetrics(t *testing.T) {
	t.Parallel()
	var h health.Registry
	a, err := NewAdmin("127.0.0.1:0", &h, NewMetrics(), nil)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(a.Mux)
	defer srv.Close()

	get := func(path string) (int, string) {
		resp, err := http.Get(srv.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	if code, body := get("/healthz"); code != 200 || body != "ok\n" {
		t.Fatalf("/healthz = %d %q", code, body)
	}
	h.Set("etcd", io.ErrUnexpectedEOF)
	if code, body := get("/healthz"); code != 503 || !strings.Contains(body, "etcd: unexpected EOF") {
		t.Fatalf("/healthz unhealthy = %d %q", code, body)
	}
	h.Set("etcd", nil)
	if code, _ := get("/healthz"); code != 200 {
		t.Fatalf("/healthz after recovery = %d", code)
	}
	if code, body := get("/metrics"); code != 200 || !strings.Contains(body, "go_goroutines") {
		t.Fatalf("/metrics = %d, body lacks go_goroutines", code)
	}
}

// TestBoolFlagTakesASeparateValue: "--access-log false" is false, not true
// plus a stray "false"; a stray argument is refused.
func TestBoolFlagTakesASeparateValue(t *testing.T) {
	for _, c := range []struct {
		args []string
		want bool
		err  string
	}{
		{[]string{"--log", "false"}, false, ""},
		{[]string{"--log", "off", "--n", "3"}, false, ""},
		{[]string{"--log=false"}, false, ""},
		{[]string{"--log"}, true, ""},
		{[]string{"--log", "--n", "3"}, true, ""},
		{[]string{}, true, ""},
		{[]string{"--n", "3", "stray"}, true, `unexpected argument "stray"`},
	} {
		fs := flag.NewFlagSet("t", flag.ContinueOnError)
		fs.SetOutput(io.Discard)
		var on bool
		BoolVar(fs, &on, "log", "T_LOG_UNSET", true, "")
		fs.Int("n", 0, "")
		err := parseArgs(fs, c.args)
		if c.err != "" {
			if err == nil || !strings.Contains(err.Error(), c.err) {
				t.Errorf("%v: err %v, want %q", c.args, err, c.err)
			}
			continue
		}
		if err != nil || on != c.want {
			t.Errorf("%v: %v %v, want %v", c.args, on, err, c.want)
		}
	}
}
