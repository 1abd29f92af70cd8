package builder

import (
	"bytes"
	"sort"
	"strings"

	gossh "golang.org/x/crypto/ssh"

	"github.com/deis/dataplane/pkg/etcdwatch"
	"github.com/deis/dataplane/pkg/keys"
)

// users maps the MD5 fingerprint of a registered public key to the user
// it belongs to. It is rebuilt from each etcd snapshot of
// /deis/builder/users/ and swapped in whole.
type users map[string]userKey

type userKey struct {
	user string
	key  []byte // wire form of the registered key, compared on login
}

// indexUsers reads /deis/builder/users/<user>/<fingerprint> = key line.
// Entries whose value does not parse, or whose fingerprint does not match
// the key, are skipped (and reported through bad).
func indexUsers(snap *etcdwatch.Snapshot, bad func(key string, why string)) users {
	idx := users{}
	names := make([]string, 0, len(snap.KVs))
	for k := range snap.KVs {
		if strings.HasPrefix(k, keys.BuilderUsersPrefix) {
			names = append(names, k)
		}
	}
	sort.Strings(names) // a fingerprint registered twice goes to the first user
	for _, k := range names {
		user, fp, ok := strings.Cut(strings.TrimPrefix(k, keys.BuilderUsersPrefix), "/")
		if len(fp) > 4 && strings.EqualFold(fp[:4], "md5:") {
			fp = fp[4:] // as `ssh-keygen -E md5 -l` prints it
		}
		if !ok || user == "" || fp == "" {
			bad(k, "want "+keys.BuilderUsersPrefix+"<user>/<fingerprint>")
			continue
		}
		pub, _, _, _, err := gossh.ParseAuthorizedKey([]byte(snap.KVs[k]))
		if err != nil {
			bad(k, "value is not an OpenSSH public key line: "+err.Error())
			continue
		}
		if got := Fingerprint(pub); !strings.EqualFold(got, fp) {
			bad(k, "fingerprint in the key name does not match the key ("+got+")")
			continue
		}
		if _, taken := idx[strings.ToLower(fp)]; !taken {
			idx[strings.ToLower(fp)] = userKey{user: user, key: pub.Marshal()}
		}
	}
	return idx
}

// lookup returns the user owning pub, if any.
func (u users) lookup(pub gossh.PublicKey) (string, bool) {
	k, ok := u[Fingerprint(pub)]
	if !ok || !bytes.Equal(k.key, pub.Marshal()) {
		return "", false
	}
	return k.user, true
}

// Fingerprint is the key's MD5 fingerprint as docs/contract.md names keys:
// colon-separated lowercase hex.
func Fingerprint(pub gossh.PublicKey) string {
	return gossh.FingerprintLegacyMD5(pub)
}
