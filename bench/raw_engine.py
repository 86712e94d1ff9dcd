"""The limit: vLLM's `AsyncLLM.generate` in this process, no HTTP, same prompts and sampling."""

from __future__ import annotations

import contextlib
import gc
import itertools
import time
from collections.abc import AsyncIterator, Sequence
from typing import Any

from bench.stats import RequestTiming, describe_error
from bench.workload import Messages, SendRequest, check_output_length


def parse_engine_args(model: str, served_model_name: str, engine_args: Sequence[str]) -> Any:
    """Parse the same flags the servers get with vLLM's own parser."""
    from vllm.engine.arg_utils import AsyncEngineArgs
    from vllm.utils.argparse_utils import FlexibleArgumentParser

    parser = AsyncEngineArgs.add_cli_args(FlexibleArgumentParser())
    namespace = parser.parse_args(
        ["--model", model, "--served-model-name", served_model_name, *engine_args]
    )
    return AsyncEngineArgs.from_cli_args(namespace)


def sampling_params(max_tokens: int) -> Any:
    """What the servers build from the benchmark's request: greedy, exactly max_tokens, deltas."""
    from vllm.sampling_params import RequestOutputKind, SamplingParams

    return SamplingParams(
        temperature=0.0,
        max_tokens=max_tokens,
        ignore_eos=True,
        output_kind=RequestOutputKind.DELTA,
    )


@contextlib.asynccontextmanager
async def raw_engine(
    model: str, served_model_name: str, engine_args: Sequence[str], max_tokens: int
) -> AsyncIterator[SendRequest]:
    """Start AsyncLLM; yield a sender that renders the chat template and streams outputs."""
    from vllm.utils.gc_utils import freeze_gc_heap
    from vllm.v1.engine.async_llm import AsyncLLM

    engine: Any = AsyncLLM.from_engine_args(
        parse_engine_args(model, served_model_name, engine_args)
    )
    # Its startup heap frozen while it serves, as vLLM's server and modelplane's freeze theirs.
    freeze_gc_heap()
    tokenizer: Any = engine.get_tokenizer()
    params = sampling_params(max_tokens)
    request_ids = itertools.count()

    async def send(messages: Messages) -> RequestTiming:
        timing = RequestTiming(started_at=time.perf_counter())
        try:
            # The chat template is part of serving a chat request, so it is inside the timing.
            # Rendered to text, then tokenized without extra special tokens, as vLLM's server does.
            text = tokenizer.apply_chat_template(
                messages, tokenize=False, add_generation_prompt=True
            )
            prompt = {"prompt_token_ids": tokenizer.encode(text, add_special_tokens=False)}
            async for output in engine.generate(prompt, params, f"bench-{next(request_ids)}"):
                completion = output.outputs[0]
                if completion.token_ids:
                    timing.token_chunk_times.append(time.perf_counter())
                    timing.output_tokens += len(completion.token_ids)
            timing.finished_at = time.perf_counter()
        except Exception as exc:  # one error of the level, never a crash
            timing.error = describe_error(exc)
        return check_output_length(timing, max_tokens)

    try:
        yield send
    finally:
        engine.shutdown()
        gc.unfreeze()  # this process goes on to drive the other systems
        # `send` may outlive this block; drop its engine now, while the interpreter is whole:
        # AsyncLLM.__del__ shuts down again and fails noisily at interpreter exit.
        engine = None
