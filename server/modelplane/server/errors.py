"""Client errors, one exception type per kind, and the one place any exception becomes
OpenAI's error envelope `{"error": {"message", "type", "param", "code"}}`.

Code anywhere in the server raises these types; pydantic's, Starlette's and vLLM's own
exceptions are translated here (`invalid_request_from`, `http_error`, `engine_error`), and
`error_response` / `add_exception_handlers` give every one the right HTTP status.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar

import orjson
from starlette.responses import Response

if TYPE_CHECKING:
    from fastapi import FastAPI, Request
    from fastapi.exceptions import RequestValidationError
    from pydantic import ValidationError
    from starlette.exceptions import HTTPException

# Error bodies stay small whatever the request held: a field with 10^6 entries is not echoed.
MAX_MESSAGE_CHARS = 1000
MAX_PARAM_CHARS = 200


class OpenAIError(Exception):
    """Base of every error a client may see. Subclasses fix status, type and code."""

    status_code: int = 500
    error_type: ClassVar[str] = "server_error"
    code: str | None = None

    def __init__(self, message: str, *, param: str | None = None) -> None:
        message = shortened(message, MAX_MESSAGE_CHARS)
        super().__init__(message)
        self.message = message
        self.param = None if param is None else shortened(param, MAX_PARAM_CHARS)

    def body(self) -> dict[str, Any]:
        return error_body(self.message, self.error_type, param=self.param, code=self.code)

    def headers(self) -> dict[str, str]:
        """Extra response headers this error carries (e.g. Retry-After)."""
        return {}


class InvalidRequest(OpenAIError):
    """A parameter is missing, malformed or out of range (also: prompt longer than the context)."""

    status_code = 400
    error_type = "invalid_request_error"


class ContextLengthExceeded(InvalidRequest):
    code = "context_length_exceeded"


class AuthenticationFailed(OpenAIError):
    status_code = 401
    error_type = "invalid_request_error"
    code = "invalid_api_key"


class ModelNotAllowed(OpenAIError):
    """The API key is restricted to other models (`models=` in the key file)."""

    status_code = 403
    error_type = "invalid_request_error"
    code = "model_not_allowed"


class ModelNotFound(OpenAIError):
    status_code = 404
    error_type = "invalid_request_error"
    code = "model_not_found"


class NotFound(OpenAIError):
    status_code = 404
    error_type = "invalid_request_error"
    code = "not_found"


class RequestTooLarge(OpenAIError):
    """The body is over `--max-request-body-size`; refused before it is parsed."""

    status_code = 413
    error_type = "invalid_request_error"
    code = "request_too_large"


class RateLimited(OpenAIError):
    """The server's queue is full; the client should retry after `retry_after` seconds."""

    status_code = 429
    error_type = "rate_limit_error"
    code = "rate_limit_exceeded"

    def __init__(self, message: str, *, retry_after: int = 1) -> None:
        super().__init__(message)
        self.retry_after = retry_after

    def headers(self) -> dict[str, str]:
        return {"Retry-After": str(self.retry_after)}


class ServiceUnavailable(OpenAIError):
    """The engine is loading or the server is draining; `retry_after` says when to try again."""

    status_code = 503
    error_type = "service_unavailable"
    code = "service_unavailable"

    def __init__(self, message: str, *, retry_after: int | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after

    def headers(self) -> dict[str, str]:
        return {} if self.retry_after is None else {"Retry-After": str(self.retry_after)}


class InternalError(OpenAIError):
    """A bug or an engine failure. The message never carries a stack trace."""

    status_code = 500
    error_type = "server_error"  # what OpenAI's API answers with a 500


class HTTPError(OpenAIError):
    """A status Starlette decided (405, 413...): its own code, OpenAI's error type."""

    error_type = "invalid_request_error"

    def __init__(self, status_code: int, message: str, headers: dict[str, str]) -> None:
        super().__init__(message)
        self.status_code = status_code
        self.code = str(status_code)
        self.extra_headers = headers

    def headers(self) -> dict[str, str]:
        return self.extra_headers


def shortened(text: str, limit: int) -> str:
    if len(text) <= limit:
        return text
    return f"{text[: limit - 30]}... ({len(text) - limit + 30} more characters)"


def error_body(
    message: str, error_type: str, *, param: str | None = None, code: str | None = None
) -> dict[str, Any]:
    return {"error": {"message": message, "type": error_type, "param": param, "code": code}}


def error_response(error: OpenAIError) -> Response:
    return Response(
        orjson.dumps(error.body()),
        error.status_code,
        error.headers(),
        media_type="application/json",
    )


# --- other libraries' exceptions -------------------------------------------------------------


def validation_param(loc: tuple[int | str, ...]) -> str | None:
    """pydantic's error location as OpenAI's `param`: `messages[0].content`."""
    param = ""
    for part in loc:
        if isinstance(part, int):
            param += f"[{part}]"
        elif part != "body":
            param += f".{part}" if param else str(part)
    return param or None


def invalid_request_from(error: ValidationError | RequestValidationError) -> InvalidRequest:
    """The first pydantic error as a 400 naming the field."""
    first = error.errors()[0]
    param = validation_param(tuple(first.get("loc", ())))
    message = str(first.get("msg", "Invalid request."))
    message = message.removeprefix("Value error, ")
    return InvalidRequest(f"{param}: {message}" if param else message, param=param)


def http_error(error: HTTPException, method: str, path: str) -> OpenAIError:
    if error.status_code == 404:
        return NotFound(f"Unknown route: {method} {path}")
    return HTTPError(error.status_code, str(error.detail), dict(error.headers or {}))


def engine_error(error: BaseException) -> OpenAIError:
    """An exception out of vLLM (AsyncLLM, SamplingParams) as the client should see it."""
    from vllm.exceptions import GracefulHTTPError, VLLMClientError, VLLMValidationError
    from vllm.v1.engine.exceptions import EngineDeadError, EngineGenerateError

    if isinstance(error, OpenAIError):
        return error
    if isinstance(error, VLLMValidationError):
        return InvalidRequest(
            str(error.args[0]) if error.args else str(error), param=error.parameter
        )
    if isinstance(error, VLLMClientError | ValueError):
        message = str(error.args[0]) if error.args else str(error)
        return InvalidRequest(message, param=getattr(error, "parameter", None))
    if isinstance(error, GracefulHTTPError):
        return ServiceUnavailable(str(error))
    if isinstance(error, EngineDeadError):
        return InternalError("The engine died; the server needs a restart.")
    if isinstance(error, EngineGenerateError) and error.__cause__ is not None:
        return InternalError(f"Generation failed: {type(error.__cause__).__name__}")
    return InternalError(f"Generation failed: {type(error).__name__}")


def add_exception_handlers(app: FastAPI) -> None:
    """Errors raised inside routes: ours as they are, FastAPI's and Starlette's translated."""
    from fastapi.exceptions import RequestValidationError
    from starlette.exceptions import HTTPException

    async def handle(request: Request, error: Exception) -> Response:
        if isinstance(error, HTTPException):
            error = http_error(error, request.method, request.url.path)
        elif isinstance(error, RequestValidationError):
            error = invalid_request_from(error)
        assert isinstance(error, OpenAIError)
        return error_response(error)

    for kind in (OpenAIError, HTTPException, RequestValidationError):
        app.add_exception_handler(kind, handle)
