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

// writeDoc writes v as indented JSON or as YAML in the API's key order.
func writeDoc(w io.Writer, f Format, v any) error {
	if f == JSON {
		return writeJSON(w, v)
	}
	j, err := json.Marshal(v)
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

// ZoneOverviews writes zone overviews (GET /zones+insights) as a table, or
// as the API's list document in JSON or YAML.
//
// Table columns: NAME; STATUS, online, offline, or disabled (an offline
// zone whose Zone has enabled: false); GLOBAL-NODE, the global node(s)
// serving its live streams; REPLICAS, its replicas with a live stream;
// ACKED-REV, the revision the zone has applied; LAG, 0 when caught up,
// otherwise revisions behind and (in parentheses) for how long; REJECTED,
// how many resources it refused; AGE, how long its current stream has been
// connected. Below the table: why each offline zone is offline, and every
// rejected resource with its reason.
func ZoneOverviews(w io.Writer, f Format, items []api.ZoneOverview, now time.Time) error {
	if items == nil {
		items = []api.ZoneOverview{}
	}
	if f != Table {
		return writeDoc(w, f, struct {
			Total int                `json:"total"`
			Items []api.ZoneOverview `json:"items"`
			Next  *string            `json:"next"`
		}{Total: len(items), Items: items})
	}
	if len(items) == 0 {
		_, err := fmt.Fprintln(w, "No zones found.")
		return err
	}
	return zoneTable(w, items, now, false)
}

// ZoneOverview writes one zone's overview (GET /zones/{name}/_overview):
// the table row of ZoneOverviews followed by its live replicas, or the
// document in JSON or YAML.
func ZoneOverview(w io.Writer, f Format, ov *api.ZoneOverview, now time.Time) error {
	if f != Table {
		return writeDoc(w, f, ov)
	}
	return zoneTable(w, []api.ZoneOverview{*ov}, now, true)
}

func zoneTable(w io.Writer, items []api.ZoneOverview, now time.Time, replicas bool) error {
	tw := tabwriter.NewWriter(w, 0, 4, 3, ' ', 0)
	fmt.Fprintln(tw, "NAME\tSTATUS\tGLOBAL-NODE\tREPLICAS\tACKED-REV\tLAG\tREJECTED\tAGE")
	var offline, rejected []string
	for _, ov := range items {
		st := ov.Status
		status, node, age := "online", strings.Join(st.GlobalNodes, ","), "-"
		if node == "" {
			node = orDash(st.GlobalNode)
		}
		if st.ConnectTime != nil && st.Online {
			age = Age(*st.ConnectTime, now)
		}
		if !st.Online {
			status = "offline"
			if !st.Enabled {
				status = "disabled"
			}
			if st.OfflineReason != "" {
				offline = append(offline, fmt.Sprintf("  %s: %s", ov.Name, st.OfflineReason))
			}
		}
		for _, r := range st.Rejected {
			rejected = append(rejected, fmt.Sprintf("  %s: %s: %s", ov.Name, rejectedName(r), r.Reason))
		}
		fmt.Fprintln(tw, strings.Join([]string{ov.Name, status, node, strconv.Itoa(st.Replicas), revision(st.AckedRevision),
			Lag(st.LagRevisions, st.LagSeconds), strconv.Itoa(len(st.Rejected)), age}, "\t"))
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	if replicas && len(items) == 1 && len(items[0].Status.ReplicaStatus) > 0 {
		fmt.Fprintln(w, "\nreplicas:")
		tw = tabwriter.NewWriter(w, 0, 4, 3, ' ', 0)
		fmt.Fprintln(tw, "  REPLICA\tGLOBAL-NODE\tCONNECTED\tACKED-REV\tLAST-ACK")
		for _, r := range items[0].Status.ReplicaStatus {
			lastAck := "-"
			if r.AckTime != nil {
				lastAck = Since(*r.AckTime, now)
			}
			fmt.Fprintln(tw, strings.Join([]string{"  " + r.ReplicaID, r.GlobalNode, Age(r.ConnectTime, now), revision(r.AckedRevision), lastAck}, "\t"))
		}
		if err := tw.Flush(); err != nil {
			return err
		}
	}
	if len(offline) > 0 {
		fmt.Fprintf(w, "\noffline:\n%s\n", strings.Join(offline, "\n"))
	}
	if len(rejected) > 0 {
		fmt.Fprintf(w, "\nrejected resources:\n%s\n", strings.Join(rejected, "\n"))
	}
	return nil
}

// Lag renders a zone's lag: "0" when caught up, otherwise the revisions
// behind and, in parentheses, for how long ("3 (1.5s)").
func Lag(revisions uint64, seconds float64) string {
	if revisions == 0 {
		return "0"
	}
	d := time.Duration(seconds * float64(time.Second))
	var ago string
	switch {
	case d < time.Second:
		ago = fmt.Sprintf("%dms", d.Milliseconds())
	case d < 10*time.Second:
		ago = fmt.Sprintf("%.1fs", d.Seconds())
	default:
		ago = Age(time.Unix(0, 0), time.Unix(0, 0).Add(d))
	}
	return fmt.Sprintf("%d (%s)", revisions, ago)
}

func revision(r uint64) string {
	if r == 0 {
		return "-"
	}
	return strconv.FormatUint(r, 10)
}

// rejectedName is "Type mesh/name@revision" or "Type name@revision".
func rejectedName(r api.ZoneRejection) string {
	name := r.Name
	if r.Mesh != "" {
		name = r.Mesh + "/" + name
	}
	return fmt.Sprintf("%s %s@%d", r.Type, name, r.Revision)
}

// ResourceStatus writes one resource's state in every zone (GET
// .../_status): a title line saying whether the change is live everywhere,
// then a table, or the document in JSON or YAML.
//
// Table columns: ZONE; STATUS, applied, pending, rejected or not-sent;
// ONLINE, yes or no; ACKED-REV, the zone's applied revision; REASON, why a
// resource is rejected, pending or not sent.
func ResourceStatus(w io.Writer, f Format, st *api.ResourceStatus, now time.Time) error {
	if f != Table {
		return writeDoc(w, f, st)
	}
	what := fmt.Sprintf("%s %q", st.Type, st.Name)
	if st.Mesh != "" {
		what += fmt.Sprintf(" in mesh %q", st.Mesh)
	}
	s := st.Summary
	receiving := s.Applied + s.Pending + s.Rejected
	verdict := fmt.Sprintf("applied in %d of %d zone(s) that receive it", s.Applied, receiving)
	switch {
	case receiving == 0:
		verdict = "no zone receives it"
	case s.AppliedEverywhere:
		verdict = fmt.Sprintf("applied in every zone that receives it (%d)", receiving)
	}
	if s.Rejected > 0 {
		verdict += fmt.Sprintf("; rejected by %d", s.Rejected)
	}
	fmt.Fprintf(w, "%s at revision %d (modified %s ago): %s\n", what, st.Revision, Age(st.ModificationTime, now), verdict)
	if len(st.Zones) == 0 {
		_, err := fmt.Fprintln(w, "\nNo zones found.")
		return err
	}
	fmt.Fprintln(w)
	tw := tabwriter.NewWriter(w, 0, 4, 3, ' ', 0)
	fmt.Fprintln(tw, "ZONE\tSTATUS\tONLINE\tACKED-REV\tREASON")
	for _, z := range st.Zones {
		online := "no"
		if z.Online {
			online = "yes"
		}
		fmt.Fprintln(tw, strings.Join([]string{z.Zone, string(z.Status), online, revision(z.AckedRevision), orDash(z.Reason)}, "\t"))
	}
	return tw.Flush()
}
