package keys

import (
	"strings"
	"testing"
)

func TestValidateAppName(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		ok   bool
	}{
		{"myapp", true}, {"my-app-2", true}, {"a", true}, {"0", true},
		{strings.Repeat("a", 63), true}, {strings.Repeat("a", 64), false},
		{"", false}, {"-a", false}, {"a-", false}, {"a--b", false}, {"MyApp", false},
		{"my_app", false}, {"my.app", false}, {"../etc", false}, {"a/b", false},
	} {
		err := ValidateAppName(tc.name)
		if (err == nil) != tc.ok {
			t.Errorf("ValidateAppName(%q) = %v, want ok=%v", tc.name, err, tc.ok)
		}
	}
}

func TestParseContainerName(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		in   string
		want ContainerName
		ok   bool
	}{
		{"myapp_v3.web.1", ContainerName{"myapp", 3, "web", 1}, true},
		{"/my-app_v12.cmd.10", ContainerName{"my-app", 12, "cmd", 10}, true},
		{"app_v1.worker_2.3", ContainerName{"app", 1, "worker_2", 3}, true},
		{"myapp_v0.web.1", ContainerName{}, false},
		{"myapp_v1.web.0", ContainerName{}, false},
		{"myapp_v1.web", ContainerName{}, false},
		{"myapp_v1.web.1.2", ContainerName{}, false},
		{"_v1.web.1", ContainerName{}, false},
		{"MyApp_v1.web.1", ContainerName{}, false},
		{"myapp_vx.web.1", ContainerName{}, false},
		{"etcd", ContainerName{}, false},
		{"myapp_v01.web.1", ContainerName{}, false},
	} {
		got, err := ParseContainerName(tc.in)
		if (err == nil) != tc.ok {
			t.Errorf("ParseContainerName(%q) err = %v, want ok=%v", tc.in, err, tc.ok)
			continue
		}
		if tc.ok && got != tc.want {
			t.Errorf("ParseContainerName(%q) = %+v, want %+v", tc.in, got, tc.want)
		}
		if tc.ok && "/"+got.String() != "/"+strings.TrimPrefix(tc.in, "/") {
			t.Errorf("String() = %q, want %q", got.String(), tc.in)
		}
	}
}

func TestContainerFromLabels(t *testing.T) {
	t.Parallel()
	c, err := ParseContainer("random_name", map[string]string{
		"io.deis.app": "shop", "io.deis.version": "v4", "io.deis.type": "web", "io.deis.num": "2",
	})
	if err != nil || c != (ContainerName{"shop", 4, "web", 2}) {
		t.Fatalf("ParseContainer from labels = %+v, %v", c, err)
	}
	if _, err := ParseContainer("random_name", nil); err == nil {
		t.Fatal("ParseContainer without name or labels: want error")
	}
}

func TestParseService(t *testing.T) {
	t.Parallel()
	app, c, err := ParseService(Service("shop", "shop_v2.web.1"))
	if err != nil || app != "shop" || c.Num != 1 || c.Version != 2 {
		t.Fatalf("ParseService = %q %+v %v", app, c, err)
	}
	for _, bad := range []string{
		"/deis/services/shop", "/deis/services/shop/other_v1.web.1", "/deis/domains/x",
		"/deis/services/Shop/Shop_v1.web.1", "/deis/services/shop/shop_v1.web.1/extra",
	} {
		if _, _, err := ParseService(bad); err == nil {
			t.Errorf("ParseService(%q): want error", bad)
		}
	}
}

