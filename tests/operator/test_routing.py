"""spec.routing with plain data: the spec rules, the children it plans, and the Routed status."""

from __future__ import annotations

from typing import Any

import pytest
import yaml

from modelplane.operator.cli import settings_from_args
from modelplane.operator.resources import ChildRef, Owner, RoutingPlan, plan_children
from modelplane.operator.resources.autoscaler import build_scaled_object
from modelplane.operator.resources.endpoint_picker import (
    CONFIG_FILE,
    CONFIG_HASH_ANNOTATION,
    picker_config,
    picker_name,
)
from modelplane.operator.resources.httproute import MODEL_HEADER
from modelplane.operator.resources.meta import selector_labels
from modelplane.operator.routing import (
    DEFAULT_ENDPOINT_PICKER_IMAGE,
    RoutingDefaults,
    gateway_endpoint,
    parse_gateway,
    routed_condition,
)
from modelplane.operator.spec import GatewayRef, SpecError, parse_spec

OWNER = Owner(name="qwen3-8b", namespace="ml", uid="uid-1")
GATEWAY = {"name": "inference-gateway", "namespace": "gateway-system"}
BASE = {"model": {"uri": "hf://Qwen/Qwen3-8B"}}
SCALE_TO_ZERO = {
    "minReplicas": 0,
    "maxReplicas": 2,
    "provider": "keda",
    "prometheusAddress": "http://prometheus:9090",
}


def plan(spec: dict[str, Any], **routing: Any) -> Any:
    return plan_children(
        OWNER, parse_spec(spec), default_image="img:1", routing=RoutingPlan(**routing)
    )


def routed_spec(**fields: Any) -> dict[str, Any]:
    return {**BASE, "routing": {"gatewayRef": GATEWAY}, **fields}


def by_kind_name(manifests: list[dict[str, Any]]) -> dict[tuple[str, str], dict[str, Any]]:
    return {(m["kind"], m["metadata"]["name"]): m for m in manifests}


def test_routing_plans_the_picker_then_the_pool_then_the_route() -> None:
    kinds = [(m["kind"], m["metadata"]["name"]) for m in plan(routed_spec()).apply]
    assert kinds == [
        ("Deployment", "qwen3-8b"),
        ("Service", "qwen3-8b"),
        ("ServiceAccount", "qwen3-8b-epp"),
        ("RoleBinding", "qwen3-8b-epp"),
        ("ConfigMap", "qwen3-8b-epp"),
        ("Service", "qwen3-8b-epp"),
        ("Deployment", "qwen3-8b-epp"),
        ("InferencePool", "qwen3-8b"),
        ("HTTPRoute", "qwen3-8b"),
    ]
    for manifest in plan(routed_spec()).apply:
        labels = manifest["metadata"]["labels"]
        assert labels["app.kubernetes.io/managed-by"] == "modelplane-operator"
        assert labels["modelplane.io/deployment"] == "qwen3-8b"
        assert manifest["metadata"]["ownerReferences"][0]["uid"] == "uid-1"


def test_without_routing_nothing_routed_is_made_and_old_routing_children_are_pruned() -> None:
    children = plan(BASE)
    assert {m["kind"] for m in children.apply} == {"Deployment", "Service"}
    for ref in (
        ChildRef("inference.networking.k8s.io/v1", "InferencePool", "qwen3-8b"),
        ChildRef("gateway.networking.k8s.io/v1", "HTTPRoute", "qwen3-8b"),
        ChildRef("apps/v1", "Deployment", "qwen3-8b-epp"),
        ChildRef("v1", "Service", "qwen3-8b-epp"),
        ChildRef("v1", "ConfigMap", "qwen3-8b-epp"),
        ChildRef("v1", "ServiceAccount", "qwen3-8b-epp"),
        ChildRef("rbac.authorization.k8s.io/v1", "RoleBinding", "qwen3-8b-epp"),
    ):
        assert ref in children.delete
    # When the picker's ServiceAccount is gone (nothing left to prune) no calls are spent.
    assert not any("epp" in ref.name for ref in plan(BASE, prune=False).delete)


