{{/* The chart's name, for labels. */}}
{{- define "passgate.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Object names: the release name, with the chart's appended unless it is in it already. */}}
{{- define "passgate.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{- define "passgate.selectorLabels" -}}
app.kubernetes.io/name: {{ include "passgate.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "passgate.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{ include "passgate.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{/* The image reference: repository@digest, or repository:tag (appVersion by default). */}}
{{- define "passgate.image" -}}
{{- if .Values.image.digest }}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}
{{- end }}

{{/* The policy ConfigMap's name: the operator's, or the chart's. */}}
{{- define "passgate.policyConfigMap" -}}
{{- default (printf "%s-policy" (include "passgate.fullname" .)) .Values.policy.existingConfigMap }}
{{- end }}

{{/* Fails the render on values that cannot work, with one line each. */}}
{{- define "passgate.validate" -}}
{{- if not .Values.passgate.issuer }}
{{- fail "passgate.issuer is required: the public URL clients see, e.g. https://mcp.example.com" }}
{{- end }}
{{- if not .Values.passgate.resources }}
{{- fail "passgate.resources is required: the public URLs of the MCP servers, e.g. [https://mcp.example.com/mcp]" }}
{{- end }}
{{- if not (has .Values.database.mode (list "sqlite" "postgresql")) }}
{{- fail (printf "database.mode must be sqlite or postgresql, not %q" .Values.database.mode) }}
{{- end }}
{{- if and (eq .Values.database.mode "postgresql") (not .Values.postgresql.existingSecret) }}
{{- fail "postgresql.existingSecret is required in postgresql mode: the Secret holding the database URL" }}
{{- end }}
{{- if not (has .Values.postgresql.passAs (list "file" "env")) }}
{{- fail (printf "postgresql.passAs must be file or env, not %q" .Values.postgresql.passAs) }}
{{- end }}
{{- if and .Values.policy.content .Values.policy.existingConfigMap }}
{{- fail "set policy.content or policy.existingConfigMap, not both" }}
{{- end }}
{{- end }}
