package settings

import (
	"crypto/tls"
	"net/netip"
	"strings"
	"testing"
	"time"
)

func TestDefaults(t *testing.T) {
	t.Parallel()
	s, errs := Parse(nil, nil)
	if len(errs) != 0 {
		t.Fatal(errs)
	}
	if s.BodySize != 1<<20 || s.DefaultTimeout != 1300*time.Second || s.ConnectTimeout != 30*time.Second ||
		!s.Gzip || s.GzipCompLevel != 5 || s.GzipMinLength != 256 || s.MinTLSVersion != tls.VersionTLS12 ||
		s.HSTSMaxAge != 10886400 || s.BuilderTCPTimeout != 1200*time.Second || s.ControllerReadTimeout != 20*time.Minute {
		t.Fatalf("defaults wrong: %+v", s)
	}
	if !Allowed(s.ProxyRealIPCIDR, netip.MustParseAddr("10.1.2.3")) || Allowed(s.ProxyRealIPCIDR, netip.MustParseAddr("192.0.2.1")) {
		t.Fatal("default proxyRealIpCidr is not 10.0.0.0/8")
	}
}

func TestParseValuesAndInvalidKeepsLastGood(t *testing.T) {
	t.Parallel()
	first, errs := Parse(map[string]string{
		"/deis/router/bodySize":               "100m",
		"/deis/router/defaultTimeout":         "60",
		"/deis/router/connectTimeout":         "5s",
		"/deis/router/hsts/enabled":           "true",
		"/deis/router/hsts/includeSubDomains": "true",
		"/deis/router/gzipTypes":              "text/html application/json",
		"/deis/router/sslProtocols":           "TLSv1.3",
		"/deis/router/controller/whitelist":   "192.0.2.0/24, 198.51.100.7",
	}, nil)
	if len(errs) != 0 {
		t.Fatal(errs)
	}
	if first.BodySize != 100<<20 || first.DefaultTimeout != time.Minute || first.ConnectTimeout != 5*time.Second ||
		!first.HSTSEnabled || first.HSTSHeader != "max-age=10886400; includeSubDomains" ||
		!first.GzipTypes["text/html"] || first.MinTLSVersion != tls.VersionTLS13 || len(first.ControllerWhitelist) != 2 {
		t.Fatalf("parsed wrong: %+v", first)
	}
	second, errs := Parse(map[string]string{
		"/deis/router/bodySize":       "lots",
		"/deis/router/defaultTimeout": "-3",
		"/deis/router/sslProtocols":   "SSLv3",
		"/deis/router/gzipCompLevel":  "11",
	}, first)
	if len(errs) != 4 {
		t.Fatalf("want 4 errors, got %v", errs)
	}
	for _, e := range errs {
		if !strings.Contains(e.Error(), "/deis/router/") {
			t.Errorf("error %q does not name the key", e)
		}
	}
	if second.BodySize != 100<<20 || second.DefaultTimeout != time.Minute || second.MinTLSVersion != tls.VersionTLS13 || second.GzipCompLevel != 5 {
		t.Fatalf("invalid values did not keep the last good ones: %+v", second)
	}
	// A key that disappears goes back to its default.
	third, _ := Parse(map[string]string{}, second)
	if third.BodySize != 1<<20 {
		t.Fatalf("removed key did not return to default: %d", third.BodySize)
	}
}

func FuzzParse(f *testing.F) {
	f.Add("bodySize", "1m")
	f.Add("defaultTimeout", "1300")
	f.Add("proxyRealIpCidr", "10.0.0.0/8,::1")
	f.Add("sslProtocols", "TLSv1.2 TLSv1.3")
	f.Add("gzipTypes", "text/plain application/json")
	f.Add("hsts/maxAge", "10886400")
	f.Fuzz(func(t *testing.T, name, value string) {
		s, errs := Parse(map[string]string{"/deis/router/" + name: value}, nil)
		if s == nil {
			t.Fatal("nil settings")
		}
		if s.BodySize < 0 || s.GzipCompLevel < 1 || s.GzipCompLevel > 9 || s.MinTLSVersion < tls.VersionTLS10 || s.DefaultTimeout < 0 {
			t.Fatalf("out of range after %s=%q: %+v (errs %v)", name, value, s, errs)
		}
	})
}

func FuzzParseCIDRs(f *testing.F) {
	f.Add("10.0.0.0/8, 192.168.1.1")
	f.Add("::1/128 fe80::/10")
	f.Fuzz(func(t *testing.T, v string) {
		ps, err := ParseCIDRs(v)
		if err == nil {
			for _, p := range ps {
				if !p.IsValid() {
					t.Fatalf("invalid prefix from %q", v)
				}
			}
		}
	})
}

// TestL1ZeroTimeoutIsInvalid: defaultTimeout=0 used to be accepted and make
// every request fail with 502. Timeouts below MinTimeout are refused and
// the last good value kept.
func TestL1ZeroTimeoutIsInvalid(t *testing.T) {
	t.Parallel()
	for _, v := range []string{"0", "0s", "1ms", "99ms"} {
		for _, name := range []string{"defaultTimeout", "connectTimeout", "builder/timeout/tcp", "controller/timeout/read"} {
			s, errs := Parse(map[string]string{"/deis/router/" + name: v}, nil)
			if len(errs) != 1 {
				t.Errorf("%s=%s: want 1 error, got %v", name, v, errs)
			}
			if s.DefaultTimeout < MinTimeout || s.ConnectTimeout < MinTimeout || s.BuilderTCPTimeout < MinTimeout || s.ControllerReadTimeout < MinTimeout {
				t.Errorf("%s=%s accepted: %+v", name, v, s)
			}
		}
	}
}

// TestUnknownSettingsAreNamed: a typo'd or unsupported key used to be
// ignored silently.
func TestUnknownSettingsAreNamed(t *testing.T) {
	t.Parallel()
	s, errs := Parse(map[string]string{
		"/deis/router/bodysize":                "100m",
		"/deis/router/workerProcesses":         "4",
		"/deis/router/hosts/10.0.0.1":          "10.0.0.1:80",
		"/deis/router/hsts/maxAge":             "60",
		"/deis/router/controller/timeout/read": "5m",
	}, nil)
	if s.BodySize != 1<<20 {
		t.Fatalf("a typo'd key changed bodySize: %d", s.BodySize)
	}
	if len(errs) != 2 || !strings.Contains(errs[0].Error(), "did you mean /deis/router/bodySize?") || !strings.Contains(errs[1].Error(), "workerProcesses: unknown router setting") {
		t.Fatalf("errors: %v", errs)
	}
}
