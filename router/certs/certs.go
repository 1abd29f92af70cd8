// Package certs chooses the TLS certificate for a server name: the exact
// name, then (under the platform domain) the platform certificate, then a
// wildcard. A name no certificate covers gets none, so the handshake fails
// rather than presenting another app's certificate.
//
// An entry may hold two certificates for the same names, an ECDSA and an
// RSA one (both chains in the cert value, both keys in the key value): a
// client that can verify ECDSA gets it (its handshake costs the server a
// fraction of an RSA signature), any other the RSA one.
//
// Certificates are uploaded by tenants, so a certificate only ever claims
// names its tenant owns: the name it is stored under, and those of its DNS
// SANs that /deis/domains gives to the same app. A SAN under the platform
// domain, or naming another app's domain, is ignored.
package certs

import (
	"crypto/rsa"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/deis/dataplane/pkg/keys"
)

// Store is an immutable index of certificates by name. Safe for concurrent
// use.
type Store struct {
	exact    map[string]*entry // "www.example.com"
	wildcard map[string]*entry // "example.com" for *.example.com
	platform *entry
	domain   string            // platform domain, lowercase
	byKey    map[string]*entry // as stored: /deis/certs/<domain>, for the last good value
	names    int
}

// entry is one stored certificate: one chain, or an ECDSA and an RSA
// chain for the same names, the preferred (ECDSA) first.
type entry struct {
	certs []*tls.Certificate
}

// leaf is the entry's preferred certificate's leaf (their names agree).
func (e *entry) leaf() *x509.Certificate { return e.certs[0].Leaf }

// Build indexes the /deis/certs/<domain>/{cert,key} entries of kvs and the
// platform certificate. Each invalid entry yields one error; where prev (the
// store in use, may be nil) had a good certificate for it, that one is kept
// (a typo, or the two steps of a cert-then-key rotation, never drop HTTPS),
// else it is skipped; the rest are still served. A certificate's DNS SANs
// are indexed when /deis/domains maps them to the same app as its own name.
func Build(kvs map[string]string, platformDomain, platformCertPEM, platformKeyPEM string, prev *Store) (*Store, []error) {
	s := &Store{
		exact:    make(map[string]*entry),
		wildcard: make(map[string]*entry),
		byKey:    make(map[string]*entry),
		domain:   normalize(platformDomain),
	}
	var prevKey map[string]*entry
	if prev != nil {
		prevKey = prev.byKey
	}
	var errs []error
	pairs := make(map[string]*[2]string)
	for k, v := range kvs {
		if !strings.HasPrefix(k, keys.CertsPrefix) {
			continue
		}
		domain, part, err := keys.ParseCert(k)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		p := pairs[domain]
		if p == nil {
			p = new([2]string)
			pairs[domain] = p
		}
		if part == "cert" {
			p[0] = v
		} else {
			p[1] = v
		}
	}
	// Sorted so that when two entries claim the same SAN the outcome does
	// not depend on map order: the entry's own domain always wins.
	domains := make([]string, 0, len(pairs))
	for d := range pairs {
		domains = append(domains, d)
	}
	sort.Strings(domains)
	owned := make(map[string]bool)
	for _, d := range domains {
		p := pairs[d]
		name := normalize(d)
		var cert *entry
		var err error
		if p[0] == "" || p[1] == "" {
			err = fmt.Errorf("cert and key must both be set")
		} else {
			cert, err = parse(p[0], p[1])
		}
		if err != nil {
			if last := prevKey[name]; last != nil {
				cert = last
				err = fmt.Errorf("%w (the last good certificate is kept)", err)
			}
			errs = append(errs, fmt.Errorf("certificate for %s: %w", d, err))
			if cert == nil {
				continue
			}
		}
		s.byKey[name] = cert
		s.add(name, cert, true, owned)
		owner := strings.TrimSpace(kvs[keys.Domain(d)])
		for _, san := range cert.leaf().DNSNames {
			san = normalize(san)
			if san == name {
				continue
			}
			if owner == "" || s.underPlatform(strings.TrimPrefix(san, "*.")) || strings.TrimSpace(kvs[keys.Domain(san)]) != owner {
				continue // not a name this certificate's app owns
			}
			s.add(san, cert, false, owned)
		}
		for _, c := range cert.certs {
			if time.Now().After(c.Leaf.NotAfter) {
				errs = append(errs, fmt.Errorf("certificate for %s expired on %s (still served)", d, c.Leaf.NotAfter.Format(time.DateOnly)))
			}
		}
	}
	if platformCertPEM != "" || platformKeyPEM != "" {
		cert, err := parse(platformCertPEM, platformKeyPEM)
		switch {
		case err == nil:
			s.platform = cert
		case prev != nil && prev.platform != nil:
			s.platform = prev.platform
			errs = append(errs, fmt.Errorf("platform certificate (sslCert/sslKey): %w (the last good certificate is kept)", err))
		default:
			errs = append(errs, fmt.Errorf("platform certificate (sslCert/sslKey): %w", err))
		}
	}
	return s, errs
}

