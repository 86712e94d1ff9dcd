"""Fill the model cache from s3://bucket/prefix: every object under the prefix, as files.

`python -m modelplane.server.fetch s3://bucket/prefix --s3-dir DIR` writes
`DIR/<bucket>/<prefix>/<rest of each key>`, the directory the serving pods pass to `--model`.

- Resumable: an object is written to `<file>.incomplete` and a later run continues it with
  `Range: bytes=N-` and `If-Match: <ETag>` (a changed object starts over, never splices).
- Verified against what S3 publishes: the size from the listing, and the ETag: the MD5 of the
  bytes for a single-part object; for a multipart one (`<md5>-<parts>`), the MD5 of the parts'
  MD5s, with the part size read from `HEAD ?partNumber=1` (S3 and MinIO answer it). Objects
  whose ETag is not an MD5 (SSE-KMS or SSE-C encryption) and multipart objects whose part size
  the store does not tell are checked by size only, and the log says so. A bad file is
  fetched once more, then the run fails naming it.
- A no-op when complete: a marker holds the digest of the listing (keys, sizes, ETags).
- Credentials and endpoint from the standard AWS variables: AWS_ACCESS_KEY_ID,
  AWS_SECRET_ACCESS_KEY, AWS_SESSION_TOKEN, AWS_REGION (or AWS_DEFAULT_REGION, else us-east-1),
  AWS_ENDPOINT_URL_S3 or AWS_ENDPOINT_URL for S3-compatible stores (MinIO: path-style URLs);
  without keys, anonymous requests (public buckets). Requests are signed with AWS Signature
  Version 4 here, so the server image needs no boto3 (whose botocore pins python-dateutil<3,
  which the operator's kubernetes client cannot share).
"""

from __future__ import annotations

import datetime
import hashlib
import hmac
import json
import os
import re
import time
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote, unquote, urlsplit

import httpx

from modelplane.server.fetch import (
    CHUNK,
    PARALLEL_FILES,
    FetchError,
    ProgressReporter,
    RemoteFile,
    SourceChanged,
    download_resumable,
    fetch_verified,
    log,
    model_facts,
)

MARKER = ".modelplane-fetched.json"
EMPTY_SHA256 = hashlib.sha256(b"").hexdigest()
S3_NS = "{http://s3.amazonaws.com/doc/2006-03-01/}"


@dataclass(frozen=True)
class S3Source:
    bucket: str
    prefix: str  # without leading or trailing slash; "" is the whole bucket

    @classmethod
    def parse(cls, uri: str) -> S3Source:
        match = re.fullmatch(r"s3://([a-z0-9][a-z0-9.\-]{1,61}[a-z0-9])(?:/(\S*))?", uri)
        if not match:
            raise FetchError(f"unsupported source {uri!r}: expected s3://bucket[/prefix]")
        return cls(match.group(1), (match.group(2) or "").strip("/"))

    @property
    def uri(self) -> str:
        return f"s3://{self.bucket}/{self.prefix}".rstrip("/")


@dataclass(frozen=True)
class S3Object:
    key: str
    size: int
    etag: str  # without quotes


@dataclass(frozen=True)
class Credentials:
    access_key: str
    secret_key: str
    session_token: str | None = None


def signing_key(secret: str, date: str, region: str) -> bytes:
    key = ("AWS4" + secret).encode()
    for part in (date, region, "s3", "aws4_request"):
        key = hmac.new(key, part.encode(), hashlib.sha256).digest()
    return key


def sign_v4(
    method: str,
    url: str,
    headers: dict[str, str],
    credentials: Credentials,
    region: str,
    now: datetime.datetime,
) -> dict[str, str]:
    """`headers` plus x-amz-date, x-amz-content-sha256 (empty body) and Authorization (SigV4).

    Every header given is signed; the query string is canonicalised from the URL."""
    parts = urlsplit(url)
    amz_date = now.strftime("%Y%m%dT%H%M%SZ")
    signed = {k.lower(): v.strip() for k, v in headers.items()}
    signed["host"] = parts.netloc
    signed["x-amz-date"] = amz_date
    signed.setdefault("x-amz-content-sha256", EMPTY_SHA256)
    if credentials.session_token:
        signed["x-amz-security-token"] = credentials.session_token
    pairs = []
    for item in parts.query.split("&") if parts.query else []:
        name, _, value = item.partition("=")
        pairs.append((quote(unquote(name), safe="-_.~"), quote(unquote(value), safe="-_.~")))
    names = sorted(signed)
    canonical = "\n".join(
        [
            method,
            quote(unquote(parts.path or "/"), safe="/-_.~"),
            "&".join(f"{k}={v}" for k, v in sorted(pairs)),
            "".join(f"{name}:{signed[name]}\n" for name in names),
            ";".join(names),
            signed["x-amz-content-sha256"],
        ]
    )
    scope = f"{amz_date[:8]}/{region}/s3/aws4_request"
    to_sign = "\n".join(
        ["AWS4-HMAC-SHA256", amz_date, scope, hashlib.sha256(canonical.encode()).hexdigest()]
    )
    key = signing_key(credentials.secret_key, amz_date[:8], region)
    signature = hmac.new(key, to_sign.encode(), hashlib.sha256).hexdigest()
    signed["authorization"] = (
        f"AWS4-HMAC-SHA256 Credential={credentials.access_key}/{scope},"
        f" SignedHeaders={';'.join(names)}, Signature={signature}"
    )
    del signed["host"]  # the HTTP client sends it
    return signed


