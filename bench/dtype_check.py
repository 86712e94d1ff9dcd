"""Greedy answers of the bundled model per dtype and CPU GEMM kernel: evidence for its dtype.

The CPU engine's linear layers run on one of three kernels, chosen by the CPU and the dtype:
AMX's sgl-kernel and oneDNN (bf16 on AVX-512/AMX machines, fp32 everywhere) or torch's own
`F.linear` (bf16 on AVX2-only machines). Greedy answers are only as stable as the gap between
the two most likely tokens at every step; this prints that gap (the smallest top-1 minus top-2
logprob along each answer) next to each answer, so a kernel's rounding can be compared with it.

    python -m bench.dtype_check --model DIR --dtype float32 --gemm torch [--speed]

Each result is one JSON line on stdout (vLLM's own log lines go there too: keep lines with '{').

`--gemm torch` forces torch's kernel where vLLM would pick oneDNN: on an AVX2 machine that is
the other kernel path, as close as this machine gets to another CPU's.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any, get_args

from bench.cpu_clock import process_cpu_seconds
from modelplane.server.default_model import CHECKPOINT_DTYPE

if TYPE_CHECKING:
    from vllm.config.model import ModelDType
    from vllm.logprobs import Logprob
    from vllm.outputs import CompletionOutput
    from vllm.renderers.chat_utils import ChatCompletionMessageParam

PROMPTS: list[tuple[str, str]] = [
    ("chat", "What is the capital of France?"),
    ("chat", "What is the capital of France? Answer in one short sentence."),
    ("completion", "The capital of France is"),
]
MAX_TOKENS = 30
SPEED_TOKENS = 128
SPEED_REPEATS = 3


def force_torch_gemm() -> None:
    """Make vLLM's CPU GEMM dispatch take its torch fallback for every linear layer."""
    from vllm import _custom_ops
    from vllm.model_executor.layers import utils

    _custom_ops._supports_onednn = False
    utils.check_cpu_sgl_kernel = lambda n, k, dtype: False


def sampled_logprobs(completion: CompletionOutput) -> list[dict[int, Logprob]]:
    """The top logprobs at each generated token (FlatLogprobs types its positions as optional,
    as a prompt's first one is; a generated token's position always has them)."""
    return [step for step in completion.logprobs or [] if step is not None]


def smallest_margin(logprobs: Iterable[Mapping[int, Logprob]]) -> float:
    """The smallest gap between the chosen and the runner-up token's logprob along an answer."""
    gaps = []
    for step in logprobs:
        values = sorted((entry.logprob for entry in step.values()), reverse=True)
        if len(values) >= 2:
            gaps.append(values[0] - values[1])
    return min(gaps) if gaps else float("inf")


def run(model: str, dtype: ModelDType, gemm: str, speed: bool) -> list[dict[str, object]]:
    os.environ["VLLM_ENABLE_V1_MULTIPROCESSING"] = "0"  # the engine in this process: patches apply
    os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")  # GiB; without it vLLM wants 92% of RAM
    if gemm == "torch":
        force_torch_gemm()
    from vllm import LLM, SamplingParams

    llm = LLM(model=model, dtype=dtype, enforce_eager=True, max_model_len=2048, seed=0)
    params = SamplingParams(temperature=0, max_tokens=MAX_TOKENS, logprobs=2)
    results = []
    for kind, text in PROMPTS:
        if kind == "chat":
            messages: list[ChatCompletionMessageParam] = [{"role": "user", "content": text}]
            (output,) = llm.chat(messages, params, use_tqdm=False)
        else:
            (output,) = llm.generate([text], params, use_tqdm=False)
        completion = output.outputs[0]
        logprobs = sampled_logprobs(completion)
        results.append(
            {
                "dtype": dtype,
                "gemm": gemm,
                "kind": kind,
                "prompt": text,
                "answer": completion.text,
                "smallest_margin": round(smallest_margin(logprobs), 4),
                "chosen_logprobs": [
                    round(step[token].logprob, 6)
                    for step, token in zip(logprobs, completion.token_ids, strict=False)
                ],
            }
        )
    if speed:
        results.append({"dtype": dtype, "gemm": gemm, **decode_speed(llm)})
    return results


def decode_speed(llm: Any) -> dict[str, float]:
    """Tokens/s and engine CPU ms per token of a greedy 128-token stream (median of 3, warmed up).

    CPU time per token is the figure to compare on a busy machine: wall time there measures
    the neighbours too.
    """
    from vllm import SamplingParams

    params = SamplingParams(temperature=0, max_tokens=SPEED_TOKENS, ignore_eos=True)
    llm.generate(["Once upon a time"], params, use_tqdm=False)
    walls, cpus = [], []
    for _ in range(SPEED_REPEATS):
        wall, cpu = time.perf_counter(), process_cpu_seconds()
        llm.generate(["Once upon a time"], params, use_tqdm=False)
        walls.append(time.perf_counter() - wall)
        cpus.append(process_cpu_seconds() - cpu)
    return {
        "decode_tokens_per_s": round(SPEED_TOKENS / statistics.median(walls), 1),
        "engine_cpu_ms_per_token": round(1000 * statistics.median(cpus) / SPEED_TOKENS, 2),
    }


def main() -> None:
    from vllm.config.model import ModelDType

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", required=True)
    parser.add_argument(
        "--dtype",
        choices=get_args(ModelDType),  # vLLM's own --dtype values
        default=CHECKPOINT_DTYPE,
        help="default: the bundled model's serving dtype",
    )
    parser.add_argument("--gemm", choices=("default", "torch"), default="default")
    parser.add_argument("--speed", action="store_true", help="also time a 128-token decode")
    args = parser.parse_args()
    for result in run(args.model, args.dtype, args.gemm, args.speed):
        print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
