"""Flags and environment -> ServerSettings (no engine is started)."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest

from modelplane.server import cli
from modelplane.server.cpu_defaults import cpu_defaults, cpu_eager_default
from modelplane.server.default_model import (
    DEFAULT_SERVED_MODEL_NAME,
    RECOMMENDED_SAMPLING,
    default_model_dir,
    is_prepared,
)
from modelplane.server.env_flags import env_var_name, flags_of
from modelplane.server.settings import ApiKey, LoRAModule, parse_api_key_lines


@pytest.fixture(scope="module")
def parser() -> argparse.ArgumentParser:
    return cli.build_parser()


def test_vllm_engine_flags_pass_through_with_vllm_names() -> None:
    args = cli.parse_args(
        [
            "--model", "/models/x",
            "--tensor-parallel-size", "2",
            "--pipeline-parallel-size", "2",
            "--max-model-len", "4096",
            "--gpu-memory-utilization", "0.8",
            "--dtype", "float16",
            "--kv-cache-dtype", "fp8",
            "--quantization", "awq",
            "--enable-prefix-caching",
            "--enable-lora",
            "--lora-modules", "sql=/loras/sql", "chat=/loras/chat",
        ],
        {},
    )  # fmt: skip
    assert args.model == "/models/x"
    assert args.tensor_parallel_size == 2
    assert args.pipeline_parallel_size == 2
    assert args.max_model_len == 4096
    assert args.gpu_memory_utilization == 0.8
    assert args.dtype == "float16"
    assert args.kv_cache_dtype == "fp8"
    assert args.quantization == "awq"
    assert args.enable_prefix_caching is True
    assert args.enable_lora is True
    assert cli.parse_lora_modules(args.lora_modules) == [
        LoRAModule("sql", "/loras/sql"),
        LoRAModule("chat", "/loras/chat"),
    ]


def test_server_flags_and_several_served_model_names() -> None:
    args = cli.parse_args(
        [
            "--host", "127.0.0.1",
            "--port", "9001",
            "--served-model-name", "llama", "llama-3",
            "--max-concurrent-requests", "8",
            "--max-queued-requests", "16",
            "--drain-timeout", "12.5",
            "--log-requests",
        ],
        {},
    )  # fmt: skip
    assert (args.host, args.port) == ("127.0.0.1", 9001)
    assert args.served_model_name == ["llama", "llama-3"]
    assert (args.max_concurrent_requests, args.max_queued_requests) == (8, 16)
    assert args.drain_timeout == 12.5
    assert args.log_requests is True


def test_every_flag_reads_its_modelplane_env_var() -> None:
    env = {
        "MODELPLANE_PORT": "9100",
        "MODELPLANE_MAX_MODEL_LEN": "2048",
        "MODELPLANE_TENSOR_PARALLEL_SIZE": "4",
        "MODELPLANE_ENFORCE_EAGER": "true",
        "MODELPLANE_ENABLE_PREFIX_CACHING": "false",
        "MODELPLANE_SERVED_MODEL_NAME": "a b",
        "MODELPLANE_API_KEY": "ci:sk-1,sk-2",
        "MODELPLANE_LORA_MODULES": "sql=/loras/sql",
        "MODELPLANE_LOG_FORMAT": "json",
    }
    args = cli.parse_args([], env)
    assert args.port == 9100
    assert args.max_model_len == 2048
    assert args.tensor_parallel_size == 4
    assert args.enforce_eager is True
    assert args.enable_prefix_caching is False
    assert args.served_model_name == ["a", "b"]
    assert args.api_key == ["ci:sk-1", "sk-2"]
    assert args.lora_modules == ["sql=/loras/sql"]
    assert args.log_format == "json"


def test_command_line_wins_over_env() -> None:
    env = {"MODELPLANE_PORT": "9100", "MODELPLANE_SERVED_MODEL_NAME": "from-env"}
    args = cli.parse_args(["--port=9200", "--served-model-name", "from-flag"], env)
    assert args.port == 9200
    assert args.served_model_name == ["from-flag"]


def test_short_vllm_aliases_also_override_env() -> None:
    args = cli.parse_args(["-q", "gptq"], {"MODELPLANE_QUANTIZATION": "awq"})
    assert args.quantization == "gptq"


def test_env_var_names_follow_the_flag(parser: argparse.ArgumentParser) -> None:
    assert env_var_name("--max-model-len") == "MODELPLANE_MAX_MODEL_LEN"
    names = {env_var_name(flag.option) for flag in flags_of(parser)}
    # MODELPLANE_CACHE is the model cache directory, not a flag.
    assert "MODELPLANE_CACHE" not in names


def test_bad_boolean_env_value_is_rejected() -> None:
    with pytest.raises(SystemExit):
        cli.parse_args([], {"MODELPLANE_ENFORCE_EAGER": "maybe"})


def test_api_key_file_with_names_bare_keys_and_comments(tmp_path: Path) -> None:
    key_file = tmp_path / "keys"
    key_file.write_text("# team keys\nalice:sk-a\n\n  bob : sk-b  \nsk-bare\n")
    keys = cli.load_api_keys(["ci:sk-ci"], str(key_file))
    assert [k.name for k in keys] == ["ci", "alice", "bob", "keys:5"]
    assert [k.key for k in keys] == ["sk-ci", "sk-a", "sk-b", "sk-bare"]


def test_duplicate_api_keys_are_refused() -> None:
    with pytest.raises(ValueError, match="duplicates"):
        cli.load_api_keys(["a:sk-1", "b:sk-1"], None)


def test_malformed_key_line_names_the_line() -> None:
    with pytest.raises(ValueError, match="keys:2"):
        parse_api_key_lines("a:sk-1\nbob:\n", source="keys")


def test_api_key_repr_hides_the_key() -> None:
    assert "sk-secret" not in repr(ApiKey("alice", "sk-secret"))


def test_lora_modules_accept_vllm_json_form() -> None:
    modules = cli.parse_lora_modules(['{"name": "sql", "path": "/loras/sql"}'])
    assert modules == [LoRAModule("sql", "/loras/sql")]
    with pytest.raises(SystemExit):
        cli.parse_lora_modules(["no-path"])


def test_cpu_defaults_size_the_kv_cache_only_when_unset() -> None:
    assert cpu_defaults({}, 24 * 2**30) == {"VLLM_CPU_KVCACHE_SPACE": "3"}
    assert cpu_defaults({}, 4 * 2**30) == {"VLLM_CPU_KVCACHE_SPACE": "1"}
    assert cpu_defaults({}, 256 * 2**30) == {"VLLM_CPU_KVCACHE_SPACE": "4"}
    assert cpu_defaults({"VLLM_CPU_KVCACHE_SPACE": "8"}, 24 * 2**30) == {}


def test_settings_for_an_explicit_model_serve_it_under_its_path() -> None:
    settings = cli.build_settings(
        cli.parse_args(["--model", "/models/x", "--max-model-len", "1024"], {})
    )
    assert settings.served_model_names == ["/models/x"]
    assert settings.engine_args.model == "/models/x"
    assert settings.engine_args.max_model_len == 1024
    assert settings.engine_args.served_model_name == ["/models/x"]
    assert settings.api_keys == []


def test_log_requests_turns_on_vllm_request_logging() -> None:
    settings = cli.build_settings(cli.parse_args(["--model", "/m", "--log-requests"], {}))
    assert settings.log_requests is True
    assert settings.engine_args.enable_log_requests is True


@pytest.mark.skipif(
    not is_prepared(default_model_dir()),
    reason="bundled model not converted yet (make model)",
)
def test_no_model_serves_the_bundled_model() -> None:
    settings = cli.build_settings(cli.parse_args([], {}))
    assert settings.served_model_names == [DEFAULT_SERVED_MODEL_NAME]
    assert Path(settings.engine_args.model).is_dir()


@pytest.mark.skipif(
    not is_prepared(default_model_dir()),
    reason="bundled model not converted yet (make model)",
)
def test_bundled_model_is_served_in_float32_unless_a_dtype_is_given() -> None:
    """vLLM's `auto` would serve the float32 checkpoint in bf16, whose answers differ by CPU."""
    assert cli.build_settings(cli.parse_args([], {})).engine_args.dtype == "float32"
    chosen = cli.build_settings(cli.parse_args(["--dtype", "bfloat16"], {}))
    assert chosen.engine_args.dtype == "bfloat16"
    own_model = cli.build_settings(cli.parse_args(["--model", "/m"], {}))
    assert own_model.engine_args.dtype == "auto"


