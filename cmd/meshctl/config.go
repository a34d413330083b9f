package main

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"sigs.k8s.io/yaml"
)

// ctlConfig is meshctl's config file (~/.meshctl/config): named control
// planes and the current one, as kumactl keeps them.
type ctlConfig struct {
	CurrentControlPlane string         `json:"currentControlPlane,omitempty"`
	ControlPlanes       []controlPlane `json:"controlPlanes,omitempty"`
}

type controlPlane struct {
	Name    string `json:"name"`
	Address string `json:"address"`
	Token   string `json:"token,omitempty"`
}

func defaultConfigPath() string {
	home, err := os.UserHomeDir()
	if err != nil {
		return ".meshctl/config"
	}
	return filepath.Join(home, ".meshctl", "config")
}

func loadConfig(path string) (*ctlConfig, error) {
	data, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return &ctlConfig{}, nil
	}
	if err != nil {
		return nil, fmt.Errorf("meshctl config: %w", err)
	}
	var c ctlConfig
	if err := yaml.UnmarshalStrict(data, &c); err != nil {
		return nil, fmt.Errorf("meshctl config %s: %w", path, err)
	}
	return &c, nil
}

func (c *ctlConfig) save(path string) error {
	data, err := yaml.Marshal(c)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return fmt.Errorf("meshctl config: %w", err)
	}
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, data, 0o600); err != nil {
		return fmt.Errorf("meshctl config: %w", err)
	}
	return os.Rename(tmp, path)
}

func (c *ctlConfig) find(name string) int {
	for i, cp := range c.ControlPlanes {
		if cp.Name == name {
			return i
		}
	}
	return -1
}

func (c *ctlConfig) current() (controlPlane, bool) {
	if i := c.find(c.CurrentControlPlane); i >= 0 {
		return c.ControlPlanes[i], true
	}
	return controlPlane{}, false
}
