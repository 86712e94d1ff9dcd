"""The in-process vLLM engine: start, model names and LoRA adapters, health, shutdown.

`open_engine` owns the `AsyncLLM`'s lifetime (the app's lifespan enters it once). `Engine`
is what the endpoint functions talk to: it resolves the request's `model` field to the base
model or a LoRA adapter and exposes what request mapping needs (tokenizer, context length).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncGenerator, AsyncIterator
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any

from modelplane.server.errors import (
    InternalError,
    InvalidRequest,
    ModelNotFound,
    ServiceUnavailable,
    engine_error,
)
from modelplane.server.prompts import longest_token_chars
from modelplane.server.settings import LoRAModule

if TYPE_CHECKING:
    from vllm.engine.arg_utils import AsyncEngineArgs
    from vllm.lora.request import LoRARequest
    from vllm.outputs import PoolingRequestOutput, RequestOutput
    from vllm.pooling_params import PoolingParams
    from vllm.sampling_params import SamplingParams
    from vllm.v1.engine.async_llm import AsyncLLM


class Engine:
    """The served model as the HTTP layer sees it: names, adapters, limits, the engine client."""

    def __init__(
        self,
        llm: AsyncLLM,
        served_model_names: list[str],
        lora_requests: dict[str, LoRARequest],
        *,
        max_model_len: int,
        is_pooling_model: bool,
    ) -> None:
        if not served_model_names:
            raise ValueError("at least one served model name is required")
        self.llm = llm
        self.served_model_names = list(served_model_names)
        self.lora_requests = dict(lora_requests)
        self.max_model_len = max_model_len
        self.is_pooling_model = is_pooling_model
        self.created = int(time.time())
        self.tokenizer: Any = llm.get_tokenizer()
        # Prompts longer than max_model_len of the longest token are refused untokenized.
        self.max_token_chars = longest_token_chars(self.tokenizer)
        # Special tokens (EOS...) never appear in the text, so logprobs leave them out too.
        self.special_token_ids: frozenset[int] = frozenset(
            getattr(self.tokenizer, "all_special_ids", ())
        )
        # The model's generation_config defaults (temperature, top_p, ...), as vLLM applies them.
        self.default_sampling_params: dict[str, Any] = (
            llm.model_config.get_diff_sampling_param() if not is_pooling_model else {}
        )

    @property
    def primary_model_name(self) -> str:
        return self.served_model_names[0]

    def resolve_model(self, name: str) -> LoRARequest | None:
        """The LoRA adapter a request's `model` names, or None for the base model."""
        if name in self.served_model_names:
            return None
        lora = self.lora_requests.get(name)
        if lora is None:
            raise ModelNotFound(f"The model `{name}` does not exist.", param="model")
        return lora

    def resolve_generation_model(self, name: str) -> LoRARequest | None:
        """`resolve_model` for chat and completions, which an embedding model cannot serve."""
        lora = self.resolve_model(name)
        if self.is_pooling_model:
            raise InvalidRequest(
                f"The model `{name}` is an embedding model; use /v1/embeddings.", param="model"
            )
        return lora

    def list_models(self) -> dict[str, Any]:
        """The `/v1/models` body: every served alias, then every LoRA adapter."""
        data = [
            {
                "id": name,
                "object": "model",
                "created": self.created,
                "owned_by": "modelplane",
                "root": self.primary_model_name,
                "parent": None,
                "max_model_len": self.max_model_len,
            }
            for name in self.served_model_names
        ]
        data.extend(
            {
                "id": name,
                "object": "model",
                "created": self.created,
                "owned_by": "modelplane",
                "root": lora.lora_path,
                "parent": self.primary_model_name,
            }
            for name, lora in self.lora_requests.items()
        )
        return {"object": "list", "data": data}

    async def generate(
        self,
        prompt_token_ids: list[int],
        params: SamplingParams,
        request_id: str,
        lora_request: LoRARequest | None,
    ) -> AsyncGenerator[RequestOutput, None]:
        """The engine's outputs for one prompt; closing this iterator aborts the request."""
        from vllm.inputs.engine import tokens_input

        outputs = self.llm.generate(
            tokens_input(prompt_token_ids), params, request_id, lora_request=lora_request
        )
        async with contextlib.aclosing(outputs):
            try:
                async for output in outputs:
                    yield output
            except (asyncio.CancelledError, GeneratorExit):
                raise
            except Exception as error:
                raise engine_error(error) from error

    async def encode(
        self,
        prompt_token_ids: list[int],
        params: PoolingParams,
        request_id: str,
        lora_request: LoRARequest | None,
    ) -> PoolingRequestOutput:
        """The pooled output (embedding) of one prompt."""
        from vllm.inputs.engine import tokens_input

        outputs = self.llm.encode(
            tokens_input(prompt_token_ids), params, request_id, lora_request=lora_request
        )
        final: PoolingRequestOutput | None = None
        async with contextlib.aclosing(outputs):
            try:
                async for output in outputs:
                    final = output
            except (asyncio.CancelledError, GeneratorExit):
                raise
            except Exception as error:
                raise engine_error(error) from error
        if final is None:
            raise InternalError("The engine returned no output.")
        return final

    async def check_health(self) -> None:
        """Raise ServiceUnavailable when the engine core died."""
        try:
            await self.llm.check_health()
        except Exception as error:
            raise ServiceUnavailable(f"The engine is not healthy: {error}") from error


