"""What the running server knows about itself: phase, engine, requests in flight."""

from __future__ import annotations

import asyncio
import enum
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from modelplane.server.auth import ApiKeyAuth
from modelplane.server.errors import ServiceUnavailable
from modelplane.server.limits import ConcurrencyLimiter, KeyRateLimiter
from modelplane.server.metrics import ServerMetrics, default_metrics
from modelplane.server.ready_marks import ReadyMarks
from modelplane.server.settings import ServerSettings

if TYPE_CHECKING:
    from modelplane.server.engine import Engine


# Retry-After on a 503: a loading model takes seconds to minutes; a draining replica's
# traffic moves to another one at once.
LOADING_RETRY_AFTER_S = 5
DRAINING_RETRY_AFTER_S = 1


class Phase(enum.Enum):
    LOADING = "loading"
    READY = "ready"
    DRAINING = "draining"
    FAILED = "failed"


@dataclass
class ServerState:
    settings: ServerSettings
    auth: ApiKeyAuth
    limiter: ConcurrencyLimiter
    rate_limits: KeyRateLimiter
    metrics: ServerMetrics
    phase: Phase = Phase.LOADING
    engine: Engine | None = None
    known_models: frozenset[str] = frozenset()
    in_flight: int = 0
    # Set by whoever runs the HTTP server: ends the process (used when the engine fails).
    request_exit: Callable[[int], None] | None = None
    stop_engine: asyncio.Event = field(default_factory=asyncio.Event)
    # One of several front ends (--api-server-count): vLLM's ZMQ addresses of the engine core.
    engine_client_config: dict[str, Any] | None = None
    # One of several front ends: /ready is 200 only when every front end is marked ready.
    ready_marks: ReadyMarks | None = None

    def engine_ready(self, engine: Engine) -> None:
        self.engine = engine
        self.known_models = frozenset(engine.served_model_names) | frozenset(
            getattr(engine, "lora_requests", {})
        )
        if self.phase is Phase.LOADING:
            self.phase = Phase.READY
            if self.ready_marks is not None:
                self.ready_marks.mark_ready()

    def leave_ready(self, phase: Phase) -> None:
        """Draining or failed; with several front ends, the pod's /ready fails on all of them."""
        self.phase = phase
        if self.ready_marks is not None:
            self.ready_marks.withdraw()

    def front_ends_not_ready(self) -> str | None:
        """Why /ready must fail although this front end is ready (another is not), else None."""
        marks = self.ready_marks
        if marks is None:
            return None
        ready = marks.ready_count()
        if ready >= marks.count:
            return None
        return f"{ready} of {marks.count} front ends are ready."

    def require_engine(self) -> Engine:
        """The engine, or 503 while loading or draining."""
        if self.phase is Phase.DRAINING:
            raise ServiceUnavailable(
                "The server is shutting down; retry on another replica.",
                retry_after=DRAINING_RETRY_AFTER_S,
            )
        if self.engine is None or self.phase is not Phase.READY:
            raise ServiceUnavailable(
                "The model is still loading; retry shortly.", retry_after=LOADING_RETRY_AFTER_S
            )
        return self.engine

    def request_started(self) -> None:
        self.in_flight += 1
        self.metrics.in_flight.inc()

    def request_finished(self) -> None:
        self.in_flight -= 1
        self.metrics.in_flight.dec()


def init_state(settings: ServerSettings) -> ServerState:
    return ServerState(
        settings=settings,
        auth=ApiKeyAuth(settings.api_keys),
        limiter=ConcurrencyLimiter(settings.max_concurrent_requests, settings.max_queued_requests),
        rate_limits=KeyRateLimiter(
            settings.rate_limit_requests_per_minute,
            settings.rate_limit_tokens_per_minute,
        ),
        metrics=default_metrics(),
    )
