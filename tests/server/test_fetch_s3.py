"""The fetch command for s3:// sources, for real: against moto's S3 server on loopback.

moto (`ThreadedMotoServer`, the `s3-test` extra) is an S3-compatible HTTP server: the real
`python -m modelplane.server.fetch s3://...` reaches it through AWS_ENDPOINT_URL, as it would
reach MinIO. The objects are uploaded with boto3 (test side only; the fetch signs its own
requests). moto does not check signatures, so SigV4 is checked against AWS's published example.
Every test also runs against tests/server/fake_s3.py (paginated listings, 403 without a SigV4
header), so `make test` covers s3:// where moto cannot be installed.
"""

from __future__ import annotations

import datetime
import hashlib
import json
import os
import struct
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from modelplane.server.fetch_s3 import Credentials, S3Source, sign_v4
from tests.server.fake_s3 import FakeObject, FakeS3, serve_s3

BUCKET = "models"
PREFIX = "smol/v1"
WEIGHTS = "model.safetensors"
PART = 5 * 1024 * 1024  # S3's smallest multipart part
CONFIG = {"architectures": ["LlamaForCausalLM"], "num_hidden_layers": 30, "hidden_size": 576}


def safetensors(size: int) -> bytes:
    """A valid safetensors file of about `size` bytes (one F16 tensor), random-ish content."""
    count = size // 2
    header = json.dumps(
        {"w": {"dtype": "F16", "shape": [count], "data_offsets": [0, count * 2]}}
    ).encode()
    body = hashlib.shake_256(b"weights").digest(count * 2)
    return struct.pack("<Q", len(header)) + header + body


def objects() -> dict[str, bytes]:
    return {
        "config.json": json.dumps(CONFIG).encode(),
        "tokenizer/tokenizer.json": b'{"version": "1.0"}',
        WEIGHTS: safetensors(3 * PART + 12345),  # multipart: 4 parts, ETag "<md5>-4"
    }


ACCESS_KEY, SECRET_KEY = "modelplane-test", "modelplane-test-secret"


@pytest.fixture(scope="module", params=["moto", "loopback"])
def store(request: pytest.FixtureRequest) -> Iterator[dict[str, Any]]:
    if request.param == "moto":
        yield from moto_store()
        return
    files = objects()
    fake = FakeS3(ACCESS_KEY)
    fake.buckets[BUCKET] = {
        f"{PREFIX}/{name}": FakeObject(data, PART if name == WEIGHTS else None)
        for name, data in files.items()
    }
    fake.buckets[BUCKET]["smol/v1-other/config.json"] = FakeObject(b"{}")  # not under it
    with serve_s3(fake) as running:
        env = {
            "AWS_ENDPOINT_URL": running.url,
            "AWS_ACCESS_KEY_ID": ACCESS_KEY,
            "AWS_SECRET_ACCESS_KEY": SECRET_KEY,
            "AWS_REGION": "us-east-1",
        }
        yield {"env": env, "files": files, "checks_keys": True}


