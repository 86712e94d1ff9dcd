"""HTTPS: `--ssl-certfile/--ssl-keyfile` serve TLS; the openai SDK verifies the certificate."""

from __future__ import annotations

import ssl
from collections.abc import Iterator
from pathlib import Path

import httpx
import openai
import pytest
import trustme

from tests.server.server_harness import RunningServer, start_server

pytestmark = pytest.mark.slow

MODEL = "smollm2-135m-instruct"
KEY = "sk-tls-test"


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture(scope="module")
def tls_server(tmp_path_factory: pytest.TempPathFactory, ca: trustme.CA) -> Iterator[RunningServer]:
    workdir = Path(tmp_path_factory.mktemp("tls-server"))
    issued = ca.issue_cert("127.0.0.1", "localhost")
    cert, key, ca_file = workdir / "tls.crt", workdir / "tls.key", workdir / "ca.crt"
    for blob in issued.cert_chain_pems:
        with cert.open("ab") as file:
            file.write(blob.bytes())
    issued.private_key_pem.write_to_path(str(key))
    ca.cert_pem.write_to_path(str(ca_file))
    running = start_server(
        workdir,
        ["--ssl-certfile", str(cert), "--ssl-keyfile", str(key), "--max-model-len", "1024"],
        env={"MODELPLANE_API_KEY": KEY},
        ca_file=ca_file,
    )
    try:
        yield running
    finally:
        running.stop()


def test_openai_sdk_chats_over_verified_https(tls_server: RunningServer) -> None:
    assert tls_server.base_url.startswith("https://")
    http_client = httpx.Client(verify=tls_server.verify, timeout=120)
    client = openai.OpenAI(
        base_url=tls_server.api_url, api_key=KEY, http_client=http_client, max_retries=0
    )
    reply = client.chat.completions.create(
        model=MODEL,
        messages=[{"role": "user", "content": "What is the capital of France?"}],
        temperature=0,
        max_tokens=16,
    )
    assert reply.choices[0].message.content
    assert reply.usage is not None and reply.usage.completion_tokens > 0
    stream = client.chat.completions.create(
        model=MODEL,
        messages=[{"role": "user", "content": "Say hi."}],
        max_tokens=4,
        stream=True,
    )
    assert sum(1 for chunk in stream if chunk.choices) >= 1


def test_plain_http_and_unknown_certificates_are_refused(tls_server: RunningServer) -> None:
    plain = tls_server.base_url.replace("https://", "http://")
    with pytest.raises(httpx.HTTPError):  # a TLS listener does not speak plain HTTP
        httpx.get(f"{plain}/health", timeout=10)
    with pytest.raises(httpx.ConnectError) as refused:  # not signed by a CA we trust
        httpx.get(f"{tls_server.base_url}/health", timeout=10)
    assert isinstance(refused.value.__context__, ssl.SSLCertVerificationError) or (
        "CERTIFICATE_VERIFY_FAILED" in str(refused.value)
    )
    assert httpx.get(f"{tls_server.base_url}/health", verify=tls_server.verify).status_code == 200