def test_the_pool_selects_the_serving_pods_and_not_the_picker() -> None:
    children = by_kind_name(plan(routed_spec()).apply)
    pool = children[("InferencePool", "qwen3-8b")]["spec"]
    assert pool["selector"]["matchLabels"] == selector_labels(OWNER)
    assert pool["targetPorts"] == [{"number": 8000}]
    assert pool["endpointPickerRef"] == {
        "kind": "Service",
        "name": "qwen3-8b-epp",
        "port": {"number": 9002},
        "failureMode": "FailClose",
    }
    picker_pod = children[("Deployment", "qwen3-8b-epp")]["spec"]["template"]["metadata"]
    assert not set(pool["selector"]["matchLabels"].items()) <= set(picker_pod["labels"].items())
    service = children[("Service", "qwen3-8b-epp")]["spec"]
    assert service["ports"][0]["port"] == 9002
    assert service["ports"][0]["appProtocol"] == "kubernetes.io/h2c"


def test_the_route_matches_every_served_name_on_the_body_based_routing_header() -> None:
    spec = routed_spec(
        model={"uri": "hf://Qwen/Qwen3-8B", "servedModelName": "qwen3"},
        adapters=[{"name": "sql-lora", "uri": "hf://o/sql"}],
        routing={"gatewayRef": {**GATEWAY, "sectionName": "http"}, "requestTimeout": "15m"},
    )
    route = by_kind_name(plan(spec).apply)[("HTTPRoute", "qwen3-8b")]["spec"]
    assert route["parentRefs"] == [
        {"group": "gateway.networking.k8s.io", "kind": "Gateway", **GATEWAY, "sectionName": "http"}
    ]
    headers = [m["headers"] for rule in route["rules"] for m in rule["matches"]]
    assert headers == [
        [{"type": "Exact", "name": MODEL_HEADER, "value": "qwen3"}],
        [{"type": "Exact", "name": "X-Gateway-Model-Name", "value": "sql-lora"}],
    ]
    for rule in route["rules"]:
        assert rule["backendRefs"] == [
            {"group": "inference.networking.k8s.io", "kind": "InferencePool", "name": "qwen3-8b"}
        ]
        assert rule["timeouts"] == {"request": "15m"}


def test_past_sixteen_names_the_route_shares_sixteen_rules() -> None:
    adapters = [{"name": f"a{i}", "uri": f"hf://o/a{i}"} for i in range(64)]
    route = by_kind_name(plan(routed_spec(adapters=adapters)).apply)[("HTTPRoute", "qwen3-8b")]
    rules = route["spec"]["rules"]
    assert len(rules) <= 16
    names = [m["headers"][0]["value"] for rule in rules for m in rule["matches"]]
    assert names == ["qwen3-8b", *(f"a{i}" for i in range(64))]


def test_the_picker_config_scores_load_cache_and_lora_and_holds_requests() -> None:
    spec = parse_spec(routed_spec(routing={"gatewayRef": GATEWAY, "requestTimeout": "20m"}))
    config = picker_config(spec)
    assert config["kind"] == "EndpointPickerConfig"
    types = {p["type"] for p in config["plugins"]}
    assert {
        "queue-scorer",
        "kv-cache-utilization-scorer",
        "prefix-cache-scorer",
        "lora-affinity-scorer",
    } <= types
    profile = config["schedulingProfiles"][0]["plugins"]
    assert {p["pluginRef"] for p in profile} <= types
    assert config["featureGates"] == ["flowControl"]
    assert config["flowControl"] == {"defaultRequestTTL": "20m"}  # covers the route's timeout
    children = by_kind_name(plan_children(OWNER, spec, default_image="img:1").apply)
    config_map = children[("ConfigMap", "qwen3-8b-epp")]
    assert yaml.safe_load(config_map["data"][CONFIG_FILE]) == config


def test_a_new_picker_config_rolls_the_picker_pods() -> None:
    def pod_annotations(timeout: str) -> dict[str, str]:
        spec = routed_spec(routing={"gatewayRef": GATEWAY, "requestTimeout": timeout})
        picker = by_kind_name(plan(spec).apply)[("Deployment", "qwen3-8b-epp")]
        return picker["spec"]["template"]["metadata"]["annotations"]  # type: ignore[no-any-return]

    assert (
        pod_annotations("10m")[CONFIG_HASH_ANNOTATION]
        != pod_annotations("20m")[CONFIG_HASH_ANNOTATION]
    )


