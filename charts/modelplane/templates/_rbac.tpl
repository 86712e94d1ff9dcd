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
# Watched children: an edit or deletion by hand is reverted at once.
- apiGroups: ["apps"]
  resources: ["deployments"]
  verbs: ["get", "list", "watch", "create", "patch"]
- apiGroups: [""]
  resources: ["services"]
  verbs: ["get", "list", "watch", "create", "patch"]
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
  verbs: ["get", "list", "watch", "create", "patch"]
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
(kopf notices ModelDeployment CRDs installed later; the operator checks that the ServiceMonitor
CRD exists), and, when watching specific namespaces, namespaces (kopf lists them to match the
watched names; without it, it warns and assumes they exist).
*/}}
{{- define "modelplane.clusterRules" -}}
- apiGroups: ["apiextensions.k8s.io"]
  resources: ["customresourcedefinitions"]
  verbs: ["get", "list", "watch"]
{{- if .Values.watchNamespaces }}
- apiGroups: [""]
  resources: ["namespaces"]
  verbs: ["list", "watch"]
{{- end }}
{{- end }}
