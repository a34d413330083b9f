// Package cli holds what meshd and meshctl share at the command-line edge:
// layering flags over environment variables over a YAML config file, the
// logger, and the build version. It is only for cmd/ main packages.
package cli

import (
	"fmt"
	"log/slog"
	"os"
	"sort"
	"strings"

	"github.com/spf13/pflag"
	"sigs.k8s.io/yaml"
)

// Version is the build version, set with -ldflags "-X .../cli.Version=...".
var Version = "dev"

// EnvName returns the environment variable twin of a flag:
// prefix "MESHFED", flag "api-addr" → "MESHFED_API_ADDR".
func EnvName(prefix, flag string) string {
	return prefix + "_" + strings.ToUpper(strings.ReplaceAll(flag, "-", "_"))
}

// Layer fills every flag of fs that was not set on the command line from its
// environment variable (prefix_FLAG) or, failing that, from the YAML config
// file at configPath (keys are flag names; "" means no file). Flags win over
// the environment, the environment over the file. Unknown keys in the file
// and values that do not parse are errors naming the key or variable.
func Layer(fs *pflag.FlagSet, prefix, configPath string, skip ...string) error {
	fileValues := map[string]any{}
	if configPath != "" {
		data, err := os.ReadFile(configPath)
		if err != nil {
			return fmt.Errorf("config file: %w", err)
		}
		if err := yaml.Unmarshal(data, &fileValues); err != nil {
			return fmt.Errorf("config file %s: not a YAML map of flag names to values: %w", configPath, err)
		}
	}
	skipped := map[string]bool{}
	for _, s := range skip {
		skipped[s] = true
	}
	var unknown []string
	for k := range fileValues {
		if fs.Lookup(k) == nil || skipped[k] {
			unknown = append(unknown, k)
		}
	}
	if len(unknown) > 0 {
		sort.Strings(unknown)
		return fmt.Errorf("config file %s: unknown key(s) %s (keys are the command's flag names)", configPath, strings.Join(unknown, ", "))
	}
	var errs []string
	fs.VisitAll(func(f *pflag.Flag) {
		if f.Changed || skipped[f.Name] {
			return
		}
		env := EnvName(prefix, f.Name)
		if v, ok := os.LookupEnv(env); ok {
			if err := fs.Set(f.Name, v); err != nil {
				errs = append(errs, fmt.Sprintf("%s=%q: %v", env, v, err))
			}
			return
		}
		if v, ok := fileValues[f.Name]; ok {
			if err := fs.Set(f.Name, fileValue(v)); err != nil {
				errs = append(errs, fmt.Sprintf("config file key %s: %v", f.Name, err))
			}
		}
	})
	if len(errs) > 0 {
		return fmt.Errorf("%s", strings.Join(errs, "; "))
	}
	return nil
}

func fileValue(v any) string {
	switch t := v.(type) {
	case []any:
		parts := make([]string, len(t))
		for i, p := range t {
			parts[i] = fmt.Sprint(p)
		}
		return strings.Join(parts, ",")
	case float64:
		if t == float64(int64(t)) {
			return fmt.Sprint(int64(t))
		}
	}
	return fmt.Sprint(v)
}

// NewLogger builds the process logger: level debug|info|warn|error, format
// text|json, to stderr.
func NewLogger(level, format string) (*slog.Logger, error) {
	var l slog.Level
	if err := l.UnmarshalText([]byte(level)); err != nil {
		return nil, fmt.Errorf("log-level: %q is not one of debug, info, warn, error", level)
	}
	opts := &slog.HandlerOptions{Level: l}
	switch format {
	case "text":
		return slog.New(slog.NewTextHandler(os.Stderr, opts)), nil
	case "json":
		return slog.New(slog.NewJSONHandler(os.Stderr, opts)), nil
	}
	return nil, fmt.Errorf("log-format: %q is not one of text, json", format)
}
