"""The typed spec: defaults, derived values and validation errors that name the field."""

import pytest

from modelplane.operator.spec import SpecError, parse_spec

MINIMAL = {"model": {"uri": "hf://Qwen/Qwen3-8B"}}


def spec_with(**fields):
    return {**MINIMAL, **fields}


def test_minimal_example_from_the_issue_parses_with_defaults():
    body = {
        "apiVersion": "modelplane.io/v1alpha1",
        "kind": "ModelDeployment",
        "metadata": {"name": "qwen3-8b"},
        "spec": MINIMAL,
    }
    spec = parse_spec(body)
    assert spec.engine.tensor_parallel_size == 1
    assert spec.engine.pipeline_parallel_size == 1
    assert spec.engine.quantization is None
    assert spec.replicas == 1
    assert spec.autoscaling is None
    assert spec.resources.gpu.resource_name == "nvidia.com/gpu"
    assert spec.gpus_per_replica == 1


def test_parse_spec_accepts_the_bare_spec_too():
    assert parse_spec(MINIMAL).model.uri == "hf://Qwen/Qwen3-8B"


def test_gpu_count_defaults_to_tp_times_pp():
    spec = parse_spec(spec_with(engine={"tensorParallelSize": 4, "pipelineParallelSize": 2}))
    assert spec.gpus_per_replica == 8


def test_gpu_count_zero_means_cpu():
    assert parse_spec(spec_with(resources={"gpu": {"count": 0}})).gpus_per_replica == 0


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        (
            {"engine": {"tensorParallelSize": 2}, "resources": {"gpu": {"count": 1}}},
            "spec.resources.gpu.count",
        ),
        ({"engine": {"tensorParallelSize": 0}}, "spec.engine.tensorParallelSize"),
        ({"engine": {"quantization": "int3"}}, "spec.engine.quantization"),
        ({"engine": {"gpuMemoryUtilization": 1.5}}, "spec.engine.gpuMemoryUtilization"),
        ({"engine": {"maxModelLen": 0}}, "spec.engine.maxModelLen"),
        ({"enginee": {}}, "spec.enginee"),
        ({"model": {"uri": "ftp://x/y"}}, "spec.model.uri"),
        ({"model": {}}, "spec.model.uri"),
        ({"autoscaling": {"minReplicas": 5, "maxReplicas": 2}}, "spec.autoscaling.minReplicas"),
        ({"autoscaling": {"minReplicas": 0, "maxReplicas": 2}}, "spec.autoscaling.minReplicas"),
        (
            {"autoscaling": {"maxReplicas": 2, "provider": "keda"}},
            "spec.autoscaling.prometheusAddress",
        ),
        ({"autoscaling": {"minReplicas": 1}}, "spec.autoscaling.maxReplicas"),
        ({"adapters": [{"name": "a", "uri": "s3://bucket/x"}]}, "spec.adapters[0].uri"),
        (
            {"adapters": [{"name": "a", "uri": "hf://o/a"}, {"name": "a", "uri": "hf://o/b"}]},
            "spec.adapters",
        ),
        ({"cache": {"size": "10Gi", "persistentVolumeClaim": "c"}}, "spec.cache"),
        ({"cache": {"size": "lots"}}, "spec.cache.size"),
        ({"replicas": -1}, "spec.replicas"),
        ({"imagePullPolicy": "Sometimes"}, "spec.imagePullPolicy"),
    ],
)
def test_invalid_specs_raise_spec_error_naming_the_field(fields, field):
    with pytest.raises(SpecError) as info:
        parse_spec(spec_with(**fields))
    assert info.value.field == field
    assert str(info.value).startswith(field + ": ")


def test_spec_that_is_not_an_object_is_rejected():
    with pytest.raises(SpecError) as info:
        parse_spec({"apiVersion": "modelplane.io/v1alpha1", "kind": "ModelDeployment", "spec": []})
    assert info.value.field == "spec"


def test_keda_allows_scale_to_zero():
    spec = parse_spec(
        spec_with(
            autoscaling={
                "minReplicas": 0,
                "maxReplicas": 4,
                "provider": "keda",
                "prometheusAddress": "http://prometheus.monitoring:9090",
            },
            routing={"gatewayRef": {"name": "inference-gateway", "namespace": "gateway-system"}},
        )
    )
    assert spec.autoscaling is not None and spec.autoscaling.min_replicas == 0


def test_uri_errors_say_which_schemes_work():
    with pytest.raises(SpecError) as info:
        parse_spec(spec_with(model={"uri": "ftp://x/y"}))
    assert info.value.message.startswith(
        "must be hf://org/name, pvc://claim/path, s3://bucket/prefix or file:///path"
    )
    assert "ftp://x/y" in info.value.message


def test_object_without_spec_is_rejected():
    with pytest.raises(SpecError) as info:
        parse_spec(
            {
                "apiVersion": "modelplane.io/v1alpha1",
                "kind": "ModelDeployment",
                "metadata": {"name": "x"},
            }
        )
    assert (info.value.field, info.value.message) == ("spec", "is required")


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"resources": {"gpu": {"count": "2"}}}, "spec.resources.gpu.count"),
        ({"engine": {"tensorParallelSize": "2"}}, "spec.engine.tensorParallelSize"),
        ({"engine": {"maxModelLen": 4096.0}}, "spec.engine.maxModelLen"),
        ({"engine": {"enablePrefixCaching": "yes"}}, "spec.engine.enablePrefixCaching"),
        ({"engine": {"gpuMemoryUtilization": "0.9"}}, "spec.engine.gpuMemoryUtilization"),
        ({"replicas": True}, "spec.replicas"),
        (
            {"monitoring": {"serviceMonitor": {"enabled": 1}}},
            "spec.monitoring.serviceMonitor.enabled",
        ),
        ({"resources": {"requests": {"cpu": True}}}, "spec.resources.requests.cpu"),
    ],
)
def test_numbers_and_booleans_are_not_coerced_because_the_crd_rejects_them(fields, field):
    with pytest.raises(SpecError) as info:
        parse_spec(spec_with(**fields))
    assert info.value.field == field


def test_quantities_are_integers_or_strings_and_a_bad_one_says_so():
    spec = parse_spec(spec_with(resources={"requests": {"cpu": 4, "memory": "16Gi"}}))
    assert spec.resources.requests == {"cpu": 4, "memory": "16Gi"}
    assert (
        parse_spec(spec_with(engine={"gpuMemoryUtilization": 1})).engine.gpu_memory_utilization == 1
    )
    with pytest.raises(SpecError) as info:
        parse_spec(spec_with(resources={"limits": {"memory": 1.5}}))
    assert info.value.field == "spec.resources.limits.memory"
    assert info.value.message.startswith("must be an integer or a quantity string")
