package generate

import (
	"cmp"
	"fmt"
	"slices"
	"strconv"
	"strings"

	listener "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	rbac "github.com/envoyproxy/go-control-plane/envoy/config/rbac/v3"
	rbachttp "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/rbac/v3"
	hcm "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	rbacnet "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/rbac/v3"
	"github.com/envoyproxy/go-control-plane/pkg/wellknown"

	"github.com/meshfed/meshfed/api"
)

// MeshTrafficPermission → RBAC (see the package doc, "Traffic
// permissions").

// atom is one condition on a peer's certificate: one of its URI SANs is
// value (exact) or starts with value (prefix).
type atom struct {
	prefix bool
	value  string
}

// implies reports whether a peer satisfying a satisfies b.
func (a atom) implies(b atom) bool {
	if b.prefix {
		return strings.HasPrefix(a.value, b.value)
	}
	return !a.prefix && a.value == b.value
}

// selector is a conjunction of atoms: the peers a from[] entry selects.
type selector []atom

// implies reports whether every peer s selects is selected by o too (a
// syntactic, sound check: each atom of o is implied by an atom of s).
func (s selector) implies(o selector) bool {
	for _, b := range o {
		if !slices.ContainsFunc(s, func(a atom) bool { return a.implies(b) }) {
			return false
		}
	}
	return true
}

// mtpRule is one from[] entry of a MeshTrafficPermission.
type mtpRule struct {
	policy   string        // the policy's name
	index    int           // in from[]
	top      api.TargetRef // the policy's top-level targetRef
	topRank  int           // specificity of top: Mesh 0 … Dataplane 4
	fromRank int           // specificity of the source: Mesh 0 … MeshServiceSubset 3
	sel      selector
	allow    bool // Allow and AllowWithShadowDeny; false: Deny
}

// name is the rule's policy name in the RBAC.
func (r *mtpRule) name() string { return r.policy + ".from[" + strconv.Itoa(r.index) + "]" }

// compare orders rules by precedence, weakest first: the source's
// specificity, then the top-level targetRef's, then the policy name, then
// the position in from[]. The greatest rule that matches a peer decides.
func (r *mtpRule) compare(o *mtpRule) int {
	return cmp.Or(cmp.Compare(r.fromRank, o.fromRank), cmp.Compare(r.topRank, o.topRank),
		strings.Compare(r.policy, o.policy), cmp.Compare(r.index, o.index))
}

// key is a canonical text of the rule, to tell whether the rules changed.
func (r *mtpRule) key() string {
	return fmt.Sprintf("%s|%d|%v|%q|%v|%v|%d|%d|%v;", r.policy, r.index, r.top.Kind, r.top.Name, sortedPairs(r.top.Tags), r.sel, r.topRank, r.fromRank, r.allow)
}

func sortedPairs(m map[string]string) []string {
	out := make([]string, 0, len(m))
	for _, k := range sortedKeys(m) {
		out = append(out, k+"="+m[k])
	}
	return out
}

var topRanks = map[api.TargetRefKind]int{
	api.TargetMesh: 0, api.TargetMeshSubset: 1, api.TargetMeshService: 2, api.TargetMeshServiceSubset: 3, api.TargetDataplane: 4,
}

var fromRanks = map[api.TargetRefKind]int{
	api.TargetMesh: 0, api.TargetMeshSubset: 1, api.TargetMeshService: 2, api.TargetMeshServiceSubset: 3,
}

// compilePermissions turns a Mesh's MeshTrafficPermissions into rules,
// weakest first. An invalid policy is skipped and reported; a policy of
// another Mesh is an error.
func compilePermissions(mesh string, policies []*api.Resource) ([]*mtpRule, []error, error) {
	var rules []*mtpRule
	var probs []error
	for _, p := range policies {
		if p == nil {
			continue
		}
		if p.Mesh != mesh {
			return nil, nil, fmt.Errorf("compile: Mesh %q: MeshTrafficPermission %s/%s belongs to another mesh", mesh, p.Mesh, p.Name)
		}
		spec, ok := p.Spec.(*api.MeshTrafficPermissionSpec)
		if !ok || spec == nil {
			probs = append(probs, fmt.Errorf("MeshTrafficPermission %s/%s: spec is %T, not *api.MeshTrafficPermissionSpec: skipped", p.Mesh, p.Name, p.Spec))
			continue
		}
		v := &api.Validator{}
		spec.Validate(v, "spec")
		if err := v.Err(); err != nil {
			probs = append(probs, fmt.Errorf("MeshTrafficPermission %s/%s: skipped: %w", p.Mesh, p.Name, err))
			continue
		}
		top := api.TargetRef{Kind: api.TargetMesh}
		if spec.TargetRef != nil {
			top = *spec.TargetRef
		}
		for i, f := range spec.From {
			ref := f.TargetRef
			m := ref.Mesh
			if m == "" {
				m = mesh
			}
			var sel selector
			switch ref.Kind {
			case api.TargetMesh, api.TargetMeshSubset:
				sel = selector{{prefix: true, value: SPIFFEID(m, "")}}
			default: // MeshService, MeshServiceSubset
				sel = selector{{value: SPIFFEID(m, ref.Name)}}
			}
			for _, k := range sortedKeys(ref.Tags) {
				a := atom{value: KumaTagURI(k, ref.Tags[k])}
				if k == api.TagService {
					// Certificates say the service in the SPIFFE ID only.
					a = atom{value: SPIFFEID(m, ref.Tags[k])}
				}
				if !slices.Contains(sel, a) {
					sel = append(sel, a)
				}
			}
			rules = append(rules, &mtpRule{
				policy:   p.Name,
				index:    i,
				top:      top,
				topRank:  topRanks[top.Kind],
				fromRank: fromRanks[ref.Kind],
				sel:      sel,
				allow:    f.Default.Action != api.ActionDeny,
			})
		}
	}
	slices.SortFunc(rules, (*mtpRule).compare)
	return rules, probs, nil
}

