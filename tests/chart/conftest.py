"""Fixtures for the delivery checks: the real helm binary, rendered manifests, the CRD validator.

helm and kubectl come from `make tools` ($MODELPLANE_CACHE/bin, on PATH under `make test`); when
they are missing the fixture fetches them once with tools/fetch_k8s_tools.py.
"""

from __future__ import annotations

import copy
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from typing import Any

import jsonschema
import pytest
import yaml

from tests.chart.delivery_checks import (
    CHART,
    KUBE_VERSION,
    RELEASE,
    RELEASE_NAMESPACE,
    REPO,
    ROOT_CRD,
    Manifest,
    load_crd,
    modeldeployment_validator,
    parse_documents,
    run_helm,
    tools_bin,
)


@pytest.fixture(scope="session")
def helm() -> str:
    """Path of the helm binary, fetched into the cache on first use."""
    found = shutil.which("helm")
    if found:
        return found
    candidate = tools_bin() / "helm"
    if not os.access(candidate, os.X_OK):
        subprocess.run(
            [sys.executable, str(REPO / "tools" / "fetch_k8s_tools.py"), str(tools_bin())],
            check=True,
        )
    return str(candidate)


class Renderer:
    """`render(values, *flags)` runs `helm template` on the chart and returns the objects."""

    def __init__(self, helm: str, tmp: pytest.TempPathFactory) -> None:
        self.helm = helm
        self.tmp = tmp
        self._cache: dict[str, list[Manifest]] = {}

    def raw(
        self, values: dict[str, Any] | None = None, *flags: str
    ) -> subprocess.CompletedProcess[str]:
        values_file = self.tmp.mktemp("values") / "values.yaml"
        values_file.write_text(yaml.safe_dump(values or {}))
        return run_helm(
            self.helm,
            "template",
            RELEASE,
            str(CHART),
            "--namespace",
            RELEASE_NAMESPACE,
            "--kube-version",
            KUBE_VERSION,
            "--values",
            str(values_file),
            *flags,
        )

    def __call__(self, values: dict[str, Any] | None = None, *flags: str) -> list[Manifest]:
        key = json.dumps([values, flags], sort_keys=True)
        if key not in self._cache:  # helm is deterministic: render each input once per session
            result = self.raw(values, *flags)
            assert result.returncode == 0, result.stderr
            self._cache[key] = parse_documents(result.stdout)
        return copy.deepcopy(self._cache[key])


@pytest.fixture(scope="session")
def render(helm: str, tmp_path_factory: pytest.TempPathFactory) -> Callable[..., list[Manifest]]:
    return Renderer(helm, tmp_path_factory)


@pytest.fixture(scope="session")
def md_validator() -> jsonschema.Draft202012Validator:
    """Validates whole ModelDeployment objects against the generated CRD's schema."""
    if not ROOT_CRD.exists():
        pytest.fail(f"{ROOT_CRD.relative_to(REPO)} is missing: run `make crds`")
    return modeldeployment_validator(load_crd())
