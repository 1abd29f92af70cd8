package deisctl

import (
	"archive/tar"
	"compress/gzip"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"strings"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/deis/dataplane/pkg/keys"
)

// Archive layout: one gzip'd tar with
//
//	deis.json         the /deis tree at one etcd revision (snapshotJSON)
//	files/logs/...    the logger's file store (--logs-dir), when given
//	files/repos/...   the builder's repositories (--repos-dir), when given
//
// Registry images are not in it: they live in the registry's own backend
// (docs/operations.md says how to back that up).
const (
	snapshotName = "deis.json"
	filesDir     = "files/"
)

// snapshotJSON is the /deis tree as one consistent read.
type snapshotJSON struct {
	Revision int64    `json:"revision"`
	Taken    string   `json:"taken"`
	KVs      []kvJSON `json:"kvs"`
}

type kvJSON struct {
	Key   string `json:"key"`
	Value string `json:"value"`
	// Leased keys are announcements of live daemons (hosts, routes, the
	// controller's address...): kept for the record, not restored; the
	// daemons announce themselves again.
	Leased bool `json:"leased,omitempty"`
}

// Dirs are the data directories a backup includes, by archive name.
type Dirs map[string]string // "logs" → /var/lib/deis/logs, "repos" → ...

// Backup writes the archive to w: /deis read once, at one revision (etcd's
// MVCC makes that read a consistent snapshot however many writes go on),
// then each directory.
func Backup(ctx context.Context, cli *clientv3.Client, dirs Dirs, w io.Writer) (kvs int, err error) {
	resp, err := cli.Get(ctx, keys.Root, clientv3.WithPrefix())
	if err != nil {
		return 0, fmt.Errorf("read /deis: %w", err)
	}
	snap := snapshotJSON{Revision: resp.Header.Revision, Taken: time.Now().UTC().Format(time.RFC3339)}
	for _, kv := range resp.Kvs {
		snap.KVs = append(snap.KVs, kvJSON{Key: string(kv.Key), Value: string(kv.Value), Leased: kv.Lease != 0})
	}
	data, err := json.Marshal(snap)
	if err != nil {
		return 0, err
	}
	gz := gzip.NewWriter(w)
	tw := tar.NewWriter(gz)
	if err := tw.WriteHeader(&tar.Header{Name: snapshotName, Mode: 0o600, Size: int64(len(data)), ModTime: time.Now()}); err != nil {
		return 0, err
	}
	if _, err := tw.Write(data); err != nil {
		return 0, err
	}
	for name, dir := range dirs {
		if dir == "" {
			continue
		}
		if err := addDir(tw, dir, filesDir+name); err != nil {
			return 0, fmt.Errorf("back up %s (%s): %w", name, dir, err)
		}
	}
	if err := tw.Close(); err != nil {
		return 0, err
	}
	return len(snap.KVs), gz.Close()
}

// addDir adds dir's regular files and directories under prefix. A file
// that grows while it is copied (the logger appends) is copied up to the
// size it had when it was opened: whole lines up to then.
func addDir(tw *tar.Writer, dir, prefix string) error {
	return filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) && p == dir {
				return nil // nothing there yet: nothing to back up
			}
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		name := path.Join(prefix, filepath.ToSlash(rel))
		info, err := d.Info()
		if err != nil {
			return err
		}
		switch {
		case d.IsDir():
			return tw.WriteHeader(&tar.Header{Name: name + "/", Typeflag: tar.TypeDir, Mode: int64(info.Mode().Perm()), ModTime: info.ModTime()})
		case d.Type().IsRegular():
			f, err := os.Open(p)
			if err != nil {
				return err
			}
			defer f.Close()
			st, err := f.Stat()
			if err != nil {
				return err
			}
			if err := tw.WriteHeader(&tar.Header{Name: name, Mode: int64(st.Mode().Perm()), Size: st.Size(), ModTime: st.ModTime()}); err != nil {
				return err
			}
			_, err = io.CopyN(tw, f, st.Size())
			return err
		case d.Type()&fs.ModeSymlink != 0:
			target, err := os.Readlink(p)
			if err != nil {
				return err
			}
			return tw.WriteHeader(&tar.Header{Name: name, Typeflag: tar.TypeSymlink, Linkname: target, ModTime: info.ModTime()})
		}
		return nil // sockets and the like: not data
	})
}

