package testenv

import (
	"bytes"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"strings"
	"testing"
	"time"

	docker "github.com/fsouza/go-dockerclient"
)

// TestBusyboxImageHasTheTools checks the imported base image offers what
// the other tests rely on: sh, seq, nc, httpd.
func TestBusyboxImageHasTheTools(t *testing.T) {
	t.Parallel()
	cli := Docker(t)
	c := RunContainer(t, cli, docker.CreateContainerOptions{
		Name:   fmt.Sprintf("testenv-tools-%d", rand.IntN(1e9)),
		Config: &docker.Config{Cmd: []string{"sh", "-c", "seq 1 3; which nc httpd sh"}},
	})
	code, err := cli.WaitContainer(c.ID)
	if err != nil || code != 0 {
		t.Fatalf("tool check exited %d: %v", code, err)
	}
	var out bytes.Buffer
	if err := cli.Logs(docker.LogsOptions{Container: c.ID, Stdout: true, Stderr: true, OutputStream: &out, ErrorStream: &out}); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"1\n2\n3\n", "/bin/nc", "/bin/httpd", "/bin/sh"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("output %q lacks %q", out.String(), want)
		}
	}
}

func TestHTTPDContainerServes(t *testing.T) {
	t.Parallel()
	cli := Docker(t)
	c := RunContainer(t, cli, HTTPDOptions(fmt.Sprintf("testenv%d_v1.web.1", rand.IntN(1e9)), nil))
	b := c.NetworkSettings.Ports["8080/tcp"]
	if len(b) == 0 {
		t.Fatal("no published port")
	}
	url := "http://127.0.0.1:" + b[0].HostPort + "/"
	var body string
	Eventually(t, 10*time.Second, func() bool {
		resp, err := http.Get(url)
		if err != nil {
			return false
		}
		defer resp.Body.Close()
		data, _ := io.ReadAll(resp.Body)
		body = string(data)
		return resp.StatusCode == 200
	}, "httpd at %s never answered 200", url)
	if body != "ok\n" {
		t.Fatalf("body = %q", body)
	}
}
