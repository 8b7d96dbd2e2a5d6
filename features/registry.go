package features

import (
	"fmt"
	"strconv"
	"strings"
)

// RegistryModel is a model in an MLflow Model Registry: a registered model's
// name and either an alias (followed as it moves) or a fixed version.
type RegistryModel struct {
	Name    string
	Alias   string // "" when Version is set
	Version string // "" when Alias is set
}

// String is the models:/ URI r was parsed from.
func (r *RegistryModel) String() string {
	if r.Alias != "" {
		return "models:/" + r.Name + "@" + r.Alias
	}
	return "models:/" + r.Name + "/" + r.Version
}

// ParseRegistryURI reads models:/name@alias or models:/name/<version>
// (MLflow's model URIs for a registered model; stage names and
// models:/name/latest are not accepted: use an alias).
func ParseRegistryURI(s string) (*RegistryModel, error) {
	const form = "write models:/<name>@<alias> or models:/<name>/<version number>"
	rest, ok := strings.CutPrefix(s, "models:/")
	if !ok {
		return nil, fmt.Errorf("%q is not a models:/ URI: %s", s, form)
	}
	if name, alias, ok := strings.Cut(rest, "@"); ok {
		if name == "" || alias == "" || strings.ContainsAny(name, "/@") || strings.ContainsAny(alias, "/@") {
			return nil, fmt.Errorf("%q: %s", s, form)
		}
		return &RegistryModel{Name: name, Alias: alias}, nil
	}
	name, ver, ok := strings.Cut(rest, "/")
	if !ok || name == "" {
		return nil, fmt.Errorf("%q names no alias or version: %s", s, form)
	}
	if v, err := strconv.ParseUint(ver, 10, 63); err != nil || v == 0 || strconv.FormatUint(v, 10) != ver {
		return nil, fmt.Errorf("%q: version %q is not a version number (stages such as Production and \"latest\" are not accepted: use an alias): %s", s, ver, form)
	}
	return &RegistryModel{Name: name, Version: ver}, nil
}
