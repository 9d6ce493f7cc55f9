package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// writeChart lays out a chart in a temporary directory; files maps relative paths to contents.
func writeChart(t *testing.T, files map[string]string) string {
	t.Helper()
	dir := t.TempDir()
	base := map[string]string{
		"Chart.yaml": "apiVersion: v2\nname: demo\nversion: 1.2.3\nappVersion: \"9.9\"\n",
	}
	for k, v := range files {
		base[k] = v
	}
	for rel, content := range base {
		p := filepath.Join(dir, rel)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

func mustRender(t *testing.T, o options) string {
	t.Helper()
	out, err := render(o)
	if err != nil {
		t.Fatalf("render: %v", err)
	}
	return out
}

func TestValuesMergeIncludeTplAndOutputFormat(t *testing.T) {
	dir := writeChart(t, map[string]string{
		"values.yaml": "a:\n  keep: 1\n  drop: 2\n  over: x\nlist: [1, 2]\nname: \"{{ .Release.Name }}-sfx\"\n" +
			"big: 1000000\n",
		"override.yaml":          "a:\n  drop: null\n  over: \"on\"\n  added: true\nlist: [3]\n",
		"templates/_helpers.tpl": `{{- define "demo.name" -}}{{ .Release.Name }}-{{ .Chart.Name }}{{- end }}`,
		"templates/cm.yaml": `apiVersion: v1
kind: ConfigMap
metadata:
  name: {{ include "demo.name" . }}
data:
  values: |
    {{- toYaml .Values.a | nindent 4 }}
  list: {{ toJson .Values.list | quote }}
  tpl: {{ tpl .Values.name . }}
  big: {{ .Values.big | quote }}
  chart: {{ .Chart.Version }}-{{ .Chart.AppVersion }}-{{ .Release.Namespace }}-{{ .Release.Service }}
  has: {{ .Capabilities.APIVersions.Has "monitoring.coreos.com/v1" | quote }}
  template: {{ .Template.Name }}
`,
		"templates/svc.yaml":   "apiVersion: v1\nkind: Service\nmetadata:\n  name: s\n",
		"templates/empty.yaml": "{{- if false }}\nkind: Nothing\n{{- end }}\n",
	})
	out := mustRender(t, options{name: "rel", namespace: "ns", chartDir: dir,
		valueFiles: stringList{filepath.Join(dir, "override.yaml")}, kubeVersion: "v1.29.0", strict: true})
	for _, want := range []string{
		"---\n# Source: demo/templates/cm.yaml\napiVersion: v1\nkind: ConfigMap\n",
		"name: rel-demo\n",
		"    added: true\n    keep: 1\n    over: \"on\"\n", // merged, deleted by null; toYaml quotes a YAML 1.1 bool word
		"list: \"[3]\"\n", // lists are replaced, not merged
		"tpl: rel-sfx\n",
		"big: \"1e+06\"\n", // numbers are float64, as in helm
		"chart: 1.2.3-9.9-ns-Helm\n",
		"has: \"false\"\n",
		"template: demo/templates/cm.yaml\n",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
	if strings.Contains(out, "drop") || strings.Contains(out, "Nothing") || strings.Contains(out, "_helpers") {
		t.Errorf("deleted value, empty template or partial rendered:\n%s", out)
	}
	// Helm's install order: ConfigMap before Service, whatever the file names.
	if strings.Index(out, "kind: ConfigMap") > strings.Index(out, "kind: Service") {
		t.Errorf("kinds out of install order:\n%s", out)
	}

	out = mustRender(t, options{name: "rel", namespace: "ns", chartDir: dir, kubeVersion: "v1.29.0",
		apiVersions: stringList{"monitoring.coreos.com/v1"}})
	if !strings.Contains(out, "has: \"true\"") {
		t.Errorf("--api-versions not seen by Capabilities.APIVersions.Has:\n%s", out)
	}
}

func TestErrors(t *testing.T) {
	cases := map[string]struct {
		template string
		strict   bool
		want     string
	}{
		"required":     {`x: {{ required "x.y is required" .Values.missing }}`, false, "x.y is required"},
		"strict":       {`x: {{ .Values.missing.deeper }}`, true, "missing"},
		"invalid yaml": {"a: [unclosed\n", false, "YAML parse error on demo/templates/t.yaml"},
		"fail":         {`{{ fail "no way" }}`, false, "no way"},
		"no env":       {`{{ env "HOME" }}`, false, `function "env" not defined`},
	}
	for name, c := range cases {
		dir := writeChart(t, map[string]string{"templates/t.yaml": c.template})
		_, err := render(options{name: "r", namespace: "n", chartDir: dir, kubeVersion: "v1.29.0", strict: c.strict})
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: error %v, want one containing %q", name, err, c.want)
		}
	}
	// Outside strict mode a missing value renders empty, as in helm.
	dir := writeChart(t, map[string]string{"templates/t.yaml": "x: \"{{ .Values.missing }}\"\n"})
	out := mustRender(t, options{name: "r", namespace: "n", chartDir: dir, kubeVersion: "v1.29.0"})
	if !strings.Contains(out, "x: \"\"\n") {
		t.Errorf("missing value did not render empty:\n%s", out)
	}
	dir = writeChart(t, map[string]string{
		"Chart.yaml": "apiVersion: v2\nname: demo\nversion: 1.0.0\nkubeVersion: \">=1.30.0-0\"\n",
	})
	if _, err := render(options{chartDir: dir, kubeVersion: "v1.29.0"}); err == nil {
		t.Errorf("kubeVersion constraint not enforced")
	}
}
