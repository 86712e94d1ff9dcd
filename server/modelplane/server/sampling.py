"""The one place where an OpenAI request becomes vLLM `SamplingParams`.

Precedence for each knob: the request's value, else the model's generation_config default
(what vLLM's server does), else OpenAI's default.
"""

from __future__ import annotations

from typing import Any

from vllm.exceptions import VLLMClientError
from vllm.sampling_params import RequestOutputKind, SamplingParams, StructuredOutputsParams

from modelplane.server.errors import ContextLengthExceeded, engine_error
from modelplane.server.protocol import ChatCompletionRequest, CompletionRequest, SamplingFields
from modelplane.server.tools import tool_choice_schema

# OpenAI's defaults, used when neither the request nor the model's generation_config says.
OPENAI_DEFAULTS: dict[str, float | int] = {
    "temperature": 1.0,
    "top_p": 1.0,
    "top_k": 0,
    "min_p": 0.0,
    "repetition_penalty": 1.0,
    "presence_penalty": 0.0,
    "frequency_penalty": 0.0,
}


def response_format_constraint(request: SamplingFields) -> StructuredOutputsParams | None:
    """`response_format` json_object/json_schema -> vLLM structured outputs."""
    response_format = request.response_format
    if response_format is None or response_format.type == "text":
        return None
    if response_format.type == "json_object":
        return StructuredOutputsParams(json_object=True)
    assert response_format.json_schema is not None  # checked by the protocol model
    return StructuredOutputsParams(json=response_format.json_schema.json_schema)


def build_sampling_params(
    request: SamplingFields,
    *,
    max_tokens: int,
    logprobs: int | None,
    structured_outputs: StructuredOutputsParams | None,
    model_defaults: dict[str, Any] | None = None,
) -> SamplingParams:
    """Request fields -> SamplingParams. vLLM's own range checks surface as a 400."""
    defaults = {**OPENAI_DEFAULTS, **(model_defaults or {})}
    knobs = {
        name: value if (value := getattr(request, name)) is not None else defaults[name]
        for name in OPENAI_DEFAULTS
    }
    try:
        return SamplingParams.from_optional(
            n=request.n,
            **knobs,
            seed=request.seed,
            stop=request.stop_list or None,
            stop_token_ids=request.stop_token_ids,
            bad_words=request.bad_words,
            include_stop_str_in_output=request.include_stop_str_in_output,
            ignore_eos=request.ignore_eos,
            max_tokens=max_tokens,
            min_tokens=request.min_tokens,
            logprobs=logprobs,
            skip_special_tokens=request.skip_special_tokens,
            spaces_between_special_tokens=request.spaces_between_special_tokens,
            output_kind=(
                RequestOutputKind.DELTA if request.stream else RequestOutputKind.FINAL_ONLY
            ),
            structured_outputs=structured_outputs,
            logit_bias=request.logit_bias,
            allowed_token_ids=request.allowed_token_ids,
            stream_interval=request.stream_interval,
            skip_clone=True,
        )
    except (ValueError, VLLMClientError) as error:
        raise engine_error(error) from error


def chat_sampling_params(
    request: ChatCompletionRequest, *, max_tokens: int, model_defaults: dict[str, Any] | None
) -> SamplingParams:
    schema = tool_choice_schema(request)
    structured = (
        StructuredOutputsParams(json=schema)
        if schema is not None
        else response_format_constraint(request)
    )
    logprobs = (request.top_logprobs or 0) if request.logprobs else None
    return build_sampling_params(
        request,
        max_tokens=max_tokens,
        logprobs=logprobs,
        structured_outputs=structured,
        model_defaults=model_defaults,
    )


def completion_sampling_params(
    request: CompletionRequest, *, max_tokens: int, model_defaults: dict[str, Any] | None
) -> SamplingParams:
    return build_sampling_params(
        request,
        max_tokens=max_tokens,
        logprobs=request.logprobs,
        structured_outputs=response_format_constraint(request),
        model_defaults=model_defaults,
    )


def resolve_max_tokens(
    requested: int | None, prompt_tokens: int, max_model_len: int, *, prompt_param: str
) -> int:
    """Tokens left for the answer; a prompt that leaves none is a ContextLengthExceeded."""
    room = max_model_len - prompt_tokens
    if room <= 0:
        raise ContextLengthExceeded(
            f"This model's maximum context length is {max_model_len} tokens. "
            f"However, your prompt has {prompt_tokens} tokens. "
            "Please reduce the length of the messages or prompt.",
            param=prompt_param,
        )
    if requested is None:
        return room
    if requested > room:
        raise ContextLengthExceeded(
            f"This model's maximum context length is {max_model_len} tokens. "
            f"However, you requested {prompt_tokens + requested} tokens "
            f"({prompt_tokens} in the prompt, {requested} for the completion). "
            "Please reduce the length of the prompt or the completion.",
            param="max_tokens",
        )
    return requested
