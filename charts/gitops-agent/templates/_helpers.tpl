{{/* The release's full name: the release name, or <release>-gitops-agent when it does not contain the chart's. */}}
{{- define "gitops-agent.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "gitops-agent.selectorLabels" -}}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "gitops-agent.labels" -}}
{{ include "gitops-agent.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
{{- end -}}

{{- define "gitops-agent.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "gitops-agent.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{/* The image reference: repository:tag, or repository@digest when a digest is given. */}}
{{- define "gitops-agent.image" -}}
{{- if .Values.image.digest -}}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest -}}
{{- else -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) -}}
{{- end -}}
{{- end -}}

{{/* The name of the Secret the agent's environment comes from ("" for none). */}}
{{- define "gitops-agent.secretName" -}}
{{- if .Values.secrets.existingSecret -}}
{{- .Values.secrets.existingSecret -}}
{{- else if .Values.secrets.values -}}
{{- printf "%s-secrets" (include "gitops-agent.fullname" .) -}}
{{- end -}}
{{- end -}}

{{- define "gitops-agent.kubeconfigsName" -}}
{{- if .Values.kubeconfigs.existingSecret -}}
{{- .Values.kubeconfigs.existingSecret -}}
{{- else if .Values.kubeconfigs.values -}}
{{- printf "%s-kubeconfigs" (include "gitops-agent.fullname" .) -}}
{{- end -}}
{{- end -}}

{{/* True when the agent talks to its own cluster with the pod's token: an in-cluster target, or Leases. */}}
{{- define "gitops-agent.usesOwnCluster" -}}
{{- if or .Values.inClusterTarget.enabled .Values.config.sharding (gt (int .Values.replicas) 1) -}}true{{- end -}}
{{- end -}}
