"""The chart grants the operator exactly what its code uses, and its flags parse in the real CLI.

The required permissions are derived from the operator's own code: the children `plan_children`
applies or deletes for specs that exercise every child kind, the children kopf watches
(`handlers.WATCHED_CHILDREN`), and the API calls of `kube.py`. A new child kind or API call in the
operator fails this test until the chart's RBAC follows.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

import pytest

from modelplane.operator import handlers, kube, weights
from modelplane.operator import spec as specmod
from modelplane.operator.cli import settings_from_args
from modelplane.operator.lease import LeaseClient
from modelplane.operator.resources import Owner, RoutingPlan, plan_children
from modelplane.operator.routing import RoutingDefaults
from tests.chart.delivery_checks import (
    CHART,
    EXAMPLES,
    RELEASE_NAMESPACE,
    Manifest,
    by_kind,
    load_yaml_documents,
    one,
    run_helm,
)

Permissions = dict[tuple[str, str], set[str]]

# kube.Kube.apply: POST (create), GET on 409 (get), merge PATCH when it differs (patch).
APPLY_VERBS = {"create", "get", "patch"}
# kube.Kube.create: POST (create), GET on 409 (get); never patched.
CREATE_VERBS = {"create", "get"}
# Specs that, together with the examples, make plan_children produce and remove every child kind.
VARIANT_SPECS: list[dict[str, Any]] = [
    {"model": {"uri": "hf://Qwen/Qwen3-8B"}},
    {"model": {"uri": "hf://Qwen/Qwen3-8B"}, "replicas": 3},
    {"model": {"uri": "hf://Qwen/Qwen3-8B"}, "autoscaling": {"maxReplicas": 4}},
    {
        "model": {"uri": "hf://Qwen/Qwen3-8B"},
        "autoscaling": {
            "provider": "keda",
            "minReplicas": 0,
            "maxReplicas": 4,
            "prometheusAddress": "http://prometheus:9090",
        },
        "routing": {"gatewayRef": {"name": "gw", "namespace": "gateway-system"}},
        "monitoring": {"serviceMonitor": {"enabled": True}},
    },
    {
        "model": {"uri": "hf://Qwen/Qwen3-8B"},
        "routing": {"endpointPicker": {"replicas": 2}, "gatewayRef": {"name": "gw"}},
    },
    {"model": {"uri": "hf://Qwen/Qwen3-8B"}, "cache": {"size": "10Gi"}},
    {"model": {"uri": "hf://Qwen/Qwen3-8B"}, "monitoring": {"serviceMonitor": {"enabled": True}}},
    {
        "model": {"uri": "hf://Qwen/Qwen3-8B"},
        "engine": {"pipelineParallelSize": 2},
        "resources": {"nodes": 2},
    },
]


def group_of(api_version: str) -> str:
    return api_version.split("/")[0] if "/" in api_version else ""


def all_specs() -> list[dict[str, Any]]:
    specs = list(VARIANT_SPECS)
    for path in sorted(EXAMPLES.glob("*.yaml")):
        specs += [d["spec"] for d in load_yaml_documents(path) if d["kind"] == specmod.KIND]
    return specs


PICKER_ROLE = "mp-modelplane-endpoint-picker"  # what the chart passes as --endpoint-picker-role
OPERATOR_CLUSTER_ROLE = "mp-modelplane-operator"


def operator_plans() -> list[Any]:
    owner = Owner(name="qwen3-8b", namespace="models", uid="uid-1")
    routing = RoutingPlan(RoutingDefaults(endpoint_picker_role=PICKER_ROLE))
    return [
        plan_children(
            owner,
            specmod.parse_spec(body),
            default_image=specmod.DEFAULT_IMAGE,
            service_monitor_available=True,
            routing=routing,
        )
        for body in all_specs()
    ]


def bind_grants(role: Manifest) -> set[str]:
    """ClusterRole names the role lets its holder bind (and nothing else about clusterroles)."""
    names: set[str] = set()
    for rule in role["rules"]:
        if "clusterroles" in rule["resources"]:
            assert rule["resources"] == ["clusterroles"] and rule["verbs"] == ["bind"]
            assert rule["apiGroups"] == ["rbac.authorization.k8s.io"]
            names |= set(rule["resourceNames"])
    return names


def bound_cluster_roles() -> set[str]:
    """The ClusterRoles the operator's RoleBindings reference: it needs `bind` on exactly these."""
    return {
        m["roleRef"]["name"]
        for plan in operator_plans()
        for m in plan.apply
        if m["kind"] == "RoleBinding"
    }


