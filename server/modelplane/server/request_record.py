"""What one request did, filled in as it runs; read afterwards for metrics and the usage log."""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from modelplane.server.auth import authorize_model


@dataclass
class RequestRecord:
    request_id: str
    route: str
    key_name: str | None = None
    # The models the key may use (None: any); set by the middleware after authentication.
    allowed_models: frozenset[str] | None = None
    model: str | None = None
    prompt_tokens: int = 0
    completion_tokens: int = 0
    status_code: int = 200
    started_at: float = field(default_factory=time.perf_counter)
    first_token_at: float | None = None
    finished_at: float | None = None

    def use_model(self, model: str) -> None:
        """Record the request's model; 403 when the key may not use it."""
        self.model = model
        authorize_model(self.allowed_models, model, self.key_name)

    def mark_first_token(self) -> None:
        if self.first_token_at is None:
            self.first_token_at = time.perf_counter()

    @property
    def time_to_first_token_s(self) -> float | None:
        return None if self.first_token_at is None else self.first_token_at - self.started_at

    @property
    def latency_s(self) -> float | None:
        return None if self.finished_at is None else self.finished_at - self.started_at
