"""Bounded schemathesis runs against the real server: our /openapi.json and OpenAI's own spec.

Both runs send every operation positive and negative cases (derandomized: the same cases each
run) and check: no 5xx, documented status codes and content types, response bodies valid
against the schema. Our spec must hold with no exception; OpenAI's published spec (the served
subset, vendored in tests/server/openapi/ by tools/vendor_openai_spec.py) holds once the
deviations in OPENAI_DEVIATIONS are applied, each named with why it is accepted.
"""

from __future__ import annotations

import copy
import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import schemathesis

from tests.server.openapi_fuzz import FuzzReport, fuzz
from tests.server.server_harness import RunningServer

MODEL = "smollm2-135m-instruct"
OPENAI_SUBSET = Path(__file__).parent / "openapi" / "openai-openapi-subset.json"
# Examples per operation and generation mode (positive, negative): ~220 requests in all.
OUR_MAX_EXAMPLES = 12
OPENAI_MAX_EXAMPLES = 10

Spec = dict[str, Any]


def document_error_statuses(spec: Spec) -> None:
    """OpenAI's spec documents only 200 (and 429) per operation, though its API answers 400,
    401, 404... with the `ErrorResponse` envelope; ours answer them with the same envelope."""
    error = {
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorResponse"}}}
    }
    for operations in spec["paths"].values():
        for operation in operations.values():
            for status in ("400", "401", "403", "404", "413", "429", "503"):
                operation["responses"].setdefault(status, {"description": status, **error})


def allow_null_system_fingerprint(spec: Spec) -> None:
    """`system_fingerprint` is null here, as in vLLM's server (there is no backend fingerprint);
    the spec types it as a string that may be absent."""
    for name in (
        "CreateChatCompletionResponse",
        "CreateChatCompletionStreamResponse",
        "CreateCompletionResponse",
    ):
        spec["components"]["schemas"][name]["properties"]["system_fingerprint"] = {
            "type": ["string", "null"]
        }


def completions_stream_as_server_sent_events(spec: Spec) -> None:
    """`POST /completions` with `"stream": true` answers `text/event-stream`, as OpenAI's API
    does; the spec lists only `application/json` for it (chat completions list both)."""
    content = spec["paths"]["/completions"]["post"]["responses"]["200"]["content"]
    content["text/event-stream"] = {
        "schema": {"$ref": "#/components/schemas/CreateCompletionResponse"}
    }


OPENAI_DEVIATIONS: list[Callable[[Spec], None]] = [
    document_error_statuses,
    allow_null_system_fingerprint,
    completions_stream_as_server_sent_events,
]


def openai_spec_with_deviations() -> Spec:
    spec = copy.deepcopy(json.loads(OPENAI_SUBSET.read_text(encoding="utf-8")))
    for deviation in OPENAI_DEVIATIONS:
        deviation(spec)
    return spec


def report_text(report: FuzzReport) -> str:
    lines = [f"{count}x {failure}" for failure, count in report.failures.most_common()]
    lines += [f"  e.g. {key}: {example}" for key, example in report.examples.items()]
    return "\n".join(lines)


def test_the_vendored_subset_names_its_source_and_holds_only_served_operations() -> None:
    spec = json.loads(OPENAI_SUBSET.read_text(encoding="utf-8"))
    source = spec["info"]["x-source"]
    assert source["repository"] == "openai/openai-openapi"
    assert len(source["commit"]) == 40
    assert spec["info"]["version"] == "2.3.0"
    served = {(path, method) for path, ops in spec["paths"].items() for method in ops}
    assert served == {
        ("/chat/completions", "post"),
        ("/completions", "post"),
        ("/embeddings", "post"),
        ("/models", "get"),
        ("/models/{model}", "get"),
    }


@pytest.mark.slow
def test_fuzzing_our_openapi_finds_no_5xx_and_no_schema_violation(server: RunningServer) -> None:
    schema = schemathesis.openapi.from_url(f"{server.base_url}/openapi.json")
    started = time.monotonic()
    report = fuzz(
        schema,
        server.base_url,
        {"Authorization": f"Bearer {server.key}"},
        MODEL,
        OUR_MAX_EXAMPLES,
    )
    print(
        f"our spec: {report.cases} cases in {time.monotonic() - started:.0f} s, {report.statuses}"
    )
    assert report.cases >= 100
    assert not [status for status in report.statuses if status >= 500]
    assert not report.failures, report_text(report)
    assert report.statuses[200] >= 10  # positive cases reached the engine, not only validation


@pytest.mark.slow
def test_fuzzing_openais_spec_finds_no_5xx_and_only_the_named_deviations(
    server: RunningServer,
) -> None:
    schema = schemathesis.openapi.from_dict(openai_spec_with_deviations())
    started = time.monotonic()
    report = fuzz(
        schema,
        server.api_url,
        {"Authorization": f"Bearer {server.key}"},
        MODEL,
        OPENAI_MAX_EXAMPLES,
    )
    print(
        f"OpenAI spec: {report.cases} cases in {time.monotonic() - started:.0f} s, {report.statuses}"
    )
    assert report.cases >= 80
    assert not [status for status in report.statuses if status >= 500]
    assert not report.failures, report_text(report)
    assert report.statuses[200] >= 5
