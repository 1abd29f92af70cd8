package builder_test

import (
	"bytes"
	"sync"

	docker "github.com/fsouza/go-dockerclient"
)

func dockerListByApp(app string) docker.ListImagesOptions {
	return docker.ListImagesOptions{Filters: map[string][]string{"label": {"io.deis.app=" + app}}}
}

// syncBuffer is a bytes.Buffer safe to read while a process writes to it.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}
