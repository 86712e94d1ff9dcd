"""API keys: `Authorization: Bearer <key>`, compared in constant time; the key's name labels usage."""

from __future__ import annotations

import hmac

from modelplane.server.errors import AuthenticationFailed, ModelNotAllowed
from modelplane.server.settings import ApiKey

# Probes, scrapers and API clients reading the schema reach these without a key.
OPEN_PATHS = frozenset({"/health", "/ready", "/metrics", "/version", "/openapi.json"})


class ApiKeyAuth:
    """Checks bearer tokens against the configured keys. No keys: every request is anonymous."""

    def __init__(self, keys: list[ApiKey]) -> None:
        self._keys = [(api_key.key.encode(), api_key.name) for api_key in keys]
        self._models = {api_key.name: api_key.models for api_key in keys}

    @property
    def enabled(self) -> bool:
        return bool(self._keys)

    def allowed_models(self, name: str | None) -> frozenset[str] | None:
        """The models key `name` may use; None: every model (also on an open server)."""
        return None if name is None else self._models.get(name)

    def authenticate(self, authorization: bytes | None) -> str | None:
        """The key name for an `Authorization` header value; raises AuthenticationFailed."""
        if not self._keys:
            return None
        if not authorization:
            raise AuthenticationFailed(
                "You didn't provide an API key. Send it as 'Authorization: Bearer <key>'."
            )
        scheme, _, token = authorization.partition(b" ")
        token = token.strip()
        if scheme.lower() != b"bearer" or not token:
            raise AuthenticationFailed("Expected 'Authorization: Bearer <key>'.")
        matched: str | None = None
        # Compare with every key so the time taken does not tell which one (or none) matched.
        for key, name in self._keys:
            if hmac.compare_digest(token, key) and matched is None:
                matched = name
        if matched is None:
            raise AuthenticationFailed("Incorrect API key provided.")
        return matched


def authorize_model(allowed: frozenset[str] | None, model: str, key_name: str | None) -> None:
    """403 when the request's key is restricted to other models (checked before the model
    is looked up, so a restricted key cannot probe which models exist)."""
    if allowed is not None and model not in allowed:
        raise ModelNotAllowed(
            f"The API key '{key_name}' may not use the model `{model}`.", param="model"
        )
