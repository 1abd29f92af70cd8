package builder_test

import (

	docker "github.com/fsouza/go-dockerclient"
)

func dockerListByApp(app string) docker.ListImagesOptions {
	return docker.ListImagesOptions{Filters: map[string][]string{"label": {"io.deis.app=" + app}}}
}

