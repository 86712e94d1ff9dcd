"""Three-way merge patches: keys the operator stops setting are removed, others' keys stay."""

from modelplane.operator.last_applied import (
    LAST_APPLIED_ANNOTATION,
    last_applied,
    stale_keys,
    three_way_patch,
    with_last_applied,
)
from modelplane.operator.resources.deployment import build_deployment
from modelplane.operator.resources.meta import Owner
from modelplane.operator.spec import parse_spec

OWNER = Owner(name="qwen3-8b", namespace="ml", uid="uid-1")
IMAGE = "registry.example/modelplane-server:1.0"


def applied(spec: dict) -> dict:
    manifest = build_deployment(OWNER, parse_spec(spec), default_image=IMAGE)
    return with_last_applied(manifest)


def live_after_apply(manifest: dict, **server_added: dict) -> dict:
    """What the API server would hold: the applied manifest plus fields others set."""
    live = {**manifest, "metadata": {**manifest["metadata"], "uid": "u", "resourceVersion": "7"}}
    live["metadata"]["annotations"] = {
        **manifest["metadata"]["annotations"],
        "deployment.kubernetes.io/revision": "3",
    }
    live["spec"] = {**manifest["spec"], **server_added}
    return live


def test_the_annotation_records_the_manifest_without_itself():
    manifest = applied({"model": {"uri": "hf://Qwen/Qwen3-8B"}})
    recorded = last_applied(manifest)
    assert LAST_APPLIED_ANNOTATION not in recorded["metadata"]["annotations"]
    assert recorded["spec"] == manifest["spec"]
    assert with_last_applied(manifest) == manifest  # re-applying is stable


def test_a_removed_node_selector_entry_and_pod_annotation_become_null():
    before = {
        "model": {"uri": "hf://Qwen/Qwen3-8B"},
        "nodeSelector": {"pool": "a100", "zone": "eu-1"},
        "podAnnotations": {"team": "search"},
    }
    live = live_after_apply(applied(before), progressDeadlineSeconds=600)
    after = applied({**before, "nodeSelector": {"zone": "eu-1"}, "podAnnotations": {}})

    stale = stale_keys(after, live)
    assert stale == {
        "spec": {
            "template": {
                "metadata": {"annotations": {"team": None}},
                "spec": {"nodeSelector": {"pool": None}},
            }
        }
    }
    patch = three_way_patch(after, stale)
    assert patch["spec"]["template"]["spec"]["nodeSelector"] == {"pool": None, "zone": "eu-1"}
    assert patch["spec"]["template"]["metadata"]["annotations"]["team"] is None
    assert patch["spec"]["template"]["metadata"]["annotations"]["prometheus.io/scrape"] == "true"
    # Fields the operator never set (server defaults, other controllers' annotations) stay.
    assert "progressDeadlineSeconds" not in stale["spec"]
    assert "annotations" not in stale.get("metadata", {})


def test_a_whole_removed_section_is_one_null():
    before = {"model": {"uri": "hf://Qwen/Qwen3-8B"}, "priorityClassName": "inference"}
    live = live_after_apply(applied(before))
    stale = stale_keys(applied({"model": {"uri": "hf://Qwen/Qwen3-8B"}}), live)
    assert stale == {"spec": {"template": {"spec": {"priorityClassName": None}}}}


def test_turning_autoscaling_on_hands_replicas_to_the_autoscaler_instead_of_resetting_them():
    before = {"model": {"uri": "hf://Qwen/Qwen3-8B"}, "replicas": 3}
    live = live_after_apply(applied(before))
    after = applied({**before, "autoscaling": {"minReplicas": 1, "maxReplicas": 8}})
    assert "replicas" not in after["spec"]
    assert stale_keys(after, live) == {}
    assert "replicas" not in three_way_patch(after, stale_keys(after, live))["spec"]


def test_objects_without_the_annotation_lose_nothing():
    live = live_after_apply(applied({"model": {"uri": "hf://Qwen/Qwen3-8B"}, "replicas": 2}))
    del live["metadata"]["annotations"][LAST_APPLIED_ANNOTATION]
    assert stale_keys(applied({"model": {"uri": "hf://Qwen/Qwen3-8B"}}), live) == {}
    live["metadata"]["annotations"][LAST_APPLIED_ANNOTATION] = "{not json"
    assert last_applied(live) == {}


def test_keys_already_gone_from_the_live_object_are_not_sent():
    before = {"model": {"uri": "hf://Qwen/Qwen3-8B"}, "nodeSelector": {"pool": "a100"}}
    live = live_after_apply(applied(before))
    del live["spec"]["template"]["spec"]["nodeSelector"]
    assert stale_keys(applied({"model": {"uri": "hf://Qwen/Qwen3-8B"}}), live) == {}