// ErrNotEmpty refuses a restore over a platform that has users or apps.
var ErrNotEmpty = errors.New("etcd already holds users or apps under /deis: restore is for a fresh cluster (--force overwrites the keys the archive holds)")

// Restore reads an archive: the /deis keys (but the leased ones) are
// written in transactions of at most 100 operations, the directories are
// unpacked into dirs. It refuses a cluster that has users or apps, unless
// force.
func Restore(ctx context.Context, cli *clientv3.Client, dirs Dirs, r io.Reader, force bool) (kvs int, err error) {
	if !force {
		for _, p := range []string{keys.UsersPrefix, keys.AppsPrefix} {
			resp, err := cli.Get(ctx, p, clientv3.WithPrefix(), clientv3.WithCountOnly())
			if err != nil {
				return 0, fmt.Errorf("read %s: %w", p, err)
			}
			if resp.Count > 0 {
				return 0, ErrNotEmpty
			}
		}
	}
	gz, err := gzip.NewReader(r)
	if err != nil {
		return 0, fmt.Errorf("not a deisctl backup (gzip): %w", err)
	}
	tr := tar.NewReader(gz)
	var snap *snapshotJSON
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return 0, fmt.Errorf("read the archive: %w", err)
		}
		if h.Name == snapshotName {
			snap = &snapshotJSON{}
			if err := json.NewDecoder(tr).Decode(snap); err != nil {
				return 0, fmt.Errorf("%s in the archive: %w", snapshotName, err)
			}
			continue
		}
		rest, ok := strings.CutPrefix(h.Name, filesDir)
		if !ok {
			continue
		}
		name, rel, _ := strings.Cut(rest, "/")
		dir := dirs[name]
		if dir == "" {
			continue // not asked for (no --logs-dir, say)
		}
		if err := unpack(tr, h, dir, rel); err != nil {
			return 0, err
		}
	}
	if snap == nil {
		return 0, fmt.Errorf("the archive holds no %s: not a deisctl backup", snapshotName)
	}
	var ops []clientv3.Op
	flush := func() error {
		if len(ops) == 0 {
			return nil
		}
		_, err := cli.Txn(ctx).Then(ops...).Commit()
		ops = ops[:0]
		return err
	}
	for _, kv := range snap.KVs {
		if kv.Leased || !strings.HasPrefix(kv.Key, keys.Root) {
			continue
		}
		ops = append(ops, clientv3.OpPut(kv.Key, kv.Value))
		kvs++
		if len(ops) == 100 {
			if err := flush(); err != nil {
				return kvs, fmt.Errorf("write the keys: %w", err)
			}
		}
	}
	if err := flush(); err != nil {
		return kvs, fmt.Errorf("write the keys: %w", err)
	}
	return kvs, nil
}

// unpack writes one archive entry under dir, refusing names that would
// leave it.
func unpack(tr *tar.Reader, h *tar.Header, dir, rel string) error {
	if rel == "" {
		return os.MkdirAll(dir, 0o755)
	}
	clean := filepath.Clean(filepath.FromSlash(rel))
	if filepath.IsAbs(clean) || clean == ".." || strings.HasPrefix(clean, ".."+string(filepath.Separator)) {
		return fmt.Errorf("archive entry %q leaves its directory: refused", h.Name)
	}
	dst := filepath.Join(dir, clean)
	switch h.Typeflag {
	case tar.TypeDir:
		return os.MkdirAll(dst, fs.FileMode(h.Mode).Perm()|0o700)
	case tar.TypeReg:
		if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
			return err
		}
		f, err := os.OpenFile(dst, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, fs.FileMode(h.Mode).Perm())
		if err != nil {
			return err
		}
		if _, err := io.Copy(f, tr); err != nil {
			f.Close()
			return fmt.Errorf("restore %s: %w", dst, err)
		}
		return f.Close()
	case tar.TypeSymlink:
		if filepath.IsAbs(h.Linkname) || strings.HasPrefix(filepath.Clean(filepath.Join(filepath.Dir(clean), h.Linkname)), "..") {
			return fmt.Errorf("archive symlink %q points outside its directory: refused", h.Name)
		}
		_ = os.Remove(dst)
		return os.Symlink(h.Linkname, dst)
	}
	return nil
}
