{{/* The chart name, or nameOverride. */}}
{{- define "remediator.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* The release's object name: fullnameOverride, the release name when it already
holds the chart name, else <release>-<chart>. */}}
{{- define "remediator.fullname" -}}
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

{{- define "remediator.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "remediator.selectorLabels" -}}
app.kubernetes.io/name: {{ include "remediator.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "remediator.labels" -}}
helm.sh/chart: {{ include "remediator.chart" . }}
{{ include "remediator.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{- define "remediator.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "remediator.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- required "serviceAccount.name is required when serviceAccount.create is false" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "remediator.image" -}}
{{- if .Values.image.digest }}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}
{{- end }}

{{/* The webhook token Secret's name and key. */}}
{{- define "remediator.webhookSecretName" -}}
{{- default (printf "%s-webhook" (include "remediator.fullname" .)) .Values.webhook.existingSecret }}
{{- end }}
{{- define "remediator.webhookSecretKey" -}}
{{- if .Values.webhook.existingSecret }}{{ .Values.webhook.existingSecretKey }}{{ else }}token{{ end }}
{{- end }}

{{- define "remediator.sinksSecretName" -}}
{{- default (printf "%s-sinks" (include "remediator.fullname" .)) .Values.sinks.existingSecret }}
{{- end }}

{{- define "remediator.stateSecretName" -}}
{{- default (printf "%s-state-dsn" (include "remediator.fullname" .)) .Values.store.postgresql.existingSecret }}
{{- end }}

{{/* The rule files, name -> text, as JSON (YAML would lose the last file's final newline): rules.files, else the chart's files/rules/. */}}
{{- define "remediator.ruleFiles" -}}
{{- $files := dict }}
{{- if .Values.rules.files }}
{{- $files = .Values.rules.files }}
{{- else }}
{{- range $path, $_ := .Files.Glob "files/rules/*.yaml" }}
{{- $_ := set $files (base $path) ($.Files.Get $path) }}
{{- end }}
{{- end }}
{{- toJson $files }}
{{- end }}

{{/* The rule files parsed, name -> document, as JSON; a file that is not YAML fails the
render, naming it. */}}
{{- define "remediator.ruleDocs" -}}
{{- $docs := dict }}
{{- range $name, $text := include "remediator.ruleFiles" . | fromJson }}
{{- $doc := $text | fromYaml }}
{{- if hasKey $doc "Error" }}
{{- fail (printf "rules.files %s is not YAML: %s" $name $doc.Error) }}
{{- end }}
{{- $_ := set $docs $name $doc }}
{{- end }}
{{- toJson $docs }}
{{- end }}

{{/* policy.namespaces of the rule files, as JSON {"namespaces": [...]}. */}}
{{- define "remediator.namespaces" -}}
{{- $namespaces := list }}
{{- range $name, $doc := include "remediator.ruleDocs" . | fromJson }}
{{- with $doc.policy }}
{{- range (.namespaces | default list) }}
{{- /* Helm's YAML reads y, n, on, off, yes, no as booleans where remediator reads text */}}
{{- if not (kindIs "string" .) }}
{{- fail (printf "rules.files %s: policy.namespaces holds %v, which Helm does not read as text: quote it" $name .) }}
{{- end }}
{{- $namespaces = append $namespaces . }}
{{- end }}
{{- end }}
{{- end }}
{{- toJson (dict "namespaces" $namespaces) }}
{{- end }}

{{/*
The RBAC rules the rules' actions need, as JSON {"rules": [...]}: for each rule with an
action (a declared action's name, or inline {kind, params}), what that action kind's
permissions(params) in remediator/actions/*.py says, united per (apiGroup, resource), then
resources grouped by equal verbs; ordered as `remediator rbac` orders them, so the two
are equal document for document.
*/}}
{{- define "remediator.rbacRules" -}}
{{- $docs := values (include "remediator.ruleDocs" . | fromJson) }}
{{- $declared := dict }}
{{- range $docs }}
{{- range $actionName, $spec := (.actions | default dict) }}
{{- $_ := set $declared $actionName $spec }}
{{- end }}
{{- end }}
{{- /* (group, resource) -> {group, resource, verbs: {verb: true}} */}}
{{- $grants := dict }}
{{- range $docs }}
{{- range (.rules | default list) }}
{{- $action := .action }}
{{- if $action }}
{{- if kindIs "string" $action }}
{{- if not (hasKey $declared $action) }}
{{- fail (printf "rule %q names the action %q, which no rule file declares" .name $action) }}
{{- end }}
{{- $action = get $declared $action }}
{{- end }}
{{- $params := $action.params | default dict }}
{{- $perms := list }}
{{- if eq $action.kind "scale_out" }}
{{- $hpaVerbs := list "list" }}
{{- if eq (toString ($params.hpa | default "refuse")) "raise_min" }}
{{- $hpaVerbs = list "list" "patch" }}
{{- end }}
{{- /* the action's, then what its evidence reads of a Deployment (rbac.EVIDENCE_READS) */}}
{{- $perms = list
      (list "apps" (list "deployments") (list "get"))
      (list "apps" (list "deployments/scale") (list "get" "patch"))
      (list "autoscaling" (list "horizontalpodautoscalers") $hpaVerbs)
      (list "keda.sh" (list "scaledobjects") (list "list"))
      (list "" (list "events") (list "create"))
      (list "apps" (list "deployments") (list "get"))
      (list "apps" (list "replicasets") (list "list"))
      (list "autoscaling" (list "horizontalpodautoscalers") (list "list"))
      (list "" (list "events") (list "list")) }}
{{- else if eq $action.kind "recycle_pod" }}
{{- /* the action's, then what its evidence reads of a Deployment and a Pod (its logs) */}}
{{- $perms = list
      (list "" (list "pods") (list "get" "list"))
      (list "" (list "pods/eviction") (list "create"))
      (list "apps" (list "replicasets" "deployments") (list "get"))
      (list "" (list "events") (list "create"))
      (list "apps" (list "deployments") (list "get"))
      (list "apps" (list "replicasets") (list "list"))
      (list "autoscaling" (list "horizontalpodautoscalers") (list "list"))
      (list "" (list "events") (list "list"))
      (list "" (list "pods" "pods/log") (list "get"))
      (list "" (list "events") (list "list")) }}
{{- if eq (toString $params.allow_delete_fallback) "true" }}
{{- $perms = append $perms (list "" (list "pods") (list "delete")) }}
{{- end }}
{{- else if has $action.kind (list "rollback" "restart_rollout") }}
{{- /* the action's (its pod template, its ReplicaSets), then its evidence's of a Deployment */}}
{{- $perms = list
      (list "apps" (list "deployments") (list "get" "patch"))
      (list "apps" (list "replicasets") (list "list"))
      (list "" (list "events") (list "create"))
      (list "apps" (list "deployments") (list "get"))
      (list "apps" (list "replicasets") (list "list"))
      (list "autoscaling" (list "horizontalpodautoscalers") (list "list"))
      (list "" (list "events") (list "list")) }}
{{- else if eq $action.kind "renew_certificate" }}
{{- /* the action's (its status subresource only), then what its evidence reads of a Certificate */}}
{{- $perms = list
      (list "cert-manager.io" (list "certificates") (list "get"))
      (list "cert-manager.io" (list "certificates/status") (list "patch"))
      (list "" (list "events") (list "create"))
      (list "cert-manager.io" (list "certificates") (list "get"))
      (list "" (list "events") (list "list")) }}
{{- else if has $action.kind (list "kill_query" "log_only") }}
{{- /* database privileges, or nothing: no Kubernetes API */}}
{{- else }}
{{- fail (printf "rule %q: action kind %q is not one this chart knows the RBAC of" .name (toString $action.kind)) }}
{{- end }}
{{- $shadow := eq (toString .shadow) "true" }}
{{- range $perms }}
{{- $group := index . 0 }}
{{- $verbs := index . 2 }}
{{- if $shadow }}
{{- /* a shadow rule never writes: only its precheck's reads (rbac._granted) */}}
{{- $verbs = without $verbs "create" "patch" "update" "delete" "deletecollection" }}
{{- end }}
{{- range $resource := ternary (index . 1) list (gt (len $verbs) 0) }}
{{- /* a space sorts before every character of a group or resource name */}}
{{- $key := printf "%s %s" $group $resource }}
{{- if not (hasKey $grants $key) }}
{{- $_ := set $grants $key (dict "group" $group "resource" $resource "verbs" dict) }}
{{- end }}
{{- $entry := get $grants $key }}
{{- range $verbs }}
{{- $_ := set $entry.verbs . true }}
{{- end }}
{{- end }}
{{- end }}
{{- end }}
{{- end }}
{{- end }}
{{- /* (group, sorted verbs) -> resources, in (group, resource) order */}}
{{- $grouped := dict }}
{{- range $key := keys $grants | sortAlpha }}
{{- $entry := get $grants $key }}
{{- $verbs := keys $entry.verbs | sortAlpha }}
{{- $groupKey := printf "%s %s" $entry.group (join " " $verbs) }}
{{- if not (hasKey $grouped $groupKey) }}
{{- $_ := set $grouped $groupKey (dict "apiGroups" (list $entry.group) "resources" list "verbs" $verbs) }}
{{- end }}
{{- $rule := get $grouped $groupKey }}
{{- $_ := set $rule "resources" (append $rule.resources $entry.resource) }}
{{- end }}
{{- $rules := list }}
{{- range $groupKey := keys $grouped | sortAlpha }}
{{- $rules = append $rules (get $grouped $groupKey) }}
{{- end }}
{{- toJson (dict "rules" $rules) }}
{{- end }}

{{/* sha256 of the settings read only at start: a change needs a restart. The webhook
token is not here: the service re-reads its token file when it changes. */}}
{{- define "remediator.configChecksum" -}}
{{- $config := dict
      "sinks" .Values.sinks
      "databases" .Values.databases
      "store" .Values.store
      "dryRun" .Values.dryRun
      "redactPatterns" (include "remediator.redactPatterns" .) -}}
{{- toJson $config | sha256sum }}
{{- end }}

{{- /* The evidence's extra redactions, one a line: the file --evidence-redact-file reads. */}}
{{- define "remediator.redactPatterns" -}}
{{- with .Values.archive }}{{ if .bucket }}{{ with .evidence }}{{ range .redactPatterns }}
{{ . }}
{{- end }}{{ end }}{{ end }}{{ end }}
{{- end }}