func (s *Store) add(name string, cert *entry, own bool, owned map[string]bool) {
	if !own && owned[name] {
		return // a SAN never overrides a certificate stored under that name
	}
	if own {
		owned[name] = true
	}
	if base, ok := strings.CutPrefix(name, "*."); ok {
		s.wildcard[base] = cert
	} else {
		s.exact[name] = cert
	}
	s.names++
}

// Len is the number of names indexed.
func (s *Store) Len() int { return s.names }

// Get returns the preferred certificate for serverName, or false when none
// covers it.
func (s *Store) Get(serverName string) (*tls.Certificate, bool) {
	if e := s.lookup(serverName); e != nil {
		return e.certs[0], true
	}
	return nil, false
}

// For returns the certificate for the client's server name that the client
// can verify, ECDSA before RSA; with one certificate, that one (the
// handshake then fails as it would anyway).
func (s *Store) For(hello *tls.ClientHelloInfo) (*tls.Certificate, bool) {
	e := s.lookup(hello.ServerName)
	if e == nil {
		return nil, false
	}
	last := len(e.certs) - 1
	for _, c := range e.certs[:last] {
		if hello.SupportsCertificate(c) == nil {
			return c, true
		}
	}
	return e.certs[last], true
}

func (s *Store) lookup(serverName string) *entry {
	name := normalize(serverName)
	if e, ok := s.exact[name]; ok {
		return e
	}
	// The operator's certificate covers the platform domain before any
	// tenant's wildcard can.
	if s.platform != nil && s.underPlatform(name) {
		return s.platform
	}
	if i := strings.IndexByte(name, '.'); i > 0 {
		if e, ok := s.wildcard[name[i+1:]]; ok {
			return e
		}
	}
	return nil
}

// underPlatform reports whether name is the platform domain or below it.
func (s *Store) underPlatform(name string) bool {
	return s.domain != "" && (name == s.domain || strings.HasSuffix(name, "."+s.domain))
}

func parse(certPEM, keyPEM string) (*entry, error) {
	certs, err := Parse(certPEM, keyPEM)
	if err != nil {
		return nil, err
	}
	return &entry{certs: certs}, nil
}