// selects reports whether a top-level targetRef selects the inbound
// (tagged tags) of the Dataplane named dp.
func selects(ref api.TargetRef, dp string, tags map[string]string) bool {
	hasTags := func() bool {
		for k, v := range ref.Tags {
			if tags[k] != v {
				return false
			}
		}
		return true
	}
	switch ref.Kind {
	case api.TargetMesh:
		return true
	case api.TargetMeshSubset:
		return hasTags()
	case api.TargetMeshService:
		return tags[api.TagService] == ref.Name
	case api.TargetMeshServiceSubset:
		return tags[api.TagService] == ref.Name && hasTags()
	case api.TargetDataplane:
		return ref.Name == dp && hasTags()
	default:
		return false
	}
}

// inboundRBAC is the RBAC of the inbound tagged tags of the Dataplane
// named dp: an ALLOW RBAC with one policy per Allow rule r that applies to
// the inbound, whose principal is
//
//	sel(r) AND NOT (sel(d1) OR sel(d2) …)
//
// over the Deny rules d that apply and take precedence over r (compare).
// A peer is thus allowed exactly when the rule of greatest precedence that
// matches it is an Allow; no matching rule, or no rule at all, denies.
// Simplifications that keep this meaning: an Allow rule that a stronger
// Deny covers entirely is left out, a deny's conditions that r implies are
// dropped, and a deny narrower than another of the list is dropped.
func inboundRBAC(rules []*mtpRule, dp string, tags map[string]string) *rbac.RBAC {
	var apply []*mtpRule
	for _, r := range rules {
		if selects(r.top, dp, tags) {
			apply = append(apply, r)
		}
	}
	out := &rbac.RBAC{Action: rbac.RBAC_ALLOW, Policies: map[string]*rbac.Policy{}}
rules:
	for i, r := range apply {
		if !r.allow {
			continue
		}
		var denies []selector
		for _, d := range apply[i+1:] {
			if d.allow {
				continue
			}
			// Within r, d's atoms that r implies hold anyway: drop them
			// (r AND NOT (a AND b) is r AND NOT b when r implies a).
			var rest selector
			for _, a := range d.sel {
				if !r.sel.implies(selector{a}) {
					rest = append(rest, a)
				}
			}
			if len(rest) == 0 {
				continue rules // nobody r selects escapes d
			}
			// Keep the broadest denies only.
			if slices.ContainsFunc(denies, func(x selector) bool { return rest.implies(x) }) {
				continue
			}
			denies = slices.DeleteFunc(denies, func(x selector) bool { return x.implies(rest) })
			denies = append(denies, rest)
		}
		ids := atomPrincipals(r.sel)
		if len(denies) > 0 {
			not := make([]*rbac.Principal, len(denies))
			for j, d := range denies {
				not[j] = andIDs(atomPrincipals(d)...)
			}
			ids = append(ids, &rbac.Principal{Identifier: &rbac.Principal_NotId{NotId: orIDs(not...)}})
		}
		out.Policies[r.name()] = &rbac.Policy{
			Permissions: []*rbac.Permission{{Rule: &rbac.Permission_Any{Any: true}}},
			Principals:  []*rbac.Principal{andIDs(ids...)},
		}
	}
	return out
}

// atomPrincipals are the principals of a selector's atoms (to be ANDed):
// each matches an authenticated peer with a URI SAN equal to, or starting
// with, the atom's value.
func atomPrincipals(s selector) []*rbac.Principal {
	ps := make([]*rbac.Principal, len(s))
	for i, a := range s {
		m := exact(a.value)
		if a.prefix {
			m = prefix(a.value)
		}
		ps[i] = &rbac.Principal{Identifier: &rbac.Principal_Authenticated_{
			Authenticated: &rbac.Principal_Authenticated{PrincipalName: m},
		}}
	}
	return ps
}

func andIDs(ps ...*rbac.Principal) *rbac.Principal {
	if len(ps) == 1 {
		return ps[0]
	}
	return &rbac.Principal{Identifier: &rbac.Principal_AndIds{AndIds: &rbac.Principal_Set{Ids: ps}}}
}

func orIDs(ps ...*rbac.Principal) *rbac.Principal {
	if len(ps) == 1 {
		return ps[0]
	}
	return &rbac.Principal{Identifier: &rbac.Principal_OrIds{OrIds: &rbac.Principal_Set{Ids: ps}}}
}

// rbacHTTPFilter is the HCM's RBAC filter (before the router).
func rbacHTTPFilter(rules *rbac.RBAC) (*hcm.HttpFilter, error) {
	a, err := marshalAny(&rbachttp.RBAC{Rules: rules})
	if err != nil {
		return nil, err
	}
	return &hcm.HttpFilter{Name: wellknown.HTTPRoleBasedAccessControl, ConfigType: &hcm.HttpFilter_TypedConfig{TypedConfig: a}}, nil
}

// rbacNetworkFilter is a TCP inbound's RBAC network filter (before
// tcp_proxy).
func rbacNetworkFilter(statPrefix string, rules *rbac.RBAC) (*listener.Filter, error) {
	a, err := marshalAny(&rbacnet.RBAC{Rules: rules, StatPrefix: statPrefix})
	if err != nil {
		return nil, err
	}
	return networkFilter(wellknown.RoleBasedAccessControl, a), nil
}
