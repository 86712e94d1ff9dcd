"""A small S3-compatible HTTP server on loopback: the calls the fetch command makes, path-style.

For `make test` without the `s3-test` extra (moto, which cannot share the dev install, see
pyproject.toml); test_fetch_s3.py runs against both when moto is there. It answers:

- GET  /{bucket}?list-type=2&prefix=P[&continuation-token=T]  -> ListObjectsV2 XML (2 keys a page)
- HEAD /{bucket}/{key}[?partNumber=N]  -> Content-Length (of the part), ETag, x-amz-mp-parts-count
- GET  /{bucket}/{key}  with Range: bytes=N- (206) and If-Match (412 when the ETag differs)

An object is single-part (ETag = MD5) or multipart with a part size (ETag = MD5 of the parts'
MD5s + "-<parts>"), as S3 computes them. Requests without a SigV4 Authorization header for the
expected access key are answered 403 AccessDenied.
"""

from __future__ import annotations

import hashlib
import http.server
import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs, unquote, urlparse
from xml.sax.saxutils import escape

from tests.server.loopback_http import loopback_server

PAGE = 2  # keys per ListObjectsV2 page: the fetch must follow continuation tokens


@dataclass
class FakeObject:
    data: bytes
    part_size: int | None = None  # multipart upload with this part size

    @property
    def etag(self) -> str:
        if self.part_size is None:
            return hashlib.md5(self.data, usedforsecurity=False).hexdigest()
        parts = [
            hashlib.md5(self.data[i : i + self.part_size], usedforsecurity=False).digest()
            for i in range(0, len(self.data), self.part_size)
        ]
        return f"{hashlib.md5(b''.join(parts), usedforsecurity=False).hexdigest()}-{len(parts)}"


@dataclass
class FakeS3:
    access_key: str
    buckets: dict[str, dict[str, FakeObject]] = field(default_factory=dict)
    requests: list[dict[str, Any]] = field(default_factory=list)
    url: str = ""


def _handler(store: FakeS3) -> type[http.server.BaseHTTPRequestHandler]:
    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *_: Any) -> None:
            pass

        def _reply(
            self, status: int, body: bytes = b"", headers: dict[str, str] | None = None
        ) -> None:
            """`headers` may carry Content-Length (a HEAD answers the object's, with no body)."""
            headers = {"Content-Length": str(len(body)), **(headers or {})}
            self.send_response(status)
            for name, value in headers.items():
                self.send_header(name, value)
            self.end_headers()
            if body and self.command != "HEAD":
                self.wfile.write(body)

        def _error(self, status: int, code: str) -> None:
            self._reply(status, f"<Error><Code>{code}</Code></Error>".encode())

        def do_GET(self) -> None:
            self._serve()

        def do_HEAD(self) -> None:
            self._serve()

        def _serve(self) -> None:
            url = urlparse(self.path)
            query = {k: v[0] for k, v in parse_qs(url.query).items()}
            store.requests.append(
                {"method": self.command, "path": url.path, "range": self.headers.get("Range")}
            )
            auth = self.headers.get("Authorization") or ""
            if not auth.startswith(f"AWS4-HMAC-SHA256 Credential={store.access_key}/"):
                self._error(403, "AccessDenied")
                return
            bucket, _, key = unquote(url.path).lstrip("/").partition("/")
            if bucket not in store.buckets:
                self._error(404, "NoSuchBucket")
                return
            objects = store.buckets[bucket]
            if not key:
                self._list(objects, query)
                return
            obj = objects.get(key)
            if obj is None:
                self._error(404, "NoSuchKey")
                return
            etag = obj.etag
            headers = {"ETag": f'"{etag}"', "Accept-Ranges": "bytes"}
            if self.command == "HEAD":
                size = len(obj.data)
                if "partNumber" in query and obj.part_size is not None:
                    number = int(query["partNumber"])
                    start = (number - 1) * obj.part_size
                    size = len(obj.data[start : start + obj.part_size])
                    headers["x-amz-mp-parts-count"] = etag.rsplit("-", 1)[1]
                self._reply(200, b"", {**headers, "Content-Length": str(size)})
                return
            if_match = self.headers.get("If-Match")
            if if_match and if_match.strip('"') != etag:
                self._error(412, "PreconditionFailed")
                return
            start = 0
            if match := re.fullmatch(r"bytes=(\d+)-", self.headers.get("Range") or ""):
                start = int(match.group(1))
                headers["Content-Range"] = f"bytes {start}-{len(obj.data) - 1}/{len(obj.data)}"
            self._reply(206 if start else 200, obj.data[start:], headers)

        def _list(self, objects: dict[str, FakeObject], query: dict[str, str]) -> None:
            keys = sorted(k for k in objects if k.startswith(query.get("prefix", "")))
            start = int(query.get("continuation-token", "0"))
            page = keys[start : start + PAGE]
            truncated = start + PAGE < len(keys)
            contents = "".join(
                f"<Contents><Key>{escape(k)}</Key><Size>{len(objects[k].data)}</Size>"
                f"<ETag>&quot;{objects[k].etag}&quot;</ETag></Contents>"
                for k in page
            )
            token = (
                f"<NextContinuationToken>{start + PAGE}</NextContinuationToken>"
                if truncated
                else ""
            )
            body = (
                '<?xml version="1.0" encoding="UTF-8"?>'
                '<ListBucketResult xmlns="http://s3.amazonaws.com/doc/2006-03-01/">'
                f"<IsTruncated>{'true' if truncated else 'false'}</IsTruncated>{contents}{token}"
                "</ListBucketResult>"
            ).encode()
            self._reply(200, body, {"Content-Type": "application/xml"})

    return Handler


@contextmanager
def serve_s3(store: FakeS3) -> Iterator[FakeS3]:
    with loopback_server(_handler(store)) as url:
        store.url = url
        yield store