def moto_store() -> Iterator[dict[str, Any]]:
    why = "the s3-test extra (pyproject.toml) is not installed"
    moto_server = pytest.importorskip("moto.server", reason=why)
    boto3 = pytest.importorskip("boto3", reason=why)
    server = moto_server.ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    env = {
        "AWS_ENDPOINT_URL": f"http://{host}:{port}",
        "AWS_ACCESS_KEY_ID": ACCESS_KEY,
        "AWS_SECRET_ACCESS_KEY": SECRET_KEY,
        "AWS_REGION": "us-east-1",
    }
    client = boto3.client(
        "s3",
        endpoint_url=env["AWS_ENDPOINT_URL"],
        aws_access_key_id=env["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=env["AWS_SECRET_ACCESS_KEY"],
        region_name="us-east-1",
    )
    client.create_bucket(Bucket=BUCKET)
    files = objects()
    for name, data in files.items():
        key = f"{PREFIX}/{name}"
        if name == WEIGHTS:
            upload = client.create_multipart_upload(Bucket=BUCKET, Key=key)
            parts = []
            for number, start in enumerate(range(0, len(data), PART), start=1):
                answer = client.upload_part(
                    Bucket=BUCKET,
                    Key=key,
                    PartNumber=number,
                    UploadId=upload["UploadId"],
                    Body=data[start : start + PART],
                )
                parts.append({"ETag": answer["ETag"], "PartNumber": number})
            client.complete_multipart_upload(
                Bucket=BUCKET,
                Key=key,
                UploadId=upload["UploadId"],
                MultipartUpload={"Parts": parts},
            )
        else:
            client.put_object(Bucket=BUCKET, Key=key, Body=data)
    client.put_object(Bucket=BUCKET, Key="smol/v1-other/config.json", Body=b"{}")  # not under it
    try:
        yield {"env": env, "files": files, "checks_keys": False}
    finally:
        server.stop()


def run_fetch(store: dict[str, Any], root: Path, *extra: str) -> tuple[int, list[dict[str, Any]]]:
    env = {**os.environ, **store["env"]}
    argv = [sys.executable, "-m", "modelplane.server.fetch", f"s3://{BUCKET}/{PREFIX}"]
    argv += ["--s3-dir", str(root), "--progress-interval", "0.2", *extra]
    done = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=300)
    lines = [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]
    return done.returncode, lines


def events(lines: list[dict[str, Any]], name: str) -> list[dict[str, Any]]:
    return [line for line in lines if line.get("event") == name]


def target(root: Path) -> Path:
    return root / BUCKET / PREFIX


