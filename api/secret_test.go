package api

import (
	"encoding/base64"
	"strings"
	"testing"
)

func TestSecretValid(t *testing.T) {
	runValid(t, []validCase{
		{name: "certificate", doc: `
type: Secret
mesh: default
name: ca-2-cert
data: LS0tLS1CRUdJTiBDRVJUSUZJQ0FURS0tLS0tCk1JSUIKLS0tLS1FTkQgQ0VSVElGSUNBVEUtLS0tLQo=
`},
		{name: "largest allowed", doc: "type: Secret\nmesh: default\nname: big\ndata: " +
			base64.StdEncoding.EncodeToString(make([]byte, MaxSecretSize)) + "\n"},
	})
}

func TestSecretRedactAndBytes(t *testing.T) {
	r := mustPrepare(t, "type: Secret\nmesh: default\nname: s\nlabels:\n  team: a\ndata: aGVsbG8=\n")
	b, err := r.Spec.(*SecretSpec).Bytes()
	if err != nil || string(b) != "hello" {
		t.Fatalf("Bytes() = %q, %v", b, err)
	}
	red := Redact(r)
	if red.Spec.(*SecretSpec).Data != "" || red.Name != "s" || red.Labels["team"] != "a" {
		t.Errorf("Redact = %+v", red)
	}
	if r.Spec.(*SecretSpec).Data != "aGVsbG8=" {
		t.Errorf("Redact modified the original")
	}
	y, err := MarshalYAML(red)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(y), "data") || strings.Contains(string(y), "aGVsbG8") {
		t.Errorf("redacted YAML shows data:\n%s", y)
	}
	// Types without secret data are returned as they are.
	z := mustPrepare(t, "type: Zone\nname: z\n")
	if Redact(z) != z {
		t.Errorf("Redact of a Zone must return it unchanged")
	}
}

func TestSecretInvalid(t *testing.T) {
	runInvalid(t, []invalidCase{
		{name: "missing data", doc: "type: Secret\nmesh: default\nname: s\n", want: []string{"data"}},
		{name: "invalid base64", doc: "type: Secret\nmesh: default\nname: s\ndata: \"not base64!\"\n", want: []string{"data"}},
		{name: "url encoding is not standard base64", doc: "type: Secret\nmesh: default\nname: s\ndata: _-8=\n", want: []string{"data"}},
		{name: "too large", doc: "type: Secret\nmesh: default\nname: s\ndata: " +
			base64.StdEncoding.EncodeToString(make([]byte, MaxSecretSize+1)) + "\n", want: []string{"data"}},
		// Decode refuses the shape before Prepare looks at the envelope.
		{name: "data not a string", doc: "type: Secret\nmesh: default\nname: S!\ndata: [1]\n", want: []string{"data"}},
		{name: "bad name and bad data", doc: "type: Secret\nmesh: default\nname: S!\ndata: \"%%%\"\n", want: []string{"data", "name"}},
	})
	_, err := problems(t, "type: Secret\nmesh: default\nname: s\ndata: \"not base64!\"\n")
	if err == nil || !strings.HasPrefix(err.Error(), "data: must be standard base64") {
		t.Errorf("error = %v", err)
	}
}
