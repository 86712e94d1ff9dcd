"""A bounded schemathesis run against a live server (used by test_openapi_fuzz.py).

Hypothesis drives schemathesis' case strategies directly: a fixed number of examples per
operation and generation mode, derandomized (the same cases every run), no shrinking, no
example database, so the run's length is bounded and repeatable.
"""

from __future__ import annotations

import collections
import copy
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from hypothesis import HealthCheck, Phase, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.core.failures import Failure, FailureGroup
from schemathesis.openapi.checks import JsonSchemaError, UndefinedContentType, UndefinedStatusCode
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
]
# Generation on CPU costs ~0.1 s a token: every fuzzed request generates at most this many.
MAX_FUZZ_TOKENS = 2
MAX_FUZZ_N = 2
MAX_FUZZ_BATCH = 4


@dataclass
class FuzzReport:
    cases: int = 0
    statuses: collections.Counter[int] = field(default_factory=collections.Counter)
    per_operation: collections.Counter[tuple[str, int]] = field(default_factory=collections.Counter)
    # One line per distinct failed check (operation, check, where), with its count.
    failures: collections.Counter[str] = field(default_factory=collections.Counter)
    # The first request body and response of each failure, to reproduce it.
    examples: dict[str, str] = field(default_factory=dict)


def numeric(value: Any, *, above: int) -> bool:
    """A number over `above`, also as a float or a numeric string (lax parsing may take those)."""
    if isinstance(value, bool):
        return False
    try:
        return float(value) > above
    except (TypeError, ValueError, OverflowError):
        return False


def bounded_cost(body: Any, model: str) -> Any:
    """Aim a generated body at the served model and cap what it makes the engine do.

    Only the cost is changed (fewer tokens, choices and batched prompts); every other field
    stays as generated, valid or not.
    """
    if not isinstance(body, dict):
        return body
    body = copy.deepcopy(body)
    if "model" in body:
        body["model"] = model
    for name in ("max_tokens", "max_completion_tokens", "min_tokens"):
        if numeric(body.get(name), above=MAX_FUZZ_TOKENS):
            body[name] = MAX_FUZZ_TOKENS
    if body.get("max_tokens") is None and body.get("max_completion_tokens") is None:
        body["max_tokens"] = MAX_FUZZ_TOKENS
    for name in ("prompt", "input"):  # a batch of prompts is a request per prompt
        value = body.get(name)
        if isinstance(value, list) and len(value) > MAX_FUZZ_BATCH:
            body[name] = value[:MAX_FUZZ_BATCH]
    for name in ("n", "best_of"):
        if numeric(body.get(name), above=MAX_FUZZ_N):
            body[name] = MAX_FUZZ_N
    return body


def failure_summary(failure: Failure) -> str:
    """Where a check failed, short enough to compare across runs."""
    if isinstance(failure, JsonSchemaError):
        where = "/".join(str(part) for part in failure.schema_path)
        return f"{where}: {failure._raw_message[:120]}"
    if isinstance(failure, UndefinedStatusCode):
        return f"status {failure.status_code}"
    if isinstance(failure, UndefinedContentType):
        return f"content type {failure.content_type}"
    return failure.message.strip().splitlines()[0][:160] if failure.message else ""


def fuzz(
    schema: Any,
    base_url: str,
    headers: dict[str, str],
    model: str,
    max_examples: int,
    checks: list[Callable[..., Any]] | None = None,
) -> FuzzReport:
    """Run every operation of `schema` against `base_url`; raise on the first failed check."""
    report = FuzzReport()
    for result in schema.get_all_operations():
        operation = result.ok()
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
            fuzz_operation(operation, mode, base_url, headers, model, max_examples, checks, report)
    return report


def fuzz_operation(
    operation: Any,
    mode: GenerationMode,
    base_url: str,
    headers: dict[str, str],
    model: str,
    max_examples: int,
    checks: list[Callable[..., Any]] | None,
    report: FuzzReport,
) -> None:
    label = f"{operation.label} ({mode.value})"

    @given(case=operation.as_strategy(generation_mode=mode))
    @settings(
        max_examples=max_examples,
        deadline=None,
        derandomize=True,
        database=None,
        phases=[Phase.explicit, Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    def run(case: Any) -> None:
        if case.body is not None:
            case.body = bounded_cost(case.body, model)
        response = case.call(base_url=base_url, headers=headers, timeout=120)
        report.cases += 1
        report.statuses[response.status_code] += 1
        report.per_operation[label, response.status_code] += 1
        try:
            case.validate_response(response, checks=checks or CHECKS, headers=headers)
        except FailureGroup as group:
            for failure in group.exceptions:
                key = f"{label}: {failure.title}: {failure_summary(failure)}"
                report.failures[key] += 1
                report.examples.setdefault(
                    key,
                    f"body={json.dumps(case.body, default=repr)[:500]} -> {response.text[:500]}",
                )

    try:
        run()
    except Unsatisfiable:
        # No negative case exists for an operation without inputs (GET /health).
        if mode is not GenerationMode.NEGATIVE:
            raise
