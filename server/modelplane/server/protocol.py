"""Request bodies of the OpenAI-compatible endpoints (pydantic models, OpenAI wire format).

Only requests are modelled: responses are built as plain dicts on the hot path and
serialized with orjson. Unknown fields are ignored, as vLLM's server does. Types are as
strict as OpenAI's API: `"4"` is not a number nor `"yes"` a boolean (no coercion); where the
spec allows null, null means the default. Validation errors carry the offending field in
their `loc`, which the app turns into the error's `param`.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    field_validator,
    model_validator,
)


class _Model(BaseModel):
    model_config = ConfigDict(extra="ignore", populate_by_name=True, strict=True)


def null_is(default: Any) -> BeforeValidator:
    """For a field the spec lets be null: null means `default` (and the schema says null)."""
    return BeforeValidator(
        lambda value: default if value is None else value,
        json_schema_input_type=type(default) | None,
    )


def check_json_schema(schema: dict[str, Any]) -> dict[str, Any]:
    """A JSON Schema by its own `$schema` draft (2020-12 when it names none)."""
    from jsonschema import exceptions, validators

    try:
        validators.validator_for(schema).check_schema(schema)
    except exceptions.SchemaError as error:
        raise ValueError(f"not a valid JSON Schema: {error.message}") from None
    return schema


JsonSchema = Annotated[dict[str, Any], AfterValidator(check_json_schema)]


# --- messages ---------------------------------------------------------------------------


class TextContentPart(_Model):
    type: Literal["text"]
    text: str


class OtherContentPart(_Model):
    """Images, audio, files...: accepted by the schema, refused by chat.py with a clear 400."""

    model_config = ConfigDict(extra="allow")
    type: str


ContentPart = TextContentPart | OtherContentPart


class FunctionCall(_Model):
    name: str
    arguments: str


class ToolCall(_Model):
    id: str
    type: Literal["function"] = "function"
    function: FunctionCall


class ChatMessage(_Model):
    role: Literal["system", "developer", "user", "assistant", "tool", "function"]
    content: str | list[ContentPart] | None = None
    name: str | None = None
    tool_calls: list[ToolCall] | None = None
    tool_call_id: str | None = None

    @field_validator("content", mode="before")
    @classmethod
    def _parts_are_complete(cls, value: Any) -> Any:
        """Says what is wrong with a list of parts (a union's own errors would not)."""
        if isinstance(value, list):
            if not value:
                raise ValueError("an array of content parts must not be empty")
            for index, part in enumerate(value):
                if not isinstance(part, dict) or not isinstance(part.get("type"), str):
                    raise ValueError(f"part {index} must be an object with a 'type'")
                if part["type"] == "text" and not isinstance(part.get("text"), str):
                    raise ValueError(f"part {index} is of type 'text' but is missing 'text'")
        return value


# --- response_format, tools --------------------------------------------------------------


class JsonSchemaFormat(_Model):
    name: str = "response"
    description: str | None = None
    json_schema: JsonSchema | None = Field(default=None, alias="schema")
    strict: bool | None = None


class ResponseFormat(_Model):
    type: Literal["text", "json_object", "json_schema"]
    json_schema: JsonSchemaFormat | None = None

    @model_validator(mode="after")
    def _schema_given_for_json_schema(self) -> ResponseFormat:
        if self.type == "json_schema" and (
            self.json_schema is None or self.json_schema.json_schema is None
        ):
            raise ValueError("response_format of type 'json_schema' needs json_schema.schema")
        return self


class FunctionDefinition(_Model):
    name: Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.\-]+$")]
    description: str | None = None
    parameters: JsonSchema | None = None
    strict: bool | None = None


class Tool(_Model):
    type: Literal["function"] = "function"
    function: FunctionDefinition


class NamedFunction(_Model):
    name: str


class NamedToolChoice(_Model):
    type: Literal["function"] = "function"
    function: NamedFunction


ToolChoice = Literal["none", "auto", "required"] | NamedToolChoice


class StreamOptions(_Model):
    include_usage: bool | None = False


# --- shared sampling fields --------------------------------------------------------------


