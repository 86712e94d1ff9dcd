{{/*
modelplane.operatorRules: what the operator does to ModelDeployments and their children in a
namespace, and nothing more; a Role per watched namespace, or the ClusterRole for all of them.
The verbs follow the operator's code (kube.py: apply = create, get on conflict, merge patch;
create-only children get no patch; delete only for children a spec change removes; kopf
watches), and tests/chart/test_chart_rbac.py derives the same list from that code and compares.
*/}}
{{- define "modelplane.operatorRules" -}}
# kopf watches ModelDeployments and patches its progress annotations onto them.
- apiGroups: ["modelplane.io"]
  resources: ["modeldeployments"]
  verbs: ["get", "list", "watch", "patch"]
# Phase, conditions, endpoint, replicas.
- apiGroups: ["modelplane.io"]
  resources: ["modeldeployments/status"]
  verbs: ["patch"]
# Children carry ownerReferences with blockOwnerDeletion: true; where the
# OwnerReferencesPermissionEnforcement admission plugin runs, that needs update on the owner's
# finalizers subresource.
- apiGroups: ["modelplane.io"]
  resources: ["modeldeployments/finalizers"]
  verbs: ["update"]
# Watched children: an edit or deletion by hand is reverted at once. The endpoint picker's
# (spec.routing) are deleted when routing is turned off. The serving workload is a Deployment,
# or a LeaderWorkerSet (LWS) when a replica spans nodes; changing spec.resources.nodes between 1
# and more deletes the other one.
- apiGroups: ["apps"]
  resources: ["deployments"]
  verbs: ["get", "list", "watch", "create", "patch", "delete"]
- apiGroups: ["leaderworkerset.x-k8s.io"]
  resources: ["leaderworkersets"]
  verbs: ["get", "list", "watch", "create", "patch", "delete"]
- apiGroups: [""]
  resources: ["services", "configmaps", "serviceaccounts"]
  verbs: ["get", "list", "watch", "create", "patch", "delete"]
# spec.routing: the pool and the route of each routed model.
- apiGroups: ["inference.networking.k8s.io"]
  resources: ["inferencepools"]
  verbs: ["get", "list", "watch", "create", "patch", "delete"]
- apiGroups: ["gateway.networking.k8s.io"]
  resources: ["httproutes"]
  verbs: ["get", "list", "watch", "create", "patch", "delete"]
# The endpoint picker's RoleBinding to the chart's ClusterRole(s) below: `bind` on exactly those
# lets the operator grant them without holding the picker's rights (pods, pools) itself.
- apiGroups: ["rbac.authorization.k8s.io"]
  resources: ["rolebindings"]
  verbs: ["get", "list", "watch", "create", "patch", "delete"]
- apiGroups: ["rbac.authorization.k8s.io"]
  resources: ["clusterroles"]
  verbs: ["bind"]
  resourceNames:
    - {{ include "modelplane.endpointPickerRole" . }}
    - {{ include "modelplane.endpointPickerRole" . }}-leader-election
# Deleted when autoscaling is turned off or the replica count drops to one.
- apiGroups: ["autoscaling"]
  resources: ["horizontalpodautoscalers"]
  verbs: ["get", "list", "watch", "create", "patch", "delete"]
- apiGroups: ["policy"]
  resources: ["poddisruptionbudgets"]
  verbs: ["get", "list", "watch", "create", "patch", "delete"]
- apiGroups: ["keda.sh"]
  resources: ["scaledobjects"]
  verbs: ["get", "list", "watch", "create", "patch", "delete"]
# The model cache claim: recreated when missing, never patched (its spec is immutable once bound).
- apiGroups: [""]
  resources: ["persistentvolumeclaims"]
  verbs: ["get", "list", "watch", "create"]
- apiGroups: ["monitoring.coreos.com"]
  resources: ["servicemonitors"]
  verbs: ["get", "list", "watch", "create", "patch", "delete"]
