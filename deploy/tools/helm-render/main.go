// Command helm-render renders a Helm chart the way `helm template` does, for machines without the helm
// binary (Helm is not packaged in Debian; Go, text/template and sprig are). It implements the part of
// Helm 3's template semantics that the charts in this repository use, and follows Helm wherever it
// implements something, so a chart that renders here renders the same under a real helm:
//
//   - .Values: the chart's values.yaml deep-merged with each -f file in order; a null in an override
//     deletes the key (Helm's coalescing). Numbers are float64, as Helm's YAML-via-JSON decoding makes them.
//
//   - .Release (Name, Namespace, Service, IsInstall, IsUpgrade, Revision), .Chart (Chart.yaml's fields),
//     .Template (Name, BasePath), .Capabilities (APIVersions.Has is false unless --api-versions names the
//     version, KubeVersion from --kube-version).
//
//   - sprig's functions minus env/expandenv (Helm removes them), plus include, tpl, required, toYaml,
//     fromYaml, toJson, fromJson and lookup (always empty, as in `helm template`).
//
//   - every file under templates/ is parsed into one template set; files whose name starts with "_" are
//     partials and never rendered; NOTES.txt is not printed; a file that renders to whitespace is skipped.
//
//   - output: each YAML document as "---\n# Source: <chart>/templates/<file>\n<doc>", sorted by Helm's
//     install order of kinds, then by file name. A document that is not valid YAML is an error, as in helm.
//
//   - --strict makes a reference to a missing value an error (Helm's missingkey=error of `helm lint
//     --strict`); otherwise a missing value renders empty.
//
//   - Chart.yaml is checked as helm does: apiVersion v2, a name, a SemVer version, and kubeVersion against
//     --kube-version.
//
// Not implemented: subcharts and dependencies, --set, .Files, values.schema.json, hooks' special handling.
//
// Usage:
//
//	helm-render [--name NAME] [--namespace NS] [-f values.yaml]... [--api-versions GROUP/VERSION]...
//	            [--kube-version v1.29.0] [--strict] [NAME] CHART_DIR
package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"text/template"

	// Debian's /usr/share/gocode holds sprig v3 and semver v3 without the /v3 suffix; GOPATH mode (no
	// network, no module download) only resolves the suffix for code inside GOPATH, so it is left out.
	"github.com/Masterminds/semver"
	"github.com/Masterminds/sprig"
	// yaml.v2 is what Helm's YAML (sigs.k8s.io/yaml) is built on, so toYaml formats as helm does.
	yaml "gopkg.in/yaml.v2"
)

// includeDepthLimit stops a template that includes itself, as Helm does (same limit).
const includeDepthLimit = 1000

// ChartMeta is the part of Chart.yaml a template can read as .Chart; field names are Helm's.
type ChartMeta struct {
	APIVersion  string            `yaml:"apiVersion"`
	Name        string            `yaml:"name"`
	Version     string            `yaml:"version"`
	AppVersion  string            `yaml:"appVersion"`
	KubeVersion string            `yaml:"kubeVersion"`
	Description string            `yaml:"description"`
	Type        string            `yaml:"type"`
	Home        string            `yaml:"home"`
	Icon        string            `yaml:"icon"`
	Keywords    []string          `yaml:"keywords"`
	Sources     []string          `yaml:"sources"`
	Annotations map[string]string `yaml:"annotations"`
	Deprecated  bool              `yaml:"deprecated"`
}

// VersionSet is .Capabilities.APIVersions.
type VersionSet []string

// Has reports whether the set holds apiVersion ("group/version" or "group/version/Kind").
func (v VersionSet) Has(apiVersion string) bool {
	for _, x := range v {
		if x == apiVersion {
			return true
		}
	}
	return false
}

// KubeVersion is .Capabilities.KubeVersion.
type KubeVersion struct {
	Version string
	Major   string
	Minor   string
}

func (k KubeVersion) String() string { return k.Version }

// GitVersion is kept for charts written against Helm 2's field name.
func (k KubeVersion) GitVersion() string { return k.Version }

// Capabilities is .Capabilities.
type Capabilities struct {
	APIVersions VersionSet
	KubeVersion KubeVersion
}

type stringList []string

func (s *stringList) String() string { return strings.Join(*s, ",") }
func (s *stringList) Set(v string) error {
	for _, part := range strings.Split(v, ",") {
		if part = strings.TrimSpace(part); part != "" {
			*s = append(*s, part)
		}
	}
	return nil
}

type options struct {
	name        string
	namespace   string
	valueFiles  stringList
	apiVersions stringList
	kubeVersion string
	strict      bool
	chartDir    string
}

