// Package systemd holds the platform's systemd units, embedded so that
// `deisctl install` writes exactly the files in this directory.
package systemd

import "embed"

// Units is every deis-<component>.service here.
//
//go:embed *.service
var Units embed.FS
