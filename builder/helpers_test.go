package builder_test

import (
	docker "github.com/fsouza/go-dockerclient"
)

// dockerListByApp lists the app's local build images (<app>:git-<sha>;
// the builder names them, it does not label them).
func dockerListByApp(app string) docker.ListImagesOptions {
	return docker.ListImagesOptions{Filters: map[string][]string{"reference": {app + ":git-*"}}}
}