class SamplingFields(_Model):
    """Fields chat and completions share: OpenAI's sampling knobs plus vLLM's extras."""

    model: str
    temperature: Annotated[float, Field(ge=0, le=2)] | None = None
    top_p: Annotated[float, Field(gt=0, le=1)] | None = None
    n: Annotated[int, Field(ge=1, le=128)] = 1
    max_tokens: Annotated[int, Field(ge=1)] | None = None
    stop: str | list[str] | None = None
    seed: int | None = None
    presence_penalty: Annotated[float, Field(ge=-2, le=2)] | None = None
    frequency_penalty: Annotated[float, Field(ge=-2, le=2)] | None = None
    logit_bias: dict[str, Annotated[float, Field(ge=-100, le=100)]] | None = None
    response_format: ResponseFormat | None = None
    stream: Annotated[bool, null_is(False)] = False
    stream_options: StreamOptions | None = None
    user: str | None = None
    # vLLM's extra sampling parameters, same names and meaning as vLLM's server.
    top_k: int | None = None
    min_p: Annotated[float, Field(ge=0, le=1)] | None = None
    repetition_penalty: Annotated[float, Field(gt=0)] | None = None
    ignore_eos: bool = False
    min_tokens: Annotated[int, Field(ge=0)] = 0
    stop_token_ids: list[int] | None = None
    bad_words: list[str] | None = None
    allowed_token_ids: list[int] | None = None
    skip_special_tokens: bool = True
    spaces_between_special_tokens: bool = True
    include_stop_str_in_output: bool = False
    # Tokens per streamed chunk, raised to at least the server's --stream-interval by vLLM.
    stream_interval: Annotated[int, Field(ge=1)] | None = None

    @field_validator("logit_bias")
    @classmethod
    def _logit_bias_keys_are_token_ids(
        cls, value: dict[str, float] | None
    ) -> dict[str, float] | None:
        for key in value or {}:
            if not key.lstrip("-").isdigit():
                raise ValueError(f"logit_bias keys must be token ids, got {key!r}")
        return value

    @field_validator("top_k")
    @classmethod
    def _top_k_is_positive_or_disabled(cls, value: int | None) -> int | None:
        if value is not None and value != -1 and value < 1:
            raise ValueError("top_k must be -1 (disabled) or at least 1")
        return value

    @field_validator("stream_options")
    @classmethod
    def _stream_options_need_stream(cls, value: StreamOptions | None, info: Any) -> Any:
        if value is not None and not info.data.get("stream"):
            raise ValueError("stream_options is only allowed when stream is true")
        return value

    @property
    def stop_list(self) -> list[str]:
        if self.stop is None:
            return []
        return [self.stop] if isinstance(self.stop, str) else list(self.stop)

    @property
    def include_usage_in_stream(self) -> bool:
        return bool(self.stream_options and self.stream_options.include_usage)


# --- endpoints ----------------------------------------------------------------------------


class ChatCompletionRequest(SamplingFields):
    messages: Annotated[list[ChatMessage], Field(min_length=1)]
    max_completion_tokens: Annotated[int, Field(ge=1)] | None = None
    logprobs: Annotated[bool, null_is(False)] = False
    top_logprobs: Annotated[int, Field(ge=0, le=20)] | None = None
    tools: list[Tool] | None = None
    tool_choice: ToolChoice | None = None
    parallel_tool_calls: bool = True
    # vLLM extras for the chat template.
    add_generation_prompt: bool = True
    chat_template_kwargs: dict[str, Any] | None = None

    @field_validator("top_logprobs")
    @classmethod
    def _top_logprobs_need_logprobs(cls, value: int | None, info: Any) -> int | None:
        if value is not None and value > 0 and not info.data.get("logprobs"):
            raise ValueError("top_logprobs needs logprobs to be true")
        return value

    @field_validator("tool_choice")
    @classmethod
    def _tool_choice_needs_tools(cls, value: Any, info: Any) -> Any:
        tools = info.data.get("tools")
        if value in (None, "none", "auto"):
            return value
        if not tools:
            raise ValueError("tool_choice other than 'none'/'auto' needs tools")
        if isinstance(value, NamedToolChoice) and value.function.name not in {
            tool.function.name for tool in tools
        }:
            raise ValueError(f"tool_choice names unknown function {value.function.name!r}")
        return value

    @property
    def effective_max_tokens(self) -> int | None:
        """`max_completion_tokens` supersedes the deprecated `max_tokens`."""
        if self.max_completion_tokens is not None:
            return self.max_completion_tokens
        return self.max_tokens

    @property
    def effective_tool_choice(self) -> Literal["none", "auto", "required"] | NamedToolChoice:
        """OpenAI's default: `auto` when tools are given, else `none`."""
        if not self.tools:
            return "none"
        return self.tool_choice if self.tool_choice is not None else "auto"


def _no_empty_prompt(value: Any) -> Any:
    if isinstance(value, list) and (
        not value or any(isinstance(item, list | str) and not item for item in value)
    ):
        raise ValueError("must not be empty")
    return value


# OpenAI's four shapes of `prompt` (completions) and `input` (embeddings).
Prompt = Annotated[str | list[str] | list[int] | list[list[int]], AfterValidator(_no_empty_prompt)]


class CompletionRequest(SamplingFields):
    prompt: Prompt
    max_tokens: Annotated[int, Field(ge=1)] | None = 16
    logprobs: Annotated[int, Field(ge=0, le=20)] | None = None
    echo: Annotated[bool, null_is(False)] = False
    suffix: str | None = None
    best_of: int | None = None

    @field_validator("suffix")
    @classmethod
    def _suffix_unsupported(cls, value: str | None) -> str | None:
        if value:
            raise ValueError("suffix is not supported")
        return value

    @field_validator("best_of")
    @classmethod
    def _best_of_equals_n(cls, value: int | None, info: Any) -> int | None:
        if value is not None and value != info.data.get("n", 1):
            raise ValueError("best_of is only supported when it equals n")
        return value

    @property
    def effective_max_tokens(self) -> int | None:
        return self.max_tokens


class EmbeddingRequest(_Model):
    model: str
    input: Prompt
    encoding_format: Literal["float", "base64"] = "float"
    dimensions: Annotated[int, Field(ge=1)] | None = None
    user: str | None = None
