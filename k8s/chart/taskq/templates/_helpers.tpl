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
{{- range (include "taskq.workers" . | fromJson).workers }}
{{- if .terminationGracePeriodSeconds }}
{{- if le (int .terminationGracePeriodSeconds) $grace }}
{{- fail (printf "%s.terminationGracePeriodSeconds must exceed config.shutdownGraceSeconds" .valuesPath) }}
{{- end }}
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

{{/* (dict "ctx" $ "worker" W), W one of the list of "taskq.workers". */}}
{{- define "taskq.worker.terminationGracePeriodSeconds" -}}
{{- if .worker.terminationGracePeriodSeconds }}
{{- int .worker.terminationGracePeriodSeconds }}
{{- else }}
{{- add (int .ctx.Values.config.shutdownGraceSeconds) 10 }}
{{- end }}
{{- end }}

{{/*
Worker Deployments: the main one (values `worker`) and one per entry of
`worker.groups`, as JSON {"workers": [...]} (read it with fromJson). A group
takes every setting it does not give from `worker`; `keda` and
`podDisruptionBudget` are merged key by key. Each entry also carries:
  fullname    the Deployment's (and its PDB's and ScaledObject's) name
  component   its app.kubernetes.io/component label: worker, worker-GROUP
  group       the group's name ("" for the main Deployment)
  queues      its WORKER_QUEUES ("" for the main Deployment without worker.queues)
  queueNames  the queues it serves: the names in WORKER_QUEUES, else [default]
  query       the KEDA query: the runnable backlog of exactly those queues
  valuesPath  where its values are, for messages
*/}}
{{- define "taskq.workers" -}}
{{- $fullname := include "taskq.fullname" . }}
{{- $base := omit .Values.worker "groups" "queues" }}
{{- $main := deepCopy $base }}
{{- $_ := set $main "group" "" }}
{{- $_ := set $main "queues" (.Values.worker.queues | default "") }}
{{- $_ := set $main "fullname" (printf "%s-worker" $fullname) }}
{{- $_ := set $main "component" "worker" }}
{{- $_ := set $main "valuesPath" "worker" }}
{{- $workers := list $main }}
{{- $seen := dict }}
{{- range $i, $g := .Values.worker.groups | default list }}
{{- $path := printf "worker.groups[%d]" $i }}
{{- if not (regexMatch "^[a-z0-9]([a-z0-9-]*[a-z0-9])?$" ($g.name | default "" | toString)) }}
{{- fail (printf "%s.name must be a DNS label (a-z, 0-9, -), found %q" $path ($g.name | default "" | toString)) }}
{{- end }}
{{- if hasKey $seen $g.name }}
{{- fail (printf "%s.name: two worker groups are named %q" $path $g.name) }}
{{- end }}
{{- $_ := set $seen $g.name true }}
{{- if not $g.queues }}
{{- fail (printf "%s.queues is required: the group's WORKER_QUEUES, e.g. \"emails=20\"" $path) }}
{{- end }}
{{- $w := deepCopy $base }}
{{- range $k, $v := $g }}
{{- if and (has $k (list "keda" "podDisruptionBudget")) (kindIs "map" $v) }}
{{- $merged := deepCopy (get $base $k) }}
{{- range $k2, $v2 := $v }}
{{- $_ := set $merged $k2 $v2 }}
{{- end }}
{{- $_ := set $w $k $merged }}
{{- else }}
{{- $_ := set $w $k $v }}
{{- end }}
{{- end }}
{{- $_ := unset $w "name" }}
{{- /* worker.keda.query is the main Deployment's; a group always counts its own queues. */}}
{{- $_ := set $w.keda "query" "" }}
{{- $_ := set $w "group" $g.name }}
{{- $name := printf "%s-worker-%s" $fullname $g.name }}
{{- if gt (len $name) 55 }}
{{- fail (printf "%s.name: the Deployment name %s is longer than 55 characters (63 with the -metrics Service); shorten the group name or fullnameOverride" $path $name) }}
{{- end }}
{{- $_ := set $w "fullname" $name }}
{{- $_ := set $w "component" (printf "worker-%s" $g.name) }}
{{- $_ := set $w "valuesPath" $path }}
{{- $workers = append $workers $w }}
{{- end }}
{{- range $w := $workers }}
{{- $names := list }}
{{- if $w.queues }}
{{- range splitList "," $w.queues }}
{{- if or (not (regexMatch "^[a-z0-9_.-]{1,64}=[1-9][0-9]{0,3}$" .)) (gt (int (last (splitList "=" .))) 1000) }}
{{- fail (printf "%s.queues: %q is not QUEUE=EXECUTORS (QUEUE: 1 to 64 of a-z 0-9 _ . -; EXECUTORS: 1 to 1000; items separated by commas, no spaces)" $w.valuesPath .) }}
{{- end }}
{{- $q := first (splitList "=" .) }}
{{- if has $q $names }}
{{- fail (printf "%s.queues names queue %q twice" $w.valuesPath $q) }}
{{- end }}
{{- $names = append $names $q }}
{{- end }}
{{- else }}
{{- $names = list "default" }}
{{- end }}
{{- $_ := set $w "queueNames" $names }}
{{- $quoted := list }}
{{- range $names }}
{{- $quoted = append $quoted (printf "'%s'" .) }}
{{- end }}
{{- $_ := set $w "query" ($w.keda.query | default (printf "SELECT count(*) FROM tasks WHERE status = 'queued' AND run_at <= now() AND queue IN (%s)" (join ", " $quoted))) }}
{{- end }}
{{- dict "workers" $workers | toJson }}
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
