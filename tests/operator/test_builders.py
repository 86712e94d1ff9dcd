"""Pure builders: a spec in, the manifest dicts out (no API calls)."""

from modelplane.operator.resources import ChildRef, Owner, plan_children
from modelplane.operator.resources.autoscaler import build_hpa, build_scaled_object, keda_query
from modelplane.operator.resources.deployment import build_deployment
from modelplane.operator.resources.pdb import wants_pdb
from modelplane.operator.resources.service import build_service
from modelplane.operator.spec import parse_spec

OWNER = Owner(name="qwen3-8b", namespace="ml", uid="0b8f-uid")
IMAGE = "registry.example/modelplane-server:1.0"


def deployment(spec: dict) -> dict:
    return build_deployment(OWNER, parse_spec(spec), default_image=IMAGE)


def container(spec: dict) -> dict:
    return deployment(spec)["spec"]["template"]["spec"]["containers"][0]


def pod(spec: dict) -> dict:
    return deployment(spec)["spec"]["template"]["spec"]


MINIMAL = {"model": {"uri": "hf://Qwen/Qwen3-8B"}}
TP2 = {
    "model": {"uri": "hf://Qwen/Qwen3-32B"},
    "engine": {"tensorParallelSize": 2, "pipelineParallelSize": 2},
}


def test_children_carry_owner_reference_and_standard_labels():
    for manifest in plan_children(OWNER, parse_spec(MINIMAL), default_image=IMAGE).apply:
        meta = manifest["metadata"]
        assert meta["ownerReferences"] == [
            {
                "apiVersion": "modelplane.io/v1alpha1",
                "kind": "ModelDeployment",
                "name": "qwen3-8b",
                "uid": "0b8f-uid",
                "controller": True,
                "blockOwnerDeletion": True,
            }
        ]
        assert meta["namespace"] == "ml"
        assert meta["labels"]["app.kubernetes.io/name"] == "modelplane-server"
        assert meta["labels"]["app.kubernetes.io/instance"] == "qwen3-8b"
        assert meta["labels"]["app.kubernetes.io/managed-by"] == "modelplane-operator"
        assert meta["labels"]["modelplane.io/deployment"] == "qwen3-8b"
        assert "app.kubernetes.io/component" in meta["labels"]


def test_minimal_plan_is_deployment_and_service_only():
    plan = plan_children(OWNER, parse_spec(MINIMAL), default_image=IMAGE)
    assert [m["kind"] for m in plan.apply] == ["Deployment", "Service"]
    assert ChildRef("autoscaling/v2", "HorizontalPodAutoscaler", "qwen3-8b") in plan.delete
    assert ChildRef("policy/v1", "PodDisruptionBudget", "qwen3-8b") in plan.delete


def test_gpu_limit_is_tp_times_pp_with_gpu_toleration():
    c = container(TP2)
    assert c["resources"]["limits"]["nvidia.com/gpu"] == "4"
    assert pod(TP2)["tolerations"][0] == {
        "key": "nvidia.com/gpu",
        "operator": "Exists",
        "effect": "NoSchedule",
    }


def test_shm_volume_only_when_parallel():
    assert "shm" not in [v["name"] for v in pod(MINIMAL)["volumes"]]
    assert {"name": "shm", "emptyDir": {"medium": "Memory"}} in pod(TP2)["volumes"]
    assert {"name": "shm", "mountPath": "/dev/shm"} in container(TP2)["volumeMounts"]


def test_cpu_only_spec_has_no_gpu_limit_nor_toleration():
    spec = {
        **MINIMAL,
        "resources": {"gpu": {"count": 0}, "requests": {"cpu": "2", "memory": "8Gi"}},
    }
    c = container(spec)
    assert "limits" not in c["resources"]
    assert c["resources"]["requests"] == {"cpu": "2", "memory": "8Gi"}
    assert "tolerations" not in pod(spec)


def test_custom_gpu_resource_and_product_node_selector():
    spec = {
        **MINIMAL,
        "resources": {"gpu": {"resourceName": "amd.com/gpu", "product": "MI300X"}},
        "nodeSelector": {"pool": "gpu"},
    }
    assert container(spec)["resources"]["limits"] == {"amd.com/gpu": "1"}
    assert pod(spec)["nodeSelector"] == {"pool": "gpu", "nvidia.com/gpu.product": "MI300X"}