def test_the_picker_runs_for_its_pool_with_leader_election_only_when_replicated() -> None:
    one = by_kind_name(plan(routed_spec()).apply)
    deployment = one[("Deployment", "qwen3-8b-epp")]["spec"]
    container = deployment["template"]["spec"]["containers"][0]
    args = container["args"]
    assert args[args.index("--pool-name") + 1] == "qwen3-8b"
    assert args[args.index("--pool-namespace") + 1] == "ml"
    assert "--metrics-endpoint-auth=false" in args
    assert "--ha-enable-leader-election" not in args
    assert container["image"] == DEFAULT_ENDPOINT_PICKER_IMAGE
    assert container["readinessProbe"]["grpc"]["service"] == "inference-extension"
    assert deployment["template"]["spec"]["serviceAccountName"] == "qwen3-8b-epp"
    assert deployment["strategy"] == {"type": "Recreate"}
    binding = one[("RoleBinding", "qwen3-8b-epp")]
    assert binding["roleRef"] == {
        "apiGroup": "rbac.authorization.k8s.io",
        "kind": "ClusterRole",
        "name": "modelplane-endpoint-picker",
    }
    assert binding["subjects"] == [
        {"kind": "ServiceAccount", "name": "qwen3-8b-epp", "namespace": "ml"}
    ]
    assert (
        ChildRef("rbac.authorization.k8s.io/v1", "RoleBinding", "qwen3-8b-epp-leader-election")
        in plan(routed_spec()).delete
    )

    spec = routed_spec(
        routing={"gatewayRef": GATEWAY, "endpointPicker": {"replicas": 2, "image": "epp:dev"}}
    )
    three = by_kind_name(plan(spec, defaults=RoutingDefaults(endpoint_picker_role="r")).apply)
    container = three[("Deployment", "qwen3-8b-epp")]["spec"]["template"]["spec"]["containers"][0]
    assert "--ha-enable-leader-election" in container["args"]
    assert container["image"] == "epp:dev"
    assert container["readinessProbe"]["grpc"]["service"] == "readiness"
    elected = three[("RoleBinding", "qwen3-8b-epp-leader-election")]
    assert elected["roleRef"]["name"] == "r-leader-election"


def test_a_long_name_still_fits_the_picker_service() -> None:
    long = Owner(name="a" * 63, namespace="ml", uid="u")
    assert len(picker_name(long)) <= 63
    assert picker_name(long) != picker_name(Owner(name="a" * 62 + "b", namespace="ml", uid="u"))


def test_the_operator_default_gateway_fills_in_and_without_one_the_spec_is_invalid() -> None:
    spec = {**BASE, "routing": {}}
    defaults = RoutingDefaults(gateway=parse_gateway("gateway-system/shared"))
    route = by_kind_name(plan(spec, defaults=defaults).apply)[("HTTPRoute", "qwen3-8b")]
    parent = route["spec"]["parentRefs"][0]
    assert (parent["namespace"], parent["name"]) == ("gateway-system", "shared")
    with pytest.raises(SpecError) as info:
        plan(spec)
    assert info.value.field == "spec.routing.gatewayRef"
    # A gatewayRef without a namespace means the ModelDeployment's own.
    route = by_kind_name(plan({**BASE, "routing": {"gatewayRef": {"name": "gw"}}}).apply)
    assert route[("HTTPRoute", "qwen3-8b")]["spec"]["parentRefs"][0]["namespace"] == "ml"


def test_scale_to_zero_needs_routing() -> None:
    autoscaling = SCALE_TO_ZERO
    with pytest.raises(SpecError) as info:
        parse_spec({**BASE, "autoscaling": autoscaling})
    assert info.value.field == "spec.autoscaling.minReplicas"
    assert "spec.routing" in info.value.message
    assert parse_spec(routed_spec(autoscaling=autoscaling)).routing is not None


