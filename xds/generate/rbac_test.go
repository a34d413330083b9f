package generate

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"

	listener "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	rbac "github.com/envoyproxy/go-control-plane/envoy/config/rbac/v3"
	rbachttp "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/rbac/v3"
	hcm "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	rbacnet "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/rbac/v3"
	matcher "github.com/envoyproxy/go-control-plane/envoy/type/matcher/v3"

	"github.com/meshfed/meshfed/api"
)

// evalRBAC decides, as Envoy and grpc-go do, whether a peer authenticated
// with the URI SANs uris passes an RBAC (permissions are not looked at:
// generation only makes "any"). nil rules allow everything.
func evalRBAC(t *testing.T, r *rbac.RBAC, uris []string) bool {
	t.Helper()
	if r == nil {
		return true
	}
	matched := false
	for _, p := range r.GetPolicies() {
		for _, perm := range p.GetPermissions() {
			if !perm.GetAny() {
				t.Fatalf("unexpected permission %v", perm)
			}
		}
		if slices.ContainsFunc(p.GetPrincipals(), func(pr *rbac.Principal) bool { return evalPrincipal(t, pr, uris) }) {
			matched = true
		}
	}
	switch r.GetAction() {
	case rbac.RBAC_ALLOW:
		return matched
	case rbac.RBAC_DENY:
		return !matched
	default:
		t.Fatalf("unexpected action %v", r.GetAction())
		return false
	}
}

// evalPrincipal: an authenticated principal_name matches when one of the
// peer's URI SANs does (both proxies look at every URI SAN).
func evalPrincipal(t *testing.T, p *rbac.Principal, uris []string) bool {
	t.Helper()
	switch id := p.GetIdentifier().(type) {
	case *rbac.Principal_Any:
		return id.Any
	case *rbac.Principal_AndIds:
		for _, x := range id.AndIds.GetIds() {
			if !evalPrincipal(t, x, uris) {
				return false
			}
		}
		return true
	case *rbac.Principal_OrIds:
		for _, x := range id.OrIds.GetIds() {
			if evalPrincipal(t, x, uris) {
				return true
			}
		}
		return false
	case *rbac.Principal_NotId:
		return !evalPrincipal(t, id.NotId, uris)
	case *rbac.Principal_Authenticated_:
		m := id.Authenticated.GetPrincipalName()
		if m == nil {
			return true
		}
		return slices.ContainsFunc(uris, func(u string) bool { return evalString(t, m, u) })
	default:
		t.Fatalf("unexpected principal %T", id)
		return false
	}
}

func evalString(t *testing.T, m *matcher.StringMatcher, s string) bool {
	switch p := m.GetMatchPattern().(type) {
	case *matcher.StringMatcher_Exact:
		return s == p.Exact
	case *matcher.StringMatcher_Prefix:
		return strings.HasPrefix(s, p.Prefix)
	default:
		t.Fatalf("unexpected string matcher %T", p)
		return false
	}
}

// referenceDecision is the documented semantics, written independently of
// the generator: among the from[] entries of the policies that select the
// inbound, the one that matches the peer with the greatest precedence
// (source kind, then top-level kind, then policy name, then position)
// decides; none denies.
func referenceDecision(policies []*api.Resource, mesh, dp string, tags map[string]string, uris []string) bool {
	kinds := []api.TargetRefKind{api.TargetMesh, api.TargetMeshSubset, api.TargetMeshService, api.TargetMeshServiceSubset, api.TargetDataplane}
	rank := func(k api.TargetRefKind) int { return slices.Index(kinds, k) }
	has := func(u string) bool { return slices.Contains(uris, u) }
	hasTags := func(want, got map[string]string) bool {
		for k, v := range want {
			if got[k] != v {
				return false
			}
		}
		return true
	}
	type key struct {
		from, top int
		name      string
		index     int
	}
	greater := func(a, b key) bool {
		if a.from != b.from {
			return a.from > b.from
		}
		if a.top != b.top {
			return a.top > b.top
		}
		if a.name != b.name {
			return a.name > b.name
		}
		return a.index > b.index
	}
	var best *key
	allow := false
	for _, p := range policies {
		spec := p.Spec.(*api.MeshTrafficPermissionSpec)
		top := spec.TargetRef
		ok := false
		switch top.Kind {
		case api.TargetMesh:
			ok = true
		case api.TargetMeshSubset:
			ok = hasTags(top.Tags, tags)
		case api.TargetMeshService:
			ok = tags[api.TagService] == top.Name
		case api.TargetMeshServiceSubset:
			ok = tags[api.TagService] == top.Name && hasTags(top.Tags, tags)
		case api.TargetDataplane:
			ok = top.Name == dp && hasTags(top.Tags, tags)
		}
		if !ok {
			continue
		}
		for i, f := range spec.From {
			ref := f.TargetRef
			m := ref.Mesh
			if m == "" {
				m = mesh
			}
			match := true
			switch ref.Kind {
			case api.TargetMesh, api.TargetMeshSubset:
				match = slices.ContainsFunc(uris, func(u string) bool { return strings.HasPrefix(u, "spiffe://"+m+"/") })
			default:
				match = has("spiffe://" + m + "/" + ref.Name)
			}
			for k, v := range ref.Tags {
				if k == api.TagService {
					match = match && has("spiffe://"+m+"/"+v) // no kuma:// URI for the service
				} else {
					match = match && has("kuma://"+k+"/"+v)
				}
			}
			if !match {
				continue
			}
			k := key{rank(ref.Kind), rank(top.Kind), p.Name, i}
			if best == nil || greater(k, *best) {
				best = &k
				allow = f.Default.Action != api.ActionDeny
			}
		}
	}
	return allow
}