func TestParseCert(t *testing.T) {
	t.Parallel()
	d, part, err := ParseCert(CertPEM("*.example.com"))
	if err != nil || d != "*.example.com" || part != "cert" {
		t.Fatalf("ParseCert = %q %q %v", d, part, err)
	}
	d, part, err = ParseCert(KeyPEM("www.example.com"))
	if err != nil || d != "www.example.com" || part != "key" {
		t.Fatalf("ParseCert = %q %q %v", d, part, err)
	}
	for _, bad := range []string{"/deis/certs/x.com/chain", "/deis/certs//cert", "/deis/certs/cert", "/deis/certs/a b/cert"} {
		if _, _, err := ParseCert(bad); err == nil {
			t.Errorf("ParseCert(%q): want error", bad)
		}
	}
}

func FuzzParseContainerName(f *testing.F) {
	for _, s := range []string{"myapp_v3.web.1", "/a_v1.cmd.2", "a_v_v1.web.1", "x", "_v1..1", "a-b_v999999999.web.1"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		c, err := ParseContainerName(s)
		if err != nil {
			return
		}
		// A parsed name must round-trip and be valid.
		if c.String() != strings.TrimPrefix(s, "/") {
			t.Fatalf("round trip %q -> %q", s, c.String())
		}
		if ValidateAppName(c.App) != nil || c.Version < 1 || c.Num < 1 {
			t.Fatalf("invalid parse of %q: %+v", s, c)
		}
	})
}

func FuzzParseService(f *testing.F) {
	f.Add("/deis/services/shop/shop_v2.web.1")
	f.Add("/deis/services/a/b")
	f.Fuzz(func(t *testing.T, s string) {
		app, c, err := ParseService(s)
		if err == nil && Service(app, c.String()) != s {
			t.Fatalf("round trip %q -> %q", s, Service(app, c.String()))
		}
	})
}

func FuzzValidateAppName(f *testing.F) {
	for _, s := range []string{"a", "a-b", "-", "a--b", "Ab"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		if ValidateAppName(s) != nil {
			return
		}
		if len(s) > MaxAppNameLen || strings.Contains(s, "--") || strings.HasPrefix(s, "-") || strings.HasSuffix(s, "-") {
			t.Fatalf("accepted bad name %q", s)
		}
		for _, r := range s {
			if !(r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || r == '-') {
				t.Fatalf("accepted bad name %q", s)
			}
		}
	})
}

func TestBuildImageApp(t *testing.T) {
	sha := "467150626a0843ecf73acf62b2032f26e43a2432"
	if got := BuildImage("shop", sha); got != "shop:git-46715062" {
		t.Fatalf("BuildImage = %q", got)
	}
	for ref, want := range map[string]string{
		"shop:git-46715062":                           "shop",
		"10.0.0.5:5000/shop:git-46715062":             "shop",
		"registry.example.test/team/shop:git-abcdef0": "shop",
		"shop:latest":                                 "",
		"shop:git-":                                   "",
		"shop:git-XYZ12345":                           "",
		"shop:git-46715062-dirty":                     "",
		"10.0.0.5:5000/shop":                          "",
		"Shop:git-46715062":                           "",
		"deis/busybox:latest":                         "",
		"shop@sha256:46715062":                        "",
		"<none>:<none>":                               "",
	} {
		if got := BuildImageApp(ref); got != want {
			t.Errorf("BuildImageApp(%q) = %q, want %q", ref, got, want)
		}
	}
}

func FuzzBuildImageApp(f *testing.F) {
	for _, s := range []string{"shop:git-46715062", "r:5000/a/b:git-0123456", "a:git-", "x", ":git-1234567", "a-:git-1234567"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, ref string) {
		app := BuildImageApp(ref)
		if app == "" {
			return
		}
		// What it names is a valid app whose own build image it also names.
		if ValidateAppName(app) != nil || !strings.Contains(ref, app+":"+BuildTagPrefix) {
			t.Fatalf("BuildImageApp(%q) = %q", ref, app)
		}
		if got := BuildImageApp(BuildImage(app, ref[strings.LastIndex(ref, BuildTagPrefix)+len(BuildTagPrefix):])); got != app {
			t.Fatalf("round trip of %q: %q", ref, got)
		}
	})
}
