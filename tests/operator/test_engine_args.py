"""The exact modelplane-server (vLLM) flags for each spec field."""

from modelplane import contract
from modelplane.operator.engine_args import DRAIN_TIMEOUT_SECONDS, engine_flags, model_argument
from modelplane.operator.spec import parse_spec
from modelplane.server import cli as server_cli

# Every spec field that becomes a flag, set at once.
EVERY_FLAG = {
    "model": {
        "uri": "s3://bucket/qwen3-8b-awq",
        "servedModelName": "qwen3",
        "revision": "main",
        "tokenizer": "Qwen/Qwen3-8B",
    },
    "engine": {
        "tensorParallelSize": 2,
        "pipelineParallelSize": 2,
        "quantization": "awq",
        "dtype": "half",
        "kvCacheDtype": "fp8",
        "maxModelLen": 8192,
        "gpuMemoryUtilization": 0.85,
        "maxNumSeqs": 64,
        "enablePrefixCaching": True,
    },
    "adapters": [{"name": "sql", "uri": "hf://org/sql-lora"}],
    "auth": {"apiKeySecretRef": {"name": "k", "key": "keys"}},
    "rateLimit": {"requestsPerMinute": 600, "tokensPerMinute": 100000},
}


def flags(spec: dict, name: str = "qwen") -> list[str]:
    return engine_flags(parse_spec(spec), name)


def value_of(args: list[str], flag: str) -> str:
    return args[args.index(flag) + 1]


def test_minimal_spec_serves_the_hub_model_under_the_object_name():
    assert flags({"model": {"uri": "hf://Qwen/Qwen3-8B"}}) == [
        "--host", "0.0.0.0",
        "--port", "8000",
        "--log-format", "json",
        "--drain-timeout", "100",
        "--model", "Qwen/Qwen3-8B",
        "--served-model-name", "qwen",
    ]  # fmt: skip


def test_tensor_and_pipeline_parallel_sizes():
    args = flags(
        {
            "model": {"uri": "hf://meta-llama/Llama-3.1-70B-Instruct"},
            "engine": {"tensorParallelSize": 4, "pipelineParallelSize": 2},
        }
    )
    assert value_of(args, "--tensor-parallel-size") == "4"
    assert value_of(args, "--pipeline-parallel-size") == "2"


def test_quantization_and_engine_tuning_flags():
    args = flags({**EVERY_FLAG, "engine": {**EVERY_FLAG["engine"], "extraArgs": ["--seed", "7"]}})
    assert value_of(args, "--served-model-name") == "qwen3"
    assert value_of(args, "--quantization") == "awq"
    assert value_of(args, "--dtype") == "half"
    assert value_of(args, "--kv-cache-dtype") == "fp8"
    assert value_of(args, "--max-model-len") == "8192"
    assert value_of(args, "--gpu-memory-utilization") == "0.85"
    assert value_of(args, "--max-num-seqs") == "64"
    assert value_of(args, "--revision") == "main"
    assert value_of(args, "--tokenizer") == "Qwen/Qwen3-8B"
    assert "--enable-prefix-caching" in args
    assert args[-2:] == ["--seed", "7"]  # extraArgs last, verbatim


def test_compressed_tensors_quantization_keeps_its_vllm_name():
    args = flags({"model": {"uri": "hf://o/m"}, "engine": {"quantization": "compressed-tensors"}})
    assert value_of(args, "--quantization") == "compressed-tensors"


def test_prefix_caching_false_is_explicit():
    args = flags({"model": {"uri": "hf://o/m"}, "engine": {"enablePrefixCaching": False}})
    assert "--no-enable-prefix-caching" in args


def test_lora_adapters_become_lora_modules():
    args = flags(
        {
            "model": {"uri": "hf://meta-llama/Llama-3.1-8B-Instruct"},
            "adapters": [
                {"name": "sql", "uri": "hf://org/sql-lora"},
                {"name": "local", "uri": "file:///adapters/local"},
            ],
        }
    )
    start = args.index("--enable-lora")
    assert args[start : start + 4] == [
        "--enable-lora",
        "--lora-modules",
        "sql=org/sql-lora",
        "local=/adapters/local",
    ]


