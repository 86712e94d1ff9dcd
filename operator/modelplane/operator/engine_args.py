"""The one place where the spec becomes the `modelplane-server` command line (vLLM's flags + ours).

Every setting reaches the server as a flag, none as `MODELPLANE_*` environment: one list to read,
and `tests/operator/test_engine_args.py` parses it with the server's own argument parser.
"""

from __future__ import annotations

from modelplane import contract
from modelplane.operator.fetch_sources import needs_fetch, s3_cache_path
from modelplane.operator.spec import ModelDeploymentSpec, served_model_name

MODELS_DIR = "/models"  # where a pvc:// model claim is mounted (read-only)
API_KEYS_DIR = "/etc/modelplane/auth"
API_KEYS_FILE = f"{API_KEYS_DIR}/api-keys"
# vLLM documents s3:// models through the Run:ai model streamer (`--load-format runai_streamer`,
# `vllm[runai]` in the image): weights stream straight from the bucket into GPU memory.
S3_LOAD_FORMAT = "runai_streamer"

# The shutdown budget: preStop keeps the pod serving while Endpoints drop it; then SIGTERM lets
# in-flight requests (long generations) finish within what is left of the grace period.
PRE_STOP_SLEEP_SECONDS = 10
TERMINATION_GRACE_SECONDS = 120
DRAIN_TIMEOUT_SECONDS = TERMINATION_GRACE_SECONDS - PRE_STOP_SLEEP_SECONDS - 10


def model_argument(spec: ModelDeploymentSpec) -> str:
    """The --model value for each URI scheme (hf, pvc, s3, file)."""
    scheme, path = spec.uri_scheme, spec.uri_path
    if scheme == "hf":
        return path
    if scheme == "pvc":
        _claim, _, inner = path.partition("/")
        return f"{MODELS_DIR}/{inner}".rstrip("/")
    if scheme == "s3":  # with a cache the fetch Job copied it there, else vLLM streams it
        return s3_cache_path(spec) if needs_fetch(spec) else spec.model.uri
    return "/" + path.lstrip("/")  # file:///path -> /path


def model_claim(spec: ModelDeploymentSpec) -> str | None:
    """The PVC holding the weights for pvc:// models."""
    if spec.uri_scheme != "pvc":
        return None
    return spec.uri_path.partition("/")[0]


def adapter_argument(uri: str) -> str:
    scheme, _, path = uri.partition("://")
    return path if scheme == "hf" else "/" + path.lstrip("/")


def engine_flags(spec: ModelDeploymentSpec, name: str) -> list[str]:
    """The server's arguments for ModelDeployment `name`, ending with spec.engine.extraArgs verbatim."""
    engine = spec.engine
    flags = [
        contract.HOST_FLAG,
        "0.0.0.0",
        contract.PORT_FLAG,
        str(contract.SERVER_PORT),
        # One JSON object per log line in pods; drain within the grace period after preStop.
        contract.LOG_FORMAT_FLAG,
        "json",
        contract.DRAIN_TIMEOUT_FLAG,
        str(DRAIN_TIMEOUT_SECONDS),
        "--model",
        model_argument(spec),
        "--served-model-name",
        served_model_name(spec, name),
    ]
    if spec.uri_scheme == "s3" and not needs_fetch(spec):
        flags += ["--load-format", S3_LOAD_FORMAT]
    if spec.model.revision:
        flags += ["--revision", spec.model.revision]
    if spec.model.tokenizer:
        flags += ["--tokenizer", spec.model.tokenizer]
    if engine.tensor_parallel_size != 1:
        flags += ["--tensor-parallel-size", str(engine.tensor_parallel_size)]
    if engine.pipeline_parallel_size != 1:
        flags += ["--pipeline-parallel-size", str(engine.pipeline_parallel_size)]
    if engine.quantization:
        flags += ["--quantization", str(engine.quantization)]
    if engine.dtype:
        flags += ["--dtype", str(engine.dtype)]
    if engine.kv_cache_dtype:
        flags += ["--kv-cache-dtype", str(engine.kv_cache_dtype)]
    if engine.max_model_len is not None:
        flags += ["--max-model-len", str(engine.max_model_len)]
    if engine.gpu_memory_utilization is not None:
        flags += ["--gpu-memory-utilization", f"{engine.gpu_memory_utilization:g}"]
    if engine.max_num_seqs is not None:
        flags += ["--max-num-seqs", str(engine.max_num_seqs)]
    if engine.enable_prefix_caching is True:
        flags += ["--enable-prefix-caching"]
    elif engine.enable_prefix_caching is False:
        flags += ["--no-enable-prefix-caching"]
    if spec.adapters:
        flags += ["--enable-lora", contract.LORA_MODULES_FLAG]
        flags += [f"{a.name}={adapter_argument(a.uri)}" for a in spec.adapters]
    if spec.auth.api_key_secret_ref is not None:
        flags += [contract.API_KEY_FILE_FLAG, API_KEYS_FILE]
    if spec.rate_limit is not None and spec.rate_limit.requests_per_minute is not None:
        flags += [contract.RATE_LIMIT_REQUESTS_FLAG, str(spec.rate_limit.requests_per_minute)]
    if spec.rate_limit is not None and spec.rate_limit.tokens_per_minute is not None:
        flags += [contract.RATE_LIMIT_TOKENS_FLAG, str(spec.rate_limit.tokens_per_minute)]
    return flags + list(engine.extra_args)