def test_probes_target_ready_and_health_with_long_startup_budget():
    c = container(MINIMAL)
    assert c["startupProbe"]["httpGet"] == {"path": "/ready", "port": "http"}
    assert c["startupProbe"]["periodSeconds"] * c["startupProbe"]["failureThreshold"] >= 3600
    assert c["readinessProbe"]["httpGet"]["path"] == "/ready"
    assert c["livenessProbe"]["httpGet"]["path"] == "/health"
    assert c["ports"] == [{"name": "http", "containerPort": 8000, "protocol": "TCP"}]


def test_restricted_security_context_and_drain():
    c = container(MINIMAL)
    assert c["securityContext"]["allowPrivilegeEscalation"] is False
    assert c["securityContext"]["capabilities"] == {"drop": ["ALL"]}
    assert c["securityContext"]["runAsNonRoot"] is True
    assert c["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    p = pod(MINIMAL)
    assert p["securityContext"]["runAsNonRoot"] is True
    assert p["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    assert p["automountServiceAccountToken"] is False
    assert c["lifecycle"]["preStop"]["sleep"]["seconds"] > 0
    assert p["terminationGracePeriodSeconds"] > c["lifecycle"]["preStop"]["sleep"]["seconds"]


def test_scrape_annotations_and_pod_annotations():
    spec = {**MINIMAL, "podAnnotations": {"team": "ml"}}
    annotations = deployment(spec)["spec"]["template"]["metadata"]["annotations"]
    assert annotations["prometheus.io/scrape"] == "true"
    assert annotations["prometheus.io/port"] == "8000"
    assert annotations["prometheus.io/path"] == "/metrics"
    assert annotations["team"] == "ml"


def test_rollout_never_surges_past_the_gpus_it_has():
    strategy = deployment(MINIMAL)["spec"]["strategy"]
    assert strategy == {
        "type": "RollingUpdate",
        "rollingUpdate": {"maxSurge": 0, "maxUnavailable": 1},
    }


def test_replicas_set_without_autoscaling_and_left_to_the_autoscaler_with_it():
    assert deployment({**MINIMAL, "replicas": 3})["spec"]["replicas"] == 3
    assert "replicas" not in deployment({**MINIMAL, "autoscaling": {"maxReplicas": 4}})["spec"]


def test_hf_model_cache_and_token():
    spec = {
        "model": {
            "uri": "hf://meta-llama/Llama-3.1-8B",
            "hfTokenSecretRef": {"name": "hf", "key": "token"},
        }
    }
    c = container(spec)
    env = {e["name"]: e for e in c["env"]}
    assert env["HF_HOME"]["value"] == "/cache/huggingface"
    assert env["HF_TOKEN"]["valueFrom"] == {"secretKeyRef": {"name": "hf", "key": "token"}}
    assert [e["name"] for e in c["env"]] == sorted(env)
    assert {"name": "cache", "emptyDir": {}} in pod(spec)["volumes"]
    assert {"name": "cache", "mountPath": "/cache"} in c["volumeMounts"]
    assert not any("token" in a.lower() for a in c["args"])


def test_compile_caches_live_on_the_cache_volume_so_restarts_reuse_them():
    c = container(MINIMAL)
    env = {e["name"]: e.get("value") for e in c["env"]}
    mount = next(m["mountPath"] for m in c["volumeMounts"] if m["name"] == "cache")
    # vLLM keeps torch.compile's artifacts (inductor's and Triton's caches inside) here.
    assert env["VLLM_CACHE_ROOT"] == f"{mount}/vllm"
    assert env["CUDA_CACHE_PATH"] == f"{mount}/nv"
    claimed = deployment({**MINIMAL, "cache": {"size": "20Gi"}})["spec"]["template"]["spec"]
    assert any("persistentVolumeClaim" in v for v in claimed["volumes"] if v["name"] == "cache")


def test_pvc_model_is_mounted_read_only():
    spec = {"model": {"uri": "pvc://weights/qwen3-8b"}}
    assert {
        "name": "model",
        "persistentVolumeClaim": {"claimName": "weights", "readOnly": True},
    } in pod(spec)["volumes"]
    assert {"name": "model", "mountPath": "/models", "readOnly": True} in container(spec)[
        "volumeMounts"
    ]
    assert "/models/qwen3-8b" in container(spec)["args"]


def test_api_keys_mounted_from_the_secret_never_in_args():
    spec = {**MINIMAL, "auth": {"apiKeySecretRef": {"name": "keys", "key": "api-keys.txt"}}}
    volume = next(v for v in pod(spec)["volumes"] if v["name"] == "api-keys")
    assert volume["secret"]["secretName"] == "keys"
    assert volume["secret"]["items"] == [{"key": "api-keys.txt", "path": "api-keys"}]
    mount = next(m for m in container(spec)["volumeMounts"] if m["name"] == "api-keys")
    assert mount == {"name": "api-keys", "mountPath": "/etc/modelplane/auth", "readOnly": True}


def test_cache_pvc_is_created_but_never_patched_when_size_is_set():
    spec = parse_spec({**MINIMAL, "cache": {"size": "200Gi", "storageClassName": "fast"}})
    plan = plan_children(OWNER, spec, default_image=IMAGE)
    (pvc,) = plan.create
    assert "PersistentVolumeClaim" not in [m["kind"] for m in plan.apply]
    assert pvc["kind"] == "PersistentVolumeClaim"
    assert pvc["metadata"]["name"] == "qwen3-8b-cache"
    assert pvc["spec"]["resources"]["requests"]["storage"] == "200Gi"
    assert pvc["spec"]["storageClassName"] == "fast"
    volumes = plan.apply[0]["spec"]["template"]["spec"]["volumes"]
    assert {"name": "cache", "persistentVolumeClaim": {"claimName": "qwen3-8b-cache"}} in volumes


def test_existing_cache_claim_is_used_as_is():
    volumes = pod({**MINIMAL, "cache": {"persistentVolumeClaim": "shared-cache"}})["volumes"]
    assert {"name": "cache", "persistentVolumeClaim": {"claimName": "shared-cache"}} in volumes


def test_image_defaults_and_overrides():
    assert container(MINIMAL)["image"] == IMAGE
    spec = {**MINIMAL, "image": "mine:2", "imagePullPolicy": "Always"}
    assert container(spec)["image"] == "mine:2"
    assert container(spec)["imagePullPolicy"] == "Always"
    assert container(MINIMAL)["command"] == ["modelplane-server"]


def test_service_is_cluster_ip_on_port_8000_named_http():
    service = build_service(OWNER, parse_spec(MINIMAL))
    assert service["metadata"]["name"] == "qwen3-8b"
    assert service["spec"]["type"] == "ClusterIP"
    assert service["spec"]["ports"] == [
        {"name": "http", "port": 8000, "targetPort": "http", "protocol": "TCP"}
    ]
    assert service["spec"]["selector"] == {
        "app.kubernetes.io/name": "modelplane-server",
        "app.kubernetes.io/instance": "qwen3-8b",
    }


def test_hpa_scales_the_deployment_on_in_flight_requests():
    spec = parse_spec(
        {
            **MINIMAL,
            "autoscaling": {"minReplicas": 2, "maxReplicas": 6, "targetInFlightRequests": 24},
        }
    )
    hpa = build_hpa(OWNER, spec)
    assert hpa["apiVersion"] == "autoscaling/v2"
    assert hpa["spec"]["scaleTargetRef"] == {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "name": "qwen3-8b",
    }
    assert (hpa["spec"]["minReplicas"], hpa["spec"]["maxReplicas"]) == (2, 6)
    assert hpa["spec"]["metrics"] == [
        {
            "type": "Pods",
            "pods": {
                "metric": {"name": "modelplane_requests_in_flight"},
                "target": {"type": "AverageValue", "averageValue": "24"},
            },
        }
    ]


def test_keda_scaled_object_with_prometheus_trigger_and_scale_to_zero():
    spec = parse_spec(
        {
            **MINIMAL,
            "autoscaling": {
                "minReplicas": 0,
                "maxReplicas": 3,
                "provider": "keda",
                "prometheusAddress": "http://prometheus.monitoring:9090",
            },
            "routing": {"gatewayRef": {"name": "inference-gateway", "namespace": "gateway-system"}},
        }
    )
    scaled = build_scaled_object(OWNER, spec)
    assert scaled["apiVersion"] == "keda.sh/v1alpha1"
    assert scaled["spec"]["minReplicaCount"] == 0
    assert scaled["spec"]["maxReplicaCount"] == 3
    trigger = scaled["spec"]["triggers"][0]
    assert trigger["type"] == "prometheus"
    assert trigger["metadata"]["serverAddress"] == "http://prometheus.monitoring:9090"
    assert trigger["metadata"]["query"] == keda_query(OWNER)
    assert 'namespace="ml"' in trigger["metadata"]["query"]
    assert trigger["metadata"]["threshold"] == "16"
    plan = plan_children(OWNER, spec, default_image=IMAGE)
    assert [m["kind"] for m in plan.apply][:4] == [
        "Deployment",
        "Service",
        "ScaledObject",
        "PodDisruptionBudget",
    ]
    assert ChildRef("autoscaling/v2", "HorizontalPodAutoscaler", "qwen3-8b") in plan.delete


def test_pdb_only_when_more_than_one_replica_can_exist():
    assert not wants_pdb(parse_spec(MINIMAL))
    assert wants_pdb(parse_spec({**MINIMAL, "replicas": 2}))
    assert wants_pdb(parse_spec({**MINIMAL, "autoscaling": {"maxReplicas": 2}}))
    assert not wants_pdb(parse_spec({**MINIMAL, "autoscaling": {"maxReplicas": 1}}))
    pdb = next(
        m
        for m in plan_children(
            OWNER, parse_spec({**MINIMAL, "replicas": 2}), default_image=IMAGE
        ).apply
        if m["kind"] == "PodDisruptionBudget"
    )
    assert pdb["spec"]["maxUnavailable"] == 1


def test_service_monitor_only_when_asked_and_available():
    asked = parse_spec(
        {
            **MINIMAL,
            "monitoring": {"serviceMonitor": {"enabled": True, "labels": {"release": "prom"}}},
        }
    )
    kinds = [m["kind"] for m in plan_children(OWNER, asked, default_image=IMAGE).apply]
    assert "ServiceMonitor" not in kinds
    plan = plan_children(OWNER, asked, default_image=IMAGE, service_monitor_available=True)
    monitor = next(m for m in plan.apply if m["kind"] == "ServiceMonitor")
    assert monitor["metadata"]["labels"]["release"] == "prom"
    assert monitor["spec"]["endpoints"] == [{"port": "http", "path": "/metrics", "interval": "30s"}]


def test_builders_copy_user_fragments():
    user_tolerations = [
        {"key": "dedicated", "operator": "Equal", "value": "ml", "effect": "NoSchedule"}
    ]
    spec = parse_spec({**MINIMAL, "tolerations": user_tolerations})
    built = build_deployment(OWNER, spec, default_image=IMAGE)
    built["spec"]["template"]["spec"]["tolerations"][1]["value"] = "changed"
    assert spec.tolerations[0]["value"] == "ml"


def test_pod_level_spec_fields_reach_the_pod():
    affinity = {
        "nodeAffinity": {
            "requiredDuringSchedulingIgnoredDuringExecution": {
                "nodeSelectorTerms": [
                    {"matchExpressions": [{"key": "pool", "operator": "In", "values": ["gpu"]}]}
                ]
            }
        }
    }
    spec = {
        **MINIMAL,
        "affinity": affinity,
        "priorityClassName": "inference",
        "nodeSelector": {"pool": "gpu"},
        "tolerations": [{"key": "dedicated", "operator": "Exists"}],
        "resources": {"gpu": {"product": "NVIDIA-H100-80GB-HBM3"}},
    }
    p = pod(spec)
    assert p["affinity"] == affinity
    assert p["priorityClassName"] == "inference"
    assert p["nodeSelector"] == {"pool": "gpu", "nvidia.com/gpu.product": "NVIDIA-H100-80GB-HBM3"}
    assert [t["key"] for t in p["tolerations"]] == ["nvidia.com/gpu", "dedicated"]


def test_engine_env_becomes_container_env_and_server_settings_do_not():
    spec = {
        **MINIMAL,
        "engine": {"env": [{"name": "VLLM_ATTENTION_BACKEND", "value": "FLASHINFER"}]},
        "rateLimit": {"requestsPerMinute": 600, "tokensPerMinute": 100000},
    }
    env = {e["name"]: e.get("value") for e in container(spec)["env"]}
    assert env["VLLM_ATTENTION_BACKEND"] == "FLASHINFER"
    # Server settings are flags (engine_args), never MODELPLANE_* variables.
    assert not [name for name in env if name.startswith("MODELPLANE_")]
    assert "--rate-limit-requests-per-minute" in container(spec)["args"]


def test_custom_gpu_resource_name_sets_limit_and_toleration():
    spec = {
        **MINIMAL,
        "resources": {"gpu": {"resourceName": "amd.com/gpu"}, "limits": {"memory": "64Gi"}},
    }
    c = container(spec)
    assert c["resources"]["limits"] == {"memory": "64Gi", "amd.com/gpu": "1"}
    assert pod(spec)["tolerations"][0]["key"] == "amd.com/gpu"
