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

{{- /*
KONG_STREAM_LISTEN from stream.listeners: "0.0.0.0:<containerPort>[ ssl][ proxy_protocol]",
comma-joined. Fails
the render when a listener's name, port or nodePort is taken (by another listener or by the
proxy, admin or status ports): the pod and the Service would be refused, or silently serve the wrong port.
*/}}
{{- define "fastkong.streamListen" -}}
{{- $names := dict "proxy" "proxy" "proxy-tls" "proxy-tls" "admin" "admin" "status" "status" -}}
{{- $containerPorts := dict -}}
{{- $_ := set $containerPorts (toString .Values.proxy.http.containerPort) "proxy" -}}
{{- $_ := set $containerPorts (toString .Values.proxy.tls.containerPort) "proxy-tls" -}}
{{- $_ := set $containerPorts (toString .Values.admin.http.containerPort) "admin" -}}
{{- $_ := set $containerPorts (toString .Values.status.http.containerPort) "status" -}}
{{- $servicePorts := dict -}}
{{- if .Values.proxy.http.enabled -}}
{{- $_ := set $servicePorts (toString .Values.proxy.http.servicePort) "proxy" -}}
{{- end -}}
{{- if .Values.proxy.tls.enabled -}}
{{- $_ := set $servicePorts (toString .Values.proxy.tls.servicePort) "proxy-tls" -}}
{{- end -}}
{{- $nodePorts := dict -}}
{{- if and .Values.proxy.http.enabled .Values.proxy.http.nodePort -}}
{{- $_ := set $nodePorts (toString .Values.proxy.http.nodePort) "proxy" -}}
{{- end -}}
{{- if and .Values.proxy.tls.enabled .Values.proxy.tls.nodePort -}}
{{- $_ := set $nodePorts (toString .Values.proxy.tls.nodePort) "proxy-tls" -}}
{{- end -}}
{{- $entries := list -}}
{{- range .Values.stream.listeners -}}
{{- if hasKey $names .name -}}
{{- fail (printf "stream.listeners: the port name %s is taken" .name) -}}
{{- end -}}
{{- $_ := set $names .name .name -}}
{{- $port := toString .containerPort -}}
{{- if hasKey $containerPorts $port -}}
{{- fail (printf "stream.listeners: %s: containerPort %s is taken by %s" .name $port (get $containerPorts $port)) -}}
{{- end -}}
{{- $_ := set $containerPorts $port .name -}}
{{- $servicePort := toString (.servicePort | default .containerPort) -}}
{{- if hasKey $servicePorts $servicePort -}}
{{- fail (printf "stream.listeners: %s: servicePort %s is taken by %s" .name $servicePort (get $servicePorts $servicePort)) -}}
{{- end -}}
{{- $_ := set $servicePorts $servicePort .name -}}
{{- if .nodePort -}}
{{- $nodePort := toString .nodePort -}}
{{- if hasKey $nodePorts $nodePort -}}
{{- fail (printf "stream.listeners: %s: nodePort %s is taken by %s" .name $nodePort (get $nodePorts $nodePort)) -}}
{{- end -}}
{{- $_ := set $nodePorts $nodePort .name -}}
{{- end -}}
{{- if and .udp (or .ssl .proxyProtocol) -}}
{{- fail (printf "stream.listeners: %s: udp cannot be ssl or proxyProtocol (nginx refuses both with udp)" .name) -}}
{{- end -}}
{{- $flags := printf "%s%s%s" (ternary " ssl" "" (.ssl | default false)) (ternary " proxy_protocol" "" (.proxyProtocol | default false)) (ternary " udp" "" (.udp | default false)) -}}
{{- $entries = append $entries (printf "0.0.0.0:%s%s" $port $flags) -}}
{{- end -}}
{{- join ", " $entries -}}
{{- end -}}
