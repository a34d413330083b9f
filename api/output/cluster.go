package output

import (
	"encoding/json"
	"fmt"
	"io"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/meshfed/meshfed/api"
)

// GlobalStatus writes the global cluster's status (GET /global/status) as
// a table with one row per member, or as the API's JSON or YAML document.
//
// Table columns: ID; GOSSIP, the member's gossip state as the answering
// node sees it; RAFT, the member's role in its own view ("unreachable" when
// it could not be asked); VOTER, yes / no (a non-voter) / "not in raft"; LEADER, a
// "*" on the leader's row; APPLIED and COMMIT, the member's own applied and
// commit index; LAST-CONTACT, how long ago a follower last heard from the
// leader; RAFT-ADDR and API-ADDR. A line above the table names the cluster,
// the answering node and the leader; members that could not be asked are
// listed below it with the reason.
func GlobalStatus(w io.Writer, f Format, st *api.GlobalStatus, now time.Time) error {
	switch f {
	case JSON:
		return writeJSON(w, st)
	case YAML:
		j, err := json.Marshal(st)
		if err != nil {
			return err
		}
		b, err := api.JSONToOrderedYAML(j)
		if err != nil {
			return err
		}
		_, err = w.Write(b)
		return err
	}
	leader := st.Leader
	if leader == "" {
		leader = "none (election in progress)"
	}
	fmt.Fprintf(w, "cluster %s, as seen by %s; leader: %s\n\n", orDash(st.ClusterID), orDash(st.Node), leader)
	tw := tabwriter.NewWriter(w, 0, 4, 3, ' ', 0)
	fmt.Fprintln(tw, "ID\tGOSSIP\tRAFT\tVOTER\tLEADER\tAPPLIED\tCOMMIT\tLAST-CONTACT\tRAFT-ADDR\tAPI-ADDR")
	var notes []string
	for _, m := range st.Members {
		role, applied, commit, contact := "unreachable", "-", "-", "-"
		if m.Raft != nil {
			role = orDash(m.Raft.Role)
			applied = strconv.FormatUint(m.Raft.AppliedIndex, 10)
			commit = strconv.FormatUint(m.Raft.CommitIndex, 10)
			if m.Raft.Role != "leader" {
				contact = Since(m.Raft.LastContact, now)
			}
		} else if m.Error != "" {
			notes = append(notes, fmt.Sprintf("  %s: %s", m.ID, m.Error))
		}
		voter := "not in raft"
		if m.InRaft {
			voter = "no"
			if m.Voter {
				voter = "yes"
			}
		}
		mark := ""
		if m.ID == st.Leader && st.Leader != "" {
			mark = "*"
		}
		fmt.Fprintln(tw, strings.Join([]string{m.ID, orDash(m.GossipState), role, voter, mark, applied, commit, contact,
			orDash(m.RaftAddr), orDash(m.APIAddr)}, "\t"))
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	if len(notes) > 0 {
		fmt.Fprintf(w, "\nunreachable members:\n%s\n", strings.Join(notes, "\n"))
	}
	return nil
}

// Since renders a short, precise age for recent events: 250ms, 3.2s, then
// as Age (45s, 3m, ...). The zero time is "-".
func Since(t, now time.Time) string {
	if t.IsZero() {
		return "-"
	}
	d := now.Sub(t)
	switch {
	case d < 0:
		return "0ms"
	case d < time.Second:
		return fmt.Sprintf("%dms", d.Milliseconds())
	case d < 10*time.Second:
		return fmt.Sprintf("%.1fs", d.Seconds())
	}
	return Age(t, now)
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
