"""Function calling for any model: JSON schemas for constrained decoding, and call parsing.

- `tool_choice: "required"`: the output is constrained to a JSON array of
  `{"name": <one of the tools>, "parameters": {...}}` objects (the shape vLLM uses), so every
  model produces valid calls without a model-specific parser.
- `tool_choice: {"type": "function", ...}`: the output is constrained to that function's
  parameters schema; the whole output is the call's `arguments`.
- `tool_choice: "auto"`: nothing is constrained; the tools reach the chat template (and a
  system note if the template ignores them), and an output that is exactly one JSON tool
  call (or a list of them, or Hermes-style `<tool_call>...</tool_call>` blocks) naming a
  known tool becomes `tool_calls`; anything else stays plain content.

Everything about tool calls lives here: the prompt side (tools and past calls in the chat
template), the decoding constraint, parsing the output, and streaming a choice that may be
a call.
"""

from __future__ import annotations

import json
import re
import secrets
from typing import Any

import orjson

from modelplane.server.protocol import ChatCompletionRequest, ChatMessage, NamedToolChoice, Tool

EMPTY_PARAMETERS: dict[str, Any] = {"type": "object", "properties": {}}
_HERMES_CALL = re.compile(r"<tool_call>\s*(.*?)\s*</tool_call>", re.DOTALL)


def make_tool_call_id() -> str:
    return f"call_{secrets.token_hex(12)}"


def parameters_schema(tool: Tool) -> dict[str, Any]:
    return tool.function.parameters or EMPTY_PARAMETERS


def required_tool_calls_schema(tools: list[Tool], *, parallel: bool) -> dict[str, Any]:
    """JSON schema of an array of calls, each naming one of `tools` with valid parameters."""
    one_call = {
        "type": "object",
        "anyOf": [
            {
                "properties": {
                    "name": {"type": "string", "enum": [tool.function.name]},
                    "parameters": parameters_schema(tool),
                },
                "required": ["name", "parameters"],
            }
            for tool in tools
        ],
    }
    schema: dict[str, Any] = {"type": "array", "minItems": 1, "items": one_call}
    if not parallel:
        schema["maxItems"] = 1
    return schema


def tool_choice_schema(request: ChatCompletionRequest) -> dict[str, Any] | None:
    """`tool_choice` required/named -> the JSON schema the output must follow (any model)."""
    choice = request.effective_tool_choice
    tools = request.tools or []
    if choice == "required":
        return required_tool_calls_schema(tools, parallel=request.parallel_tool_calls)
    if isinstance(choice, NamedToolChoice):
        tool = next(t for t in tools if t.function.name == choice.function.name)
        return parameters_schema(tool)
    return None


def tool_call(name: str, arguments: Any) -> dict[str, Any]:
    """One OpenAI `tool_calls` entry; `arguments` is serialized unless it is a string already."""
    if not isinstance(arguments, str):
        arguments = orjson.dumps(arguments).decode()
    return {
        "id": make_tool_call_id(),
        "type": "function",
        "function": {"name": name, "arguments": arguments},
    }


def parse_required_tool_calls(text: str) -> list[dict[str, Any]]:
    """Calls from output constrained by `required_tool_calls_schema`.

    Output cut off by `max_tokens` keeps the calls that were complete.
    """
    calls = _loads_or_none(text)
    if not isinstance(calls, list):
        calls = complete_array_items(text)
    return [
        tool_call(call["name"], call.get("parameters", {}))
        for call in calls
        if isinstance(call, dict) and isinstance(call.get("name"), str)
    ]


def complete_array_items(text: str) -> list[Any]:
    """The complete items at the start of a truncated JSON array."""
    decoder = json.JSONDecoder()
    position = text.find("[") + 1
    if position == 0:
        return []
    items: list[Any] = []
    while True:
        while position < len(text) and text[position] in " \t\r\n,":
            position += 1
        try:
            item, position = decoder.raw_decode(text, position)
        except ValueError:
            return items
        items.append(item)