func parseArgs(args []string) (options, error) {
	var o options
	fs := flag.NewFlagSet("helm-render", flag.ContinueOnError)
	fs.StringVar(&o.name, "name", "release-name", "release name (.Release.Name); helm template's default")
	fs.StringVar(&o.namespace, "namespace", "default", "release namespace (.Release.Namespace)")
	fs.Var(&o.valueFiles, "f", "values file merged over the chart's values.yaml (repeatable, later wins)")
	fs.Var(&o.valueFiles, "values", "same as -f")
	fs.Var(&o.apiVersions, "api-versions", "API version .Capabilities.APIVersions.Has reports (repeatable)")
	fs.StringVar(&o.kubeVersion, "kube-version", "v1.29.0", ".Capabilities.KubeVersion")
	fs.BoolVar(&o.strict, "strict", false, "a reference to a missing value is an error")
	// Like helm, flags may follow the positional argument: parse, take one positional, parse the rest.
	var positional []string
	for {
		if err := fs.Parse(args); err != nil {
			return o, err
		}
		if fs.NArg() == 0 {
			break
		}
		positional = append(positional, fs.Arg(0))
		args = fs.Args()[1:]
	}
	switch len(positional) {
	case 1:
		o.chartDir = positional[0]
	case 2: // helm template NAME CHART
		o.name, o.chartDir = positional[0], positional[1]
	default:
		return o, errors.New("usage: helm-render [flags] [NAME] CHART_DIR")
	}
	return o, nil
}

// normalize turns yaml.v2's decoded tree into what Helm's YAML-via-JSON decoding yields: string keys and
// float64 numbers.
func normalize(v interface{}) interface{} {
	switch t := v.(type) {
	case map[interface{}]interface{}:
		m := make(map[string]interface{}, len(t))
		for k, x := range t {
			m[fmt.Sprint(k)] = normalize(x)
		}
		return m
	case map[string]interface{}:
		for k, x := range t {
			t[k] = normalize(x)
		}
		return t
	case []interface{}:
		for i, x := range t {
			t[i] = normalize(x)
		}
		return t
	case int:
		return float64(t)
	case int64:
		return float64(t)
	case uint64:
		return float64(t)
	default:
		return v
	}
}

func readValuesFile(p string) (map[string]interface{}, error) {
	data, err := os.ReadFile(p)
	if err != nil {
		return nil, err
	}
	var raw interface{}
	if err := yaml.Unmarshal(data, &raw); err != nil {
		return nil, fmt.Errorf("%s: %v", p, err)
	}
	if raw == nil {
		return map[string]interface{}{}, nil
	}
	m, ok := normalize(raw).(map[string]interface{})
	if !ok {
		return nil, fmt.Errorf("%s: top level is not a map", p)
	}
	return m, nil
}

// mergeValues merges src over dst in place: maps merge key by key, anything else replaces, and a null in
// src deletes the key (how `--set key=null` or `key: null` in a -f file removes a chart default).
func mergeValues(dst, src map[string]interface{}) {
	for k, v := range src {
		if v == nil {
			delete(dst, k)
			continue
		}
		srcMap, srcIsMap := v.(map[string]interface{})
		dstMap, dstIsMap := dst[k].(map[string]interface{})
		if srcIsMap && dstIsMap {
			mergeValues(dstMap, srcMap)
			continue
		}
		dst[k] = v
	}
}

// toYAML is Helm's toYaml: through JSON (sorted keys, numbers as JSON writes them), then YAML, without the
// final newline so `nindent` places it.
func toYAML(v interface{}) string {
	j, err := json.Marshal(v)
	if err != nil {
		return ""
	}
	var tree interface{}
	if err := yaml.Unmarshal(j, &tree); err != nil {
		return ""
	}
	out, err := yaml.Marshal(tree)
	if err != nil {
		return ""
	}
	return strings.TrimSuffix(string(out), "\n")
}

func fromYAML(s string) map[string]interface{} {
	var raw interface{}
	if err := yaml.Unmarshal([]byte(s), &raw); err != nil {
		return map[string]interface{}{"Error": err.Error()}
	}
	m, ok := normalize(raw).(map[string]interface{})
	if !ok {
		return map[string]interface{}{}
	}
	return m
}

func fromYAMLArray(s string) []interface{} {
	var raw []interface{}
	if err := yaml.Unmarshal([]byte(s), &raw); err != nil {
		return []interface{}{err.Error()}
	}
	return normalize(raw).([]interface{})
}

func toJSON(v interface{}) string {
	j, err := json.Marshal(v)
	if err != nil {
		return ""
	}
	return string(j)
}

