package table

import (
	"fmt"
	"testing"
	"time"
)

func TestBuildAndLookup(t *testing.T) {
	t.Parallel()
	kvs := map[string]string{
		"/deis/platform/domain":             "Local.Deis.Example",
		"/deis/services/shop/shop_v2.web.1": "127.0.0.1:5001",
		"/deis/services/shop/shop_v2.web.2": "127.0.0.1:5002",
		"/deis/services/shop/shop_v2.web.3": "not-an-address",
		"/deis/services/blog/blog_v1.web.1": "[::1]:6000",
		"/deis/services/Bad/Bad_v1.web.1":   "127.0.0.1:1",
		"/deis/apps/empty/owner":            "alice",
		"/deis/domains/www.shop.com":        "shop",
		"/deis/domains/bad domain":          "shop",
		"/deis/config/shop/deis_whitelist":  "192.0.2.0/24,198.51.100.7:office",
		"/deis/controller/host":             "127.0.0.1",
		"/deis/controller/port":             "8000",
		"/deis/builder/host":                "127.0.0.1",
		"/deis/builder/port":                "2223",
		"/deis/router/bodySize":             "nonsense",
	}
	tab, errs := Build(kvs, 7, nil, NewPool())
	if len(errs) != 4 || tab.Invalid != 4 {
		t.Fatalf("want 4 invalid entries (bad address, bad app, bad domain, bad bodySize), got %v", errs)
	}
	shop := tab.Lookup("shop.local.deis.example")
	if shop == nil || len(shop.Backends) != 2 || shop.Backends[0].Addr != "127.0.0.1:5001" {
		t.Fatalf("shop = %+v", shop)
	}
	if tab.Lookup("www.shop.com") != shop {
		t.Fatal("custom domain does not route to shop")
	}
	if len(shop.Whitelist) != 2 {
		t.Fatalf("whitelist = %v", shop.Whitelist)
	}
	if a := tab.Lookup("empty.local.deis.example"); a == nil || len(a.Backends) != 0 {
		t.Fatalf("existing app without containers = %+v", a)
	}
	if c := tab.Lookup("deis.local.deis.example"); c == nil || !c.Controller || c.Backends[0].Addr != "127.0.0.1:8000" {
		t.Fatalf("controller = %+v", c)
	}
	for _, miss := range []string{"nope.local.deis.example", "shop.other.com", "a.shop.local.deis.example", "local.deis.example", "shop"} {
		if a := tab.Lookup(miss); a != nil {
			t.Errorf("Lookup(%q) = %s, want none", miss, a.Name)
		}
	}
	if tab.Builder == nil || tab.Builder.Addr != "127.0.0.1:2223" || tab.Builder.IdleTimeout != 1200*time.Second {
		t.Fatalf("builder = %+v", tab.Builder)
	}
	if tab.Settings.BodySize != 1<<20 {
		t.Fatalf("invalid bodySize did not fall back to the default: %d", tab.Settings.BodySize)
	}
}

func TestBackendStateSurvivesRebuild(t *testing.T) {
	t.Parallel()
	pool := NewPool()
	kvs := map[string]string{"/deis/services/a/a_v1.web.1": "127.0.0.1:1"}
	t1, _ := Build(kvs, 1, nil, pool)
	b := t1.Apps["a"].Backends[0]
	now := time.Now().UnixNano()
	for range EjectAfter {
		b.Failed(now)
	}
	t2, _ := Build(kvs, 2, t1, pool)
	if t2.Apps["a"].Backends[0] != b || t2.Apps["a"].Backends[0].Available(now) {
		t.Fatal("ejection state lost across rebuild")
	}
	if t2.Apps["a"].Stats != t1.Apps["a"].Stats {
		t.Fatal("app stats not carried over")
	}
	if !b.Available(now + int64(EjectFor) + 1) {
		t.Fatal("backend never comes back after the cool-down")
	}
}

func TestNoPlatformDomain(t *testing.T) {
	t.Parallel()
	tab, _ := Build(map[string]string{"/deis/services/a/a_v1.web.1": "127.0.0.1:1"}, 1, nil, NewPool())
	if tab.Lookup("a.anything.example") == nil || tab.Lookup("a") == nil {
		t.Fatal("without a platform domain the first label should name the app")
	}
}

func bigSnapshot(apps int) map[string]string {
	kvs := make(map[string]string, apps*3+1)
	kvs["/deis/platform/domain"] = "example.com"
	for i := range apps {
		for n := 1; n <= 3; n++ {
			kvs[fmt.Sprintf("/deis/services/app%d/app%d_v1.web.%d", i, i, n)] = fmt.Sprintf("10.%d.%d.%d:%d", i>>16&255, i>>8&255, i&255, 5000+n)
		}
	}
	return kvs
}

// TestBuildTenThousandApps is the scale target of issue 3: a table of
// 10,000 apps x 3 backends. Its speed is measured by BenchmarkBuild; here
// we only check correctness at that size.
func TestBuildTenThousandApps(t *testing.T) {
	t.Parallel()
	tab, errs := Build(bigSnapshot(10000), 1, nil, NewPool())
	if len(errs) != 0 || len(tab.Apps) != 10000 || tab.Backends() != 30000 {
		t.Fatalf("apps=%d backends=%d errs=%v", len(tab.Apps), tab.Backends(), errs)
	}
}

func BenchmarkBuild10kApps(b *testing.B) {
	kvs := bigSnapshot(10000)
	pool := NewPool()
	prev, _ := Build(kvs, 1, nil, pool)
	b.ReportAllocs()
	for b.Loop() {
		prev, _ = Build(kvs, 2, prev, pool)
	}
}

func BenchmarkLookup(b *testing.B) {
	tab, _ := Build(bigSnapshot(10000), 1, nil, NewPool())
	b.ReportAllocs()
	for b.Loop() {
		if tab.Lookup("app777.example.com") == nil {
			b.Fatal("miss")
		}
	}
}

func FuzzLookup(f *testing.F) {
	tab, _ := Build(map[string]string{
		"/deis/platform/domain":       "example.com",
		"/deis/services/a/a_v1.web.1": "127.0.0.1:1",
		"/deis/domains/www.a.com":     "a",
	}, 1, nil, NewPool())
	for _, s := range []string{"a.example.com", "www.a.com", ".example.com", "example.com", "a..example.com", ""} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, host string) {
		if a := tab.Lookup(host); a != nil && a.Name != "a" {
			t.Fatalf("Lookup(%q) = %s", host, a.Name)
		}
	})
}

func FuzzValidateAddr(f *testing.F) {
	for _, s := range []string{"127.0.0.1:80", "[::1]:1", "host.example:65535", ":80", "a:0", "a:b"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		if a, err := ValidateAddr(s); err == nil {
			if _, err := ValidateAddr(a); err != nil {
				t.Fatalf("normalised %q -> %q no longer valid: %v", s, a, err)
			}
		}
	})
}
