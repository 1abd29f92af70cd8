package daemon

import (
	"bytes"
	"flag"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
)

func TestBoolFlagWithAndWithoutValue(t *testing.T) {
	for _, tc := range []struct {
		args []string
		env  string
		want bool
	}{
		{nil, "", true}, {[]string{"--access-log"}, "", true}, {[]string{"--access-log=false"}, "", false},
		{[]string{"--access-log=off"}, "", false}, {nil, "no", false}, {[]string{"--access-log"}, "off", true},
	} {
		t.Setenv("ACCESS_LOG", tc.env)
		fs := flag.NewFlagSet("t", flag.ContinueOnError)
		var v bool
		BoolVar(fs, &v, "access-log", "ACCESS_LOG", true, "log")
		if err := fs.Parse(tc.args); err != nil || v != tc.want {
			t.Errorf("args %v env %q: %v, %v; want %v", tc.args, tc.env, v, err, tc.want)
		}
	}
	fs := flag.NewFlagSet("t", flag.ContinueOnError)
	fs.SetOutput(&bytes.Buffer{})
	var v bool
	BoolVar(fs, &v, "access-log", "ACCESS_LOG_UNSET", true, "log")
	if err := fs.Parse([]string{"--access-log=maybe"}); err == nil {
		t.Fatal("--access-log=maybe accepted")
	}
}

func TestDurationsLoggedReadably(t *testing.T) {
	var buf bytes.Buffer
	log := slog.New(slog.NewJSONHandler(&buf, &slog.HandlerOptions{ReplaceAttr: readableDurations}))
	log.Info("x", "cool_down", 1500*time.Millisecond)
	if !strings.Contains(buf.String(), `"cool_down":"1.5s"`) {
		t.Fatalf("duration logged as %s", buf.String())
	}
}

func TestBuildInfoMetric(t *testing.T) {
	reg := NewMetrics()
	if n, err := testutil.GatherAndCount(reg, "build_info"); err != nil || n != 1 {
		t.Fatalf("build_info: %d series, %v", n, err)
	}
}