func fromJSON(s string) map[string]interface{} {
	m := map[string]interface{}{}
	if err := json.Unmarshal([]byte(s), &m); err != nil {
		m["Error"] = err.Error()
	}
	return m
}

func required(msg string, val interface{}) (interface{}, error) {
	if val == nil {
		return val, errors.New(msg)
	}
	if s, ok := val.(string); ok && s == "" {
		return val, errors.New(msg)
	}
	return val, nil
}

type renderer struct {
	set          *template.Template
	strict       bool
	includeDepth int
}

func (r *renderer) missingKeyOption() string {
	if r.strict {
		return "missingkey=error"
	}
	return "missingkey=zero"
}

func (r *renderer) funcs() template.FuncMap {
	f := sprig.TxtFuncMap()
	// Helm removes these so a chart cannot depend on the environment of whoever renders it.
	delete(f, "env")
	delete(f, "expandenv")
	f["toYaml"] = toYAML
	f["fromYaml"] = fromYAML
	f["fromYamlArray"] = fromYAMLArray
	f["toJson"] = toJSON
	f["fromJson"] = fromJSON
	f["required"] = required
	f["include"] = r.include
	f["tpl"] = r.tpl
	f["lookup"] = func(apiVersion, kind, namespace, name string) (map[string]interface{}, error) {
		return map[string]interface{}{}, nil
	}
	return f
}

func (r *renderer) include(name string, data interface{}) (string, error) {
	if r.includeDepth >= includeDepthLimit {
		return "", fmt.Errorf("rendering template has a nested reference name: %s", name)
	}
	r.includeDepth++
	defer func() { r.includeDepth-- }()
	var buf bytes.Buffer
	if err := r.set.ExecuteTemplate(&buf, name, data); err != nil {
		return "", err
	}
	return buf.String(), nil
}

// tpl renders a string as a template with the chart's partials in scope, as Helm's tpl does.
func (r *renderer) tpl(text string, data interface{}) (string, error) {
	clone, err := r.set.Clone()
	if err != nil {
		return "", err
	}
	t, err := clone.New("tpl").Option(r.missingKeyOption()).Parse(text)
	if err != nil {
		return "", fmt.Errorf("cannot parse tpl text: %v", err)
	}
	var buf bytes.Buffer
	if err := t.Execute(&buf, data); err != nil {
		return "", err
	}
	return strings.ReplaceAll(buf.String(), "<no value>", ""), nil
}

// installOrder is Helm's releaseutil.InstallOrder: the order `helm template` prints kinds in.
var installOrder = []string{
	"PriorityClass", "Namespace", "NetworkPolicy", "ResourceQuota", "LimitRange", "PodSecurityPolicy",
	"PodDisruptionBudget", "ServiceAccount", "Secret", "SecretList", "ConfigMap", "StorageClass",
	"PersistentVolume", "PersistentVolumeClaim", "CustomResourceDefinition", "ClusterRole", "ClusterRoleList",
	"ClusterRoleBinding", "ClusterRoleBindingList", "Role", "RoleList", "RoleBinding", "RoleBindingList",
	"Service", "DaemonSet", "Pod", "ReplicationController", "ReplicaSet", "Deployment",
	"HorizontalPodAutoscaler", "StatefulSet", "Job", "CronJob", "IngressClass", "Ingress", "APIService",
}

type manifest struct {
	source  string
	content string
	kind    string
}

func kindRank(kind string) int {
	for i, k := range installOrder {
		if k == kind {
			return i
		}
	}
	return len(installOrder)
}

var docSeparator = regexp.MustCompile(`(?:^|\s*\n)---\s*`)

func splitDocuments(source, text string) ([]manifest, error) {
	var out []manifest
	for _, doc := range docSeparator.Split(text, -1) {
		doc = strings.TrimSpace(doc)
		if doc == "" {
			continue
		}
		var head struct {
			Kind string `yaml:"kind"`
		}
		if err := yaml.Unmarshal([]byte(doc), &head); err != nil {
			return nil, fmt.Errorf("YAML parse error on %s: %v", source, err)
		}
		out = append(out, manifest{source: source, content: doc, kind: head.Kind})
	}
	return out, nil
}

func loadChart(dir string) (*ChartMeta, error) {
	data, err := os.ReadFile(filepath.Join(dir, "Chart.yaml"))
	if err != nil {
		return nil, err
	}
	var meta ChartMeta
	if err := yaml.Unmarshal(data, &meta); err != nil {
		return nil, fmt.Errorf("Chart.yaml: %v", err)
	}
	if meta.APIVersion != "v2" {
		return nil, fmt.Errorf("Chart.yaml: apiVersion must be v2, got %q", meta.APIVersion)
	}
	if meta.Name == "" {
		return nil, errors.New("Chart.yaml: name is required")
	}
	if _, err := semver.StrictNewVersion(meta.Version); err != nil {
		return nil, fmt.Errorf("Chart.yaml: version %q is not SemVer 2: %v", meta.Version, err)
	}
	return &meta, nil
}