def test_the_scaled_object_wakes_on_the_pickers_held_and_running_requests() -> None:
    autoscaling = {**SCALE_TO_ZERO, "targetInFlightRequests": 4}
    scaled = build_scaled_object(OWNER, parse_spec(routed_spec(autoscaling=autoscaling)))
    pods, picker = scaled["spec"]["triggers"]
    assert "modelplane_requests_in_flight" in pods["metadata"]["query"]
    query = picker["metadata"]["query"]
    assert 'llm_d_epp_flow_control_queue_size{namespace="ml",inference_pool="qwen3-8b"}' in query
    assert 'llm_d_epp_request_running{namespace="ml",pod=~"qwen3-8b-epp-' in query
    assert picker["metadata"]["activationThreshold"] == "0"  # one held request wakes it
    assert picker["metadata"]["threshold"] == "4"
    no_routing = {**autoscaling, "minReplicas": 1}
    assert len(build_scaled_object(OWNER, parse_spec({**BASE, "autoscaling": no_routing}))[
        "spec"]["triggers"]) == 1  # fmt: skip


def test_missing_routing_crds_plan_nothing_routed() -> None:
    children = plan(routed_spec(), crds_available=False)
    assert {m["kind"] for m in children.apply} == {"Deployment", "Service"}


def test_request_timeout_is_a_gateway_api_duration() -> None:
    for good in ("10m", "1h30m", "500ms", "0s"):
        parse_spec(routed_spec(routing={"gatewayRef": GATEWAY, "requestTimeout": good}))
    for bad in ("10 minutes", "1d", "-5s", ""):
        with pytest.raises(SpecError) as info:
            parse_spec(routed_spec(routing={"gatewayRef": GATEWAY, "requestTimeout": bad}))
        assert info.value.field == "spec.routing.requestTimeout"


# --- Routed and gatewayEndpoint ----------------------------------------------------------------

REF = GatewayRef.model_validate(GATEWAY)
AVAILABLE_PICKER = {"status": {"availableReplicas": 1}}


def pool_with(conditions: list[dict[str, str]], namespace: str | None = None) -> dict[str, Any]:
    parent_ref = {"name": "inference-gateway", "namespace": namespace or "gateway-system"}
    return {
        "metadata": {"namespace": "ml"},
        "status": {"parents": [{"parentRef": parent_ref, "conditions": conditions}]},
    }


ACCEPTED = {"type": "Accepted", "status": "True", "reason": "Accepted"}


def test_routed_needs_the_gateway_to_accept_the_pool_and_an_available_picker() -> None:
    def routed(**kwargs: Any) -> tuple[bool, str, str]:
        return routed_condition(gateway=REF, **{"crds_missing": [], **kwargs})

    ok, reason, message = routed(pool=pool_with([ACCEPTED]), endpoint_picker=AVAILABLE_PICKER)
    assert (ok, reason) == (True, "Routed")
    assert "gateway-system/inference-gateway" in message
    assert routed(pool={"metadata": {}}, endpoint_picker=AVAILABLE_PICKER)[:2] == (False, "Pending")
    rejected = {"type": "Accepted", "status": "False", "reason": "NotSupportedByParent",
                "message": "InferencePool backends are not supported"}  # fmt: skip
    ok, reason, message = routed(pool=pool_with([rejected]), endpoint_picker=AVAILABLE_PICKER)
    assert (ok, reason) == (False, "PoolNotSupportedByParent")
    assert "not supported" in message
    unresolved = {"type": "ResolvedRefs", "status": "False", "reason": "InvalidExtensionRef"}
    ok, reason, _ = routed(pool=pool_with([ACCEPTED, unresolved]), endpoint_picker=AVAILABLE_PICKER)
    assert (ok, reason) == (False, "InvalidExtensionRef")
    assert routed(pool=pool_with([ACCEPTED]), endpoint_picker={"status": {}})[:2] == (
        False,
        "EndpointPickerUnavailable",
    )
    # Another gateway's acceptance does not count.
    other = pool_with([ACCEPTED], namespace="elsewhere")
    assert routed(pool=other, endpoint_picker=AVAILABLE_PICKER)[1] == "Pending"
    ok, reason, message = routed(pool=None, endpoint_picker=None, crds_missing=["x.y"])
    assert (ok, reason) == (False, "RoutingCRDsMissing") and "x.y" in message


