package rest

import (
	"net/http"
	"sort"

	"github.com/meshfed/meshfed/api"
)

// The insight routes, the same on global and zones (computed on read from
// the store):
//
//	GET /meshes/{mesh}/dataplanes+insights         DataplaneOverview list (paged, filters)
//	GET /meshes/{mesh}/dataplanes+insights/{name}  one DataplaneOverview
//	GET /mesh-insights                             MeshInsight list, one per Mesh
//	GET /mesh-insights/{name}                      one MeshInsight

func (s *server) handleInsights() {
	s.handle("GET /meshes/{mesh}/dataplanes+insights", authedRoute, s.dataplaneOverviews)
	s.handle("GET /meshes/{mesh}/dataplanes+insights/{name}", authedRoute, s.dataplaneOverview)
	s.handle("GET /mesh-insights", authedRoute, s.meshInsights)
	s.handle("GET /mesh-insights/{name}", authedRoute, s.meshInsight)
}

// overview joins a Dataplane with its insight.
func (s *server) overview(r *http.Request, dp *api.Resource) api.DataplaneOverview {
	o := api.DataplaneOverview{Type: api.TypeDataplaneOverview, Mesh: dp.Mesh, Name: dp.Name,
		CreationTime: dp.CreationTime, ModificationTime: dp.ModificationTime, Labels: dp.Labels}
	o.Dataplane, _ = dp.Spec.(*api.DataplaneSpec)
	if ins, err := s.cfg.Store.Get(r.Context(), api.Key{Type: api.TypeDataplaneInsight, Mesh: dp.Mesh, Name: dp.Name}, ReadOptions{}); err == nil {
		o.DataplaneInsight, _ = ins.Spec.(*api.DataplaneInsightSpec)
		o.Online = o.DataplaneInsight != nil && o.DataplaneInsight.Online()
	}
	return o
}

func (s *server) dataplaneOverviews(w http.ResponseWriter, r *http.Request) error {
	dps, err := s.cfg.Store.List(r.Context(), api.TypeDataplane, r.PathValue("mesh"), ReadOptions{})
	if err != nil {
		return err
	}
	items := make([]ListItem, 0, len(dps))
	for _, dp := range dps {
		items = append(items, ListItem{Name: dp.Name, Labels: dp.Labels, Revision: dp.Revision, Value: s.overview(r, dp)})
	}
	return WriteList(w, r, items)
}

func (s *server) dataplaneOverview(w http.ResponseWriter, r *http.Request) error {
	dp, err := s.cfg.Store.Get(r.Context(), api.Key{Type: api.TypeDataplane, Mesh: r.PathValue("mesh"), Name: r.PathValue("name")}, ReadOptions{})
	if err != nil {
		return err
	}
	return WriteValue(w, r, http.StatusOK, s.overview(r, dp))
}

// meshInsightOf counts one Mesh.
func (s *server) meshInsightOf(r *http.Request, mesh *api.Resource) (api.MeshInsight, error) {
	mi := api.MeshInsight{Type: api.TypeMeshInsight, Name: mesh.Name, Policies: map[string]api.MeshInsightPolicy{}}
	if b := mesh.Spec.(*api.MeshSpec).MTLSBackend(); b != nil {
		mi.MTLS = api.MeshInsightMTLS{EnabledBackend: b.Name, Type: b.Type}
	}
	for _, d := range api.Types() {
		if d.Scope != api.ScopeMesh || d.System {
			continue
		}
		items, err := s.cfg.Store.List(r.Context(), d.Name, mesh.Name, ReadOptions{})
		if err != nil {
			return mi, err
		}
		if d.Name != api.TypeDataplane {
			if len(items) > 0 {
				mi.Policies[d.Name] = api.MeshInsightPolicy{Total: len(items)}
			}
			continue
		}
		for _, dp := range items {
			mi.Dataplanes.Total++
			if s.overview(r, dp).Online {
				mi.Dataplanes.Online++
			} else {
				mi.Dataplanes.Offline++
			}
		}
	}
	return mi, nil
}

func (s *server) meshInsights(w http.ResponseWriter, r *http.Request) error {
	meshes, err := s.cfg.Store.List(r.Context(), api.TypeMesh, "", ReadOptions{})
	if err != nil {
		return err
	}
	sort.Slice(meshes, func(i, j int) bool { return meshes[i].Name < meshes[j].Name })
	items := make([]ListItem, 0, len(meshes))
	for _, m := range meshes {
		mi, err := s.meshInsightOf(r, m)
		if err != nil {
			return err
		}
		items = append(items, ListItem{Name: m.Name, Labels: m.Labels, Revision: m.Revision, Value: mi})
	}
	return WriteList(w, r, items)
}

func (s *server) meshInsight(w http.ResponseWriter, r *http.Request) error {
	m, err := s.cfg.Store.Get(r.Context(), api.Key{Type: api.TypeMesh, Name: r.PathValue("name")}, ReadOptions{})
	if err != nil {
		return err
	}
	mi, err := s.meshInsightOf(r, m)
	if err != nil {
		return err
	}
	return WriteValue(w, r, http.StatusOK, mi)
}
