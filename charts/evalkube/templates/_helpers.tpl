{{/* Resource name prefix: <release>-<chart>, or the release name when it already holds the chart name. */}}
{{- define "evalkube.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- $name := default .Chart.Name .Values.nameOverride -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{- define "evalkube.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* Labels of every object. */}}
{{- define "evalkube.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
app.kubernetes.io/name: {{ include "evalkube.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end -}}

{{/* Selector labels of one component; call with (dict "ctx" $ "component" "api"). */}}
{{- define "evalkube.selectorLabels" -}}
app.kubernetes.io/name: {{ include "evalkube.name" .ctx }}
app.kubernetes.io/instance: {{ .ctx.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{/* Labels of one component's objects; call with (dict "ctx" $ "component" "api"). */}}
{{- define "evalkube.componentLabels" -}}
{{ include "evalkube.labels" .ctx }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{- define "evalkube.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) -}}
{{- end -}}

{{- define "evalkube.evaluatorImage" -}}
{{- printf "%s:%s" .Values.evaluator.image.repository (default .Chart.AppVersion .Values.evaluator.image.tag) -}}
{{- end -}}

{{/* The namespace the API creates EvalJobs in (and the catalog ConfigMap lives in). */}}
{{- /* EVALKUBE_POLICY for the operator and the API alike: the policy values, with allowOnline
from evaluator.allowOnline (one setting for one rule). */ -}}
{{- define "evalkube.policy" -}}
{{- toJson (merge (dict "allowOnline" .Values.evaluator.allowOnline) .Values.policy) -}}
{{- end -}}

{{- define "evalkube.apiNamespace" -}}
{{- default .Release.Namespace .Values.api.namespace -}}
{{- end -}}

{{/* Namespaces that need the evaluator ServiceAccount, as a JSON list (use with fromJsonArray). */}}
{{- define "evalkube.evaluatorNamespaces" -}}
{{- concat (list (include "evalkube.apiNamespace" .)) .Values.watchNamespaces .Values.evaluator.namespaces | uniq | toJson -}}
{{- end -}}

{{- define "evalkube.operatorServiceAccount" -}}
{{- printf "%s-operator" (include "evalkube.fullname" .) -}}
{{- end -}}

{{- define "evalkube.apiServiceAccount" -}}
{{- printf "%s-api" (include "evalkube.fullname" .) -}}
{{- end -}}

{{- define "evalkube.evaluatorServiceAccount" -}}
{{- default (printf "%s-evaluator" (include "evalkube.fullname" .)) .Values.evaluator.serviceAccount.name -}}
{{- end -}}

{{/* imagePullSecrets of a pod from a list of Secret names. */}}
{{- define "evalkube.pullSecrets" -}}
{{- range . }}
- name: {{ . }}
{{- end -}}
{{- end -}}

{{/* Fails the render when the settings contradict each other. */}}
{{- define "evalkube.validate" -}}
{{- $apiNamespace := include "evalkube.apiNamespace" . -}}
{{- if and .Values.watchNamespaces (not (has $apiNamespace .Values.watchNamespaces)) -}}
{{- fail (printf "watchNamespaces %v must contain the API's namespace %q, or the operator never sees the EvalJobs the API creates" .Values.watchNamespaces $apiNamespace) -}}
{{- end -}}
{{- end -}}

{{/* Whether the operator runs several replicas, electing the active one through kopf peering. */}}
{{- define "evalkube.peering" -}}
{{- if gt (int .Values.operator.replicas) 1 }}true{{ end -}}
{{- end -}}
