"""docs/crd-reference.md is generated from the CRD's descriptions and must not go stale."""

from __future__ import annotations

from tests.chart.delivery_checks import REPO, load_crd
from tools import crd_reference

REFERENCE = REPO / "docs" / "crd-reference.md"


def test_committed_reference_matches_the_crd() -> None:
    expected = crd_reference.render_reference(load_crd())
    assert REFERENCE.exists(), "run `python tools/crd_reference.py`"
    assert REFERENCE.read_text() == expected, (
        "docs/crd-reference.md is stale: run `python tools/crd_reference.py` after `make crds`"
    )


def test_reference_documents_every_spec_field_with_its_description() -> None:
    spec_schema = load_crd()["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"][
        "spec"
    ]
    text = REFERENCE.read_text()
    for path, node, _required in crd_reference.walk(spec_schema, "spec", True):
        if path == "spec":
            continue
        assert f"`{path}`" in text, path
        assert crd_reference.cell(node.get("description", "")) in text, path