def test_ssl_files_must_exist_and_come_in_pairs(tmp_path: Path) -> None:
    cert = tmp_path / "cert.pem"
    cert.write_text("x")
    with pytest.raises(SystemExit):
        cli.build_settings(cli.parse_args(["--model", "/m", "--ssl-certfile", str(cert)], {}))
    with pytest.raises(SystemExit):
        cli.build_settings(
            cli.parse_args(
                ["--model", "/m", "--ssl-certfile", str(cert), "--ssl-keyfile", "/nope"], {}
            )
        )


def test_uvicorn_runs_with_our_host_port_tls_and_no_access_log(tmp_path: Path) -> None:
    from modelplane.server.lifecycle import uvicorn_config

    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    cert.write_text("c")
    key.write_text("k")
    args = ["--model", "/m", "--host", "127.0.0.1", "--port", "9443"]
    args += ["--ssl-certfile", str(cert), "--ssl-keyfile", str(key)]
    settings = cli.build_settings(cli.parse_args(args, {}))
    config = uvicorn_config(settings, app=object())
    assert (config.host, config.port) == ("127.0.0.1", 9443)
    assert (config.ssl_certfile, config.ssl_keyfile) == (str(cert), str(key))
    assert config.access_log is False
    assert settings.base_url == "https://127.0.0.1:9443/v1"


