"""Status from the Deployment: phase, Ready/SpecValid conditions, endpoint, observedGeneration."""

from modelplane.operator.status import build_status, deployment_phase, status_changed

NOW = "2026-01-01T00:00:00Z"
LATER = "2026-01-01T00:05:00Z"


def deployment(replicas=1, ready=0, updated=None, generation=1, observed=1, conditions=()):
    return {
        "metadata": {"generation": generation},
        "spec": {"replicas": replicas},
        "status": {
            "observedGeneration": observed,
            "replicas": replicas,
            "readyReplicas": ready,
            "updatedReplicas": replicas if updated is None else updated,
            "conditions": list(conditions),
        },
    }


def status(dep, spec_error=None, previous=None, now=NOW, generation=3):
    return build_status(
        name="qwen3-8b",
        namespace="ml",
        served_model_name="qwen3",
        selector="app.kubernetes.io/name=modelplane-server,app.kubernetes.io/instance=qwen3-8b",
        deployment=dep,
        spec_error=spec_error,
        observed_generation=generation,
        previous=previous,
        now=now,
    )


def conditions(result):
    return {c["type"]: c for c in result["conditions"]}


def test_available_deployment_is_ready_with_endpoint():
    result = status(deployment(replicas=2, ready=2))
    assert result["phase"] == "Ready"
    assert result["endpoint"] == "http://qwen3-8b.ml.svc.cluster.local:8000/v1"
    assert result["servedModelName"] == "qwen3"
    assert result["observedGeneration"] == 3
    assert (result["replicas"], result["readyReplicas"]) == (2, 2)
    ready = conditions(result)["Ready"]
    assert ready == {
        "type": "Ready",
        "status": "True",
        "reason": "ReplicasReady",
        "message": "2/2 replicas ready",
        "lastTransitionTime": NOW,
        "observedGeneration": 3,
    }
    assert conditions(result)["SpecValid"]["status"] == "True"


def test_phases_follow_the_deployment():
    assert deployment_phase(None)[0].value == "Pending"
    assert deployment_phase(deployment(ready=0))[0].value == "Progressing"
    assert deployment_phase(deployment(replicas=3, ready=1))[0].value == "Degraded"
    assert deployment_phase(deployment(replicas=2, ready=2, updated=1))[0].value == "Progressing"
    assert deployment_phase(deployment(generation=2, observed=1, ready=1))[0].value == "Progressing"
    assert deployment_phase(deployment(replicas=0))[1] == "ScaledToZero"
    stuck = deployment(
        conditions=[
            {
                "type": "Progressing",
                "status": "False",
                "reason": "ProgressDeadlineExceeded",
                "message": "x",
            }
        ]
    )
    assert deployment_phase(stuck)[0].value == "Failed"


def test_invalid_spec_is_failed_with_spec_valid_false_naming_the_field():
    message = "spec.resources.gpu.count: must equal engine.tensorParallelSize x engine.pipelineParallelSize"
    result = status(None, spec_error=message)
    assert result["phase"] == "Failed"
    spec_valid = conditions(result)["SpecValid"]
    assert spec_valid["status"] == "False"
    assert spec_valid["reason"] == "InvalidSpec"
    assert "spec.resources.gpu.count" in spec_valid["message"]
    assert conditions(result)["Ready"]["status"] == "False"


def test_invalid_update_keeps_ready_true_while_the_last_valid_deployment_serves():
    served = status(deployment(ready=1), generation=3)
    result = status(
        deployment(ready=1),
        spec_error="spec.engine.quantization: 'int3' is not one of ...",
        previous=served,
        generation=4,
    )
    assert result["phase"] == "Failed"
    assert conditions(result)["SpecValid"]["status"] == "False"
    ready = conditions(result)["Ready"]
    assert ready["status"] == "True"
    assert (
        ready["message"]
        == "1/1 replicas ready; serving the last valid spec until the spec is fixed"
    )
    assert result["readyReplicas"] == 1
    assert ready["observedGeneration"] == 3  # what serves, not the rejected generation 4
    assert conditions(result)["SpecValid"]["observedGeneration"] == 4


def test_last_transition_time_moves_only_when_the_status_flips():
    first = status(deployment(ready=1))
    same = status(deployment(ready=1), previous=first, now=LATER)
    assert conditions(same)["Ready"]["lastTransitionTime"] == NOW
    flipped = status(deployment(ready=0), previous=first, now=LATER)
    assert conditions(flipped)["Ready"]["lastTransitionTime"] == LATER
    assert not status_changed(first, status(deployment(ready=1), previous=first, now=LATER))
    assert status_changed(first, flipped)
