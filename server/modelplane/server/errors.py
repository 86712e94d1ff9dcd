"""Client errors, one exception type per kind, mapped once to OpenAI's error envelope.

Code anywhere in the server raises these; the app turns them into
`{"error": {"message", "type", "param", "code"}}` with the right HTTP status.
"""

from __future__ import annotations

from typing import Any, ClassVar


class OpenAIError(Exception):
    """Base of every error a client may see. Subclasses fix status, type and code."""

    status_code: ClassVar[int] = 500
    error_type: ClassVar[str] = "server_error"
    code: ClassVar[str | None] = None

    def __init__(self, message: str, *, param: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.param = param

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
    """The engine is loading or the server is draining."""

    status_code = 503
    error_type = "service_unavailable"
    code = "service_unavailable"


class InternalError(OpenAIError):
    """A bug or an engine failure. The message never carries a stack trace."""

    status_code = 500
    error_type = "server_error"  # what OpenAI's API answers with a 500


def error_body(
    message: str, error_type: str, *, param: str | None = None, code: str | None = None
) -> dict[str, Any]:
    return {"error": {"message": message, "type": error_type, "param": param, "code": code}}
