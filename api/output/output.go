// Package output renders resources for people and scripts: tables, YAML and
// JSON (Kuma's list shape for lists). meshctl uses it; it sits at the very
// end of the read path (API → client → output).
package output

import (
	"encoding/json"
	"fmt"
	"io"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/meshfed/meshfed/api"
)

// Format is an output format.
type Format string

const (
	Table Format = "table"
	YAML  Format = "yaml"
	JSON  Format = "json"
)

// ParseFormat checks a user's -o value.
func ParseFormat(s string) (Format, error) {
	switch f := Format(s); f {
	case Table, YAML, JSON:
		return f, nil
	}
	return "", fmt.Errorf("output format %q: must be one of table, yaml, json", s)
}

// list is Kuma's list document.
type list struct {
	Total int             `json:"total"`
	Items []*api.Resource `json:"items"`
	Next  *string         `json:"next"`
}

// One writes a single resource.
func One(w io.Writer, f Format, r *api.Resource, now time.Time) error {
	switch f {
	case YAML:
		b, err := api.MarshalYAML(r)
		if err != nil {
			return err
		}
		_, err = w.Write(b)
		return err
	case JSON:
		return writeJSON(w, r)
	}
	return Many(w, f, []*api.Resource{r}, now)
}

// Many writes a list of resources of one type.
func Many(w io.Writer, f Format, items []*api.Resource, now time.Time) error {
	if items == nil {
		items = []*api.Resource{}
	}
	doc := list{Total: len(items), Items: items}
	switch f {
	case YAML:
		j, err := json.Marshal(doc)
		if err != nil {
			return err
		}
		b, err := api.JSONToOrderedYAML(j)
		if err != nil {
			return err
		}
		_, err = w.Write(b)
		return err
	case JSON:
		return writeJSON(w, doc)
	}
	return table(w, items, now)
}

func writeJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

// column is one table column.
type column struct {
	header string
	value  func(r *api.Resource) string
}

func table(w io.Writer, items []*api.Resource, now time.Time) error {
	tw := tabwriter.NewWriter(w, 0, 4, 3, ' ', 0)
	if len(items) == 0 {
		_, err := fmt.Fprintln(w, "No resources found.")
		return err
	}
	cols := columnsFor(items[0])
	headers := make([]string, len(cols))
	for i, c := range cols {
		headers[i] = c.header
	}
	fmt.Fprintln(tw, strings.Join(headers, "\t"))
	for _, r := range items {
		vals := make([]string, len(cols))
		for i, c := range cols {
			if c.value == nil { // AGE
				vals[i] = Age(r.CreationTime, now)
			} else {
				vals[i] = c.value(r)
			}
		}
		fmt.Fprintln(tw, strings.Join(vals, "\t"))
	}
	return tw.Flush()
}

func columnsFor(r *api.Resource) []column {
	cols := []column{}
	if d, err := api.Lookup(r.Type); err == nil && d.Scope == api.ScopeMesh {
		cols = append(cols, column{"MESH", func(r *api.Resource) string { return r.Mesh }})
	}
	cols = append(cols, column{"NAME", func(r *api.Resource) string { return r.Name }})
	cols = append(cols, typeColumns(r)...)
	return append(cols, column{"AGE", nil})
}

// typeColumns are the columns a type adds between NAME and AGE.
func typeColumns(r *api.Resource) []column {
	switch r.Spec.(type) {
	case *api.MeshSpec:
		return []column{
			{"MTLS", func(r *api.Resource) string {
				if b := meshOf(r).MTLSBackend(); b != nil {
					return b.Type + "/" + b.Name
				}
				return "off"
			}},
			{"METRICS", func(r *api.Resource) string {
				if b := meshOf(r).MetricsBackend(); b != nil {
					return b.Type + "/" + b.Name
				}
				return "off"
			}},
			{"TRACING", func(r *api.Resource) string {
				if m := meshOf(r); m.Tracing != nil {
					if b := m.TracingBackend(m.Tracing.DefaultBackend); b != nil {
						return b.Type + "/" + b.Name
					}
				}
				return "off"
			}},
			{"LOGGING", func(r *api.Resource) string {
				if m := meshOf(r); m.Logging != nil {
					if b := m.LoggingBackend(m.Logging.DefaultBackend); b != nil {
						return b.Type + "/" + b.Name
					}
				}
				return "off"
			}},
			{"LOCALITY", func(r *api.Resource) string {
				m := meshOf(r)
				return onOff(m.Routing != nil && m.Routing.LocalityAwareLoadBalancing)
			}},
		}
	case *api.DataplaneSpec:
		return []column{
			{"ADDRESS", func(r *api.Resource) string { return dpOf(r).Networking.Address }},
			{"SERVICES", func(r *api.Resource) string { return strings.Join(dpOf(r).Services(), ",") }},
		}
	}
	return []column{{"LABELS", func(r *api.Resource) string { return Labels(r.Labels) }}}
}

func meshOf(r *api.Resource) *api.MeshSpec {
	if m, ok := r.Spec.(*api.MeshSpec); ok {
		return m
	}
	return &api.MeshSpec{}
}

func dpOf(r *api.Resource) *api.DataplaneSpec {
	if d, ok := r.Spec.(*api.DataplaneSpec); ok {
		return d
	}
	return &api.DataplaneSpec{}
}

func onOff(b bool) string {
	if b {
		return "on"
	}
	return "off"
}

// Labels renders a label map as k=v,k=v (sorted), or "-".
func Labels(m map[string]string) string {
	if len(m) == 0 {
		return "-"
	}
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	parts := make([]string, len(keys))
	for i, k := range keys {
		parts[i] = k + "=" + m[k]
	}
	return strings.Join(parts, ",")
}

// Age renders how long ago t was, kubectl-style (45s, 3m, 5h, 2d).
func Age(t, now time.Time) string {
	if t.IsZero() {
		return "-"
	}
	d := now.Sub(t)
	switch {
	case d < 0:
		return "0s"
	case d < time.Minute:
		return fmt.Sprintf("%ds", int(d.Seconds()))
	case d < time.Hour:
		return fmt.Sprintf("%dm", int(d.Minutes()))
	case d < 48*time.Hour:
		return fmt.Sprintf("%dh", int(d.Hours()))
	}
	return fmt.Sprintf("%dd", int(d.Hours()/24))
}
