{{/*
Names. Kubernetes names are at most 63 characters (DNS labels), and a StatefulSet's pods append "-<ordinal>",
so names are cut to leave room.
*/}}
{{- define "kvtier.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* "<release>-kvtier", or the release name alone when it already contains the chart name. */}}
{{- define "kvtier.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 52 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 52 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 52 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{/* The headless Service: the StatefulSet's serviceName, what sharding clients resolve, the scrape job. */}}
{{- define "kvtier.headlessName" -}}
{{- printf "%s-headless" (include "kvtier.fullname" .) }}
{{- end }}

{{- define "kvtier.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "kvtier.selectorLabels" -}}
app.kubernetes.io/name: {{ include "kvtier.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "kvtier.labels" -}}
helm.sh/chart: {{ include "kvtier.chart" . }}
{{ include "kvtier.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/component: cache
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{- define "kvtier.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "kvtier.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "kvtier.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}

{{/* Where the server reads its config; the container's args and the ConfigMap mount agree on it. */}}
{{- define "kvtier.configPath" -}}
/etc/kvtier/kvtier.yaml
{{- end }}

{{/* Fixed mount point of the TLS Secret; the config's tls.* keys name the files under it. */}}
{{- define "kvtier.tlsDir" -}}
/etc/kvtier/tls
{{- end }}

{{/* Fixed mount point of the bearer-token Secret; auth.tokens_file names the file under it. */}}
{{- define "kvtier.authDir" -}}
/etc/kvtier/auth
{{- end }}

{{/*
kvtier's config file: the `config` values plus the keys the chart owns (listen addresses on the pod IP,
disk.path on the data volume, tls.* on the mounted Secret). Rendered as YAML for the ConfigMap.
*/}}
{{- define "kvtier.config" -}}
{{- $cfg := deepCopy .Values.config }}
{{- $_ := set $cfg "listen" (printf "0.0.0.0:%d" (int .Values.ports.grpc)) }}
{{- $_ = set $cfg "metrics_listen" (printf "0.0.0.0:%d" (int .Values.ports.metrics)) }}
{{- if eq .Values.storage.type "none" }}
{{- $_ = unset $cfg "disk" }}
{{- else }}
{{- $disk := default (dict) (get $cfg "disk") }}
{{- $_ = set $disk "path" .Values.storage.mountPath }}
{{- $_ = set $cfg "disk" $disk }}
{{- end }}
{{- if .Values.tls.enabled }}
{{- $dir := include "kvtier.tlsDir" . }}
{{- $tls := dict "cert_file" (printf "%s/tls.crt" $dir) "key_file" (printf "%s/tls.key" $dir) }}
{{- if .Values.tls.clientAuth }}
{{- $_ = set $tls "client_ca_file" (printf "%s/ca.crt" $dir) }}
{{- end }}
{{- $_ = set $cfg "tls" $tls }}
{{- end }}
{{- if .Values.auth.enabled }}
{{- $_ = set $cfg "auth" (dict "tokens_file" (printf "%s/%s" (include "kvtier.authDir" .) .Values.auth.secretKey)) }}
{{- end }}
{{- toYaml $cfg }}
{{- end }}

{{/*
Prometheus label matchers selecting this release's scrape job (the ServiceMonitor names the job after the
headless Service).
*/}}
{{- define "kvtier.alertSelector" -}}
{{- printf "job=%q, namespace=%q" (include "kvtier.headlessName" .) .Release.Namespace }}
{{- end }}

{{/* Refuses value combinations that would render a broken or unsafe release. */}}
{{- define "kvtier.validate" -}}
{{- $types := list "pvc" "hostPath" "emptyDir" "none" }}
{{- if not (has .Values.storage.type $types) }}
{{- fail (printf "storage.type must be one of %s, got %q" (join ", " $types) .Values.storage.type) }}
{{- end }}
{{- if not (has .Values.podAntiAffinity (list "soft" "hard" "none")) }}
{{- fail (printf "podAntiAffinity must be soft, hard or none, got %q" .Values.podAntiAffinity) }}
{{- end }}
{{- if and (eq .Values.storage.type "hostPath") (ne .Values.podAntiAffinity "hard") }}
{{- fail "storage.type hostPath gives every pod the same node directory: set podAntiAffinity to hard (one pod per node)" }}
{{- end }}
{{- if and (ne .Values.podAntiAffinity "none") (hasKey .Values.affinity "podAntiAffinity") }}
{{- fail "affinity.podAntiAffinity conflicts with the podAntiAffinity preset: set podAntiAffinity to none to use your own" }}
{{- end }}
{{- if hasKey .Values.config "tls" }}
{{- fail "config.tls is set by the chart from the Secret it mounts: use tls.enabled, tls.secretName and tls.clientAuth" }}
{{- end }}
{{- if hasKey .Values.config "auth" }}
{{- fail "config.auth is set by the chart from the Secret it mounts: use auth.enabled, auth.secretName and auth.secretKey" }}
{{- end }}
{{- if and .Values.tls.clientAuth (not .Values.tls.enabled) }}
{{- fail "tls.clientAuth needs tls.enabled" }}
{{- end }}
{{- if and .Values.prometheusRule.enabled (not .Values.serviceMonitor.enabled) }}
{{- fail "prometheusRule needs serviceMonitor.enabled: the alerts select the ServiceMonitor's scrape job" }}
{{- end }}
{{- end }}