@pytest.mark.parametrize(
    ("listeners", "address", "section", "url"),
    [
        ([{"name": "http", "protocol": "HTTP", "port": 80}], "10.0.0.7", None, "http://10.0.0.7/v1"),
        (
            [{"name": "http", "protocol": "HTTP", "port": 8080},
             {"name": "https", "protocol": "HTTPS", "port": 443}],
            "ai.example.com", "https", "https://ai.example.com/v1",
        ),
        ([{"name": "http", "protocol": "HTTP", "port": 8080}], "10.0.0.7", None, "http://10.0.0.7:8080/v1"),
        ([{"name": "http", "protocol": "HTTP", "port": 80}], "fd00::7", None, "http://[fd00::7]/v1"),
    ],
)  # fmt: skip
def test_gateway_endpoint_from_the_gateway_status(
    listeners: list[dict[str, Any]], address: str, section: str | None, url: str
) -> None:
    gateway = {"spec": {"listeners": listeners}, "status": {"addresses": [{"value": address}]}}
    ref = REF.model_copy(update={"section_name": section})
    assert gateway_endpoint(gateway, ref) == url


def test_no_gateway_endpoint_without_an_address() -> None:
    assert gateway_endpoint(None, REF) is None
    assert gateway_endpoint({"spec": {}, "status": {}}, REF) is None


def test_routing_flags_parse_and_a_bad_default_gateway_is_a_usage_error() -> None:
    settings = settings_from_args(
        ["--default-gateway", "gateway-system/inference-gateway", "--endpoint-picker-image", "e:1"]
    )
    assert settings.routing.gateway == GatewayRef.model_validate(GATEWAY)
    assert settings.routing.endpoint_picker_image == "e:1"
    with pytest.raises(SystemExit):
        settings_from_args(["--default-gateway", "inference-gateway"])


# --- GET /v1/models through the gateway ---------------------------------------------------------


def model_deployment(
    name: str, spec: dict[str, Any], ready: bool = True, routed: bool = True, ns: str = "ml"
) -> dict[str, Any]:
    def cond(type_: str, ok: bool) -> dict[str, str]:
        return {"type": type_, "status": "True" if ok else "False"}

    return {
        "metadata": {"name": name, "namespace": ns, "creationTimestamp": "2026-11-29T12:00:00Z"},
        "spec": spec,
        "status": {"conditions": [cond("Ready", ready), cond("Routed", routed)]},
    }


def test_the_model_list_has_every_ready_routed_model_on_the_gateway() -> None:
    from modelplane.operator.models_endpoint import routed_models

    adapters = [{"name": "sql-lora", "uri": "hf://o/sql"}]
    mds = [
        model_deployment("qwen", {**routed_spec(), "adapters": adapters}),
        model_deployment("llama", {**BASE, "routing": {}}),  # the default gateway
        model_deployment("cold", routed_spec(), ready=False),  # scaled to zero: not listed
        model_deployment("unrouted", routed_spec(), routed=False),
        model_deployment("plain", BASE),
        model_deployment("elsewhere", {**BASE, "routing": {"gatewayRef": {"name": "other"}}}),
        model_deployment("broken", {"model": {"uri": "ftp://x"}, "routing": {}}),
    ]
    defaults = RoutingDefaults(gateway=parse_gateway("gateway-system/inference-gateway"))
    listing = routed_models(mds, GatewayRef.model_validate(GATEWAY), defaults)
    assert listing["object"] == "list"
    assert [(m["id"], m["parent"], m["owned_by"]) for m in listing["data"]] == [
        ("llama", None, "ml"),
        ("qwen", None, "ml"),
        ("sql-lora", "qwen", "ml"),
    ]
    assert all(m["object"] == "model" and m["created"] > 0 for m in listing["data"])


def test_the_models_endpoint_needs_the_default_gateway() -> None:
    with pytest.raises(SystemExit):
        settings_from_args(["--models-port", "8081"])
    settings = settings_from_args(["--models-port", "8081", "--default-gateway", "gw-ns/gw"])
    assert settings.models_port == 8081
