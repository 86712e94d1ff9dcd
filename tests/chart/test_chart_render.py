"""The Helm chart lints, renders valid Kubernetes objects, and its values schema rejects mistakes."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from modelplane.operator.spec import parse_spec
from tests.chart.delivery_checks import (
    CHART,
    CHART_CRD,
    EXAMPLES,
    RELEASE,
    RELEASE_NAMESPACE,
    ROOT_CRD,
    Manifest,
    by_kind,
    cel_failures,
    load_crd,
    one,
    run_helm,
    validate_kubernetes,
)

DIGEST = "sha256:" + "a" * 64


def example_spec(name: str) -> dict[str, Any]:
    docs = [d for d in yaml.safe_load_all((EXAMPLES / name).read_text()) if d]
    (md,) = [d for d in docs if d["kind"] == "ModelDeployment"]
    spec: dict[str, Any] = md["spec"]
    return spec


WATCHED = {"watchNamespaces": ["models", "models-staging"]}

ALL_OPTIONS: dict[str, Any] = {
    "fullnameOverride": "modelplane",
    "commonLabels": {"team": "ml-platform"},
    "watchNamespaces": ["models", "models-staging"],
    "operator": {
        "image": {
            "repository": "registry.example.com/modelplane-operator",
            "digest": DIGEST,
            "pullPolicy": "Always",
        },
        "imagePullSecrets": ["regcred"],
        "logFormat": "plain",
        "verbose": True,
        "leaderElection": {
            "enabled": True,
            "leaseDuration": "20s",
            "renewDeadline": "15s",
            "retryPeriod": "3s",
        },
        "kubeApi": {"qps": 20, "burst": 30},
        "extraEnv": [{"name": "KOPF_EXTRA", "value": "1"}],
        "probes": {"port": 8081},
        "metrics": {"enabled": True, "port": 9100},
        "resources": {"requests": {"cpu": "100m", "memory": "192Mi"}, "limits": {"memory": 512}},
        "nodeSelector": {"kubernetes.io/os": "linux"},
        "tolerations": [
            {"key": "dedicated", "operator": "Equal", "value": "platform", "effect": "NoSchedule"}
        ],
        "affinity": {
            "nodeAffinity": {
                "requiredDuringSchedulingIgnoredDuringExecution": {
                    "nodeSelectorTerms": [
                        {
                            "matchExpressions": [
                                {"key": "node-role", "operator": "In", "values": ["platform"]}
                            ]
                        }
                    ]
                }
            }
        },
        "priorityClassName": "platform-critical",
        "podAnnotations": {"example.com/owner": "ml-platform"},
        "podLabels": {"example.com/tier": "control-plane"},
    },
    "serverImage": {"repository": "registry.example.com/modelplane-server", "tag": "0.1.0-cu129"},
    "serviceAccount": {
        "annotations": {"iam.gke.io/gcp-service-account": "mp@p.iam.gserviceaccount.com"}
    },
    "serviceMonitor": {"enabled": True, "interval": "15s", "labels": {"release": "prometheus"}},
    "grafanaDashboard": {"enabled": True, "annotations": {"grafana_folder": "modelplane"}},
    "modelDeployments": [
        {"name": "qwen3-8b", "namespace": "models", "spec": example_spec("minimal.yaml")},
        {
            "name": "qwen3-32b-awq",
            "namespace": "models-staging",
            "labels": {"example.com/cost-center": "42"},
            "annotations": {"example.com/note": "TP=2 AWQ"},
            "spec": example_spec("qwen-awq-tp2.yaml"),
        },
    ],
}

VALUE_SETS = {"default": {}, "watched-namespaces": WATCHED, "all-options": ALL_OPTIONS}
STANDARD_LABELS = (
    "app.kubernetes.io/name",
    "app.kubernetes.io/instance",
    "app.kubernetes.io/version",
    "app.kubernetes.io/managed-by",
    "helm.sh/chart",
)


def operator_container(objects: list[Manifest]) -> Manifest:
    deployment = one(objects, "Deployment")
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    container_: Manifest = container
    return container_


def write_values(tmp_path: Path, values: dict[str, Any]) -> str:
    path = tmp_path / "values.yaml"
    path.write_text(yaml.safe_dump(values))
    return str(path)


# --- lint -------------------------------------------------------------------------------------


@pytest.mark.parametrize("values_name", sorted(VALUE_SETS))
def test_helm_lint_strict_passes(helm: str, tmp_path: Path, values_name: str) -> None:
    values = write_values(tmp_path, VALUE_SETS[values_name])
    result = run_helm(helm, "lint", "--strict", str(CHART), "--values", values)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 chart(s) failed" in result.stdout


# --- every rendered object is a valid Kubernetes object ----------------------------------------


@pytest.mark.parametrize("values_name", sorted(VALUE_SETS))
def test_every_rendered_object_validates_against_kubernetes_schemas(
    render: Any, md_validator: Any, values_name: str
) -> None:
    objects = render(VALUE_SETS[values_name])
    assert objects
    for obj in objects:
        where = f"{obj['kind']}/{obj['metadata']['name']}"
        if obj["kind"] == "ModelDeployment":
            errors = [e.message for e in md_validator.iter_errors(obj)]
            assert not errors, f"{where}: {errors}"
            assert cel_failures(load_crd(), obj) == [], where
        elif obj["apiVersion"].startswith("monitoring.coreos.com/"):
            continue  # no schema offline; test_service_monitor_scrapes_the_metrics_service checks it
        else:
            validate_kubernetes(obj)


def test_crd_from_chart_validates_as_a_customresourcedefinition(render: Any) -> None:
    objects = render({}, "--include-crds")
    crd = one(objects, "CustomResourceDefinition")
    assert crd["metadata"]["name"] == "modeldeployments.modelplane.io"
    validate_kubernetes(crd)


@pytest.mark.parametrize("values_name", sorted(VALUE_SETS))
def test_every_object_carries_the_standard_labels(render: Any, values_name: str) -> None:
    for obj in render(VALUE_SETS[values_name]):
        labels = obj["metadata"].get("labels", {})
        missing = [label for label in STANDARD_LABELS if label not in labels]
        assert not missing, f"{obj['kind']}/{obj['metadata']['name']} lacks {missing}"
        assert labels["app.kubernetes.io/instance"] == RELEASE
        assert len(obj["metadata"]["name"]) <= 63


def test_chart_crd_is_identical_to_the_generated_crd() -> None:
    assert ROOT_CRD.exists(), "crds/modelplane.io_modeldeployments.yaml is missing: run `make crds`"
    assert CHART_CRD.read_bytes() == ROOT_CRD.read_bytes(), (
        "charts/modelplane/crds/ is stale: run `make crds` (it copies the generated CRD into the chart)"
    )


# --- the operator Deployment ---------------------------------------------------------------------


def test_default_operator_watches_all_namespaces_with_the_default_server_image(
    render: Any,
) -> None:
    objects = render()
    args = operator_container(objects)["args"]
    assert "--all-namespaces" in args
    assert not [a for a in args if a.startswith("--namespace")]
    assert "--default-image=ghcr.io/modelplane/modelplane-server:0.1.0" in args
    assert operator_container(objects)["image"] == "ghcr.io/modelplane/modelplane-operator:0.1.0"


def test_watched_namespaces_become_namespace_flags(render: Any) -> None:
    args = operator_container(render(WATCHED))["args"]
    assert "--namespace=models" in args
    assert "--namespace=models-staging" in args
    assert "--all-namespaces" not in args


def test_image_digest_wins_over_tag_and_server_image_is_configurable(render: Any) -> None:
    container = operator_container(render(ALL_OPTIONS))
    assert container["image"] == f"registry.example.com/modelplane-operator@{DIGEST}"
    assert container["imagePullPolicy"] == "Always"
    assert "--default-image=registry.example.com/modelplane-server:0.1.0-cu129" in container["args"]


def test_operator_runs_non_root_read_only_without_privileges(render: Any) -> None:
    objects = render()
    pod = one(objects, "Deployment")["spec"]["template"]["spec"]
    container = operator_container(objects)
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] != 0
    assert pod["securityContext"]["seccompProfile"]["type"] == "RuntimeDefault"
    context = container["securityContext"]
    assert context["readOnlyRootFilesystem"] is True
    assert context["allowPrivilegeEscalation"] is False
    assert context["capabilities"]["drop"] == ["ALL"]
    assert "limits" in container["resources"] and "requests" in container["resources"]


def test_operator_rolls_over_with_leader_election_and_recreates_without(render: Any) -> None:
    deployment = one(render(), "Deployment")
    assert deployment["spec"]["replicas"] == 1
    # The new pod stands by until the old one releases the Lease: no gap, never two leaders.
    assert deployment["spec"]["strategy"] == {
        "type": "RollingUpdate",
        "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0},
    }
    assert "--leader-elect" in operator_container(render())["args"]
    ha = one(render({"operator": {"replicas": 2}}), "Deployment")
    assert ha["spec"]["replicas"] == 2
    single = one(render({"operator": {"leaderElection": {"enabled": False}}}), "Deployment")
    assert single["spec"]["strategy"] == {"type": "Recreate"}
    assert "--no-leader-elect" in single["spec"]["template"]["spec"]["containers"][0]["args"]


def test_operator_pods_know_their_name_and_namespace(render: Any) -> None:
    env = {e["name"]: e for e in operator_container(render())["env"]}
    assert env["POD_NAME"]["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.name"
    assert env["POD_NAMESPACE"]["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.namespace"


def test_two_replicas_without_leader_election_fail_with_a_clear_message(render: Any) -> None:
    values = {"operator": {"replicas": 2, "leaderElection": {"enabled": False}}}
    result = render.raw(values)
    assert result.returncode != 0
    assert "operator.replicas > 1 needs operator.leaderElection.enabled" in result.stderr


def test_liveness_probe_targets_the_kopf_liveness_port(render: Any) -> None:
    container = operator_container(render(ALL_OPTIONS))
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    probe = container["livenessProbe"]["httpGet"]
    assert probe["path"] == "/healthz"
    assert ports[probe["port"]] == 8081
    assert "--liveness=http://0.0.0.0:8081/healthz" in container["args"]


def test_deployment_selector_matches_its_pods_and_only_operator_pods(render: Any) -> None:
    deployment = one(render(), "Deployment")
    selector = deployment["spec"]["selector"]["matchLabels"]
    pod_labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert selector.items() <= pod_labels.items()
    assert selector["app.kubernetes.io/component"] == "operator"
    # Selectors are immutable: nothing that changes between releases may be in them.
    assert "app.kubernetes.io/version" not in selector and "helm.sh/chart" not in selector


def test_scheduling_and_pod_metadata_options_reach_the_pod(render: Any) -> None:
    pod_template = one(render(ALL_OPTIONS), "Deployment")["spec"]["template"]
    pod = pod_template["spec"]
    operator = ALL_OPTIONS["operator"]
    assert pod["nodeSelector"] == operator["nodeSelector"]
    assert pod["tolerations"] == operator["tolerations"]
    assert pod["affinity"] == operator["affinity"]
    assert pod["priorityClassName"] == "platform-critical"
    assert pod["imagePullSecrets"] == [{"name": "regcred"}]
    assert pod_template["metadata"]["annotations"] == operator["podAnnotations"]
    assert pod_template["metadata"]["labels"]["example.com/tier"] == "control-plane"
    assert {"name": "KOPF_EXTRA", "value": "1"} in pod["containers"][0]["env"]


# --- metrics -------------------------------------------------------------------------------------


def test_service_monitor_scrapes_the_metrics_service(render: Any) -> None:
    objects = render(ALL_OPTIONS)
    monitor = one(objects, "ServiceMonitor")
    service = one(objects, "Service")
    assert monitor["metadata"]["namespace"] == RELEASE_NAMESPACE
    assert monitor["metadata"]["labels"]["release"] == "prometheus"
    assert (
        monitor["spec"]["selector"]["matchLabels"].items() <= service["metadata"]["labels"].items()
    )
    assert monitor["spec"]["namespaceSelector"]["matchNames"] == [RELEASE_NAMESPACE]
    (endpoint,) = monitor["spec"]["endpoints"]
    assert endpoint["port"] in {p["name"] for p in service["spec"]["ports"]}
    assert endpoint["interval"] == "15s"
    # The Service reaches the operator's metrics container port.
    container = operator_container(objects)
    (port,) = service["spec"]["ports"]
    assert port["targetPort"] in {p["name"] for p in container["ports"]}
    assert {p["containerPort"] for p in container["ports"] if p["name"] == "metrics"} == {9100}
    pod_labels = one(objects, "Deployment")["spec"]["template"]["metadata"]["labels"]
    assert service["spec"]["selector"].items() <= pod_labels.items()


def test_no_service_monitor_by_default(render: Any) -> None:
    assert not by_kind(render(), "ServiceMonitor")


def test_metrics_disabled_removes_the_service_and_the_port(render: Any) -> None:
    objects = render({"operator": {"metrics": {"enabled": False, "port": 9090}}})
    assert not by_kind(objects, "Service")
    assert "metrics" not in {p["name"] for p in operator_container(objects)["ports"]}


# --- ModelDeployments from values ----------------------------------------------------------------


def test_model_deployments_from_values_render_with_their_namespace_and_spec(render: Any) -> None:
    mds = {md["metadata"]["name"]: md for md in by_kind(render(ALL_OPTIONS), "ModelDeployment")}
    assert set(mds) == {"qwen3-8b", "qwen3-32b-awq"}
    awq = mds["qwen3-32b-awq"]
    assert awq["apiVersion"] == "modelplane.io/v1alpha1"
    assert awq["metadata"]["namespace"] == "models-staging"
    assert awq["metadata"]["labels"]["example.com/cost-center"] == "42"
    assert awq["metadata"]["annotations"] == {"example.com/note": "TP=2 AWQ"}
    assert awq["spec"] == example_spec("qwen-awq-tp2.yaml")


def test_model_deployment_defaults_to_the_release_namespace(render: Any) -> None:
    values = {"modelDeployments": [{"name": "qwen3-8b", "spec": example_spec("minimal.yaml")}]}
    md = one(render(values), "ModelDeployment")
    assert md["metadata"]["namespace"] == RELEASE_NAMESPACE


# --- values the chart refuses ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"operator": {"replicass": 2}}, "additional properties 'replicass' not allowed"),
        ({"serviceMonitr": {"enabled": True}}, "additional properties 'serviceMonitr' not allowed"),
        ({"operator": {"replicas": "one"}}, "got string, want integer"),
        ({"operator": {"replicas": -1}}, "minimum"),
        ({"operator": {"leaderElection": {"enable": True}}}, "additional properties 'enable'"),
        ({"operator": {"leaderElection": {"retryPeriod": "2 sec"}}}, "does not match pattern"),
        ({"watchNamespaces": "models"}, "got string, want array"),
        ({"watchNamespaces": ["Models_Prod"]}, "does not match pattern"),
        (
            {"operator": {"image": {"repository": "x", "digest": "latest"}}},
            "does not match pattern",
        ),
        ({"operator": {"logFormat": "text"}}, "value must be one of"),
        ({"rbac": {"create": "yes"}}, "got string, want boolean"),
        (
            {"modelDeployments": [{"spec": {"model": {"uri": "hf://a/b"}}}]},
            "missing property 'name'",
        ),
        ({"modelDeployments": [{"name": "x", "specc": {}}]}, "additional properties 'specc'"),
    ],
    ids=lambda v: str(v)[:40],
)
def test_values_schema_rejects_typos_and_wrong_types(
    render: Any, values: dict[str, Any], message: str
) -> None:
    result = render.raw(values)
    assert result.returncode != 0
    assert "values don't meet the specifications of the schema" in result.stderr
    assert message in result.stderr


def test_model_deployment_in_an_unwatched_namespace_fails_with_a_clear_message(
    render: Any,
) -> None:
    values = {
        **WATCHED,
        "modelDeployments": [
            {"name": "qwen3-8b", "namespace": "elsewhere", "spec": example_spec("minimal.yaml")}
        ],
    }
    result = render.raw(values)
    assert result.returncode != 0
    assert "which the operator does not watch" in result.stderr


def test_service_monitor_without_metrics_fails_with_a_clear_message(render: Any) -> None:
    values = {
        "serviceMonitor": {"enabled": True},
        "operator": {"metrics": {"enabled": False, "port": 9090}},
    }
    result = render.raw(values)
    assert result.returncode != 0
    assert "serviceMonitor.enabled needs operator.metrics.enabled" in result.stderr


def test_notes_tell_the_next_steps_with_a_valid_model_deployment(
    helm: str, md_validator: Any
) -> None:
    result = run_helm(
        helm, "install", RELEASE, str(CHART), "--dry-run=client", "--namespace", RELEASE_NAMESPACE
    )
    assert result.returncode == 0, result.stderr
    notes = result.stdout.split("NOTES:", 1)[1]
    assert "kubectl get md" in notes
    assert "/v1/models" in notes
    assert "helm show crds" in notes
    # The sample the notes pipe into `kubectl apply` is itself a valid ModelDeployment.
    (sample,) = re.findall(r"echo '(.*)'", notes)
    md = yaml.safe_load(sample)
    md["metadata"]["namespace"] = "default"
    assert not list(md_validator.iter_errors(md))
    parse_spec(md)


def test_chart_refuses_clusters_older_than_it_supports(render: Any) -> None:
    result = render.raw({}, "--kube-version", "1.29.0")
    assert result.returncode != 0
    assert "kubeVersion" in result.stderr or "incompatible" in result.stderr


def test_every_value_is_documented_helm_docs_style() -> None:
    """values.yaml is the manual: every setting, or the map holding it, has a `# --` comment."""
    lines = (CHART / "values.yaml").read_text().splitlines()
    stack: list[tuple[int, str]] = []
    documented: set[tuple[str, ...]] = set()
    leaves: list[tuple[str, ...]] = []
    for index, line in enumerate(lines):
        match = re.match(r"^( *)([A-Za-z0-9_.-]+):(.*)$", line)
        if not match:
            continue
        indent, key, rest = len(match.group(1)), match.group(2), match.group(3).strip()
        while stack and stack[-1][0] >= indent:
            stack.pop()
        path = (*[k for _, k in stack], key)
        stack.append((indent, key))
        comments = []
        for above in reversed(lines[:index]):
            if not above.strip().startswith("#"):
                break
            comments.append(above.strip())
        if any(c.startswith("# --") for c in comments):
            documented.add(path)
        if rest:
            leaves.append(path)
    undocumented = [
        ".".join(leaf)
        for leaf in leaves
        if not any(leaf[:n] in documented for n in range(1, len(leaf) + 1))
    ]
    assert leaves and not undocumented, undocumented


def test_bring_your_own_service_account_needs_its_name(render: Any) -> None:
    result = render.raw({"serviceAccount": {"create": False}})
    assert result.returncode != 0
    assert "serviceAccount.name is required when serviceAccount.create is false" in result.stderr
    objects = render({"serviceAccount": {"create": False, "name": "platform-operator"}})
    assert not by_kind(objects, "ServiceAccount")
    pod = one(objects, "Deployment")["spec"]["template"]["spec"]
    assert pod["serviceAccountName"] == "platform-operator"
    assert one(objects, "ClusterRoleBinding")["subjects"][0]["name"] == "platform-operator"


def test_the_operator_api_rate_limit_is_passed_as_client_go_style_flags(render: Any) -> None:
    default = operator_container(render())["args"]
    assert "--kube-api-qps=50" in default and "--kube-api-burst=100" in default
    tuned = operator_container(render(ALL_OPTIONS))["args"]
    assert "--kube-api-qps=20" in tuned and "--kube-api-burst=30" in tuned