def operator_needs() -> Permissions:
    """Namespaced permissions the operator's code uses (`bind` by name: bound_cluster_roles)."""
    needs: Permissions = defaultdict(set)
    block_owner_deletion = False
    for plan in operator_plans():
        for verbs, manifests in ((CREATE_VERBS, plan.create), (APPLY_VERBS, plan.apply)):
            for manifest in manifests:
                key = (group_of(manifest["apiVersion"]), kube.PLURALS[manifest["kind"]])
                needs[key] |= verbs
                refs = manifest["metadata"].get("ownerReferences", [])
                block_owner_deletion |= any(r.get("blockOwnerDeletion") for r in refs)
        for ref in plan.delete:
            needs[(group_of(ref.api_version), kube.PLURALS[ref.kind])].add("delete")
    for group, _version, plural in handlers.WATCHED_CHILDREN:
        needs[(group, plural)] |= {"list", "watch"}
    # kopf watches ModelDeployments and patches its annotations; on_child_event GETs the owner.
    needs[(specmod.GROUP, specmod.PLURAL)] |= {"get", "list", "watch", "patch"}
    # kube.Kube.patch_status.
    needs[(specmod.GROUP, f"{specmod.PLURAL}/status")] |= {"patch"}
    if block_owner_deletion:
        needs[(specmod.GROUP, f"{specmod.PLURAL}/finalizers")] |= {"update"}
    # kopf.warn posts core v1 Events.
    needs[("", "events")] |= {"create"}
    # The fetch Job and its pods' termination messages (weights.sync_weights).
    for key, verbs in weights.API_USES.items():
        needs[key] |= verbs
    return dict(needs)


def leader_election_needs() -> Permissions:
    """What leader.py does to its Lease: one verb per LeaseClient method (get, create, patch)."""
    client = LeaseClient(None, "ns", "lease")  # type: ignore[arg-type]
    _, _apis, group, _version, _namespaces, _namespace, plural = client.collection.split("/")
    verbs = {name for name in vars(LeaseClient) if not name.startswith("_")}
    return {(group, plural): verbs}


# kube.Kube.crd_exists GETs a CRD; kopf lists and watches CRDs to notice new resources;
# routed.py GETs the Gateway of a routed model for its address.
CLUSTER_NEEDS: Permissions = {
    ("apiextensions.k8s.io", "customresourcedefinitions"): {"get", "list", "watch"},
    ("gateway.networking.k8s.io", "gateways"): {"get"},
}
# kopf lists and watches namespaces when it watches specific ones.
NAMESPACE_LISTING: Permissions = {("", "namespaces"): {"list", "watch"}}


def granted(role: Manifest) -> Permissions:
    """The role's rules by (group, resource); `bind` by name is checked by bind_grants."""
    rules: Permissions = defaultdict(set)
    for rule in role["rules"]:
        if rule["resources"] == ["clusterroles"] and rule["verbs"] == ["bind"]:
            continue
        assert "resourceNames" not in rule and "nonResourceURLs" not in rule
        for group in rule["apiGroups"]:
            for resource in rule["resources"]:
                assert "*" not in rule["verbs"] and resource != "*" and group != "*"
                rules[(group, resource)] |= set(rule["verbs"])
    return dict(rules)


def merge(*sets: Permissions) -> Permissions:
    out: Permissions = defaultdict(set)
    for permissions in sets:
        for key, verbs in permissions.items():
            out[key] |= verbs
    return dict(out)


