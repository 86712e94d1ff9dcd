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
"""

from __future__ import annotations

import json
import re
import secrets
from typing import Any

import orjson

from modelplane.server.protocol import Tool

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


def _loads_or_none(text: str) -> Any:
    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError:
        return None
