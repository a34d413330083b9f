package output

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"sigs.k8s.io/yaml"

	"github.com/meshfed/meshfed/api"
)

func clusterStatus() *api.GlobalStatus {
	return &api.GlobalStatus{
		Node: "global-2", ClusterID: "5f1c", Leader: "global-1",
		Members: []api.GlobalMember{
			{ID: "global-1", GossipState: "alive", InRaft: true, Voter: true, RaftAddr: "127.0.0.1:5690", APIAddr: "127.0.0.1:5681",
				Raft: &api.RaftView{Role: "leader", Leader: "global-1", AppliedIndex: 120, CommitIndex: 121}},
			{ID: "global-2", GossipState: "alive", InRaft: true, Voter: true, RaftAddr: "127.0.0.1:5790", APIAddr: "127.0.0.1:5781",
				Raft: &api.RaftView{Role: "follower", Leader: "global-1", AppliedIndex: 119, CommitIndex: 120, LastContact: now.Add(-42 * time.Millisecond)}},
			{ID: "global-3", GossipState: "dead", InRaft: true, Voter: true, RaftAddr: "127.0.0.1:5890", APIAddr: "127.0.0.1:5881",
				Error: "node global-3 at 127.0.0.1:5881: connection refused"},
			{ID: "global-4", GossipState: "alive", RaftAddr: "127.0.0.1:5990", APIAddr: "127.0.0.1:5981",
				Raft: &api.RaftView{Role: "follower", LastContact: now.Add(-3200 * time.Millisecond)}},
		},
	}
}

func TestGlobalStatusTable(t *testing.T) {
	var b bytes.Buffer
	if err := GlobalStatus(&b, Table, clusterStatus(), now); err != nil {
		t.Fatal(err)
	}
	out := b.String()
	lines := strings.Split(strings.TrimRight(out, "\n"), "\n")
	if lines[0] != "cluster 5f1c, as seen by global-2; leader: global-1" {
		t.Errorf("title line %q", lines[0])
	}
	rows := map[string][]string{}
	var header []string
	for _, l := range lines[1:] {
		f := strings.Fields(l)
		switch {
		case len(f) > 0 && f[0] == "ID":
			header = f
		case len(f) > 0 && strings.HasPrefix(f[0], "global-"):
			rows[f[0]] = f
		}
	}
	wantHeader := []string{"ID", "GOSSIP", "RAFT", "VOTER", "LEADER", "APPLIED", "COMMIT", "LAST-CONTACT", "RAFT-ADDR", "API-ADDR"}
	if strings.Join(header, " ") != strings.Join(wantHeader, " ") {
		t.Fatalf("header %v, want %v\n%s", header, wantHeader, out)
	}
	want := map[string]string{
		"global-1": "global-1 alive leader yes * 120 121 - 127.0.0.1:5690 127.0.0.1:5681",
		"global-2": "global-2 alive follower yes 119 120 42ms 127.0.0.1:5790 127.0.0.1:5781",
		"global-3": "global-3 dead unreachable yes - - - 127.0.0.1:5890 127.0.0.1:5881",
		"global-4": "global-4 alive follower not in raft 0 0 3.2s 127.0.0.1:5990 127.0.0.1:5981",
	}
	for id, w := range want {
		if got := strings.Join(rows[id], " "); got != w {
			t.Errorf("row %s:\n got  %q\n want %q\n%s", id, got, w, out)
		}
	}
	// The leader mark sits in the LEADER column, under its header.
	col := strings.Index(lines[2], "LEADER")
	for _, l := range lines[3:7] {
		if mark := strings.TrimSpace(l[col : col+6]); (mark == "*") != strings.HasPrefix(l, "global-1 ") {
			t.Errorf("leader column %q in %q", mark, l)
		}
	}
	if !strings.Contains(out, "unreachable members:\n  global-3: node global-3 at 127.0.0.1:5881: connection refused") {
		t.Errorf("no note on the unreachable member:\n%s", out)
	}
}

func TestGlobalStatusNoLeader(t *testing.T) {
	st := &api.GlobalStatus{Node: "global-1", Members: []api.GlobalMember{{ID: "global-1", GossipState: "alive", InRaft: true, Voter: true,
		Raft: &api.RaftView{Role: "candidate"}}}}
	var b bytes.Buffer
	if err := GlobalStatus(&b, Table, st, now); err != nil {
		t.Fatal(err)
	}
	if out := b.String(); !strings.Contains(out, "leader: none (election in progress)") || strings.Contains(out, "*") ||
		!strings.Contains(out, "cluster -,") || strings.Contains(out, "unreachable members") {
		t.Errorf("no-leader table:\n%s", out)
	}
}

func TestGlobalStatusJSONAndYAML(t *testing.T) {
	st := clusterStatus()
	for _, f := range []Format{JSON, YAML} {
		var b bytes.Buffer
		if err := GlobalStatus(&b, f, st, now); err != nil {
			t.Fatal(err)
		}
		j := b.Bytes()
		if f == YAML {
			var err error
			if j, err = yaml.YAMLToJSON(j); err != nil {
				t.Fatalf("YAML output does not parse: %v\n%s", err, b.String())
			}
			if !strings.HasPrefix(b.String(), "node: global-2\nclusterId: 5f1c\nleader: global-1\nmembers:") {
				t.Errorf("YAML keys out of the API's order:\n%s", b.String())
			}
		}
		var got api.GlobalStatus
		if err := json.Unmarshal(j, &got); err != nil {
			t.Fatalf("%s: %v\n%s", f, err, b.String())
		}
		if got.Leader != "global-1" || len(got.Members) != 4 || got.Members[1].Raft == nil ||
			!got.Members[1].Raft.LastContact.Equal(st.Members[1].Raft.LastContact) || got.Members[2].Error == "" {
			t.Errorf("%s round trip lost data: %+v", f, got)
		}
	}
}

func TestSince(t *testing.T) {
	cases := map[time.Duration]string{
		-time.Second:            "0ms",
		7 * time.Millisecond:    "7ms",
		1500 * time.Millisecond: "1.5s",
		30 * time.Second:        "30s",
		5 * time.Minute:         "5m",
	}
	for d, want := range cases {
		if got := Since(now.Add(-d), now); got != want {
			t.Errorf("Since(-%v) = %q, want %q", d, got, want)
		}
	}
	if got := Since(time.Time{}, now); got != "-" {
		t.Errorf("zero time: %q", got)
	}
}
