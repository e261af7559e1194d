{{/* The chart name, overridable. */}}
{{- define "workerfleet.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* A fully qualified name: release-chart, unless the release already says it. */}}
{{- define "workerfleet.fullname" -}}
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

{{- define "workerfleet.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Labels on every object of the release. */}}
{{- define "workerfleet.labels" -}}
helm.sh/chart: {{ include "workerfleet.chart" . }}
{{ include "workerfleet.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/component: operator
{{- end }}

{{/* Labels that select the operator pods; never change them after install. */}}
{{- define "workerfleet.selectorLabels" -}}
app.kubernetes.io/name: {{ include "workerfleet.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "workerfleet.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "workerfleet.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "workerfleet.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}

{{/* The leader Lease, named like the release. */}}
{{- define "workerfleet.leaseName" -}}
{{- include "workerfleet.fullname" . }}
{{- end }}

{{/* Refuse values that would not do what they say. */}}
{{- define "workerfleet.validate" -}}
{{- $le := .Values.leaderElection }}
{{- if and (gt (int .Values.replicaCount) 1) (not $le.enabled) }}
{{- fail "replicaCount > 1 needs leaderElection.enabled: without it every replica would act" }}
{{- end }}
{{- if $le.enabled }}
{{- if not (and (gt (int $le.leaseDurationSeconds) (int $le.renewDeadlineSeconds)) (gt (int $le.renewDeadlineSeconds) (int $le.retryPeriodSeconds))) }}
{{- fail "leaderElection needs leaseDurationSeconds > renewDeadlineSeconds > retryPeriodSeconds" }}
{{- end }}
{{- end }}
{{- end }}

{{/*
What the operator does in a namespace it serves: one ClusterRole when it serves all
namespaces, one Role in each of watchNamespaces otherwise. Secrets: get only (the DSN
of each pool, read by name). Pods: never created (Deployments do that).
*/}}
{{- define "workerfleet.namespacedRules" -}}
# The two resources the operator serves: watched, annotated (kopf's progress), status.
- apiGroups: [workerfleet.dev]
  resources: [workerpools, monitors]
  verbs: [get, list, watch, patch]
- apiGroups: [workerfleet.dev]
  resources: [workerpools/status, monitors/status]
  verbs: [get, patch]
# What a WorkerPool owns, applied server-side; garbage collection deletes them.
- apiGroups: [apps]
  resources: [deployments]
  verbs: [get, list, watch, create, patch]
- apiGroups: [""]
  resources: [services]
  verbs: [get, list, watch, create, patch, delete]
- apiGroups: [""]
  resources: [serviceaccounts]
  verbs: [get, create, patch]
# Worker pods: health rollup, dead worker incarnations, deletion cost on scale-in, restarting
# hung workers.
- apiGroups: [""]
  resources: [pods]
  verbs: [get, list, watch, patch, delete]
# The database DSN of each pool, read by name.
- apiGroups: [""]
  resources: [secrets]
  verbs: [get]
- apiGroups: ["", events.k8s.io]
  resources: [events]
  verbs: [create, patch]
{{- end }}
