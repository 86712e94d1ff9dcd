{{/*
modelplane.name: the chart name, or nameOverride; the `app.kubernetes.io/name` label.
*/}}
{{- define "modelplane.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
modelplane.fullname: the prefix of every object name; 63 characters at most (DNS label).
The release name alone when it already contains the chart name.
*/}}
{{- define "modelplane.fullname" -}}
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

{{/*
modelplane.chart: chart name and version for the `helm.sh/chart` label.
*/}}
{{- define "modelplane.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
modelplane.selectorLabels: the labels a selector matches on. Selectors are immutable,
so only the name and the instance, which never change for a release.
*/}}
{{- define "modelplane.selectorLabels" -}}
app.kubernetes.io/name: {{ include "modelplane.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{/*
modelplane.labels: the standard labels on every object the chart renders.
*/}}
{{- define "modelplane.labels" -}}
helm.sh/chart: {{ include "modelplane.chart" . }}
{{ include "modelplane.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: modelplane
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{/*
modelplane.operatorSelectorLabels: selects the operator pods (and only them) for its
Deployment and metrics Service.
*/}}
{{- define "modelplane.operatorSelectorLabels" -}}
{{ include "modelplane.selectorLabels" . }}
app.kubernetes.io/component: operator
{{- end }}

{{/*
modelplane.serviceAccountName: the operator's ServiceAccount, created or brought by the user.
*/}}
{{- define "modelplane.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "modelplane.fullname" .) .Values.serviceAccount.name }}
{{- else if .Values.serviceAccount.name }}
{{- .Values.serviceAccount.name }}
{{- else }}
{{- fail "serviceAccount.name is required when serviceAccount.create is false" }}
{{- end }}
{{- end }}

{{/*
modelplane.leaseName: the coordination.k8s.io Lease the operator replicas of this release elect
their leader on (in the release namespace); one per release, so two releases never contend.
*/}}
{{- define "modelplane.leaseName" -}}
{{ include "modelplane.fullname" . }}-operator
{{- end }}

{{/*
modelplane.image: an image reference from {repository, tag, digest}; the digest wins over
the tag, and the tag defaults to the chart's appVersion.
Usage: include "modelplane.image" (dict "image" .Values.operator.image "context" $)
*/}}
{{- define "modelplane.image" -}}
{{- $image := .image }}
{{- if $image.digest }}
{{- printf "%s@%s" $image.repository $image.digest }}
{{- else }}
{{- printf "%s:%s" $image.repository (default .context.Chart.AppVersion $image.tag) }}
{{- end }}
{{- end }}

{{/*
modelplane.watchNamespaces: the watched namespaces, unique; empty means all namespaces.
Returned as a JSON list because templates can only return strings.
*/}}
{{- define "modelplane.watchNamespaces" -}}
{{- .Values.watchNamespaces | uniq | toJson }}
{{- end }}

{{/*
modelplane.endpointPickerRole: the ClusterRole bound to each model's endpoint picker (spec.routing);
the operator gets its name through --endpoint-picker-role.
*/}}
{{- define "modelplane.endpointPickerRole" -}}
{{- printf "%s-endpoint-picker" (include "modelplane.fullname" .) | trunc 63 | trimSuffix "-" }}
{{- end }}