def test_operator_needs_cover_every_child_kind() -> None:
    needs = operator_needs()
    for resource in (
        "deployments",
        "services",
        "horizontalpodautoscalers",
        "scaledobjects",
        "poddisruptionbudgets",
        "persistentvolumeclaims",
        "servicemonitors",
    ):
        assert any(plural == resource for _, plural in needs), resource


LEADER_ELECTION_ROLE = "mp-modelplane-operator-leader-election"


def watched_roles(objects: list[Manifest], kind: str = "Role") -> list[Manifest]:
    return [o for o in by_kind(objects, kind) if o["metadata"]["name"] != LEADER_ELECTION_ROLE]


def test_cluster_role_grants_exactly_what_the_operator_uses_when_watching_all_namespaces(
    render: Any,
) -> None:
    objects = render()
    assert not watched_roles(objects) and not watched_roles(objects, "RoleBinding")
    role = operator_cluster_role(objects)
    assert granted(role) == merge(operator_needs(), CLUSTER_NEEDS)
    assert bind_grants(role) == bound_cluster_roles()


def test_roles_per_watched_namespace_grant_exactly_what_the_operator_uses(render: Any) -> None:
    objects = render({"watchNamespaces": ["models", "models-staging"]})
    roles = {r["metadata"]["namespace"]: r for r in watched_roles(objects)}
    assert set(roles) == {"models", "models-staging"}
    for role in roles.values():
        assert granted(role) == operator_needs()
        assert bind_grants(role) == bound_cluster_roles()
    # Cluster-wide, only the reads kopf needs: no namespaced resource anywhere.
    cluster_role = operator_cluster_role(objects)
    assert granted(cluster_role) == merge(CLUSTER_NEEDS, NAMESPACE_LISTING)
    assert not bind_grants(cluster_role)


def operator_cluster_role(objects: list[Manifest]) -> Manifest:
    (role,) = [
        r for r in by_kind(objects, "ClusterRole") if r["metadata"]["name"] == OPERATOR_CLUSTER_ROLE
    ]
    return role


def test_bindings_bind_the_operator_service_account_to_its_roles(render: Any) -> None:
    objects = render({"watchNamespaces": ["models", "models-staging"]})
    account = one(objects, "ServiceAccount")["metadata"]
    pod = one(objects, "Deployment")["spec"]["template"]["spec"]
    assert pod["serviceAccountName"] == account["name"]
    subject = {"kind": "ServiceAccount", "name": account["name"], "namespace": RELEASE_NAMESPACE}
    bindings = watched_roles(objects, "RoleBinding")
    assert {b["metadata"]["namespace"] for b in bindings} == {"models", "models-staging"}
    for binding in bindings:
        assert binding["subjects"] == [subject]
        assert binding["roleRef"]["kind"] == "Role"
        assert binding["roleRef"]["name"] == watched_roles(objects)[0]["metadata"]["name"]
    cluster_binding = one(objects, "ClusterRoleBinding")
    assert cluster_binding["subjects"] == [subject]
    assert cluster_binding["roleRef"]["name"] == OPERATOR_CLUSTER_ROLE