def parse_auto_tool_calls(text: str, tools: list[Tool]) -> list[dict[str, Any]] | None:
    """Tool calls if the whole output is one (JSON or Hermes-style), else None (plain content)."""
    known = {tool.function.name for tool in tools}
    stripped = text.strip()
    blocks = _HERMES_CALL.findall(stripped)
    if blocks:
        if _HERMES_CALL.sub("", stripped).strip():
            return None
        candidates: list[Any] = []
        for block in blocks:
            parsed = _loads_or_none(block)
            if parsed is None:
                return None
            candidates.append(parsed)
    else:
        if not stripped.startswith(("{", "[")):
            return None
        parsed = _loads_or_none(stripped)
        if parsed is None:
            return None
        candidates = parsed if isinstance(parsed, list) else [parsed]
    calls = []
    for candidate in candidates:
        if not isinstance(candidate, dict) or candidate.get("name") not in known:
            return None
        arguments = candidate.get("arguments", candidate.get("parameters", {}))
        if not isinstance(arguments, dict | str):
            return None
        calls.append(tool_call(candidate["name"], arguments))
    return calls or None


def might_be_tool_call(text_so_far: str) -> bool:
    """Whether a streamed `auto` output could still turn out to be a tool call (so buffer it)."""
    stripped = text_so_far.lstrip()
    if not stripped:
        return True
    if stripped[0] in "{[":
        return True
    return "<tool_call>".startswith(stripped[:11]) or stripped.startswith("<tool_call>")


def tools_system_note(tools: list[Tool]) -> str:
    """Describes the tools to a model whose chat template does not render `tools` itself."""
    specs = [
        {
            "name": tool.function.name,
            "description": tool.function.description or "",
            "parameters": parameters_schema(tool),
        }
        for tool in tools
    ]
    return (
        "You can call these functions:\n"
        + orjson.dumps(specs).decode()
        + '\nTo call one, reply with only JSON: {"name": <function name>, "arguments": {...}}'
    )


# --- prompt ------------------------------------------------------------------------------------


def template_tools(
    request: ChatCompletionRequest, chat_template: str, messages: list[dict[str, Any]]
) -> list[dict[str, Any]] | None:
    """The tools for the template's `tools=`; a template that ignores them gets a system note
    in `messages` instead. With `tool_choice: "none"` the tools are left out."""
    if not request.tools or request.effective_tool_choice == "none":
        return None
    if "tools" in chat_template:
        return [tool.model_dump(exclude_none=True) for tool in request.tools]
    note = tools_system_note(request.tools)
    if messages and messages[0]["role"] == "system":
        messages[0]["content"] = f"{messages[0]['content']}\n\n{note}"
    else:
        messages.insert(0, {"role": "system", "content": note})
    return None


def add_past_tool_calls(entry: dict[str, Any], message: ChatMessage, chat_template: str) -> None:
    """An assistant message's earlier calls: `tool_calls` when the template renders them
    (arguments as a mapping, Hugging Face's convention), else JSON content."""
    if not message.tool_calls:
        return
    calls = [_template_tool_call(call) for call in message.tool_calls]
    if "tool_calls" in chat_template:
        entry["tool_calls"] = calls
    elif not entry["content"]:
        entry["content"] = orjson.dumps(
            [
                {"name": c["function"]["name"], "arguments": c["function"]["arguments"]}
                for c in calls
            ]
        ).decode()


def _template_tool_call(call: Any) -> dict[str, Any]:
    try:
        arguments: Any = orjson.loads(call.function.arguments)
    except orjson.JSONDecodeError:
        arguments = call.function.arguments
    return {
        "id": call.id,
        "type": "function",
        "function": {"name": call.function.name, "arguments": arguments},
    }


# --- output ------------------------------------------------------------------------------------