def build_lora_requests(lora_modules: list[LoRAModule]) -> dict[str, LoRARequest]:
    """One LoRARequest per adapter; vLLM wants ids >= 1 that are unique per adapter."""
    from vllm.lora.request import LoRARequest

    requests: dict[str, LoRARequest] = {}
    for lora_id, module in enumerate(lora_modules, start=1):
        if module.name in requests:
            raise ValueError(f"duplicate LoRA module name {module.name!r}")
        requests[module.name] = LoRARequest(
            lora_name=module.name, lora_int_id=lora_id, lora_path=module.path
        )
    return requests


async def log_stats_periodically(llm: AsyncLLM) -> None:
    """vLLM's periodic throughput/KV-cache log line, as its own API server prints it."""
    import vllm.envs

    while True:
        await asyncio.sleep(vllm.envs.VLLM_LOG_STATS_INTERVAL)
        await llm.do_log_stats()


@asynccontextmanager
async def open_engine(
    engine_args: AsyncEngineArgs,
    served_model_names: list[str],
    lora_modules: list[LoRAModule],
    client_config: dict[str, Any] | None = None,
) -> AsyncIterator[Engine]:
    """Start vLLM's AsyncLLM in this process, yield the Engine, shut the engine down on exit.

    With `client_config` (one of several front ends, `--api-server-count`) the engine core
    runs elsewhere: AsyncLLM connects to it as client `client_index` of `client_count`.

    Stats stay enabled (unless `--disable-log-stats`): vLLM's PrometheusStatLogger then
    registers its `vllm:*` metrics in prometheus_client's default registry, which `/metrics`
    serves next to modelplane's own.
    """
    from vllm.usage.usage_lib import UsageContext
    from vllm.v1.engine.async_llm import AsyncLLM

    if lora_modules and not engine_args.enable_lora:
        raise ValueError("--lora-modules needs --enable-lora")
    lora_requests = build_lora_requests(lora_modules)
    client_addresses = dict(client_config or {})
    client_count = client_addresses.pop("client_count", 1)
    client_index = client_addresses.pop("client_index", 0)
    if client_addresses:
        engine_args._api_process_count = client_count
        engine_args._api_process_rank = client_index
    # Loading takes from seconds to minutes: build the engine off the event loop so that
    # /health answers and /ready says 503 (not a timeout) while the model loads.
    vllm_config = await asyncio.to_thread(
        engine_args.create_engine_config, usage_context=UsageContext.OPENAI_API_SERVER
    )
    llm = await asyncio.to_thread(
        AsyncLLM.from_vllm_config,
        vllm_config=vllm_config,
        usage_context=UsageContext.OPENAI_API_SERVER,
        enable_log_requests=engine_args.enable_log_requests,
        disable_log_stats=engine_args.disable_log_stats,
        client_addresses=client_addresses or None,
        client_count=client_count,
        client_index=client_index,
    )
    # vLLM reads `vllm.envs.*` through os.environ on every access, and its output processor
    # reads one per generated token (IterationStats): ~14% of this process's CPU at 64
    # streams. vLLM's engine core freezes them once initialized; so does its front end here.
    import vllm.envs

    vllm.envs.enable_envs_cache()
    try:
        for lora in lora_requests.values():
            await llm.add_lora(lora)
        model_config = vllm_config.model_config
        engine = Engine(
            llm,
            served_model_names or [model_config.model],
            lora_requests,
            max_model_len=model_config.max_model_len,
            is_pooling_model=model_config.runner_type == "pooling",
        )
        stats_task = None
        if not engine_args.disable_log_stats:
            stats_task = asyncio.create_task(log_stats_periodically(llm))
        try:
            yield engine
        finally:
            if stats_task is not None:
                stats_task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await stats_task
    finally:
        llm.shutdown(timeout=vllm_config.shutdown_timeout)
