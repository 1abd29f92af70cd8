package controller_test

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"

	"github.com/deis/dataplane/pkg/keys"
	"github.com/deis/dataplane/pkg/testenv/testcert"
)

// TestValidationRules: every rule of DEIS-V1-API.md "Permissions and
// validation" refuses bad input with a 400 naming the field (or the cause),
// and bad bodies never break state.
func TestValidationRules(t *testing.T) {
	t.Parallel()
	v := start(t)
	alice := v.user("alice")
	v.do(alice, "POST", "/v1/apps/", map[string]string{"id": "valid"})
	v.build("valid")
	v.do(alice, "POST", "/v1/apps/", map[string]string{"id": "other"})
	v.do(alice, "POST", "/v1/apps/other/domains/", map[string]string{"domain": "taken.example.org"})
	ca := testcert.NewCA(t)
	wildCert, wildKey := ca.Issue(t, "*.example.org")
	okCert, _ := ca.Issue(t, "ok.example.org")
	_, otherKey := ca.Issue(t, "ok.example.org")
	for _, tc := range []struct {
		name, path string
		body       any
		status     int
		field      string // in the answer
	}{
		{"app id uppercase", "/v1/apps/", map[string]string{"id": "MyApp"}, 400, "id"},
		{"app id underscore", "/v1/apps/", map[string]string{"id": "my_app"}, 400, "id"},
		{"app id too long", "/v1/apps/", map[string]string{"id": strings.Repeat("a", 64)}, 400, "id"},
		{"app id trailing dash", "/v1/apps/", map[string]string{"id": "app-"}, 400, "id"},
		{"app id reserved", "/v1/apps/", map[string]string{"id": "deis"}, 400, "id"},
		{"app id taken", "/v1/apps/", map[string]string{"id": "valid"}, 400, "id"},
		{"config key with a dash", "/v1/apps/valid/config/", map[string]any{"values": map[string]string{"A-B": "1"}}, 400, "values"},
		{"config key with a digit first", "/v1/apps/valid/config/", map[string]any{"values": map[string]string{"1A": "1"}}, 400, "values"},
		{"memory without a unit", "/v1/apps/valid/config/", map[string]any{"memory": map[string]string{"web": "lots"}}, 400, "memory"},
		{"cpu over 1024", "/v1/apps/valid/config/", map[string]any{"cpu": map[string]int{"web": 2048}}, 400, "cpu"},
		{"cpu not a number", "/v1/apps/valid/config/", map[string]any{"cpu": map[string]string{"web": "x"}}, 400, "JSON parse error"},
		{"tag key with digits", "/v1/apps/valid/config/", map[string]any{"tags": map[string]string{"rack1": "a"}}, 400, "tags"},
		{"tag value with a dash", "/v1/apps/valid/config/", map[string]any{"tags": map[string]string{"rack": "a-b"}}, 400, "tags"},
		{"domain wildcard", "/v1/apps/valid/domains/", map[string]string{"domain": "*.example.org"}, 400, "domain"},
		{"domain double dash", "/v1/apps/valid/domains/", map[string]string{"domain": "a--b.example.org"}, 400, "domain"},
		{"domain all digits", "/v1/apps/valid/domains/", map[string]string{"domain": "1234"}, 400, "domain"},
		{"domain too long", "/v1/apps/valid/domains/", map[string]string{"domain": strings.Repeat("a.", 130) + "org"}, 400, "domain"},
		{"domain of another app", "/v1/apps/valid/domains/", map[string]string{"domain": "taken.example.org."}, 400, "domain"},
		{"domain under the platform's", "/v1/apps/valid/domains/", map[string]string{"domain": "x.example.test"}, 400, "domain"},
		{"cert wildcard", "/v1/certs/", map[string]string{"certificate": wildCert, "key": wildKey}, 400, "common_name"},
		{"cert and key do not match", "/v1/certs/", map[string]string{"certificate": okCert, "key": otherKey}, 400, "certificate"},
		{"cert not PEM", "/v1/certs/", map[string]string{"certificate": "hello", "key": "world"}, 400, "certificate"},
		{"cert for another name", "/v1/certs/", map[string]string{"certificate": okCert, "key": otherKey, "common_name": "evil.example.org"}, 400, "certificate"},
		{"key not OpenSSH", "/v1/keys/", map[string]string{"id": "x", "public": "ssh-rsa notbase64!"}, 400, "public"},
		{"scale negative", "/v1/apps/valid/scale/", map[string]int{"web": -1}, 400, "web"},
		{"scale unknown type", "/v1/apps/valid/scale/", map[string]int{"db": 1}, 400, "does not exist"},
		{"scale not a number", "/v1/apps/valid/scale/", map[string]string{"web": "many"}, 400, "JSON parse error"},
		{"scale over the app's total", "/v1/apps/valid/scale/", map[string]int{"web": 600, "worker": 600}, 400, "at most 1000 processes"},
		{"build without a tag", "/v1/apps/valid/builds/", map[string]string{"image": "example/app"}, 400, "image"},
		{"run without a command", "/v1/apps/valid/run/", map[string]string{"command": " "}, 400, "command"},
		{"register without a password", "/v1/auth/register/", map[string]string{"username": "z"}, 400, "password"},
		{"register a bad username", "/v1/auth/register/", map[string]string{"username": "a b", "password": "x"}, 400, "username"},
		{"malformed JSON", "/v1/apps/valid/config/", json.RawMessage(`{"values": {`), 400, "JSON parse error"},
	} {
		a := v.do(alice, "POST", tc.path, tc.body)
		if a.status != tc.status || !strings.Contains(string(a.body), tc.field) {
			t.Errorf("%s: %d %s, want %d naming %q", tc.name, a.status, a.body, tc.status, tc.field)
		}
	}
	// Runs: at most scheduler.MaxRunsPerApp at once per app (10 placed
	// by hand here, as ten long commands would be).
	for i := 1; i <= 10; i++ {
		v.e.Put(keys.RunUnit("valid", fmt.Sprintf("valid_v2.run.%d", i)), `{"app":"valid","version":2,"type":"run","num":1,"image":"x","host":"nowhere"}`)
	}
	if a := v.do(alice, "POST", "/v1/apps/valid/run/", map[string]string{"command": "true"}); a.status != 409 || !strings.Contains(string(a.body), "at most 10 at once") {
		t.Errorf("an 11th run: %d %s, want 409 naming the limit", a.status, a.body)
	}
	// A huge body: 413, and nothing changed.
	huge := map[string]any{"values": map[string]string{"BIG": strings.Repeat("x", 2<<20)}}
	if a := v.do(alice, "POST", "/v1/apps/valid/config/", huge); a.status != 413 {
		t.Errorf("a 2 MiB body: %d, want 413", a.status)
	}
	// Unknown fields are ignored, as v1's serializers did.
	if a := v.do(alice, "POST", "/v1/apps/valid/config/", map[string]any{"values": map[string]string{"OK": "1"}, "bogus": true}); a.status != 201 {
		t.Errorf("an unknown field: %d %s", a.status, a.body)
	}
	a := v.do(alice, "GET", "/v1/apps/valid/releases/", nil)
	var list struct{ Count int }
	_ = json.Unmarshal(a.body, &list)
	if list.Count != 3 { // v1 create, v2 build, v3 the one good config change
		t.Errorf("%d releases after the refusals, want 3: a refused call must change nothing", list.Count)
	}
}
