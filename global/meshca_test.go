package global_test

import (
	"context"
	"encoding/base64"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/meshfed/meshfed/api"
	"github.com/meshfed/meshfed/ca"
	"github.com/meshfed/meshfed/global/clustertest"
	"github.com/meshfed/meshfed/global/syncserver"
	"github.com/meshfed/meshfed/sync/syncpb"
)

const builtinMesh = `type: Mesh
name: secure
mtls:
  enabledBackend: ca-1
  backends:
  - name: ca-1
    type: builtin
  - name: ca-2
    type: builtin
`

func secretDoc(mesh, name string, data []byte, labels string) []byte {
	return fmt.Appendf(nil, "type: Secret\nmesh: %s\nname: %s\n%sdata: %s\n", mesh, name, labels, base64.StdEncoding.EncodeToString(data))
}

// TestMeshCA: a builtin backend gets its root once, its key never reaches a
// zone and is never printed; zones get intermediates signed; the Kuma rules
// on switching backends hold; provided CAs are checked.
func TestMeshCA(t *testing.T) {
	c := clustertest.Start(t, 1, clustertest.Options{})
	n := c.Nodes()[0]
	st := n.Store().State()
	put := func(path string, body []byte) rawResponse {
		return do(t, c, n, http.MethodPut, n.URL()+path, body)
	}
	if r := put("/meshes/secure", []byte(builtinMesh)); r.Status != http.StatusCreated {
		t.Fatalf("create a Mesh with builtin mTLS: %d %s", r.Status, r.Body)
	}
	certName, keyName := "secure.ca-builtin-cert-ca-1", "secure.ca-builtin-key-ca-1"
	cert, ok := st.Get(api.Key{Type: api.TypeSecret, Mesh: "secure", Name: certName})
	key, ok2 := st.Get(api.Key{Type: api.TypeSecret, Mesh: "secure", Name: keyName})
	if !ok || !ok2 || key.Labels[api.LabelCAKey] != "true" {
		t.Fatalf("root Secrets: %v %v", cert, key)
	}
	// Written again: the same root.
	if r := put("/meshes/secure", []byte(builtinMesh+"logging: {}\n")); r.Status != http.StatusOK {
		t.Fatalf("update: %d %s", r.Status, r.Body)
	}
	if again, _ := st.Get(cert.Key()); again.Revision != cert.Revision {
		t.Error("the root was created again")
	}
	// The key never reaches a zone; the certificate does.
	filter := syncserver.DefaultFilter("zone-1")
	if filter(key.Key(), key) || !filter(cert.Key(), cert) {
		t.Error("the sync filter must drop the root key and send the certificate")
	}
	// Never printed.
	if r := do(t, c, n, http.MethodGet, n.URL()+"/meshes/secure/secrets/"+keyName, nil); strings.Contains(string(r.Body), "PRIVATE") || strings.Contains(string(r.Body), `"data":"`) {
		t.Errorf("the API printed the root key: %s", r.Body)
	}

	// A zone's intermediate: signed for the zone the stream authenticated.
	csr, zoneKey, err := ca.NewIntermediateRequest("secure", "zone-1", ca.KeyOptions{})
	if err != nil {
		t.Fatal(err)
	}
	resp := n.Server().SignIntermediate(context.Background(), "zone-1", &syncpb.CertificateRequest{Mesh: "secure", Backend: "ca-1", CsrPem: csr})
	if resp.GetError() != "" {
		t.Fatal(resp.GetError())
	}
	issuer, err := ca.NewIssuer(ca.KeyPair{CertPEM: resp.GetCertificatePem(), KeyPEM: zoneKey})
	if err != nil {
		t.Fatal(err)
	}
	leaf, err := issuer.IssueLeaf(ca.LeafOptions{Mesh: "secure", Service: "web", Validity: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	if id, err := ca.VerifyLeaf(leaf.CertChainPEM, resp.GetTrustBundlePem(), time.Now()); err != nil || id != "spiffe://secure/web" {
		t.Fatalf("leaf from the zone's intermediate: %q, %v", id, err)
	}
	for _, bad := range []struct {
		zone, mesh, backend, want string
	}{
		{"zone-2", "secure", "ca-1", "zone"},           // the CSR names zone-1
		{"zone-1", "secure", "ca-2", "enabled mTLS"},   // not the enabled backend
		{"zone-1", "default", "ca-1", "mTLS disabled"}, // no mTLS
		{"zone-1", "nope", "ca-1", "does not exist"},
	} {
		r := n.Server().SignIntermediate(context.Background(), bad.zone, &syncpb.CertificateRequest{Mesh: bad.mesh, Backend: bad.backend, CsrPem: csr})
		if !strings.Contains(r.GetError(), bad.want) || len(r.GetCertificatePem()) != 0 {
			t.Errorf("%+v: answered %v", bad, r)
		}
	}

	// Switching backends while mTLS is on is refused; off then on is fine.
	switched := strings.Replace(builtinMesh, "enabledBackend: ca-1", "enabledBackend: ca-2", 1)
	if r := put("/meshes/secure", []byte(switched)); r.Status != http.StatusBadRequest || !strings.Contains(string(r.Body), "mtls.enabledBackend") {
		t.Fatalf("switch while enabled: %d %s", r.Status, r.Body)
	}
	// The root in use cannot be deleted.
	if r := do(t, c, n, http.MethodDelete, n.URL()+"/meshes/secure/secrets/"+keyName, nil); r.Status != http.StatusConflict {
		t.Fatalf("delete the root key in use: %d %s", r.Status, r.Body)
	}
	if r := put("/meshes/secure", []byte(strings.Replace(builtinMesh, "enabledBackend: ca-1", `enabledBackend: ""`, 1))); r.Status != http.StatusOK {
		t.Fatalf("disable: %d %s", r.Status, r.Body)
	}
	if r := put("/meshes/secure", []byte(switched)); r.Status != http.StatusOK {
		t.Fatalf("enable another backend: %d %s", r.Status, r.Body)
	}

	// Provided: checked; the key Secret must carry the CA-key label.
	root, err := ca.NewMeshRoot("shared", ca.RootOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if r := put("/meshes/default/secrets/shared-cert", secretDoc("default", "shared-cert", root.CertPEM, "")); r.Status != http.StatusCreated {
		t.Fatal(r.Status, string(r.Body))
	}
	if r := put("/meshes/default/secrets/shared-key", secretDoc("default", "shared-key", root.KeyPEM, "")); r.Status != http.StatusCreated {
		t.Fatal(r.Status, string(r.Body))
	}
	provided := func(keySecret string) []byte {
		return fmt.Appendf(nil, "type: Mesh\nname: default\nmtls:\n  enabledBackend: p\n  backends:\n  - name: p\n    type: provided\n    conf:\n      cert: {secret: shared-cert}\n      key: {secret: %s}\n", keySecret)
	}
	if r := put("/meshes/default", provided("shared-key")); r.Status != http.StatusBadRequest || !strings.Contains(string(r.Body), api.LabelCAKey) {
		t.Fatalf("a provided key without the label: %d %s", r.Status, r.Body)
	}
	// Adding the label later is refused (zones may hold a copy).
	if r := put("/meshes/default/secrets/shared-key", secretDoc("default", "shared-key", root.KeyPEM, "labels: {meshfed.io/ca-key: \"true\"}\n")); r.Status != http.StatusBadRequest {
		t.Fatalf("label added to an existing Secret: %d %s", r.Status, r.Body)
	}
	if r := put("/meshes/default/secrets/labelled-key", secretDoc("default", "labelled-key", root.KeyPEM, "labels: {meshfed.io/ca-key: \"true\"}\n")); r.Status != http.StatusCreated {
		t.Fatal(r.Status, string(r.Body))
	}
	if r := put("/meshes/default/secrets/wrong-key", secretDoc("default", "wrong-key", zoneKey, "labels: {meshfed.io/ca-key: \"true\"}\n")); r.Status != http.StatusCreated {
		t.Fatal(r.Status, string(r.Body))
	}
	if r := put("/meshes/default", provided("wrong-key")); r.Status != http.StatusBadRequest || !strings.Contains(string(r.Body), "mtls.backends[0].conf") {
		t.Fatalf("a provided key that does not match: %d %s", r.Status, r.Body)
	}
	if r := put("/meshes/default", provided("labelled-key")); r.Status != http.StatusOK {
		t.Fatalf("a valid provided CA: %d %s", r.Status, r.Body)
	}
}