@pytest.mark.parametrize("watch", [[], ["models"]])
def test_leader_election_may_use_only_its_own_lease_in_the_release_namespace(
    render: Any, watch: list[str]
) -> None:
    objects = render({"watchNamespaces": watch})
    settings = settings_from_args(container_args(objects))
    roles = [r for r in by_kind(objects, "Role") if r["metadata"]["name"] == LEADER_ELECTION_ROLE]
    (role,) = roles
    assert role["metadata"]["namespace"] == RELEASE_NAMESPACE == settings.leader_election_namespace
    verbs: set[str] = set()
    for rule in role["rules"]:
        assert (rule["apiGroups"], rule["resources"]) == (["coordination.k8s.io"], ["leases"])
        assert "*" not in rule["verbs"]
        verbs |= set(rule["verbs"])
        # A create cannot be limited to a name; everything else is limited to the one Lease.
        if rule["verbs"] != ["create"]:
            assert rule["resourceNames"] == [settings.leader_election_id]
    assert {("coordination.k8s.io", "leases"): verbs} == leader_election_needs()
    (binding,) = [
        b for b in by_kind(objects, "RoleBinding") if b["metadata"]["name"] == LEADER_ELECTION_ROLE
    ]
    assert binding["metadata"]["namespace"] == RELEASE_NAMESPACE
    assert binding["roleRef"] == {
        "apiGroup": "rbac.authorization.k8s.io",
        "kind": "Role",
        "name": LEADER_ELECTION_ROLE,
    }
    assert binding["subjects"][0]["name"] == one(objects, "ServiceAccount")["metadata"]["name"]
    # Nothing else the operator holds grants leases (the pickers' own ClusterRole is bound to
    # pickers only, by the operator's RoleBindings, never to the operator).
    pickers = {PICKER_ROLE, f"{PICKER_ROLE}-leader-election"}
    for other in by_kind(objects, "Role") + by_kind(objects, "ClusterRole"):
        if other is not role and other["metadata"]["name"] not in pickers:
            assert all("leases" not in rule["resources"] for rule in other["rules"])


def test_without_leader_election_no_lease_access_is_granted(render: Any) -> None:
    objects = render({"operator": {"leaderElection": {"enabled": False}}})
    assert not by_kind(objects, "Role") and not by_kind(objects, "RoleBinding")
    assert settings_from_args(container_args(objects)).leader_elect is False


def test_rbac_can_be_left_to_the_user(render: Any) -> None:
    objects = render({"rbac": {"create": False}})
    for kind in ("Role", "RoleBinding", "ClusterRole", "ClusterRoleBinding"):
        assert not by_kind(objects, kind)


# --- the rendered flags are the operator's own -------------------------------------------------


def container_args(objects: list[Manifest]) -> list[str]:
    args: list[str] = one(objects, "Deployment")["spec"]["template"]["spec"]["containers"][0][
        "args"
    ]
    return args


def test_default_flags_parse_in_the_operator_cli(render: Any) -> None:
    settings = settings_from_args(container_args(render()))
    assert settings.all_namespaces is True
    assert settings.namespaces == ()
    assert settings.default_image == "ghcr.io/modelplane/modelplane-server:0.1.0"
    assert settings.liveness_endpoint == "http://0.0.0.0:8080/healthz"
    assert settings.metrics_port == 9090
    assert settings.leader_elect is True
    assert settings.leader_election_id == "mp-modelplane-operator"
    assert (settings.lease_duration, settings.renew_deadline, settings.retry_period) == (15, 10, 2)
    assert settings.log_format == "json"


def test_namespaced_flags_parse_in_the_operator_cli(render: Any) -> None:
    values = {
        "watchNamespaces": ["models", "models-staging"],
        "operator": {
            "metrics": {"enabled": False, "port": 9090},
            "verbose": True,
            "leaderElection": {"leaseDuration": "30s", "renewDeadline": 20, "retryPeriod": "4s"},
        },
    }
    settings = settings_from_args(container_args(render(values)))
    assert settings.all_namespaces is False
    assert settings.namespaces == ("models", "models-staging")
    assert settings.metrics_port == 0
    assert (settings.lease_duration, settings.renew_deadline, settings.retry_period) == (30, 20, 4)
    assert settings.verbose is True


# --- the endpoint pickers' ClusterRoles (spec.routing) ------------------------------------------

# What the llm-d router EPP v0.10.0 reads in its namespace, after its upstream chart's Role
# (config/charts/llm-d-router-gateway/templates/rbac.yaml and routerlib/_rbac.yaml).
PICKER_NEEDS: Permissions = {
    ("", "pods"): {"get", "list", "watch"},
    ("inference.networking.k8s.io", "inferencepools"): {"get", "list", "watch"},
    ("llm-d.ai", "inferenceobjectives"): {"get", "list", "watch"},
    ("llm-d.ai", "inferencemodelrewrites"): {"get", "list", "watch"},
    ("inference.networking.x-k8s.io", "inferenceobjectives"): {"get", "list", "watch"},
    ("inference.networking.x-k8s.io", "inferencemodelrewrites"): {"get", "list", "watch"},
}
# With --ha-enable-leader-election (upstream's routerlib/_leader-election-rbac.yaml).
PICKER_LEADER_ELECTION_NEEDS: Permissions = {
    ("coordination.k8s.io", "leases"): {
        "get", "list", "watch", "create", "update", "patch", "delete",
    },
    ("", "events"): {"create", "patch"},
}  # fmt: skip