// Parse reads one certificate chain and its key, or two: an ECDSA and an
// RSA chain one after the other in certPEM, and both keys in keyPEM (in
// any order), each chain starting with the leaf of one of the keys. The
// ECDSA one comes first. The controller and deisctl check uploads with it.
func Parse(certPEM, keyPEM string) ([]*tls.Certificate, error) {
	var certBlocks, keyBlocks []*pem.Block
	for rest := []byte(keyPEM); ; {
		var b *pem.Block
		if b, rest = pem.Decode(rest); b == nil {
			break
		}
		if strings.HasSuffix(b.Type, "PRIVATE KEY") {
			keyBlocks = append(keyBlocks, b)
		}
	}
	if len(keyBlocks) <= 1 {
		c, err := pair([]byte(certPEM), []byte(keyPEM))
		if err != nil {
			return nil, err
		}
		return []*tls.Certificate{c}, nil
	}
	if len(keyBlocks) > 2 {
		return nil, fmt.Errorf("%d private keys: at most two (an ECDSA and an RSA one)", len(keyBlocks))
	}
	for rest := []byte(certPEM); ; {
		var b *pem.Block
		if b, rest = pem.Decode(rest); b == nil {
			break
		}
		if b.Type == "CERTIFICATE" {
			certBlocks = append(certBlocks, b)
		}
	}
	// Each key's leaf starts its chain; the chain runs to the next leaf.
	leafOf := make([]int, len(keyBlocks))
	for k, kb := range keyBlocks {
		leafOf[k] = -1
		for i, cb := range certBlocks {
			if _, err := tls.X509KeyPair(pem.EncodeToMemory(cb), pem.EncodeToMemory(kb)); err == nil {
				leafOf[k] = i
				break
			}
		}
		if leafOf[k] < 0 {
			return nil, fmt.Errorf("private key %d of 2 matches no certificate", k+1)
		}
	}
	if leafOf[0] == leafOf[1] {
		return nil, errors.New("both private keys match the same certificate")
	}
	var out []*tls.Certificate
	for k, kb := range keyBlocks {
		end := len(certBlocks)
		if other := leafOf[1-k]; other > leafOf[k] {
			end = other
		}
		var chain []byte
		for _, cb := range certBlocks[leafOf[k]:end] {
			chain = append(chain, pem.EncodeToMemory(cb)...)
		}
		c, err := pair(chain, pem.EncodeToMemory(kb))
		if err != nil {
			return nil, err
		}
		out = append(out, c)
	}
	_, rsa0 := out[0].PrivateKey.(*rsa.PrivateKey)
	_, rsa1 := out[1].PrivateKey.(*rsa.PrivateKey)
	if rsa0 == rsa1 {
		return nil, errors.New("two certificates of the same key type: pair an ECDSA certificate with an RSA one")
	}
	if rsa0 {
		out[0], out[1] = out[1], out[0]
	}
	if !slices.Equal(namesOf(out[0].Leaf), namesOf(out[1].Leaf)) {
		return nil, fmt.Errorf("the ECDSA and the RSA certificate name different hosts (%v and %v): they must be for the same names", namesOf(out[0].Leaf), namesOf(out[1].Leaf))
	}
	return out, nil
}

// namesOf is a leaf's DNS names, sorted and lowercased, or its common name
// when it has none.
func namesOf(leaf *x509.Certificate) []string {
	names := make([]string, 0, len(leaf.DNSNames))
	for _, n := range leaf.DNSNames {
		names = append(names, normalize(n))
	}
	if len(names) == 0 {
		names = append(names, normalize(leaf.Subject.CommonName))
	}
	slices.Sort(names)
	return names
}

func pair(certPEM, keyPEM []byte) (*tls.Certificate, error) {
	cert, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		return nil, fmt.Errorf("bad PEM or key does not match: %w", err)
	}
	if cert.Leaf == nil {
		leaf, err := x509.ParseCertificate(cert.Certificate[0])
		if err != nil {
			return nil, fmt.Errorf("parse leaf: %w", err)
		}
		cert.Leaf = leaf
	}
	return &cert, nil
}

// normalize lowercases and drops a trailing dot. It avoids allocating when
// the name is already normal, the common case.
func normalize(n string) string {
	n = strings.TrimSuffix(n, ".")
	for i := 0; i < len(n); i++ {
		if c := n[i]; c >= 'A' && c <= 'Z' {
			return strings.ToLower(n)
		}
	}
	return n
}
