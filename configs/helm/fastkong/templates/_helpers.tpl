{{- define "fastkong.name" -}}
{{- .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "fastkong.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "fastkong.labels" -}}
app.kubernetes.io/name: {{ include "fastkong.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
{{- end -}}

{{- define "fastkong.selectorLabels" -}}
app.kubernetes.io/name: {{ include "fastkong.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: gateway
{{- end -}}

{{- define "fastkong.controllerSelectorLabels" -}}
app.kubernetes.io/name: {{ include "fastkong.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: controller
{{- end -}}

{{- define "fastkong.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "fastkong.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{- define "fastkong.configMapName" -}}
{{- default (printf "%s-config" (include "fastkong.fullname" .)) .Values.dblessConfig.configMap -}}
{{- end -}}

{{- define "fastkong.image" -}}
{{- printf "%s:%s" .repository (toString .tag) -}}
{{- end -}}
