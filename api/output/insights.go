package output

import (
	"fmt"
	"io"
	"sort"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/meshfed/meshfed/api"
)

// listDoc is the API's list document.
type listDoc[T any] struct {
	Total int     `json:"total"`
	Items []T     `json:"items"`
	Next  *string `json:"next"`
}

// DataplaneOverviews writes dataplanes with their insights (GET
// /meshes/{mesh}/dataplanes+insights) as a table, or as the API's list
// document in JSON or YAML.
//
// Table columns: MESH; NAME; ZONE (kuma.io/zone; "-" for the zone's own
// when asked of a zone); STATUS, online or offline; KIND, envoy or grpc
// (label meshfed.io/proxy); SERVICES; REPLICA, the zone replica serving its
// live stream; LAST-ACK, how long ago the proxy last acknowledged a
// response; NACKS, the responses it rejected on its current stream;
// CERT-EXPIRY, when its certificate expires (mTLS Meshes); AGE of the
// Dataplane.
func DataplaneOverviews(w io.Writer, f Format, items []api.DataplaneOverview, now time.Time) error {
	if items == nil {
		items = []api.DataplaneOverview{}
	}
	if f != Table {
		return writeDoc(w, f, listDoc[api.DataplaneOverview]{Total: len(items), Items: items})
	}
	if len(items) == 0 {
		_, err := fmt.Fprintln(w, "No dataplanes found.")
		return err
	}
	tw := tabwriter.NewWriter(w, 0, 4, 3, ' ', 0)
	fmt.Fprintln(tw, "MESH\tNAME\tZONE\tSTATUS\tKIND\tSERVICES\tREPLICA\tLAST-ACK\tNACKS\tCERT-EXPIRY\tAGE")
	for _, o := range items {
		status, replica, lastAck, nacks, cert := "offline", "-", "-", "0", "-"
		if o.Online {
			status = "online"
		}
		if ins := o.DataplaneInsight; ins != nil {
			if n := len(ins.Subscriptions); n > 0 {
				sub := ins.Subscriptions[n-1]
				replica = sub.ControlPlaneInstanceID
				nacks = strconv.FormatUint(sub.Status.Total.ResponsesRejected, 10)
				if t := sub.Status.Total.LastAckTime; t != nil {
					lastAck = Since(*t, now)
				}
			}
			if m := ins.MTLS; m != nil {
				cert = "in " + Age(now, m.CertificateExpirationTime)
				if m.CertificateExpirationTime.Before(now) {
					cert = "expired"
				}
			}
		}
		kind := "envoy"
		if o.Labels["meshfed.io/proxy"] == "grpc" {
			kind = "grpc"
		}
		services := "-"
		if o.Dataplane != nil {
			if s := o.Dataplane.Services(); len(s) > 0 {
				services = strings.Join(s, ",")
			}
		}
		fmt.Fprintln(tw, strings.Join([]string{o.Mesh, o.Name, orDash(o.Labels[api.LabelZone]), status, kind, services, replica,
			lastAck, nacks, cert, Age(o.CreationTime, now)}, "\t"))
	}
	return tw.Flush()
}

// MeshInsights writes the Meshes' counts (GET /mesh-insights) as a table,
// or as the API's list document.
//
// Table columns: NAME; DATAPLANES, online/total; MTLS, the enabled CA
// backend and its type ("off"); POLICIES, how many of each type.
func MeshInsights(w io.Writer, f Format, items []api.MeshInsight) error {
	if items == nil {
		items = []api.MeshInsight{}
	}
	if f != Table {
		return writeDoc(w, f, listDoc[api.MeshInsight]{Total: len(items), Items: items})
	}
	if len(items) == 0 {
		_, err := fmt.Fprintln(w, "No meshes found.")
		return err
	}
	tw := tabwriter.NewWriter(w, 0, 4, 3, ' ', 0)
	fmt.Fprintln(tw, "NAME\tDATAPLANES\tMTLS\tPOLICIES")
	for _, m := range items {
		mtls := "off"
		if m.MTLS.EnabledBackend != "" {
			mtls = m.MTLS.EnabledBackend + " (" + m.MTLS.Type + ")"
		}
		var policies []string
		for t, p := range m.Policies {
			policies = append(policies, fmt.Sprintf("%s:%d", t, p.Total))
		}
		sort.Strings(policies)
		fmt.Fprintln(tw, strings.Join([]string{m.Name, fmt.Sprintf("%d/%d", m.Dataplanes.Online, m.Dataplanes.Total), mtls,
			orDash(strings.Join(policies, " "))}, "\t"))
	}
	return tw.Flush()
}
