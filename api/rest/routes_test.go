package rest_test

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"

	"github.com/meshfed/meshfed/api"
	"github.com/meshfed/meshfed/api/rest"
)

// thing is an extra route's document.
type thing struct {
	Name string `json:"name"`
	N    int    `json:"count"`
}

func withRoutes(routes ...rest.Route) func(*rest.Config) {
	return func(c *rest.Config) { c.Routes = routes }
}

func TestExtraRoutes(t *testing.T) {
	items := []rest.ListItem{
		{Name: "alpha", Labels: map[string]string{"env": "prod"}, Revision: 3, Value: thing{"alpha", 1}},
		{Name: "beta", Labels: map[string]string{"env": "dev"}, Revision: 5, Value: thing{"beta", 2}},
		{Name: "gamma", Labels: map[string]string{"env": "prod"}, Revision: 7, Value: thing{"gamma", 3}},
	}
	e := newEnv(t, withRoutes(
		rest.Route{Pattern: "GET /things", Handler: func(w http.ResponseWriter, r *http.Request) error {
			return rest.WriteList(w, r, items)
		}},
		rest.Route{Pattern: "GET /zones/{name}/_thing", Handler: func(w http.ResponseWriter, r *http.Request) error {
			if r.PathValue("name") == "missing" {
				return fmt.Errorf("thing %q: %w", r.PathValue("name"), api.ErrNotFound)
			}
			return rest.WriteValue(w, r, http.StatusOK, thing{Name: r.PathValue("name")})
		}},
		rest.Route{Pattern: "GET /meshes/{name}/_thing", Public: true, Handler: func(w http.ResponseWriter, r *http.Request) error {
			return rest.WriteValue(w, r, http.StatusOK, thing{Name: "mesh " + r.PathValue("name")})
		}},
	))

	t.Run("list shape, paging and filters", func(t *testing.T) {
		r := e.do("GET", "/things?size=1&filter[labels.env]=prod", "")
		expectStatus(t, r, 200)
		var body struct {
			Total     int      `json:"total"`
			Items     []thing  `json:"items"`
			Next      *string  `json:"next"`
			Revisions []uint64 `json:"revisions"`
		}
		if err := json.Unmarshal(r.body, &body); err != nil {
			t.Fatal(err)
		}
		if body.Total != 2 || len(body.Items) != 1 || body.Items[0].Name != "alpha" || body.Revisions[0] != 3 ||
			body.Next == nil || !strings.Contains(*body.Next, "offset=1") {
			t.Fatalf("first page: %s", r.body)
		}
		r = e.do("GET", *body.Next, "")
		expectStatus(t, r, 200)
		body.Next = nil
		if err := json.Unmarshal(r.body, &body); err != nil || len(body.Items) != 1 || body.Items[0].Name != "gamma" || body.Next != nil {
			t.Fatalf("second page: %s", r.body)
		}
		r = e.do("GET", "/things?nameContains=et&offset=5", "")
		expectStatus(t, r, 200)
		if got := strings.TrimSpace(r.text()); got != `{"total":1,"items":[],"next":null,"revisions":[]}` {
			t.Errorf("a page past the end: %s", got)
		}
		expectStatus(t, e.do("GET", "/things?size=0", ""), 400)
	})
	t.Run("auth, errors, YAML", func(t *testing.T) {
		expectStatus(t, e.do("GET", "/things", "", "Authorization", noAuth), 401)
		expectStatus(t, e.do("GET", "/zones/z1/_thing", "", "Authorization", noAuth), 401)
		r := e.do("GET", "/meshes/default/_thing", "", "Authorization", noAuth) // public
		expectStatus(t, r, 200)
		r = e.do("GET", "/zones/missing/_thing", "")
		expectStatus(t, r, 404)
		if b := r.errorBody(t); !strings.Contains(b.Details, `thing "missing"`) {
			t.Errorf("404 body: %+v", b)
		}
		r = e.do("GET", "/zones/z1/_thing", "", "Accept", "application/yaml")
		expectStatus(t, r, 200)
		if r.header.Get("Content-Type") != "application/yaml" || r.text() != "name: z1\ncount: 0\n" {
			t.Errorf("YAML answer %q (%s)", r.text(), r.header.Get("Content-Type"))
		}
	})
	t.Run("resource routes still served", func(t *testing.T) {
		expectStatus(t, e.do("PUT", "/meshes/default", `{"type":"Mesh","name":"default"}`), 201)
		expectStatus(t, e.do("GET", "/meshes/default", ""), 200)
		expectStatus(t, e.do("GET", "/meshes/default/meshtimeouts", ""), 200)
		expectStatus(t, e.do("GET", "/zones/z1", ""), 404)
	})
}

func TestExtraRouteConflictsAreErrors(t *testing.T) {
	noop := func(http.ResponseWriter, *http.Request) error { return nil }
	cases := []rest.Route{
		{Pattern: "GET /{plural}/{name}/_status", Handler: noop}, // overlaps /meshes/{mesh}/{plural}
		{Pattern: "nonsense", Handler: noop},
		{Pattern: "GET /x"},
	}
	for _, rt := range cases {
		_, err := rest.NewHandler(rest.Config{Role: api.RoleGlobal, Store: newFakeStore(), Routes: []rest.Route{rt}})
		if err == nil {
			t.Errorf("route %q accepted", rt.Pattern)
		}
	}
	_, err := rest.NewHandler(rest.Config{Role: api.RoleGlobal, Store: newFakeStore(),
		Routes: []rest.Route{{Pattern: "GET /zones/{name}/_status", Handler: noop}}})
	if err != nil {
		t.Errorf("a more specific route refused: %v", err)
	}
}