func render(o options) (string, error) {
	meta, err := loadChart(o.chartDir)
	if err != nil {
		return "", err
	}
	values := map[string]interface{}{}
	if _, err := os.Stat(filepath.Join(o.chartDir, "values.yaml")); err == nil {
		if values, err = readValuesFile(filepath.Join(o.chartDir, "values.yaml")); err != nil {
			return "", err
		}
	}
	for _, f := range o.valueFiles {
		override, err := readValuesFile(f)
		if err != nil {
			return "", err
		}
		mergeValues(values, override)
	}

	kube, err := semver.NewVersion(o.kubeVersion)
	if err != nil {
		return "", fmt.Errorf("--kube-version: %v", err)
	}
	if meta.KubeVersion != "" {
		constraint, err := semver.NewConstraint(meta.KubeVersion)
		if err != nil {
			return "", fmt.Errorf("Chart.yaml: kubeVersion %q: %v", meta.KubeVersion, err)
		}
		if !constraint.Check(kube) {
			return "", fmt.Errorf("chart requires kubeVersion: %s which is incompatible with Kubernetes %s",
				meta.KubeVersion, o.kubeVersion)
		}
	}
	caps := Capabilities{
		APIVersions: VersionSet(o.apiVersions),
		KubeVersion: KubeVersion{
			Version: "v" + kube.String(),
			Major:   fmt.Sprint(kube.Major()),
			Minor:   fmt.Sprint(kube.Minor()),
		},
	}

	// Template names are "<chart>/templates/<path>", as Helm names them (they show in errors and # Source).
	templatesDir := filepath.Join(o.chartDir, "templates")
	var names []string
	files := map[string]string{}
	err = filepath.WalkDir(templatesDir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		rel, err := filepath.Rel(templatesDir, p)
		if err != nil {
			return err
		}
		data, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		name := path.Join(meta.Name, "templates", filepath.ToSlash(rel))
		names = append(names, name)
		files[name] = string(data)
		return nil
	})
	if err != nil {
		return "", err
	}
	sort.Strings(names)

	r := &renderer{strict: o.strict}
	r.set = template.New(meta.Name).Funcs(r.funcs()).Option(r.missingKeyOption())
	for _, name := range names {
		if _, err := r.set.New(name).Parse(files[name]); err != nil {
			return "", err
		}
	}

	release := map[string]interface{}{
		"Name": o.name, "Namespace": o.namespace, "Service": "Helm",
		"IsInstall": true, "IsUpgrade": false, "Revision": 1,
	}
	var manifests []manifest
	for _, name := range names {
		base := path.Base(name)
		if strings.HasPrefix(base, "_") || base == "NOTES.txt" {
			continue
		}
		top := map[string]interface{}{
			"Values":       values,
			"Release":      release,
			"Chart":        meta,
			"Capabilities": caps,
			"Template":     map[string]interface{}{"Name": name, "BasePath": path.Join(meta.Name, "templates")},
		}
		var buf bytes.Buffer
		if err := r.set.ExecuteTemplate(&buf, name, top); err != nil {
			return "", err
		}
		text := strings.ReplaceAll(buf.String(), "<no value>", "")
		if strings.TrimSpace(text) == "" {
			continue
		}
		docs, err := splitDocuments(name, text)
		if err != nil {
			return "", err
		}
		manifests = append(manifests, docs...)
	}
	sort.SliceStable(manifests, func(i, j int) bool {
		a, b := manifests[i], manifests[j]
		ra, rb := kindRank(a.kind), kindRank(b.kind)
		if ra != rb {
			return ra < rb
		}
		if ra == len(installOrder) && a.kind != b.kind {
			return a.kind < b.kind
		}
		return a.source < b.source
	})
	var out strings.Builder
	for _, m := range manifests {
		fmt.Fprintf(&out, "---\n# Source: %s\n%s\n", m.source, m.content)
	}
	return out.String(), nil
}

func main() {
	o, err := parseArgs(os.Args[1:])
	if err != nil {
		if errors.Is(err, flag.ErrHelp) {
			os.Exit(0)
		}
		fmt.Fprintln(os.Stderr, "helm-render:", err)
		os.Exit(2)
	}
	out, err := render(o)
	if err != nil {
		fmt.Fprintln(os.Stderr, "helm-render: Error:", err)
		os.Exit(1)
	}
	fmt.Print(out)
}