def test_s3_prefix_is_fetched_verified_and_summarised(
    store: dict[str, Any], tmp_path: Path
) -> None:
    summary_file = tmp_path / "termination-log"
    code, lines = run_fetch(store, tmp_path, "--summary-file", str(summary_file))
    assert code == 0, lines
    for name, data in store["files"].items():
        assert (target(tmp_path) / name).read_bytes() == data
    assert not (tmp_path / BUCKET / "smol" / "v1-other").exists()
    assert not events(lines, "size-only")  # single-part MD5 and the multipart ETag both checked
    total = sum(len(d) for d in store["files"].values())
    progress = events(lines, "progress")
    assert progress[-1]["bytesDone"] == progress[-1]["bytesTotal"] == total
    assert progress[-1]["source"] == f"s3://{BUCKET}/{PREFIX}"
    summary = json.loads(summary_file.read_text())
    assert summary["source"] == f"s3://{BUCKET}/{PREFIX}" and summary["files"] == 3
    assert summary["bytes"] == total and summary["noop"] is False
    assert summary["model"]["config"]["num_hidden_layers"] == 30
    assert summary["model"]["weightBytesByDtype"] == {"F16": 2 * ((3 * PART + 12345) // 2)}


def test_second_s3_fetch_is_a_noop(store: dict[str, Any], tmp_path: Path) -> None:
    assert run_fetch(store, tmp_path)[0] == 0
    weights = target(tmp_path) / WEIGHTS
    before = weights.stat().st_mtime_ns
    code, lines = run_fetch(store, tmp_path)
    assert code == 0 and events(lines, "complete")[0]["noop"] is True
    assert weights.stat().st_mtime_ns == before


def test_interrupted_s3_fetch_resumes_with_a_range_request(
    store: dict[str, Any], tmp_path: Path
) -> None:
    data = store["files"][WEIGHTS]
    partial = target(tmp_path) / f"{WEIGHTS}.incomplete"
    partial.parent.mkdir(parents=True)
    kept = 2 * PART + 777  # what an evicted pod left: a prefix of the object
    partial.write_bytes(data[:kept])
    code, lines = run_fetch(store, tmp_path)
    assert code == 0, lines
    assert events(lines, "resume") == [
        {
            "time": events(lines, "resume")[0]["time"],
            "event": "resume",
            "file": f"{PREFIX}/{WEIGHTS}",
            "offset": kept,
        }
    ]
    assert not events(lines, "resume-refused") and not events(lines, "corrupt")
    assert (target(tmp_path) / WEIGHTS).read_bytes() == data
    assert not partial.exists()


def test_a_partial_file_that_is_not_a_prefix_is_detected_and_fetched_again(
    store: dict[str, Any], tmp_path: Path
) -> None:
    partial = target(tmp_path) / f"{WEIGHTS}.incomplete"
    partial.parent.mkdir(parents=True)
    partial.write_bytes(b"\x00" * PART)  # resumed from, the whole would not match the ETag
    code, lines = run_fetch(store, tmp_path)
    assert code == 0, lines
    [corrupt] = events(lines, "corrupt")
    assert corrupt["file"] == f"{PREFIX}/{WEIGHTS}" and "ETag" in corrupt["problem"]
    assert (target(tmp_path) / WEIGHTS).read_bytes() == store["files"][WEIGHTS]


def test_corrupted_cached_s3_file_is_detected_and_fetched_again(
    store: dict[str, Any], tmp_path: Path
) -> None:
    assert run_fetch(store, tmp_path)[0] == 0
    config = target(tmp_path) / "config.json"
    config.write_bytes(config.read_bytes().replace(b"30", b"31"))  # same size, other bytes
    code, lines = run_fetch(store, tmp_path, "--verify")
    assert code == 0, lines
    assert [c["file"] for c in events(lines, "corrupt")] == [f"{PREFIX}/config.json"]
    assert json.loads(config.read_text())["num_hidden_layers"] == 30


def test_missing_prefix_and_bad_credentials_fail_clearly(
    store: dict[str, Any], tmp_path: Path
) -> None:
    env = {**os.environ, **store["env"]}
    argv = [sys.executable, "-m", "modelplane.server.fetch", f"s3://{BUCKET}/nothing-here"]
    done = subprocess.run(
        [*argv, "--s3-dir", str(tmp_path)], env=env, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 1
    assert "no objects under this prefix" in done.stdout
    missing = subprocess.run(
        [sys.executable, "-m", "modelplane.server.fetch", "s3://no-such-bucket/x", "--s3-dir", str(tmp_path)],
        env=env, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert missing.returncode == 1 and "NoSuchBucket" in missing.stdout
    if store["checks_keys"]:  # moto accepts any key
        wrong = subprocess.run(
            [*argv[:-1], f"s3://{BUCKET}/{PREFIX}", "--s3-dir", str(tmp_path)],
            env={**env, "AWS_ACCESS_KEY_ID": "someone-else"},
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert wrong.returncode == 1 and "HTTP 403 AccessDenied" in wrong.stdout


def test_sigv4_matches_the_aws_documented_example() -> None:
    # "GET Object" example of AWS's Signature Version 4 docs for S3 (header-based auth).
    headers = sign_v4(
        "GET",
        "https://examplebucket.s3.amazonaws.com/test.txt",
        {"Range": "bytes=0-9"},
        Credentials("AKIAIOSFODNN7EXAMPLE", "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"),
        "us-east-1",
        datetime.datetime(2013, 5, 24, tzinfo=datetime.timezone.utc),
    )
    assert headers["authorization"] == (
        "AWS4-HMAC-SHA256 Credential=AKIAIOSFODNN7EXAMPLE/20130524/us-east-1/s3/aws4_request,"
        " SignedHeaders=host;range;x-amz-content-sha256;x-amz-date,"
        " Signature=f0e8bdb87c964420e857bd35b5d6ed310bd44f0170aba48dd91039c6036bdb41"
    )


def test_s3_source_parsing() -> None:
    assert S3Source.parse("s3://models/llama/8b/") == S3Source("models", "llama/8b")
    assert S3Source.parse("s3://models") == S3Source("models", "")
