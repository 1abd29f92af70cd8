// Package certs chooses the TLS certificate for a server name: the exact
// name, then (under the platform domain) the platform certificate, then a
// wildcard. A name no certificate covers gets none, so the handshake fails
// rather than presenting another app's certificate.
//
// Certificates are uploaded by tenants, so a certificate only ever claims
// names its tenant owns: the name it is stored under, and those of its DNS
// SANs that /deis/domains gives to the same app. A SAN under the platform
// domain, or naming another app's domain, is ignored.
package certs

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/deis/dataplane/pkg/keys"
)

// Store is an immutable index of certificates by name. Safe for concurrent
// use.
type Store struct {
	exact    map[string]*tls.Certificate // "www.example.com"
	wildcard map[string]*tls.Certificate // "example.com" for *.example.com
	platform *tls.Certificate
	domain   string                      // platform domain, lowercase
	byKey    map[string]*tls.Certificate // as stored: /deis/certs/<domain>, for the last good value
	names    int
}

// Build indexes the /deis/certs/<domain>/{cert,key} entries of kvs and the
// platform certificate. Each invalid entry yields one error; where prev (the
// store in use, may be nil) had a good certificate for it, that one is kept
// (a typo, or the two steps of a cert-then-key rotation, never drop HTTPS),
// else it is skipped; the rest are still served. A certificate's DNS SANs
// are indexed when /deis/domains maps them to the same app as its own name.
func Build(kvs map[string]string, platformDomain, platformCertPEM, platformKeyPEM string, prev *Store) (*Store, []error) {
	s := &Store{
		exact:    make(map[string]*tls.Certificate),
		wildcard: make(map[string]*tls.Certificate),
		byKey:    make(map[string]*tls.Certificate),
		domain:   normalize(platformDomain),
	}
	var prevKey map[string]*tls.Certificate
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
		var cert *tls.Certificate
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
		for _, san := range cert.Leaf.DNSNames {
			san = normalize(san)
			if san == name {
				continue
			}
			if owner == "" || s.underPlatform(strings.TrimPrefix(san, "*.")) || strings.TrimSpace(kvs[keys.Domain(san)]) != owner {
				continue // not a name this certificate's app owns
			}
			s.add(san, cert, false, owned)
		}
		if time.Now().After(cert.Leaf.NotAfter) {
			errs = append(errs, fmt.Errorf("certificate for %s expired on %s (still served)", d, cert.Leaf.NotAfter.Format(time.DateOnly)))
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

func (s *Store) add(name string, cert *tls.Certificate, own bool, owned map[string]bool) {
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

// Get returns the certificate for serverName, or false when none covers it.
func (s *Store) Get(serverName string) (*tls.Certificate, bool) {
	name := normalize(serverName)
	if c, ok := s.exact[name]; ok {
		return c, true
	}
	// The operator's certificate covers the platform domain before any
	// tenant's wildcard can.
	if s.platform != nil && s.underPlatform(name) {
		return s.platform, true
	}
	if i := strings.IndexByte(name, '.'); i > 0 {
		if c, ok := s.wildcard[name[i+1:]]; ok {
			return c, true
		}
	}
	return nil, false
}

// underPlatform reports whether name is the platform domain or below it.
func (s *Store) underPlatform(name string) bool {
	return s.domain != "" && (name == s.domain || strings.HasSuffix(name, "."+s.domain))
}

func parse(certPEM, keyPEM string) (*tls.Certificate, error) {
	cert, err := tls.X509KeyPair([]byte(certPEM), []byte(keyPEM))
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
