"""docs/crd-reference.md is generated from the CRD's descriptions and must not go stale."""

from __future__ import annotations

import importlib.util
from types import ModuleType

from delivery_checks import REPO, load_crd

REFERENCE = REPO / "docs" / "crd-reference.md"


def load_tool() -> ModuleType:
    spec = importlib.util.spec_from_file_location(
        "crd_reference", REPO / "tools" / "crd_reference.py"
    )
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_committed_reference_matches_the_crd() -> None:
    expected = load_tool().render_reference(load_crd())
    assert REFERENCE.exists(), "run `python tools/crd_reference.py`"
    assert REFERENCE.read_text() == expected, (
        "docs/crd-reference.md is stale: run `python tools/crd_reference.py` after `make crds`"
    )


def test_reference_documents_every_spec_field_with_its_description() -> None:
    tool = load_tool()
    spec_schema = load_crd()["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"][
        "spec"
    ]
    text = REFERENCE.read_text()
    for path, node, _required in tool.walk(spec_schema, "spec", True):
        if path == "spec":
            continue
        assert f"`{path}`" in text, path
        assert tool.cell(node.get("description", "")) in text, path