// inboundRBACOf returns the RBAC of a generated inbound listener's TLS
// filter chain (HTTP or network filter); nil when it has none.
func inboundRBACOf(t *testing.T, l *listener.Listener) *rbac.RBAC {
	t.Helper()
	for _, fc := range l.GetFilterChains() {
		if fc.GetTransportSocket() == nil {
			continue
		}
		for _, f := range fc.GetFilters() {
			m, err := f.GetTypedConfig().UnmarshalNew()
			if err != nil {
				t.Fatal(err)
			}
			switch c := m.(type) {
			case *rbacnet.RBAC:
				return c.GetRules()
			case *hcm.HttpConnectionManager:
				for _, hf := range c.GetHttpFilters() {
					hm, err := hf.GetTypedConfig().UnmarshalNew()
					if err != nil {
						t.Fatal(err)
					}
					if r, ok := hm.(*rbachttp.RBAC); ok {
						return r.GetRules()
					}
				}
			}
		}
	}
	return nil
}

// TestRBACSemantics evaluates the RBAC of backend-1's generated inbound
// (service backend, version v1, team pay) for given policies and peers.
func TestRBACSemantics(t *testing.T) {
	const (
		web   = "spiffe://s/web"
		admin = "spiffe://s/admin"
		v1    = "kuma://version/v1"
		v2    = "kuma://version/v2"
	)
	backendRef := &api.TargetRef{Kind: api.TargetMeshService, Name: "backend"}
	dpRef := refDataplane("backend-1")
	cases := []struct {
		name     string
		policies []*api.Resource
		peers    map[string]bool // URI SANs (comma-separated) → allowed
	}{
		{"no policy denies everyone", nil, map[string]bool{web: false, admin: false}},
		{"allow all", []*api.Resource{allowAll("s")}, map[string]bool{
			web: true, admin: true, "spiffe://t/web": false, "kuma://version/v1": false,
		}},
		{"a service denied under a Mesh-wide allow", []*api.Resource{
			allowAll("s"), mtp("s", "deny-web", nil, from(refService("web"), api.ActionDeny)),
		}, map[string]bool{web: false, admin: true, web + "," + admin: false}},
		{"the more specific source wins whatever the policies' order", []*api.Resource{
			mtp("s", "a-web", nil, from(refService("web"), api.ActionAllow)),
			mtp("s", "z-lockdown", backendRef, from(refMesh, api.ActionDeny)),
		}, map[string]bool{web: true, admin: false}},
		{"same source kind: the more specific top-level targetRef wins", []*api.Resource{
			mtp("s", "a", &dpRef, from(refService("web"), api.ActionDeny)),
			mtp("s", "z", backendRef, from(refService("web"), api.ActionAllow)),
		}, map[string]bool{web: false}},
		{"all equal: the greater policy name wins", []*api.Resource{
			mtp("s", "a", nil, from(refMesh, api.ActionDeny)),
			mtp("s", "b", nil, from(refMesh, api.ActionAllow)),
		}, map[string]bool{web: true}},
		{"same policy: the later from[] wins", []*api.Resource{
			mtp("s", "p", nil, from(refMesh, api.ActionAllow), from(refMesh, api.ActionDeny)),
		}, map[string]bool{web: false}},
		{"a policy for another service does not apply", []*api.Resource{
			mtp("s", "other", &api.TargetRef{Kind: api.TargetMeshService, Name: "web"}, from(refMesh, api.ActionAllow)),
		}, map[string]bool{web: false}},
		{"subset by tags", []*api.Resource{
			mtp("s", "v2-only", nil, from(refSubset(map[string]string{"version": "v2"}), api.ActionAllow)),
		}, map[string]bool{web: false, web + "," + v2: true, web + "," + v1: false, v2: false}},
		{"service subset over a subset deny", []*api.Resource{
			mtp("s", "p", nil,
				from(refServiceSubset("web", map[string]string{"version": "v1"}), api.ActionAllow),
				from(refSubset(map[string]string{"version": "v1"}), api.ActionDeny)),
		}, map[string]bool{web + "," + v1: true, admin + "," + v1: false, web: false}},
		{"a kuma.io/service tag is the SPIFFE ID", []*api.Resource{
			mtp("s", "p", nil, from(refSubset(map[string]string{api.TagService: "web", "version": "v1"}), api.ActionAllow)),
		}, map[string]bool{web + "," + v1: true, "kuma://kuma.io/service/web," + v1: false, admin + "," + v1: false}},
		{"AllowWithShadowDeny allows", []*api.Resource{
			mtp("s", "p", nil, from(refMesh, api.ActionAllowWithShadowDeny)),
		}, map[string]bool{web: true}},
		{"another mesh's identities when named", []*api.Resource{
			mtp("s", "p", nil, from(api.TargetRef{Kind: api.TargetMesh, Mesh: "t"}, api.ActionAllow)),
		}, map[string]bool{"spiffe://t/web": true, web: false}},
		{"top-level subset that does not select the inbound", []*api.Resource{
			mtp("s", "p", &api.TargetRef{Kind: api.TargetMeshSubset, Tags: map[string]string{"version": "v2"}}, from(refMesh, api.ActionAllow)),
		}, map[string]bool{web: false}},
		{"top-level subset that selects it", []*api.Resource{
			mtp("s", "p", &api.TargetRef{Kind: api.TargetMeshSubset, Tags: map[string]string{"team": "pay"}}, from(refMesh, api.ActionAllow)),
		}, map[string]bool{web: true}},
	}
	tags := backendS.Spec.(*api.DataplaneSpec).Networking.Inbound[0].Tags
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			m := mustCompile(t, meshSView(tc.policies...))
			res, err := m.ProxyWith(backendS, KindEnvoy, optsOf(backendS))
			if err != nil {
				t.Fatal(err)
			}
			rules := inboundRBACOf(t, res.Listeners[0])
			if rules == nil {
				t.Fatal("no RBAC on the inbound")
			}
			for peer, want := range tc.peers {
				uris := strings.Split(peer, ",")
				if got := evalRBAC(t, rules, uris); got != want {
					t.Errorf("peer %v: allowed = %v, want %v", uris, got, want)
				}
				if ref := referenceDecision(tc.policies, "s", "backend-1", tags, uris); ref != want {
					t.Errorf("peer %v: the reference says %v, the table %v", uris, ref, want)
				}
			}
		})
	}
}