def assistant_message(
    request: ChatCompletionRequest, text: str, finish_reason: str | None
) -> tuple[dict[str, Any], str | None]:
    """The assistant message for one choice, turning output into tool calls when it is one."""
    choice = request.effective_tool_choice
    calls: list[dict[str, Any]] | None = None
    if isinstance(choice, NamedToolChoice):
        calls = [tool_call(choice.function.name, text)]
    elif choice == "required":
        calls = parse_required_tool_calls(text) or None
    elif choice == "auto":
        calls = parse_auto_tool_calls(text, request.tools or [])
    if calls is None:
        return {"role": "assistant", "content": text, "refusal": None}, finish_reason
    message = {"role": "assistant", "content": None, "refusal": None, "tool_calls": calls}
    return message, ("tool_calls" if finish_reason == "stop" else finish_reason)


class ChoiceStream:
    """Turns one choice's deltas into chunk `choices` entries, buffering possible tool calls."""

    def __init__(self, request: ChatCompletionRequest, index: int) -> None:
        self.request = request
        self.index = index
        choice = request.effective_tool_choice
        self.named = choice.function.name if isinstance(choice, NamedToolChoice) else None
        # "required" always buffers; "auto" buffers while the text may still be a tool call.
        self.buffering = choice in ("required", "auto")
        self.buffer = ""
        self.buffered_logprobs: list[dict[str, Any]] = []
        self.named_call_started = False

    def role_entry(self) -> dict[str, Any]:
        content = None if self.named or self.request.effective_tool_choice == "required" else ""
        delta = {"role": "assistant", "content": content, "refusal": None}
        return {"index": self.index, "delta": delta, "logprobs": None, "finish_reason": None}

    def _content(self, text: str, logprobs: list[dict[str, Any]] | None) -> dict[str, Any]:
        return {
            "index": self.index,
            "delta": {"content": text},
            "logprobs": None if logprobs is None else {"content": logprobs, "refusal": None},
            "finish_reason": None,
        }

    def delta_entries(
        self, text: str, logprobs: list[dict[str, Any]] | None
    ) -> list[dict[str, Any]]:
        if self.named:
            return self._named_arguments(text)
        if not self.buffering:
            return [self._content(text, logprobs)] if text or logprobs else []
        self.buffer += text
        if logprobs:
            self.buffered_logprobs.extend(logprobs)
        if self.request.effective_tool_choice == "auto" and not might_be_tool_call(self.buffer):
            self.buffering = False
            flushed, self.buffer = self.buffer, ""
            lps, self.buffered_logprobs = self.buffered_logprobs, []
            return [self._content(flushed, lps if logprobs is not None else None)]
        return []

    def _named_arguments(self, text: str) -> list[dict[str, Any]]:
        if not self.named_call_started:
            self.named_call_started = True
            call = tool_call(self.named or "", text)
            call["index"] = 0
            delta: dict[str, Any] = {"tool_calls": [call]}
        elif text:
            delta = {"tool_calls": [{"index": 0, "function": {"arguments": text}}]}
        else:
            return []
        return [{"index": self.index, "delta": delta, "logprobs": None, "finish_reason": None}]

    def finish_entries(self, finish_reason: str | None) -> list[dict[str, Any]]:
        entries: list[dict[str, Any]] = []
        if self.named:
            entries.extend(self._named_arguments(""))
            if finish_reason == "stop":
                finish_reason = "tool_calls"
        elif self.buffering:
            message, finish_reason = assistant_message(self.request, self.buffer, finish_reason)
            if message.get("tool_calls"):
                calls = [{"index": i, **call} for i, call in enumerate(message["tool_calls"])]
                entries.append(
                    {
                        "index": self.index,
                        "delta": {"tool_calls": calls},
                        "logprobs": None,
                        "finish_reason": None,
                    }
                )
            elif self.buffer:
                lps = self.buffered_logprobs if self.request.logprobs else None
                entries.append(self._content(self.buffer, lps))
        entries.append(
            {"index": self.index, "delta": {}, "logprobs": None, "finish_reason": finish_reason}
        )
        return entries


def _loads_or_none(text: str) -> Any:
    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError:
        return None
