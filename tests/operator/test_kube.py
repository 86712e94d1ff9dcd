"""kube.py: API paths, the 'already applied' comparison, owners, errors."""

import socket

import kubernetes
import pytest

from modelplane.operator.kube import Kube, KubeError, contains, controller_uid, resource_path
from tests.operator.kube_emulator import HANG, start_emulator


def test_resource_paths_for_core_grouped_and_custom_kinds():
    assert resource_path("v1", "Service", "ml", "qwen") == "/api/v1/namespaces/ml/services/qwen"
    assert resource_path("apps/v1", "Deployment", "ml") == "/apis/apps/v1/namespaces/ml/deployments"
    assert (
        resource_path("modelplane.io/v1alpha1", "ModelDeployment", "ml", "qwen", "status")
        == "/apis/modelplane.io/v1alpha1/namespaces/ml/modeldeployments/qwen/status"
    )
    assert (
        resource_path("apiextensions.k8s.io/v1", "CustomResourceDefinition", None, "x.y")
        == "/apis/apiextensions.k8s.io/v1/customresourcedefinitions/x.y"
    )


def test_contains_ignores_server_added_fields_and_quantity_formats():
    desired = {
        "spec": {
            "replicas": 1,
            "template": {
                "containers": [{"name": "s", "resources": {"limits": {"nvidia.com/gpu": 2}}}]
            },
        }
    }
    live = {
        "metadata": {"uid": "u"},
        "spec": {
            "replicas": 1,
            "progressDeadlineSeconds": 600,
            "template": {
                "containers": [
                    {"name": "s", "resources": {"limits": {"nvidia.com/gpu": "2"}}, "tty": False}
                ]
            },
        },
    }
    assert contains(live, desired)


def test_contains_detects_edits_and_removed_list_items():
    desired = {"spec": {"ports": [{"name": "http", "port": 8000}]}}
    assert not contains({"spec": {"ports": [{"name": "http", "port": 9000}]}}, desired)
    assert not contains({"spec": {"ports": []}}, desired)
    assert not contains({"spec": {}}, desired)


def test_controller_uid_is_the_controlling_owner_only():
    refs = [
        {"kind": "ReplicaSet", "uid": "not-controller"},
        {"kind": "ModelDeployment", "uid": "md-uid", "controller": True},
    ]
    assert controller_uid({"metadata": {"ownerReferences": refs}}) == "md-uid"
    assert controller_uid({"metadata": {"ownerReferences": refs[:1]}}) is None
    assert controller_uid({}) is None


def test_an_unreachable_api_server_is_a_kube_error_not_a_crash():
    with socket.socket() as sock:  # a port nothing listens on once closed
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    config = kubernetes.client.Configuration()
    config.host = f"http://127.0.0.1:{port}"
    config.retries = 0
    with pytest.raises(KubeError) as info:
        Kube(kubernetes.client.ApiClient(config)).get("v1", "Service", "ml", "qwen")
    assert info.value.status == 0
    assert "/api/v1/namespaces/ml/services/qwen" in str(info.value)


def test_a_request_unanswered_within_its_timeout_is_not_sent_again(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """urllib3 would re-send a timed-out GET 3 times (4x the timeout on the handler's thread).

    Injected fault: the emulator holds the GET unanswered and counts each copy it receives.
    """
    with start_emulator() as running:
        monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
        monkeypatch.setattr(
            kubernetes.config.kube_config,
            "KUBE_CONFIG_DEFAULT_LOCATION",
            str(running.kubeconfig_path),
        )
        running.emulator.faults["GET", "services", "qwen"] = HANG
        with pytest.raises(KubeError) as info:
            Kube().request("GET", "/api/v1/namespaces/default/services/qwen", timeout=0.3)
        assert info.value.status == 0
        assert running.emulator.held == 1