class S3Client:
    """GET, HEAD and ListObjectsV2 against S3 or an S3-compatible endpoint, signed with SigV4."""

    def __init__(
        self,
        endpoint: str | None,
        region: str,
        credentials: Credentials | None,
        http: httpx.Client | None = None,
    ) -> None:
        self.endpoint = endpoint.rstrip("/") if endpoint else None
        self.region = region
        self.credentials = credentials
        self.http = http or httpx.Client(timeout=60, follow_redirects=False)

    @classmethod
    def from_env(cls, env: dict[str, str] | None = None) -> S3Client:
        env = dict(os.environ if env is None else env)
        key, secret = env.get("AWS_ACCESS_KEY_ID"), env.get("AWS_SECRET_ACCESS_KEY")
        credentials = (
            Credentials(key, secret, env.get("AWS_SESSION_TOKEN") or None)
            if key and secret
            else None
        )
        region = env.get("AWS_REGION") or env.get("AWS_DEFAULT_REGION") or "us-east-1"
        endpoint = env.get("AWS_ENDPOINT_URL_S3") or env.get("AWS_ENDPOINT_URL") or None
        return cls(endpoint, region, credentials)

    def url(self, bucket: str, key: str = "") -> str:
        """Path-style on a custom endpoint (MinIO and most S3-compatible stores), virtual-hosted
        on AWS."""
        path = "/" + quote(key, safe="/-_.~") if key else "/"
        if self.endpoint:
            return f"{self.endpoint}/{bucket}{path if key else ''}"
        return f"https://{bucket}.s3.{self.region}.amazonaws.com{path}"

    def _headers(self, method: str, url: str, headers: dict[str, str]) -> dict[str, str]:
        if self.credentials is None:
            return headers
        now = datetime.datetime.now(datetime.timezone.utc)
        return sign_v4(method, url, headers, self.credentials, self.region, now)

    def _check(self, response: httpx.Response, what: str) -> None:
        if response.status_code < 300:
            return
        response.read()
        code = re.search(r"<Code>([^<]+)</Code>", response.text or "")
        raise FetchError(
            f"{what}: HTTP {response.status_code}" + (f" {code.group(1)}" if code else "")
        )

    def list(self, source: S3Source) -> list[S3Object]:
        objects: list[S3Object] = []
        token: str | None = None
        prefix = f"{source.prefix}/" if source.prefix else ""
        while True:
            query = f"list-type=2&prefix={quote(prefix, safe='-_.~')}"
            if token:
                query += f"&continuation-token={quote(token, safe='-_.~')}"
            url = f"{self.url(source.bucket)}?{query}"
            response = self.http.get(url, headers=self._headers("GET", url, {}))
            self._check(response, f"list {source.uri}")
            root = ET.fromstring(response.content)
            for item in root.iter(f"{S3_NS}Contents"):
                key = item.findtext(f"{S3_NS}Key") or ""
                if key.endswith("/"):
                    continue  # a "folder" placeholder
                objects.append(
                    S3Object(
                        key=key,
                        size=int(item.findtext(f"{S3_NS}Size") or 0),
                        etag=(item.findtext(f"{S3_NS}ETag") or "").strip('"'),
                    )
                )
            token = root.findtext(f"{S3_NS}NextContinuationToken")
            if root.findtext(f"{S3_NS}IsTruncated") != "true" or not token:
                return objects

    def head(self, bucket: str, key: str, part: int | None = None) -> httpx.Headers:
        url = self.url(bucket, key) + (f"?partNumber={part}" if part else "")
        response = self.http.head(url, headers=self._headers("HEAD", url, {}))
        self._check(response, f"HEAD s3://{bucket}/{key}")
        return response.headers

    def stream(self, bucket: str, key: str, headers: dict[str, str]) -> Any:
        url = self.url(bucket, key)
        return self.http.stream("GET", url, headers=self._headers("GET", url, headers))


def local_path(root: Path, source: S3Source, obj: S3Object) -> Path:
    relative = obj.key[len(source.prefix) :].lstrip("/") if source.prefix else obj.key
    if not relative or ".." in relative.split("/"):
        raise FetchError(f"s3://{source.bucket}/{obj.key}: not a file under the prefix")
    return root / source.bucket / source.prefix / relative


def _md5_parts(path: Path, part_size: int) -> Iterator[bytes]:
    with path.open("rb") as f:
        while True:
            digest, left = hashlib.md5(usedforsecurity=False), part_size
            while left and (chunk := f.read(min(CHUNK, left))):
                digest.update(chunk)
                left -= len(chunk)
            if left == part_size:
                return
            yield digest.digest()