def test_endpoint_picker_cluster_roles_grant_what_the_picker_reads(render: Any) -> None:
    objects = render()
    roles = {r["metadata"]["name"]: r for r in by_kind(objects, "ClusterRole")}
    assert granted(roles[PICKER_ROLE]) == PICKER_NEEDS
    assert granted(roles[f"{PICKER_ROLE}-leader-election"]) == PICKER_LEADER_ELECTION_NEEDS
    # The operator binds exactly these two, under the name its flag gives it.
    assert bound_cluster_roles() == {PICKER_ROLE, f"{PICKER_ROLE}-leader-election"}
    assert settings_from_args(container_args(objects)).routing.endpoint_picker_role == PICKER_ROLE
    # No binding in the chart: the operator binds them per model, in the model's namespace.
    for binding in by_kind(objects, "RoleBinding") + by_kind(objects, "ClusterRoleBinding"):
        assert not binding["roleRef"]["name"].startswith(PICKER_ROLE)


def test_routing_values_become_operator_flags(render: Any) -> None:
    objects = render({"routing": {"defaultGateway": "gateway-system/inference-gateway"}})
    routing = settings_from_args(container_args(objects)).routing
    assert routing.gateway is not None
    assert (routing.gateway.namespace, routing.gateway.name) == (
        "gateway-system",
        "inference-gateway",
    )
    assert routing.endpoint_picker_image == "ghcr.io/llm-d/llm-d-router-endpoint-picker:v0.10.0"
    assert settings_from_args(container_args(render())).routing.gateway is None


def test_a_malformed_default_gateway_fails_the_install(helm: str) -> None:
    result = run_helm(
        helm, "template", "mp", str(CHART), "--set", "routing.defaultGateway=inference-gateway"
    )
    assert result.returncode != 0  # values.schema.json: namespace/name
    assert "/routing/" in result.stderr and "does not match pattern" in result.stderr


def test_the_models_endpoint_is_routed_on_the_default_gateway(render: Any) -> None:
    from tests.operator.test_routing_schemas import ROUTE_SCHEMA, check

    values = {
        "routing": {
            "defaultGateway": "gateway-system/inference-gateway",
            "modelsEndpoint": {"enabled": True},
        }
    }
    objects = render(values)
    settings = settings_from_args(container_args(objects))
    assert settings.models_port == 8081
    (route,) = by_kind(objects, "HTTPRoute")
    check(ROUTE_SCHEMA, route)
    assert route["metadata"]["namespace"] == RELEASE_NAMESPACE
    assert route["spec"]["parentRefs"][0]["namespace"] == "gateway-system"
    match = route["spec"]["rules"][0]["matches"][0]
    assert (match["method"], match["path"]) == ("GET", {"type": "Exact", "value": "/v1/models"})
    service = next(
        s for s in by_kind(objects, "Service") if s["metadata"]["name"].endswith("-models")
    )
    assert route["spec"]["rules"][0]["backendRefs"][0]["name"] == service["metadata"]["name"]
    ports = one(objects, "Deployment")["spec"]["template"]["spec"]["containers"][0]["ports"]
    assert {"name": "models", "containerPort": 8081, "protocol": "TCP"} in ports
    assert not by_kind(render(), "HTTPRoute")  # off by default


def test_the_models_endpoint_needs_the_default_gateway(helm: str) -> None:
    result = run_helm(
        helm, "template", "mp", str(CHART), "--set", "routing.modelsEndpoint.enabled=true"
    )
    assert result.returncode != 0
    assert "routing.modelsEndpoint.enabled needs routing.defaultGateway" in result.stderr
