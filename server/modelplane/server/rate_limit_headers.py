"""OpenAI's `x-ratelimit-*` response headers, from a key's request and token budgets.

OpenAI's API sends, per response, `x-ratelimit-{limit,remaining,reset}-{requests,tokens}`:
the per-minute limit, what is left of it, and the time until the budget is full again as a
Go-style duration (`1s`, `6m0s`, `120ms`). Clients and SDK retry logic read them.
"""

from __future__ import annotations

from modelplane.server.limits import KeyRateLimiter


def go_duration(seconds: float) -> str:
    """A duration as Go's `time.Duration.String()` prints it, to the millisecond."""
    millis = round(max(0.0, seconds) * 1000)
    if millis == 0:
        return "0s"
    if millis < 1000:
        return f"{millis}ms"
    hours, millis = divmod(millis, 3_600_000)
    minutes, millis = divmod(millis, 60_000)
    whole, fraction = divmod(millis, 1000)
    secs = f"{whole}.{fraction:03d}".rstrip("0").rstrip(".") if fraction else str(whole)
    if hours:
        return f"{hours}h{minutes}m{secs}s"
    if minutes:
        return f"{minutes}m{secs}s"
    return f"{secs}s"


def rate_limit_headers(limits: KeyRateLimiter, key: str) -> list[tuple[bytes, bytes]]:
    """The headers for `key` (ASGI form); only the configured budgets appear."""
    headers: list[tuple[bytes, bytes]] = []
    for kind, state in limits.budgets(key).items():
        headers += [
            (f"x-ratelimit-limit-{kind}".encode(), str(state.limit).encode()),
            (f"x-ratelimit-remaining-{kind}".encode(), str(state.remaining).encode()),
            (f"x-ratelimit-reset-{kind}".encode(), go_duration(state.reset_s).encode()),
        ]
    return headers
