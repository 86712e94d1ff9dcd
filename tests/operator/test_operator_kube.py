"""kube.py's pure parts: API paths and the 'already applied' comparison."""

from modelplane.operator.kube import contains, resource_path


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
