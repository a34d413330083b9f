package main

import (
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/meshfed/meshfed/api"
)

// TestInspectConfig: `meshctl inspect dataplane NAME --config` GETs the
// Dataplane's config dump (the same path on a zone and on global) and
// pretty-prints it; the API's 404 comes back with its message.
func TestInspectConfig(t *testing.T) {
	var paths []string
	mux := http.NewServeMux()
	mux.HandleFunc("GET /meshes/{mesh}/dataplanes/{name}/_config", func(w http.ResponseWriter, r *http.Request) {
		paths = append(paths, r.URL.Path)
		w.Header().Set("Content-Type", "application/json")
		if r.PathValue("name") != "zone-1.web-1" || r.Header.Get("Authorization") != "Bearer secret" {
			w.WriteHeader(http.StatusNotFound)
			_, _ = w.Write([]byte(`{"title":"Not found","details":"zone zone-1 (replica r1): dataplane \"nope\" in mesh \"prod\": not found"}`))
			return
		}
		_, _ = w.Write([]byte(`{"dataplane":"prod.web-1","resources":{"Listener":{"version":"1","items":[{"name":"inbound:10.0.0.1:8080"}]}}}`))
	})
	srv := httptest.NewServer(mux)
	defer srv.Close()

	stdout, _, err := runMeshctl(t, srv.URL, "", "inspect", "dataplane", "zone-1.web-1", "-m", "prod", "--config")
	if err != nil {
		t.Fatal(err)
	}
	want := `{
  "dataplane": "prod.web-1",
  "resources": {
    "Listener": {
      "version": "1",
      "items": [
        {
          "name": "inbound:10.0.0.1:8080"
        }
      ]
    }
  }
}
`
	if stdout != want {
		t.Errorf("stdout:\n%s\nwant:\n%s", stdout, want)
	}
	if len(paths) != 1 || paths[0] != "/meshes/prod/dataplanes/zone-1.web-1/_config" {
		t.Errorf("requests %v", paths)
	}

	_, _, err = runMeshctl(t, srv.URL, "", "inspect", "dataplane", "nope", "--mesh", "prod", "--config")
	if !errors.Is(err, api.ErrNotFound) || !strings.Contains(err.Error(), `dataplane "nope" in mesh "prod": not found`) || len(paths) != 2 {
		t.Errorf("a 404: %v (requests %v)", err, paths)
	}
	if _, _, err = runMeshctl(t, srv.URL, "", "inspect", "meshtrafficpermission", "x", "--config"); err == nil || !strings.Contains(err.Error(), "only a Dataplane") {
		t.Errorf("--config of a policy: %v", err)
	}
}
