package controller_test

import (
	"strings"
	"testing"
)

// TestPermissionMatrix: anonymous, a stranger, a collaborator, the owner
// and an admin against every kind of endpoint; each answer is checked
// (DEIS-V1-API.md "Permissions": collaborators do everything but destroy,
// transfer and sharing; strangers nothing on the app; admins everything).
func TestPermissionMatrix(t *testing.T) {
	t.Parallel()
	v := start(t)
	tokens := map[string]string{"anonymous": ""}
	tokens["admin"] = v.user("root") // first user: admin
	tokens["owner"] = v.user("alice")
	tokens["collaborator"] = v.user("bob")
	tokens["stranger"] = v.user("carol")
	v.user("dave")
	roles := []string{"anonymous", "stranger", "collaborator", "owner", "admin"}
	// want[role] per row; "-" skips.
	type row struct {
		name, method, path string
		body               any
		want               map[string]int
	}
	app := func(role string) string { return "perm-" + role }
	rows := func(role string) []row {
		a := "/v1/apps/" + app(role)
		all := func(anon, stranger, collab, owner, admin int) map[string]int {
			return map[string]int{"anonymous": anon, "stranger": stranger, "collaborator": collab, "owner": owner, "admin": admin}
		}
		use := all(401, 403, 200, 200, 200)
		return []row{
			{"app info", "GET", a + "/", nil, use},
			{"config", "GET", a + "/config/", nil, use},
			{"config set", "POST", a + "/config/", map[string]any{"values": map[string]string{"ROLE": role}}, all(401, 403, 201, 201, 201)},
			{"releases", "GET", a + "/releases/", nil, use},
			{"release v1", "GET", a + "/releases/v1/", nil, use},
			{"builds", "GET", a + "/builds/", nil, use},
			{"ps", "GET", a + "/containers/", nil, use},
			{"scale", "POST", a + "/scale/", map[string]int{"web": 1}, all(401, 403, 204, 204, 204)},
			{"domains", "GET", a + "/domains/", nil, use},
			{"domain add", "POST", a + "/domains/", map[string]string{"domain": role + ".example.org"}, all(401, 403, 201, 201, 201)},
			{"perms", "GET", a + "/perms/", nil, use},
			{"perms add", "POST", a + "/perms/", map[string]string{"username": "dave"}, all(401, 403, 403, 201, 201)},
			{"perms remove other", "DELETE", a + "/perms/dave", nil, all(401, 403, 403, 204, 204)},
			{"run", "POST", a + "/run/", map[string]string{"command": "true"}, use},
			{"rollback", "POST", a + "/releases/rollback/", map[string]int{"version": 2}, all(401, 403, 201, 201, 201)},
			{"transfer", "POST", a + "/", map[string]string{"owner": "alice"}, all(401, 403, 403, 200, 200)},
			{"users", "GET", "/v1/users/", nil, all(401, 403, 403, 403, 200)},
			{"admin perms", "GET", "/v1/admin/perms/", nil, all(401, 403, 403, 403, 200)},
			{"admin grant", "POST", "/v1/admin/perms/", map[string]string{"username": "dave"}, all(401, 403, 403, 403, 201)},
			// Lists of one's own: any user (a stranger's apps list is empty).
			{"certs", "GET", "/v1/certs/", nil, all(401, 200, 200, 200, 200)},
			{"keys", "GET", "/v1/keys/", nil, all(401, 200, 200, 200, 200)},
			{"apps", "GET", "/v1/apps/", nil, all(401, 200, 200, 200, 200)},
			{"destroy", "DELETE", a + "/", nil, all(401, 403, 403, 204, 204)},
		}
	}
	for _, role := range roles {
		name := app(role)
		if a := v.do(tokens["owner"], "POST", "/v1/apps/", map[string]string{"id": name}); a.status != 201 {
			t.Fatalf("create %s: %d %s", name, a.status, a.body)
		}
		v.build(name)
		if a := v.do(tokens["owner"], "POST", "/v1/apps/"+name+"/perms/", map[string]string{"username": "bob"}); a.status != 201 {
			t.Fatalf("share %s: %d %s", name, a.status, a.body)
		}
		for _, r := range rows(role) {
			want := r.want[role]
			a := v.do(tokens[role], r.method, r.path, r.body)
			if a.status != want {
				t.Errorf("%-12s %-18s %s %s = %d, want %d (%s)", role, r.name, r.method, r.path, a.status, want, strings.TrimSpace(string(a.body)))
			}
		}
	}
	if a := v.do(tokens["stranger"], "GET", "/v1/apps/", nil); !strings.Contains(string(a.body), `"count":0`) {
		t.Errorf("a stranger sees apps: %s", a.body)
	}
	// A collaborator may remove himself.
	if a := v.do(tokens["owner"], "POST", "/v1/apps/", map[string]string{"id": "selfremove"}); a.status != 201 {
		t.Fatal(a.status)
	}
	v.do(tokens["owner"], "POST", "/v1/apps/selfremove/perms/", map[string]string{"username": "bob"})
	if a := v.do(tokens["collaborator"], "DELETE", "/v1/apps/selfremove/perms/bob", nil); a.status != 204 {
		t.Errorf("a collaborator removing himself: %d %s", a.status, a.body)
	}
	if a := v.do(tokens["collaborator"], "GET", "/v1/apps/selfremove/", nil); a.status != 403 {
		t.Errorf("after leaving: %d, want 403", a.status)
	}
}