// TestRBACRandom compares the generated RBAC with the reference semantics
// on random policy sets and peers.
func TestRBACRandom(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	tops := []*api.TargetRef{
		nil,
		{Kind: api.TargetMeshService, Name: "backend"},
		{Kind: api.TargetMeshService, Name: "web"},
		{Kind: api.TargetMeshSubset, Tags: map[string]string{"version": "v1"}},
		{Kind: api.TargetMeshServiceSubset, Name: "backend", Tags: map[string]string{"team": "pay"}},
		{Kind: api.TargetDataplane, Name: "backend-1"},
		{Kind: api.TargetDataplane, Name: "backend-2"},
	}
	froms := []api.TargetRef{
		refMesh,
		{Kind: api.TargetMesh, Mesh: "t"},
		refService("web"),
		refService("admin"),
		refSubset(map[string]string{"version": "v1"}),
		refSubset(map[string]string{"version": "v2", "team": "pay"}),
		refServiceSubset("web", map[string]string{"version": "v1"}),
		refServiceSubset("admin", map[string]string{"team": "pay"}),
		refSubset(map[string]string{api.TagService: "web"}),
	}
	actions := []string{api.ActionAllow, api.ActionDeny, api.ActionAllowWithShadowDeny}
	universe := []string{"spiffe://s/web", "spiffe://s/admin", "spiffe://t/web", "kuma://version/v1", "kuma://version/v2", "kuma://team/pay"}
	tags := backendS.Spec.(*api.DataplaneSpec).Networking.Inbound[0].Tags
	for iter := range 3000 {
		var policies []*api.Resource
		for i := range rng.IntN(5) {
			var fs []api.MeshTrafficPermissionFrom
			for range 1 + rng.IntN(3) {
				fs = append(fs, from(froms[rng.IntN(len(froms))], actions[rng.IntN(len(actions))]))
			}
			var top *api.TargetRef
			if x := tops[rng.IntN(len(tops))]; x != nil {
				c := *x
				top = &c
			}
			policies = append(policies, mtp("s", fmt.Sprintf("p%d", rng.IntN(3)*10+i), top, fs...))
		}
		rules, probs, err := compilePermissions("s", policies)
		if err != nil || len(probs) > 0 {
			t.Fatal(err, probs)
		}
		r := inboundRBAC(rules, "backend-1", tags)
		if err := r.ValidateAll(); err != nil {
			t.Fatal(err)
		}
		for range 8 {
			var uris []string
			for _, u := range universe {
				if rng.IntN(3) == 0 {
					uris = append(uris, u)
				}
			}
			got := evalRBAC(t, r, uris)
			want := referenceDecision(policies, "s", "backend-1", tags, uris)
			if got != want {
				var desc []string
				for _, p := range policies {
					desc = append(desc, fmt.Sprintf("%s %+v", p.Name, p.Spec))
				}
				t.Fatalf("iteration %d, peer %v: RBAC allows = %v, reference %v\npolicies:\n%s", iter, uris, got, want, strings.Join(desc, "\n"))
			}
		}
	}
}
