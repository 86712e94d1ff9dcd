"""Cut the operations modelplane serves out of OpenAI's published OpenAPI spec.

The full spec (openai/openai-openapi, `openapi.json`, ~3 MB) describes every OpenAI API; the
fuzz test (tests/server/test_openapi_fuzz.py) needs only the paths modelplane serves and the
schemas they reference. The subset keeps OpenAI's text as is and records where it came from.

Usage: ``python tools/vendor_openai_spec.py FULL_SPEC.json --commit SHA [--output PATH]``
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
DEFAULT_OUTPUT = REPO / "tests" / "server" / "openapi" / "openai-openapi-subset.json"
SOURCE_REPOSITORY = "openai/openai-openapi"
# (path, method) pairs modelplane serves under /v1.
SERVED = (
    ("/chat/completions", "post"),
    ("/completions", "post"),
    ("/embeddings", "post"),
    ("/models", "get"),
    ("/models/{model}", "get"),
)


def refs_in(node: Any) -> set[str]:
    """Every `$ref` string anywhere under `node`."""
    found: set[str] = set()
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "$ref" and isinstance(value, str):
                found.add(value)
            else:
                found |= refs_in(value)
    elif isinstance(node, list):
        for item in node:
            found |= refs_in(item)
    return found


def resolve(spec: dict[str, Any], ref: str) -> Any:
    node: Any = spec
    for part in ref.removeprefix("#/").split("/"):
        node = node[part.replace("~1", "/").replace("~0", "~")]
    return node


def subset(spec: dict[str, Any], commit: str) -> dict[str, Any]:
    paths: dict[str, Any] = {}
    for path, method in SERVED:
        paths.setdefault(path, {})[method] = spec["paths"][path][method]
    components: dict[str, dict[str, Any]] = {}
    pending = refs_in(paths)
    seen: set[str] = set()
    while pending:
        ref = pending.pop()
        if ref in seen:
            continue
        seen.add(ref)
        _, _, kind, name = ref.split("/", 3)
        node = resolve(spec, ref)
        components.setdefault(kind, {})[name] = node
        pending |= refs_in(node) - seen
    components["securitySchemes"] = {
        "ApiKeyAuth": spec["components"]["securitySchemes"]["ApiKeyAuth"]
    }
    return {
        "openapi": spec["openapi"],
        "info": {
            **{k: spec["info"][k] for k in ("title", "version", "license")},
            "description": "The operations modelplane serves, cut from OpenAI's published spec "
            "by tools/vendor_openai_spec.py; otherwise unchanged.",
            "x-source": {"repository": SOURCE_REPOSITORY, "path": "openapi.json", "commit": commit},
        },
        "servers": spec["servers"],
        "security": spec["security"],
        "paths": paths,
        "components": {kind: dict(sorted(items.items())) for kind, items in components.items()},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("spec", type=Path, help="OpenAI's full openapi.json")
    parser.add_argument("--commit", required=True, help="the openai-openapi commit it came from")
    parser.add_argument("--output", type=Path, default=DEFAULT_OUTPUT)
    args = parser.parse_args()
    spec = json.loads(args.spec.read_text(encoding="utf-8"))
    args.output.write_text(json.dumps(subset(spec, args.commit), indent=1) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
