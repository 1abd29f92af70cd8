// Package version holds the build version, set by `make build` through
// -ldflags -X.
package version

// Version is the git description of the build, "dev" when unset.
var Version = "dev"
