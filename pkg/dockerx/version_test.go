package dockerx_test

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"sync"
	"testing"

	docker "github.com/fsouza/go-dockerclient"

	"github.com/deis/dataplane/pkg/dockerx"
	"github.com/deis/dataplane/pkg/testenv"
)

func endpoint() string {
	if e := os.Getenv("DOCKER_HOST"); e != "" {
		return e
	}
	return "unix:///var/run/docker.sock"
}

// TestNegotiatesWithTheRealEngine: the client speaks the engine's version
// (at most MaxAPIVersion) instead of a pinned 1.41, and works.
func TestNegotiatesWithTheRealEngine(t *testing.T) {
	raw := testenv.Docker(t) // skips (or fails under REQUIRE_DOCKER=1) without an engine
	env, err := raw.Version()
	if err != nil {
		t.Fatal(err)
	}
	cli, version, err := dockerx.Negotiate(endpoint())
	if err != nil {
		t.Fatal(err)
	}
	server, _ := docker.NewAPIVersion(env.Get("ApiVersion"))
	max, _ := docker.NewAPIVersion(dockerx.MaxAPIVersion)
	want := dockerx.MaxAPIVersion
	if server.LessThan(max) {
		want = server.String()
	}
	if version != want {
		t.Fatalf("negotiated %q with an engine at API %s, want %s", version, server, want)
	}
	if _, err := cli.ListContainers(docker.ListContainersOptions{Context: context.Background()}); err != nil {
		t.Fatalf("list containers at API %s: %v", version, err)
	}
}

// TestHonoursDockerAPIVersion: $DOCKER_API_VERSION wins, as with the
// docker CLI.
func TestHonoursDockerAPIVersion(t *testing.T) {
	testenv.Docker(t)
	t.Setenv("DOCKER_API_VERSION", "1.40")
	cli, version, err := dockerx.Negotiate(endpoint())
	if err != nil || version != "1.40" {
		t.Fatalf("version %q, %v", version, err)
	}
	if _, err := cli.ListContainers(docker.ListContainersOptions{}); err != nil {
		t.Fatalf("list containers at API 1.40: %v", err)
	}
}

// TestNewEngineRefusingOldVersions: a fake of Docker Engine 29's API
// (none can run here), which answers /version with 1.52 and refuses any
// request below 1.44, as Engine 29 does. A client pinned to 1.41 fails on
// it; the negotiated one does not.
func TestNewEngineRefusingOldVersions(t *testing.T) {
	t.Parallel()
	var mu sync.Mutex
	var paths []string
	fake := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		paths = append(paths, r.URL.Path)
		mu.Unlock()
		if strings.HasSuffix(r.URL.Path, "/version") {
			_ = json.NewEncoder(w).Encode(map[string]string{"ApiVersion": "1.52", "MinAPIVersion": "1.44", "Version": "29.0.0"})
			return
		}
		if v, ok := strings.CutPrefix(r.URL.Path, "/v"); ok {
			ver, _, _ := strings.Cut(v, "/")
			if got, err := docker.NewAPIVersion(ver); err != nil || got.LessThan(docker.APIVersion{1, 44}) {
				w.WriteHeader(http.StatusBadRequest)
				_, _ = w.Write([]byte(`{"message":"client version ` + ver + ` is too old. Minimum supported API version is 1.44"}`))
				return
			}
		}
		_, _ = w.Write([]byte("[]"))
	}))
	defer fake.Close()
	ep := "tcp://" + strings.TrimPrefix(fake.URL, "http://")
	pinned, _ := docker.NewVersionedClient(ep, "1.41")
	pinned.SkipServerVersionCheck = true
	if _, err := pinned.ListContainers(docker.ListContainersOptions{}); err == nil {
		t.Fatal("the fake engine accepted API 1.41; it does not model Engine 29")
	}
	cli, version, err := dockerx.Negotiate(ep)
	if err != nil {
		t.Fatal(err)
	}
	if version != dockerx.MaxAPIVersion {
		t.Fatalf("negotiated %q with an engine at 1.52", version)
	}
	if _, err := cli.ListContainers(docker.ListContainersOptions{}); err != nil {
		t.Fatalf("negotiated client refused by an Engine-29-like API: %v", err)
	}
}
