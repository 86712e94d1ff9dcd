"""The server's configuration: one typed object, built once by `cli.py`, passed down explicitly."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from modelplane.contract import SERVER_PORT

if TYPE_CHECKING:
    from vllm.engine.arg_utils import AsyncEngineArgs

LogFormat = Literal["text", "json"]


@dataclass(frozen=True)
class ApiKey:
    """A client key and the name usage is attributed to. The key never appears in a repr.

    `models`: the model names the key may use (None: every served model).
    """

    name: str
    key: str = field(repr=False)
    models: frozenset[str] | None = None


@dataclass(frozen=True)
class LoRAModule:
    """One `--lora-modules name=path` entry."""

    name: str
    path: str


@dataclass
class ServerSettings:
    engine_args: AsyncEngineArgs
    served_model_names: list[str]
    host: str = "0.0.0.0"
    port: int = SERVER_PORT
    api_keys: list[ApiKey] = field(default_factory=list)
    max_concurrent_requests: int = 256
    max_queued_requests: int = 1024
    ssl_certfile: str | None = None
    ssl_keyfile: str | None = None
    log_requests: bool = False
    log_format: LogFormat = "text"
    log_level: str = "info"
    lora_modules: list[LoRAModule] = field(default_factory=list)
    drain_timeout: float = 30.0
    rate_limit_requests_per_minute: int | None = None
    rate_limit_tokens_per_minute: int | None = None
    max_request_body_bytes: int = 4 * 2**20  # body_limit.DEFAULT_MAX_REQUEST_BODY_BYTES
    # Front-end processes over the one engine core (vLLM's --api-server-count).
    api_server_count: int = 1

    @property
    def base_url(self) -> str:
        scheme = "https" if self.ssl_certfile else "http"
        host = "127.0.0.1" if self.host in ("0.0.0.0", "") else self.host
        host = f"[{host}]" if ":" in host else host
        return f"{scheme}://{host}:{self.port}/v1"


# Options after the key on a key line: `name:key models=a,b`.
KEY_OPTIONS = ("models",)


def parse_key_entry(text: str) -> tuple[str | None, str, frozenset[str] | None]:
    """`name:key models=a,b` (name and options optional) -> (name, key, models).

    Options are the trailing `option=value` words; what precedes them is `name:key` or a key.
    """
    words = text.split()
    models: frozenset[str] | None = None
    while words and words[-1].partition("=")[0] in KEY_OPTIONS:
        option, _, value = words.pop().partition("=")
        names = frozenset(name.strip() for name in value.split(",") if name.strip())
        if not names:
            raise ValueError(f"{option}= needs at least one model name")
        models = names if models is None else models | names
    name, sep, key = " ".join(words).partition(":")
    if not sep:
        return None, name.strip(), models
    return name.strip(), key.strip(), models


def parse_api_key_lines(text: str, *, source: str) -> list[ApiKey]:
    """Keys from a key file: one per line, `name:key` or a bare key, optionally followed by
    `models=a,b`; blank lines and # comments skipped."""
    keys: list[ApiKey] = []
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        try:
            name, key, models = parse_key_entry(line)
        except ValueError as error:
            raise ValueError(f"{source}:{number}: {error}") from None
        if name is None:
            name = f"{Path(source).name}:{number}"
        if not name or not key:
            raise ValueError(f"{source}:{number}: expected 'key' or 'name:key' [models=a,b]")
        keys.append(ApiKey(name=name, key=key, models=models))
    return keys


def name_inline_keys(keys: list[str]) -> list[ApiKey]:
    """`--api-key` values, `name:key` or bare (named by position), optionally `models=a,b`."""
    named: list[ApiKey] = []
    for index, value in enumerate(keys, start=1):
        name, key, models = parse_key_entry(value)
        if not key:
            raise ValueError(f"--api-key #{index}: expected 'key' or 'name:key' [models=a,b]")
        named.append(ApiKey(name or f"key-{index}", key, models))
    return named


def check_unique_keys(keys: list[ApiKey]) -> None:
    seen: set[str] = set()
    for api_key in keys:
        if api_key.key in seen:
            raise ValueError(f"API key {api_key.name!r} duplicates another key")
        seen.add(api_key.key)