def test_rate_limit_flags_and_env() -> None:
    env = {"MODELPLANE_RATE_LIMIT_TOKENS_PER_MINUTE": "1000"}
    args = cli.parse_args(["--model", "/m", "--rate-limit-requests-per-minute", "60"], env)
    settings = cli.build_settings(args)
    assert settings.rate_limit_requests_per_minute == 60
    assert settings.rate_limit_tokens_per_minute == 1000
    with pytest.raises(SystemExit):
        cli.build_settings(cli.parse_args(["--model", "/m"], {env_name("requests"): "0"}))


def env_name(kind: str) -> str:
    return f"MODELPLANE_RATE_LIMIT_{kind.upper()}_PER_MINUTE"


def test_cpu_runs_eager_unless_a_compilation_mode_was_chosen() -> None:
    assert cpu_eager_default(["--max-model-len", "2048"], {}) == ["--enforce-eager"]
    assert cpu_eager_default(["--no-enforce-eager"], {}) == []
    assert cpu_eager_default(["--enforce-eager"], {}) == []
    assert cpu_eager_default(["-O3"], {}) == []
    assert cpu_eager_default(["--compilation-config", '{"level": 3}'], {}) == []
    assert cpu_eager_default(["--compilation-config.mode=3"], {}) == []
    assert cpu_eager_default([], {"MODELPLANE_ENFORCE_EAGER": "false"}) == []
    assert cpu_eager_default(["--config", "/nonexistent.yaml"], {}) == ["--enforce-eager"]
    eager = cli.parse_args([*cpu_eager_default([], {}), "--model", "/m"], {})
    assert eager.enforce_eager is True
    compiled = cli.parse_args(["--model", "/m", "--no-enforce-eager"], {})
    assert compiled.enforce_eager is False


@pytest.mark.skipif(
    not is_prepared(default_model_dir()),
    reason="bundled model not converted yet (make model)",
)
def test_bundled_model_defaults_to_the_model_cards_sampling() -> None:
    """vLLM reads these from generation_config.json; requests that set them still win."""
    from vllm.config import ModelConfig

    config = ModelConfig(model=str(default_model_dir()))
    assert config.get_diff_sampling_param() == RECOMMENDED_SAMPLING
    assert RECOMMENDED_SAMPLING == {"temperature": 0.2, "top_p": 0.9}


def test_a_vllm_config_file_that_picks_a_compilation_mode_turns_the_cpu_default_off(
    tmp_path: Path,
) -> None:
    compiled = tmp_path / "compiled.yaml"
    compiled.write_text("enforce_eager: false\nmax-model-len: 2048\n")
    plain = tmp_path / "plain.yaml"
    plain.write_text("max-model-len: 2048\n")
    assert cpu_eager_default(["--config", str(compiled)], {}) == []
    assert cpu_eager_default([f"--config={compiled}"], {}) == []
    assert cpu_eager_default(["--config", str(plain)], {}) == ["--enforce-eager"]
