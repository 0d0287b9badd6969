{{/*
Names and labels.
*/}}
{{- define "taskq.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "taskq.fullname" -}}
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

{{- define "taskq.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Labels common to every object. */}}
{{- define "taskq.labels" -}}
helm.sh/chart: {{ include "taskq.chart" . }}
app.kubernetes.io/name: {{ include "taskq.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: taskq
{{- end }}

{{/* Selector labels of one component: (dict "ctx" $ "component" "server"). */}}
{{- define "taskq.selectorLabels" -}}
app.kubernetes.io/name: {{ include "taskq.name" .ctx }}
app.kubernetes.io/instance: {{ .ctx.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end }}

{{/* All labels of one component's objects. */}}
{{- define "taskq.componentLabels" -}}
{{ include "taskq.labels" .ctx }}
app.kubernetes.io/component: {{ .component }}
{{- end }}

{{- define "taskq.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "taskq.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "taskq.image" -}}
{{- if .Values.image.digest }}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}
{{- end }}

{{/*
Secrets. The chart creates its own Secret (named like the release) when it
holds anything itself: an inline database URL, the bundled PostgreSQL's
credentials, or inline API tokens.
*/}}
{{- define "taskq.chartOwnsDatabaseSecret" -}}
{{- if or .Values.database.url .Values.postgresql.enabled }}true{{ end }}
{{- end }}

{{- define "taskq.chartSecretNeeded" -}}
{{- if or (include "taskq.chartOwnsDatabaseSecret" .) .Values.auth.tokens }}true{{ end }}
{{- end }}

{{- define "taskq.databaseSecretName" -}}
{{- if include "taskq.chartOwnsDatabaseSecret" . }}
{{- include "taskq.fullname" . }}
{{- else }}
{{- required "set database.existingSecret, database.url or postgresql.enabled" .Values.database.existingSecret }}
{{- end }}
{{- end }}

{{- define "taskq.databaseSecretKey" -}}
{{- if include "taskq.chartOwnsDatabaseSecret" . }}DATABASE_URL{{ else }}{{ .Values.database.existingSecretKey }}{{ end }}
{{- end }}

{{- define "taskq.postgresql.fullname" -}}
{{- printf "%s-postgresql" (include "taskq.fullname" .) | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Refuse contradictory settings early, with a message that says what to change. */}}
{{- define "taskq.validate" -}}
{{- if and .Values.database.url .Values.postgresql.enabled }}
{{- fail "database.url and postgresql.enabled are mutually exclusive: pick one database" }}
{{- end }}
{{- if and .Values.auth.tokens .Values.auth.existingSecret }}
{{- fail "auth.tokens and auth.existingSecret are mutually exclusive" }}
{{- end }}
{{- $grace := int .Values.config.shutdownGraceSeconds }}
{{- if .Values.server.terminationGracePeriodSeconds }}
{{- if le (int .Values.server.terminationGracePeriodSeconds) (add $grace (int .Values.server.preStopSleepSeconds)) }}
{{- fail "server.terminationGracePeriodSeconds must exceed config.shutdownGraceSeconds + server.preStopSleepSeconds" }}
{{- end }}
{{- end }}
{{- if .Values.worker.terminationGracePeriodSeconds }}
{{- if le (int .Values.worker.terminationGracePeriodSeconds) $grace }}
{{- fail "worker.terminationGracePeriodSeconds must exceed config.shutdownGraceSeconds" }}
{{- end }}
{{- end }}
{{- end }}

{{- define "taskq.server.terminationGracePeriodSeconds" -}}
{{- if .Values.server.terminationGracePeriodSeconds }}
{{- int .Values.server.terminationGracePeriodSeconds }}
{{- else }}
{{- add (int .Values.config.shutdownGraceSeconds) (int .Values.server.preStopSleepSeconds) 10 }}
{{- end }}
{{- end }}

{{- define "taskq.worker.terminationGracePeriodSeconds" -}}
{{- if .Values.worker.terminationGracePeriodSeconds }}
{{- int .Values.worker.terminationGracePeriodSeconds }}
{{- else }}
{{- add (int .Values.config.shutdownGraceSeconds) 10 }}
{{- end }}
{{- end }}

{{/*
Environment of every taskq container besides the ConfigMap: the database URL,
then the user's extra variables (given last, so they win).
*/}}
{{- define "taskq.databaseEnv" -}}
- name: DATABASE_URL
  valueFrom:
    secretKeyRef:
      name: {{ include "taskq.databaseSecretName" . }}
      key: {{ include "taskq.databaseSecretKey" . }}
{{- end }}

{{- define "taskq.apiTokenEnv" -}}
{{- if .Values.auth.tokens }}
- name: API_TOKEN
  valueFrom:
    secretKeyRef:
      name: {{ include "taskq.fullname" . }}
      key: API_TOKEN
{{- else if .Values.auth.existingSecret }}
- name: API_TOKEN
  valueFrom:
    secretKeyRef:
      name: {{ .Values.auth.existingSecret }}
      key: {{ .Values.auth.existingSecretKey }}
{{- end }}
{{- end }}

{{/* Pod annotations shared by server and worker pods: config checksums and scrape hints. */}}
{{- define "taskq.podAnnotations" -}}
checksum/config: {{ include (print .Template.BasePath "/configmap.yaml") . | sha256sum }}
{{- if include "taskq.chartSecretNeeded" . }}
checksum/secret: {{ include (print .Template.BasePath "/secret.yaml") . | sha256sum }}
{{- end }}
{{- if .Values.metrics.podAnnotations }}
prometheus.io/scrape: "true"
prometheus.io/port: {{ .Values.config.port | quote }}
prometheus.io/path: /metrics
{{- end }}
{{- end }}

{{/* Probes shared by server and worker containers (both serve /livez and /readyz). */}}
{{- define "taskq.probes" -}}
startupProbe:
  httpGet:
    path: /livez
    port: http
  periodSeconds: 2
  failureThreshold: 30
livenessProbe:
  httpGet:
    path: /livez
    port: http
  periodSeconds: 10
  timeoutSeconds: 3
  failureThreshold: 3
readinessProbe:
  httpGet:
    path: /readyz
    port: http
  periodSeconds: 5
  timeoutSeconds: 3
  failureThreshold: 2
{{- end }}