# The fetch Job <name>-fetch (weights.py): created, replaced when the model changes (a Job's
# template is immutable), annotated with the summary its pod reported; watched for completion.
- apiGroups: ["batch"]
  resources: ["jobs"]
  verbs: ["get", "list", "watch", "create", "patch", "delete"]
# The fetch pod's termination message (the summary: commit, bytes, config.json for GPUFit).
- apiGroups: [""]
  resources: ["pods"]
  verbs: ["list"]
# The fetch pod's last progress line (tail of its log) for WeightsCached while it downloads.
# Reading logs is less than the operator can already do (it creates pods' templates), and
# leaves the fetch pod without any API credentials.
- apiGroups: [""]
  resources: ["pods/log"]
  verbs: ["get"]
# Warning Events (InvalidSpec, failed reconciles) through kopf.
- apiGroups: [""]
  resources: ["events"]
  verbs: ["create"]
{{- end }}

{{/*
modelplane.leaderElectionRules: the operator's Lease in the release namespace (leader.py: get it,
create it when missing, merge-patch it to take over, renew and release). A create cannot be
limited to a name; the rest is limited to this release's Lease.
*/}}
{{- define "modelplane.leaderElectionRules" -}}
- apiGroups: ["coordination.k8s.io"]
  resources: ["leases"]
  verbs: ["create"]
- apiGroups: ["coordination.k8s.io"]
  resources: ["leases"]
  resourceNames: [{{ include "modelplane.leaseName" . | quote }}]
  verbs: ["get", "patch"]
{{- end }}

{{/*
modelplane.clusterRules: cluster-scoped reads kopf and the operator need in every mode: CRDs
(kopf notices ModelDeployment CRDs installed later; the operator checks that the ServiceMonitor,
InferencePool, HTTPRoute and LeaderWorkerSet CRDs exist), Gateways (their address), and, when watching specific namespaces, namespaces (kopf lists them to match the
watched names; without it, it warns and assumes they exist).
*/}}
{{- define "modelplane.clusterRules" -}}
- apiGroups: ["apiextensions.k8s.io"]
  resources: ["customresourcedefinitions"]
  verbs: ["get", "list", "watch"]
# spec.routing: the Gateway's status.addresses become status.gatewayEndpoint (read-only; the
# Gateway usually lives in its own namespace).
- apiGroups: ["gateway.networking.k8s.io"]
  resources: ["gateways"]
  verbs: ["get"]
{{- if .Values.watchNamespaces }}
- apiGroups: [""]
  resources: ["namespaces"]
  verbs: ["list", "watch"]
{{- end }}
{{- end }}

{{/*
modelplane.endpointPickerRules: what each model's endpoint picker (llm-d router EPP, v0.10.0) reads
in its namespace, after the upstream chart's Role: its pool's pods, the InferencePool, and the
InferenceObjective/InferenceModelRewrite CRDs when installed (the picker watches whichever group
exists). Bound per model by the operator with a RoleBinding, so it never applies cluster-wide.
*/}}
{{- define "modelplane.endpointPickerRules" -}}
- apiGroups: [""]
  resources: ["pods"]
  verbs: ["get", "list", "watch"]
- apiGroups: ["inference.networking.k8s.io"]
  resources: ["inferencepools"]
  verbs: ["get", "list", "watch"]
- apiGroups: ["llm-d.ai", "inference.networking.x-k8s.io"]
  resources: ["inferenceobjectives", "inferencemodelrewrites"]
  verbs: ["get", "list", "watch"]
{{- end }}

{{/*
modelplane.endpointPickerLeaderElectionRules: a picker with several replicas elects its active one
on a Lease (named after its pool) and records Events; bound only to those pickers.
*/}}
{{- define "modelplane.endpointPickerLeaderElectionRules" -}}
- apiGroups: ["coordination.k8s.io"]
  resources: ["leases"]
  verbs: ["get", "list", "watch", "create", "update", "patch", "delete"]
- apiGroups: [""]
  resources: ["events"]
  verbs: ["create", "patch"]
{{- end }}