def test_api_key_file_flag_only_with_a_secret():
    assert "--api-key-file" not in flags({"model": {"uri": "hf://o/m"}})
    args = flags(
        {"model": {"uri": "hf://o/m"}, "auth": {"apiKeySecretRef": {"name": "k", "key": "keys"}}}
    )
    assert value_of(args, "--api-key-file") == "/etc/modelplane/auth/api-keys"


def test_model_argument_per_uri_scheme():
    def arg(uri: str) -> str:
        return model_argument(parse_spec({"model": {"uri": uri}}))

    assert arg("hf://Qwen/Qwen3-8B") == "Qwen/Qwen3-8B"
    assert arg("pvc://models/qwen/8b") == "/models/qwen/8b"
    assert arg("pvc://models") == "/models"
    assert arg("s3://bucket/prefix/qwen") == "s3://bucket/prefix/qwen"
    assert arg("file:///opt/models/smollm2") == "/opt/models/smollm2"


def test_s3_models_stream_through_runai():
    args = flags({"model": {"uri": "s3://bucket/qwen3"}})
    assert value_of(args, "--model") == "s3://bucket/qwen3"
    assert value_of(args, "--load-format") == "runai_streamer"


def test_rate_limits_become_the_servers_rate_limit_flags():
    args = flags(
        {
            "model": {"uri": "hf://o/m"},
            "rateLimit": {"requestsPerMinute": 600, "tokensPerMinute": 9},
        }
    )
    assert value_of(args, "--rate-limit-requests-per-minute") == "600"
    assert value_of(args, "--rate-limit-tokens-per-minute") == "9"
    assert "--rate-limit-tokens-per-minute" not in flags({"model": {"uri": "hf://o/m"}})


def test_the_drain_fits_the_grace_period_left_after_the_prestop_pause():
    assert value_of(flags({"model": {"uri": "hf://o/m"}}), "--drain-timeout") == str(
        DRAIN_TIMEOUT_SECONDS
    )


def test_every_flag_the_operator_emits_is_accepted_by_the_servers_parser():
    """The contract, operator side: the real modelplane-server parser (vLLM's + ours) reads
    the whole command line, names and values, and lands each value where the server uses it."""
    args = flags(EVERY_FLAG)
    parsed = server_cli.parse_args(args, {})
    assert parsed.port == contract.SERVER_PORT
    assert parsed.log_format == "json"
    assert parsed.drain_timeout == DRAIN_TIMEOUT_SECONDS
    assert parsed.rate_limit_requests_per_minute == 600
    assert parsed.rate_limit_tokens_per_minute == 100000
    assert parsed.api_key_file == "/etc/modelplane/auth/api-keys"
    assert parsed.lora_modules == ["sql=org/sql-lora"]
    assert parsed.tensor_parallel_size == 2
    assert parsed.quantization == "awq"
    assert parsed.load_format == "runai_streamer"
    assert parsed.enable_prefix_caching is True
    emitted = {arg for arg in args if arg.startswith("--")}
    assert emitted >= set(contract.SERVER_FLAGS)  # the maximal spec uses every contract flag


def test_stream_interval_in_extra_args_reaches_the_engine_with_vllms_flag():
    """No spec field of its own: vLLM's `--stream-interval` passes through engine.extraArgs
    and lands in the engine args the server builds AsyncLLM from (default 1)."""
    spec = {"model": {"uri": "hf://Qwen/Qwen3-8B"}}
    default = server_cli.build_settings(server_cli.parse_args(flags(spec), {}))
    assert default.engine_args.stream_interval == 1
    spec["engine"] = {"extraArgs": ["--stream-interval", "4"]}
    args = flags(spec)
    assert args[-2:] == ["--stream-interval", "4"]
    settings = server_cli.build_settings(server_cli.parse_args(args, {}))
    assert settings.engine_args.stream_interval == 4