def verify_object(client: S3Client, bucket: str, obj: S3Object, path: Path) -> str | None:
    """None when the file matches the listing's size and the ETag, else what is wrong."""
    if not path.is_file():
        return "missing"
    size = path.stat().st_size
    if size != obj.size:
        return f"size {size} != published {obj.size}"
    head = client.head(bucket, obj.key)
    if head.get("x-amz-server-side-encryption") == "aws:kms" or head.get(
        "x-amz-server-side-encryption-customer-algorithm"
    ):
        log("size-only", file=obj.key, why="encrypted: the ETag is not an MD5")
        return None
    md5_etag = re.fullmatch(r"[0-9a-f]{32}", obj.etag)
    multipart = re.fullmatch(r"[0-9a-f]{32}-(\d+)", obj.etag)
    if md5_etag:
        digests = list(_md5_parts(path, max(size, 1)))
        actual = digests[0].hex() if digests else hashlib.md5(usedforsecurity=False).hexdigest()
    elif multipart:
        part = client.head(bucket, obj.key, part=1)
        if part.get("x-amz-mp-parts-count") != multipart.group(1):
            log("size-only", file=obj.key, why="the store does not tell the part size")
            return None
        parts = list(_md5_parts(path, int(part["content-length"])))
        combined = hashlib.md5(b"".join(parts), usedforsecurity=False).hexdigest()
        actual = f"{combined}-{len(parts)}"
    else:
        log("size-only", file=obj.key, why=f"ETag {obj.etag!r} is not an MD5")
        return None
    if actual != obj.etag:
        return f"ETag {actual} != published {obj.etag}"
    return None


def download_object(client: S3Client, bucket: str, obj: S3Object, path: Path) -> None:
    """Download one object to `path` (resumable, verified); If-Match pins the listed version."""

    @contextmanager
    def open_stream(range_headers: dict[str, str]) -> Iterator[httpx.Response]:
        headers = {"if-match": f'"{obj.etag}"'} if obj.etag else {}
        headers.update({key.lower(): value for key, value in range_headers.items()})
        with client.stream(bucket, obj.key, headers) as response:
            if response.status_code == 412:  # changed since the listing: the next run relists
                raise SourceChanged(f"s3://{bucket}/{obj.key}: changed while fetching (ETag)")
            client._check(response, f"GET s3://{bucket}/{obj.key}")
            yield response

    download_resumable(
        path,
        obj.size,
        obj.key,
        open_stream,
        lambda partial: verify_object(client, bucket, obj, partial),
    )


def place_object(
    client: S3Client, source: S3Source, obj: S3Object, path: Path, verify: bool
) -> None:
    """A verified file at `path`: kept, or fetched (twice at most)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fetch_verified(
        path,
        obj.key,
        lambda candidate: verify_object(client, source.bucket, obj, candidate),
        lambda: download_object(client, source.bucket, obj, path),
    )


def listing_digest(objects: list[S3Object]) -> str:
    """Stands for a commit: changes when any key, size or ETag under the prefix does."""
    text = "\n".join(f"{o.key} {o.size} {o.etag}" for o in sorted(objects, key=lambda o: o.key))
    return hashlib.sha1(text.encode(), usedforsecurity=False).hexdigest()


def fetch_s3(
    source: S3Source,
    root: Path,
    *,
    progress_interval: float = 10.0,
    verify: bool = False,
    client: S3Client | None = None,
) -> dict[str, Any]:
    """Download and verify every object under the prefix into `root`; returns the summary."""
    client = client or S3Client.from_env()
    started = time.monotonic()
    try:
        objects = client.list(source)
    except httpx.HTTPError as error:
        raise FetchError(f"{source.uri}: {error}") from error
    if not objects:
        raise FetchError(f"{source.uri}: no objects under this prefix")
    target = root / source.bucket / source.prefix
    paths = {o.key: local_path(root, source, o) for o in objects}
    digest = listing_digest(objects)
    base = {
        "source": source.uri,
        "revision": "",
        "commit": digest,  # the operator's record of what is in the cache
        "files": len(objects),
        "bytes": sum(o.size for o in objects),
    }
    log("start", **base)
    marker = target / MARKER
    marked = marker.is_file() and json.loads(marker.read_text()).get("commit") == digest
    complete = (
        not verify
        and marked
        and all(paths[o.key].is_file() and paths[o.key].stat().st_size == o.size for o in objects)
    )
    if not complete:
        marker.unlink(missing_ok=True)
        entries = [(paths[o.key], o.size) for o in objects]
        with ProgressReporter(entries, progress_interval, source.uri) as progress:
            try:
                with ThreadPoolExecutor(max_workers=PARALLEL_FILES) as pool:
                    list(
                        pool.map(
                            lambda o: place_object(client, source, o, paths[o.key], verify),
                            objects,
                        )
                    )
            except httpx.HTTPError as error:
                raise FetchError(f"{source.uri}: {error}") from error
            progress.report()
        marker.write_text(json.dumps(base) + "\n")
    summary = {**base, "noop": complete, "seconds": round(time.monotonic() - started, 3)}
    log("complete", **summary)
    files = [RemoteFile(str(paths[o.key].relative_to(target)), o.size, "", None) for o in objects]
    summary["model"] = model_facts(target, files)
    return summary
