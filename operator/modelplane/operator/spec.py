"""The typed ModelDeployment spec: the single source of truth for validation, defaults and the CRD.

`parse_spec(body)` is what the operator (and anyone validating an example) calls; it raises
`SpecError` naming the offending field path (e.g. `spec.resources.gpu.count`).
Cross-field rules live twice on purpose: here (the operator enforces them) and as CEL in the CRD
(the API server enforces them before the object is stored); `CROSS_FIELD_RULES` keeps them together.
"""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass
from typing import Annotated, Any

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StrictBool,
    StrictFloat,
    StrictInt,
    ValidationError,
    model_validator,
)
from pydantic.alias_generators import to_camel

GROUP = "modelplane.io"
VERSION = "v1alpha1"
API_VERSION = f"{GROUP}/{VERSION}"
KIND = "ModelDeployment"
PLURAL = "modeldeployments"
SINGULAR = "modeldeployment"
SHORT_NAMES = ["md"]

DEFAULT_IMAGE = "ghcr.io/modelplane/modelplane-server:0.1.0"
DNS_LABEL = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"


class SpecError(ValueError):
    """An invalid ModelDeployment spec; `field` is the dotted path of the first offending field."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


class _Model(BaseModel):
    """camelCase on the wire, snake_case in Python; unknown fields are an error (typos).

    Numbers and booleans are Strict* types: the CRD types them strictly too, so `parse_spec`
    (which also validates examples without an API server) rejects `count: "2"` or
    `enablePrefixCaching: "yes"` exactly like the API server instead of coercing them.
    """

    model_config = ConfigDict(
        alias_generator=to_camel,
        populate_by_name=True,
        extra="forbid",
        use_enum_values=True,
    )


class Quantization(str, enum.Enum):
    awq = "awq"
    gptq = "gptq"
    fp8 = "fp8"
    bitsandbytes = "bitsandbytes"
    gguf = "gguf"
    compressed_tensors = "compressed-tensors"


class DType(str, enum.Enum):
    auto = "auto"
    half = "half"
    float16 = "float16"
    bfloat16 = "bfloat16"
    float = "float"
    float32 = "float32"


class KVCacheDType(str, enum.Enum):
    auto = "auto"
    fp8 = "fp8"
    fp8_e4m3 = "fp8_e4m3"
    fp8_e5m2 = "fp8_e5m2"


class AutoscalingProvider(str, enum.Enum):
    hpa = "hpa"
    keda = "keda"


class AccessMode(str, enum.Enum):
    read_write_many = "ReadWriteMany"
    read_write_once = "ReadWriteOnce"


class FitCheck(str, enum.Enum):
    enforce = "Enforce"
    warn = "Warn"


class PullPolicy(str, enum.Enum):
    always = "Always"
    if_not_present = "IfNotPresent"
    never = "Never"


class SecretKeyRef(_Model):
    name: Annotated[
        str, Field(min_length=1, description="Name of the Secret in the same namespace.")
    ]
    key: Annotated[str, Field(min_length=1, description="Key inside the Secret.")]


class SecretRef(_Model):
    name: Annotated[
        str, Field(min_length=1, description="Name of the Secret in the same namespace.")
    ]


class ModelSource(_Model):
    uri: Annotated[
        str,
        Field(
            pattern=r"^(hf://[^/\s]+/[^\s]+|pvc://[a-z0-9][-a-z0-9.]*(/[^\s]*)?|s3://[^/\s]+(/[^\s]*)?|file:///[^\s]*)$",
            description=(
                "Where the weights come from: hf://org/name (Hugging Face Hub), pvc://claim/path "
                "(an existing PersistentVolumeClaim, mounted read-only), s3://bucket/prefix "
                "(copied into spec.cache by the fetch Job when a cache is set, else streamed by "
                "vLLM's Run:ai model streamer), file:///path (baked into the image)."
            ),
        ),
    ]
    revision: str | None = Field(
        None, description="Model revision (branch, tag or commit) on the Hub: vLLM --revision."
    )
    served_model_name: str | None = Field(
        None,
        min_length=1,
        description="The model name clients send in requests; defaults to metadata.name.",
    )
    tokenizer: str | None = Field(
        None, description="Tokenizer name or path when it differs from the model: vLLM --tokenizer."
    )
    hf_token_secret_ref: SecretKeyRef | None = Field(
        None, description="Secret key holding a Hugging Face token, exposed as HF_TOKEN."
    )
    aws_credentials_secret_ref: SecretRef | None = Field(
        None,
        description="Secret whose keys are AWS variables (AWS_ACCESS_KEY_ID, "
        "AWS_SECRET_ACCESS_KEY, optionally AWS_SESSION_TOKEN), exposed as environment (envFrom) "
        "to what reads an s3:// model: the fetch Job with a cache, else the serving pods.",
    )


class EnvVar(_Model):
    name: Annotated[str, Field(min_length=1, description="Environment variable name.")]
    value: str = Field("", description="Environment variable value.")


class EngineSpec(_Model):
    tensor_parallel_size: StrictInt = Field(
        1,
        ge=1,
        le=64,
        description="GPUs a model's layers are split across: vLLM --tensor-parallel-size.",
    )
    pipeline_parallel_size: StrictInt = Field(
        1, ge=1, le=64, description="Pipeline stages: vLLM --pipeline-parallel-size."
    )
    quantization: Quantization | None = Field(
        None, description="Weight quantization method: vLLM --quantization. Omitted means none."
    )
    dtype: DType | None = Field(None, description="Weights/activations dtype: vLLM --dtype.")
    kv_cache_dtype: KVCacheDType | None = Field(
        None, description="KV cache dtype: vLLM --kv-cache-dtype."
    )
    max_model_len: StrictInt | None = Field(
        None, ge=1, description="Context length limit in tokens: vLLM --max-model-len."
    )
    gpu_memory_utilization: StrictFloat | None = Field(
        None,
        gt=0,
        le=1,
        description="Fraction of GPU memory vLLM may use: vLLM --gpu-memory-utilization.",
    )
    max_num_seqs: StrictInt | None = Field(
        None, ge=1, description="Sequences batched at once: vLLM --max-num-seqs."
    )
    enable_prefix_caching: StrictBool | None = Field(
        None, description="Reuse KV cache across shared prefixes: vLLM --enable-prefix-caching."
    )
    extra_args: list[str] = Field(
        default_factory=list,
        description="Extra flags appended verbatim to the server command line.",
    )
    env: list[EnvVar] = Field(
        default_factory=list, description="Extra environment variables for the server container."
    )


class GPUSpec(_Model):
    count: StrictInt | None = Field(
        None,
        ge=0,
        le=64,
        description=(
            "GPUs per pod. Defaults to tensorParallelSize x pipelineParallelSize / resources.nodes; "
            "count x nodes must equal TP x PP. 0 runs on CPU (with a CPU engine image)."
        ),
    )
    resource_name: str = Field(
        "nvidia.com/gpu", min_length=1, description="Extended resource name of the GPU."
    )
    product: str | None = Field(
        None,
        description="GPU model; becomes a nodeSelector on nvidia.com/gpu.product (e.g. NVIDIA-A100-SXM4-80GB).",
    )
    memory: str | None = Field(
        None,
        pattern=r"^[0-9]+(\.[0-9]+)?(Ki|Mi|Gi|Ti|k|M|G|T)?$",
        description=(
            "Memory of one GPU (e.g. 80Gi) for the GPUFit check; overrides the table of known "
            "products, needed for a product the table does not know."
        ),
    )
    fit_check: FitCheck = Field(
        FitCheck.enforce,
        description=(
            "Enforce: a GPUFit=False verdict (weights + KV cache for maxModelLen exceed the GPUs) "
            "holds the rollout. Warn: report it and roll out anyway."
        ),
    )


# Kubernetes quantities are int-or-string in the CRD (`2`, "500m", "16Gi").
Quantity = StrictInt | str


class ResourcesSpec(_Model):
    nodes: StrictInt = Field(
        1,
        ge=1,
        le=64,
        description=(
            "Pods (nodes) one replica spans. 1: a Deployment. More: a LeaderWorkerSet "
            "(leaderworkerset.x-k8s.io/v1, LWS must be installed) whose leader serves the API "
            "and whose workers run their share of the engine (vLLM --nnodes/--node-rank)."
        ),
    )
    gpu: GPUSpec = Field(
        default_factory=lambda: GPUSpec.model_validate({}), description="GPUs per pod."
    )
    requests: dict[str, Quantity] = Field(
        default_factory=dict, description="cpu/memory requests of the server container."
    )
    limits: dict[str, Quantity] = Field(
        default_factory=dict, description="cpu/memory limits of the server container."
    )


class AutoscalingSpec(_Model):
    min_replicas: StrictInt = Field(
        1,
        ge=0,
        le=1000,
        description="Lowest replica count; 0 (scale to zero) needs provider keda and spec.routing.",
    )
    max_replicas: StrictInt = Field(..., ge=1, le=1000, description="Highest replica count.")
    target_in_flight_requests: StrictInt = Field(
        16,
        ge=1,
        le=100000,
        description="Target of modelplane_requests_in_flight per replica (average).",
    )
    provider: AutoscalingProvider = Field(
        AutoscalingProvider.hpa,
        description=(
            "hpa: an autoscaling/v2 HorizontalPodAutoscaler on the Pods metric "
            "modelplane_requests_in_flight (needs a Prometheus adapter); keda: a KEDA ScaledObject "
            "with a Prometheus trigger (allows minReplicas 0)."
        ),
    )
    prometheus_address: str | None = Field(
        None,
        pattern=r"^https?://\S+$",
        description="Prometheus URL for the KEDA trigger (required with provider keda).",
    )


class Adapter(_Model):
    name: Annotated[
        str,
        Field(
            min_length=1,
            max_length=63,
            pattern=r"^[A-Za-z0-9][-A-Za-z0-9_.]*$",
            description="Name clients use as the model to select this LoRA adapter.",
        ),
    ]
    uri: Annotated[
        str,
        Field(
            pattern=r"^(hf://[^/\s]+/[^\s]+|file:///[^\s]*)$",
            description="hf://org/name or file:///path of the LoRA adapter.",
        ),
    ]


class AuthSpec(_Model):
    api_key_secret_ref: SecretKeyRef | None = Field(
        None,
        description="Secret key holding the API keys file (one `name:key` per line, optionally "
        "followed by `models=a,b` to restrict the key to those served model names); mounted "
        "read-only, passed as --api-key-file.",
    )


class RateLimitSpec(_Model):
    requests_per_minute: StrictInt | None = Field(
        None, ge=1, description="Requests per minute per API key."
    )
    tokens_per_minute: StrictInt | None = Field(
        None, ge=1, description="Tokens per minute per API key."
    )


class CacheSpec(_Model):
    persistent_volume_claim: str | None = Field(
        None, min_length=1, description="An existing PVC to use as the model cache (HF_HOME)."
    )
    size: str | None = Field(
        None,
        pattern=r"^[0-9]+(\.[0-9]+)?(Ki|Mi|Gi|Ti|Pi|K|M|G|T|P)?$",
        description="Size of a PVC the operator creates for the model cache (e.g. 100Gi).",
    )
    storage_class_name: str | None = Field(
        None, description="StorageClass of the PVC the operator creates."
    )
    access_mode: AccessMode = Field(
        AccessMode.read_write_many,
        description=(
            "Access mode of the PVC the operator creates. ReadWriteMany lets replicas on several "
            "nodes mount the cache; ReadWriteOnce only when at most one replica can ever run."
        ),
    )


class ServiceMonitorSpec(_Model):
    enabled: StrictBool = Field(False, description="Create a prometheus-operator ServiceMonitor.")
    interval: str = Field("30s", pattern=r"^[0-9]+(ms|s|m|h)$", description="Scrape interval.")
    labels: dict[str, str] = Field(
        default_factory=dict, description="Extra labels so a Prometheus selects the ServiceMonitor."
    )


class MonitoringSpec(_Model):
    service_monitor: ServiceMonitorSpec = Field(
        default_factory=lambda: ServiceMonitorSpec.model_validate({}),
        description="prometheus-operator ServiceMonitor.",
    )


# Gateway API Duration (GEP-2257), as in HTTPRoute timeouts; the EPP reads the same Go syntax.
GATEWAY_DURATION = r"^([0-9]{1,5}(h|m|s|ms)){1,4}$"
DNS_SUBDOMAIN = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"


class GatewayRef(_Model):
    name: Annotated[
        str,
        Field(min_length=1, max_length=253, pattern=DNS_SUBDOMAIN, description="Gateway name."),
    ]
    namespace: str | None = Field(
        None,
        min_length=1,
        max_length=63,
        pattern=DNS_LABEL,
        description="Gateway namespace; defaults to the ModelDeployment's.",
    )
    section_name: str | None = Field(
        None,
        min_length=1,
        max_length=253,
        pattern=DNS_SUBDOMAIN,
        description="Listener of the Gateway to attach to (HTTPRoute parentRefs sectionName).",
    )


class EndpointPickerSpec(_Model):
    image: str | None = Field(
        None,
        min_length=1,
        description="Endpoint picker (llm-d router EPP) image; defaults to the operator's "
        "--endpoint-picker-image.",
    )
    replicas: StrictInt = Field(
        1,
        ge=1,
        le=10,
        description="Endpoint picker replicas; more than 1 elects one active leader (hot standbys).",
    )


class RoutingSpec(_Model):
    gateway_ref: GatewayRef | None = Field(
        None,
        description="The Gateway serving every model's OpenAI endpoint; defaults to the "
        "operator's --default-gateway.",
    )
    request_timeout: str = Field(
        "10m",
        pattern=GATEWAY_DURATION,
        description="HTTPRoute request timeout and the endpoint picker's queue TTL; must cover a "
        "cold start when autoscaling.minReplicas is 0. 0s: no timeout.",
    )
    endpoint_picker: EndpointPickerSpec = Field(
        default_factory=lambda: EndpointPickerSpec.model_validate({}),
        description="The endpoint picker that chooses a pod per request.",
    )


class ModelDeploymentSpec(_Model):
    """Desired state of one served model: the weights, the engine, GPUs, replicas, autoscaling."""

    model: ModelSource = Field(..., description="The model weights to serve.")
    engine: EngineSpec = Field(
        default_factory=lambda: EngineSpec.model_validate({}), description="vLLM engine settings."
    )
    resources: ResourcesSpec = Field(
        default_factory=lambda: ResourcesSpec.model_validate({}),
        description="GPUs, cpu and memory per replica.",
    )
    replicas: StrictInt = Field(
        1, ge=0, le=1000, description="Replica count when autoscaling is off (scale subresource)."
    )
    autoscaling: AutoscalingSpec | None = Field(
        None,
        description="Scale on in-flight requests; when set, the operator leaves replicas to it.",
    )
    adapters: list[Adapter] = Field(
        default_factory=list, description="LoRA adapters served next to the base model."
    )
    auth: AuthSpec = Field(
        default_factory=lambda: AuthSpec.model_validate({}), description="API key authentication."
    )
    rate_limit: RateLimitSpec | None = Field(None, description="Per-key rate limits.")
    cache: CacheSpec = Field(
        default_factory=lambda: CacheSpec.model_validate({}),
        description="Model cache volume (HF_HOME); emptyDir when unset.",
    )
    image: str | None = Field(
        None, description="modelplane-server image; defaults to the operator's --default-image."
    )
    image_pull_policy: PullPolicy | None = Field(None, description="Image pull policy.")
    node_selector: dict[str, str] = Field(default_factory=dict, description="Pod nodeSelector.")
    tolerations: list[dict[str, Any]] = Field(
        default_factory=list, description="Pod tolerations (added to the nvidia.com/gpu one)."
    )
    affinity: dict[str, Any] | None = Field(None, description="Pod affinity.")
    priority_class_name: str | None = Field(None, description="Pod priorityClassName.")
    pod_annotations: dict[str, str] = Field(default_factory=dict, description="Pod annotations.")
    monitoring: MonitoringSpec = Field(
        default_factory=lambda: MonitoringSpec.model_validate({}),
        description="Prometheus integration.",
    )
    routing: RoutingSpec | None = Field(
        None,
        description="Serve this model behind a Gateway through the Gateway API Inference "
        "Extension (InferencePool, endpoint picker, HTTPRoute); needed to scale from zero.",
    )

    @model_validator(mode="after")
    def _cross_field_rules(self) -> ModelDeploymentSpec:
        for rule in CROSS_FIELD_RULES:
            if not rule.holds(self):
                raise SpecError(rule.field, rule.message)
        return self

    # Derived values: the builders read these, never recompute them.
    @property
    def gpus_per_pod(self) -> int:
        count = self.resources.gpu.count
        return self.parallel_size // self.resources.nodes if count is None else count

    @property
    def gpus_per_replica(self) -> int:
        return self.gpus_per_pod * self.resources.nodes

    @property
    def multi_node(self) -> bool:
        """One replica is a group of pods (a LeaderWorkerSet), not one pod."""
        return self.resources.nodes > 1

    @property
    def parallel_size(self) -> int:
        return self.engine.tensor_parallel_size * self.engine.pipeline_parallel_size

    @property
    def uri_scheme(self) -> str:
        return self.model.uri.split("://", 1)[0]

    @property
    def uri_path(self) -> str:
        return self.model.uri.split("://", 1)[1]


@dataclass(frozen=True)
class CrossFieldRule:
    """One rule checked by pydantic here and by CEL (`cel`, relative to `scope`) in the CRD."""

    field: str  # dotted path reported in SpecValid=False
    message: str
    scope: str  # "" = spec; "autoscaling" = spec.autoscaling
    cel: str | None  # None: the CRD enforces it structurally (e.g. a list-map key)
    check: Any  # Callable[[ModelDeploymentSpec], bool]

    def holds(self, spec: ModelDeploymentSpec) -> bool:
        return bool(self.check(spec))


def _autoscaling_rule(check: Any) -> Any:
    return lambda s: s.autoscaling is None or check(s.autoscaling)


_CEL_PARALLEL_SIZE = (
    "(has(self.engine) && has(self.engine.tensorParallelSize) ? self.engine.tensorParallelSize : 1)"
    " * (has(self.engine) && has(self.engine.pipelineParallelSize)"
    " ? self.engine.pipelineParallelSize : 1)"
)
_CEL_NODES = "(has(self.resources) && has(self.resources.nodes) ? self.resources.nodes : 1)"

CROSS_FIELD_RULES: tuple[CrossFieldRule, ...] = (
    CrossFieldRule(
        field="spec.resources.nodes",
        message="must divide engine.tensorParallelSize x engine.pipelineParallelSize "
        "(each node runs an equal share of the engine)",
        scope="",
        cel=f"({_CEL_PARALLEL_SIZE}) % {_CEL_NODES} == 0",
        check=lambda s: s.parallel_size % s.resources.nodes == 0,
    ),
    CrossFieldRule(
        field="spec.resources.gpu.count",
        message="must equal engine.tensorParallelSize x engine.pipelineParallelSize"
        " / resources.nodes (or 0 for CPU)",
        scope="",
        cel=(
            "!has(self.resources) || !has(self.resources.gpu) || !has(self.resources.gpu.count)"
            " || self.resources.gpu.count == 0"
            f" || self.resources.gpu.count * {_CEL_NODES} == {_CEL_PARALLEL_SIZE}"
        ),
        check=lambda s: (
            s.resources.gpu.count in (None, 0)
            or s.resources.gpu.count * s.resources.nodes == s.parallel_size
        ),
    ),
    CrossFieldRule(
        field="spec.autoscaling.minReplicas",
        message="must be <= autoscaling.maxReplicas",
        scope="autoscaling",
        cel="!has(self.minReplicas) || self.minReplicas <= self.maxReplicas",
        check=_autoscaling_rule(lambda a: a.min_replicas <= a.max_replicas),
    ),
    CrossFieldRule(
        field="spec.autoscaling.minReplicas",
        message="0 (scale to zero) needs autoscaling.provider keda",
        scope="autoscaling",
        cel="!has(self.minReplicas) || self.minReplicas > 0 || (has(self.provider) && self.provider == 'keda')",
        check=_autoscaling_rule(lambda a: a.min_replicas > 0 or a.provider == "keda"),
    ),
    CrossFieldRule(
        field="spec.autoscaling.minReplicas",
        message="0 (scale to zero) needs spec.routing: only the gateway's endpoint picker holds "
        "a request while no pod runs, so nothing else wakes the model",
        scope="",
        cel="!has(self.autoscaling) || !has(self.autoscaling.minReplicas)"
        " || self.autoscaling.minReplicas > 0 || has(self.routing)",
        check=lambda s: (
            s.autoscaling is None or s.autoscaling.min_replicas > 0 or s.routing is not None
        ),
    ),
    CrossFieldRule(
        field="spec.autoscaling.prometheusAddress",
        message="is required with autoscaling.provider keda",
        scope="autoscaling",
        cel="!has(self.provider) || self.provider != 'keda' || has(self.prometheusAddress)",
        check=_autoscaling_rule(lambda a: a.provider != "keda" or a.prometheus_address),
    ),
    CrossFieldRule(
        field="spec.cache",
        message="set either cache.persistentVolumeClaim or cache.size, not both",
        scope="cache",
        cel="!(has(self.persistentVolumeClaim) && has(self.size))",
        check=lambda s: not (s.cache.persistent_volume_claim and s.cache.size),
    ),
    CrossFieldRule(
        field="spec.cache.accessMode",
        message=(
            "ReadWriteOnce needs at most one replica (replicas <= 1 and autoscaling.maxReplicas"
            " <= 1) of one pod (resources.nodes 1): a second pod on another node could not mount"
            " the cache"
        ),
        scope="",
        cel=(
            "!has(self.cache) || !has(self.cache.accessMode) || self.cache.accessMode != 'ReadWriteOnce'"
            " || ((!has(self.replicas) || self.replicas <= 1)"
            " && (!has(self.autoscaling) || self.autoscaling.maxReplicas <= 1)"
            " && (!has(self.resources) || !has(self.resources.nodes) || self.resources.nodes <= 1))"
        ),
        check=lambda s: (
            s.cache.access_mode != "ReadWriteOnce"
            or (
                s.replicas <= 1
                and (s.autoscaling is None or s.autoscaling.max_replicas <= 1)
                and s.resources.nodes <= 1
            )
        ),
    ),
    CrossFieldRule(
        field="spec.adapters",
        message="adapter names must be unique",
        scope="adapters",
        cel=None,  # x-kubernetes-list-type: map with key name
        check=lambda s: len({a.name for a in s.adapters}) == len(s.adapters),
    ),
)


# pydantic puts the member type into the error location of a union (Quantity = int | str).
UNION_MEMBER_TAGS = ("int", "str")
QUANTITY_MESSAGE = 'must be an integer or a quantity string (e.g. 4, "500m", "16Gi")'


def _field_path(loc: tuple[int | str, ...]) -> str:
    parts = ["spec"]
    for item in loc:
        if isinstance(item, int):
            parts[-1] += f"[{item}]"
        elif item not in UNION_MEMBER_TAGS:
            parts.append(str(item))
    return ".".join(parts)


URI_FORMATS = {
    "uri": "must be hf://org/name, pvc://claim/path, s3://bucket/prefix or file:///path",
    "adapters": "must be hf://org/name or file:///path",
}


def _message(field: str, error: Any) -> str:
    if error["type"] == "string_pattern_mismatch" and field.endswith(".uri"):
        key = "adapters" if ".adapters[" in field else "uri"
        return f"{URI_FORMATS[key]} (got {error.get('input')!r})"
    if error["loc"] and error["loc"][-1] in UNION_MEMBER_TAGS:
        return f"{QUANTITY_MESSAGE} (got {error.get('input')!r})"
    return str(error["msg"])


def parse_spec(body: dict[str, Any]) -> ModelDeploymentSpec:
    """Validate a ModelDeployment (the whole object, or just its spec) and return the typed spec.

    Raises `SpecError` whose `.field` is the path of the first bad field, e.g. `spec.engine.dtype`.
    """
    if body.get("kind") == KIND or "apiVersion" in body or "metadata" in body:
        spec = body.get("spec")
        if spec is None:
            raise SpecError("spec", "is required")
    else:
        spec = body
    if not isinstance(spec, dict):
        raise SpecError("spec", "must be an object")
    try:
        return ModelDeploymentSpec.model_validate(spec)
    except ValidationError as exc:
        first = exc.errors()[0]
        ctx_error = (first.get("ctx") or {}).get("error")
        if isinstance(ctx_error, SpecError):
            raise ctx_error from None
        field = _field_path(tuple(first["loc"]))
        raise SpecError(field, _message(field, first)) from None


def served_model_name(spec: ModelDeploymentSpec, name: str) -> str:
    return spec.model.served_model_name or name


def is_dns_label(name: str) -> bool:
    return bool(re.match(DNS_LABEL, name)) and len(name) <= 63
