package publisher

import (
	"net"
	"testing"

	docker "github.com/fsouza/go-dockerclient"
)

// TestProbeInner: a listening port is listening at once, a closed one is
// "not yet" (refused), never "unreachable", which would stop the probing
// of the container's own address.
func TestProbeInner(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	if got := probeInner(addr); got != innerListening {
		t.Fatalf("probe of a listener: %v", got)
	}
	ln.Close()
	if got := probeInner(addr); got != innerNotYet {
		t.Fatalf("probe of a closed port: %v, want not yet", got)
	}
}

func TestInnerAddr(t *testing.T) {
	bridge := &docker.Container{NetworkSettings: &docker.NetworkSettings{IPAddress: "172.17.0.5"}}
	named := &docker.Container{NetworkSettings: &docker.NetworkSettings{Networks: map[string]docker.ContainerNetwork{
		"b": {IPAddress: "10.0.1.2"}, "a": {IPAddress: "10.0.0.2"},
	}}}
	hostNet := &docker.Container{NetworkSettings: &docker.NetworkSettings{}}
	for _, c := range []struct {
		info *docker.Container
		port int
		want string
	}{
		{bridge, 5000, "172.17.0.5:5000"},
		{named, 80, "10.0.0.2:80"}, // the first network by name: the same one each time
		{hostNet, 5000, ""},
		{bridge, 0, ""},
		{&docker.Container{}, 5000, ""},
	} {
		if got := innerAddr(c.info, c.port); got != c.want {
			t.Errorf("innerAddr(%+v, %d) = %q, want %q", c.info.NetworkSettings, c.port, got, c.want)
		}
	}
}
