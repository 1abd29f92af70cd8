// Package client is the `deis` command line: the Deis v1.13 client's
// commands, settings file and behaviour (../shared/DEIS-V1-API.md) over the
// controller's REST API. cmd/deis only wires it to the process.
package client

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
)

// Settings is ~/.deis/<profile>.json, field for field as Deis v1 wrote it.
type Settings struct {
	Username      string `json:"username"`
	SSLVerify     bool   `json:"ssl_verify"`
	Controller    string `json:"controller"`
	Token         string `json:"token"`
	ResponseLimit int    `json:"response_limit"`
}

// errNotLoggedIn is v1's message, kept: scripts may look for it.
var errNotLoggedIn = errors.New("Not logged in. Use 'deis login' or 'deis register' to get started.")

// settingsPath is $HOME/.deis/<profile>.json, profile = $DEIS_PROFILE or client.
func settingsPath(env func(string) string) string {
	profile := env("DEIS_PROFILE")
	if profile == "" {
		profile = "client"
	}
	return filepath.Join(env("HOME"), ".deis", profile+".json")
}

func loadSettings(path string) (*Settings, error) {
	data, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil, errNotLoggedIn
	}
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", path, err)
	}
	var s Settings
	if err := json.Unmarshal(data, &s); err != nil {
		return nil, fmt.Errorf("%s is not a settings file (%v): log in again", path, err)
	}
	if s.Controller == "" || s.Token == "" {
		return nil, errNotLoggedIn
	}
	return &s, nil
}

// save writes the settings with the directory 0700 and the file 0600: the
// token is a secret.
func (s *Settings) save(path string) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return fmt.Errorf("create %s: %w", filepath.Dir(path), err)
	}
	_ = os.Chmod(filepath.Dir(path), 0o700)
	data, _ := json.MarshalIndent(s, "", "  ")
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, data, 0o600); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	return os.Rename(tmp, path)
}
