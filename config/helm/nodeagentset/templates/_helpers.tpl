{{/* Names and labels shared by the templates. */}}
{{- define "nodeagentset.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "nodeagentset.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- $name := include "nodeagentset.name" . -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{- define "nodeagentset.selectorLabels" -}}
app.kubernetes.io/name: {{ include "nodeagentset.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: controller-manager
{{- end -}}

{{- define "nodeagentset.labels" -}}
{{ include "nodeagentset.selectorLabels" . }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end -}}

{{- define "nodeagentset.serviceAccountName" -}}
{{- default (include "nodeagentset.fullname" .) .Values.serviceAccount.name -}}
{{- end -}}

{{/*
Combinations the schema cannot refuse with a plain message. Every template
that renders an object includes this, so `helm template` and `helm install`
stop before anything is applied.
*/}}
{{- define "nodeagentset.validate" -}}
{{- if and (gt (int .Values.replicaCount) 1) (not .Values.leaderElection.enabled) -}}
{{- fail (printf "replicaCount is %d with leaderElection.enabled=false: every replica would reconcile and create duplicate agent pods; enable leader election or set replicaCount=1" (int .Values.replicaCount)) -}}
{{- end -}}
{{- $grace := include "nodeagentset.terminationGracePeriodSeconds" . | int -}}
{{- if lt $grace (int .Values.gracefulShutdownTimeoutSeconds) -}}
{{- fail (printf "terminationGracePeriodSeconds (%d) is below gracefulShutdownTimeoutSeconds (%d): the kubelet would kill the manager before it finished shutting down" $grace (int .Values.gracefulShutdownTimeoutSeconds)) -}}
{{- end -}}
{{- $sm := .Values.metrics.serviceMonitor -}}
{{- if and .Values.metrics.enabled .Values.metrics.secure $sm.enabled -}}
{{- $ca := $sm.tls.ca | default dict -}}
{{- if and $ca.secret $ca.configMap -}}
{{- fail "metrics.serviceMonitor.tls.ca: give either secret or configMap, not both" -}}
{{- end -}}
{{- if and (or $ca.secret $ca.configMap) (not .Values.metrics.certSecret) -}}
{{- fail "metrics.serviceMonitor.tls.ca is set but metrics.certSecret is not: the manager would serve a self-signed certificate no CA verifies" -}}
{{- end -}}
{{- if and (not $sm.tls.insecureSkipVerify) (not (or $ca.secret $ca.configMap)) -}}
{{- fail "metrics.serviceMonitor.enabled with metrics.secure needs a CA to verify the endpoint: set metrics.certSecret and metrics.serviceMonitor.tls.ca.secret (or .configMap) to the CA that signed it, or, for the self-signed certificate, metrics.serviceMonitor.tls.insecureSkipVerify=true" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{/* The pod's grace: at least the manager's own shutdown timeout, plus room to exit. */}}
{{- define "nodeagentset.terminationGracePeriodSeconds" -}}
{{- if kindIs "invalid" .Values.terminationGracePeriodSeconds -}}
{{- add (int .Values.gracefulShutdownTimeoutSeconds) 10 -}}
{{- else -}}
{{- .Values.terminationGracePeriodSeconds | int -}}
{{- end -}}
{{- end -}}

{{- define "nodeagentset.image" -}}
{{- if .Values.image.digest -}}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest -}}
{{- else -}}
{{- printf "%s:%s" .Values.image.repository (.Values.image.tag | default .Chart.AppVersion) -}}
{{- end -}}
{{- end -}}
