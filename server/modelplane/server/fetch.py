"""Fill the model cache once: download hf://org/name[@revision] (or s3://bucket/prefix) into it.

The operator runs this in the Job `<name>-fetch` before any serving pod starts:

    python -m modelplane.server.fetch hf://org/name[@revision] [--cache-dir DIR]
        [s3://bucket/prefix --s3-dir DIR] [--summary-file /dev/termination-log]

- Layout: the standard Hugging Face cache (`$HF_HOME/hub`), so serving pods with
  `HF_HUB_OFFLINE=1` find the files by repo id and revision without any network call.
- Resumable: a file is written to `blobs/<hash>.incomplete` and a later run (a new pod after
  an eviction) continues it with a Range request. (huggingface_hub 2.x's own downloader drops a
  partial file with its process, so the download loop is ours; the metadata calls are the hub's.)
- Verified: every file against the tree listing the hub publishes (its size; the sha256 of LFS
  files; the git blob id of the others), blobs already in the cache included. A bad file is
  deleted and fetched once more; a second mismatch fails the run.
- A no-op when complete: a marker per resolved commit, written after verification (`--verify`
  re-checks every hash anyway).
- Progress: one JSON line at the start and every `--progress-interval` seconds
  (`{"event":"progress","source":...,"bytesDone":...,"bytesTotal":...,"bytesPerSecond":...}`);
  the operator reads the last one from the pod's log into the WeightsCached condition.
- The summary (commit, bytes, duration, and the facts a GPU-fit check needs: the model's
  config.json trimmed to scalars, the weight bytes by dtype from the safetensors headers) is
  printed as the last line and written to `--summary-file`, which the operator reads as the
  pod's termination message (kept under Kubernetes' 4096-byte limit).

s3://bucket/prefix sources are fetched by fetch_s3.py (same guarantees, files under --s3-dir).
Honours HF_ENDPOINT and HF_TOKEN like every huggingface_hub client, the AWS_* variables for S3.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import struct
import sys
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

MARKER_DIR = "modelplane-fetched"  # <cache>/<repo folder>/modelplane-fetched/<commit>.json
TERMINATION_MESSAGE_LIMIT = 4096  # bytes Kubernetes keeps of a container's termination message
CHUNK = 8 * 1024 * 1024
PARALLEL_FILES = 4  # weight shards downloaded at once


class FetchError(RuntimeError):
    """The weights could not be fetched or verified; the message says which file and why."""


@dataclass(frozen=True)
class Source:
    repo_id: str
    revision: str | None

    @classmethod
    def parse(cls, uri: str, revision: str | None = None) -> Source:
        match = re.fullmatch(r"hf://([^/\s@]+/[^\s@]+?)(?:@(\S+))?", uri)
        if not match:
            raise FetchError(f"unsupported source {uri!r}: expected hf://org/name[@revision]")
        return cls(match.group(1), revision or match.group(2))


@dataclass(frozen=True)
class RemoteFile:
    """One file of the tree listing: what the hub publishes about it."""

    path: str
    size: int
    blob_id: str  # git blob sha1
    sha256: str | None  # LFS files only

    @property
    def cache_blob(self) -> str:
        """The blob's name in the Hugging Face cache (sha256 for LFS files, else the git blob id)."""
        return self.sha256 or self.blob_id


_LOG_LOCK = threading.Lock()


def log(event: str, **fields: Any) -> None:
    """One JSON object per line on stdout: what a pod's log (and the operator) can read.

    One write per line under a lock: print() writes the text and the newline separately, so the
    download threads and the progress thread could otherwise glue two objects on one line."""
    line = {"time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "event": event, **fields}
    text = json.dumps(line, separators=(",", ":")) + "\n"
    with _LOG_LOCK:
        sys.stdout.write(text)
        sys.stdout.flush()


def file_digest(path: Path, remote: RemoteFile) -> str:
    """sha256 for LFS files, the git blob sha1 ("blob <size>\\0" + content) for the others."""
    digest = hashlib.sha256() if remote.sha256 else hashlib.sha1()
    if not remote.sha256:
        digest.update(f"blob {path.stat().st_size}\0".encode())
    with path.open("rb") as f:
        while chunk := f.read(CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def verify_file(path: Path, remote: RemoteFile) -> str | None:
    """None when the file matches the hub's size and hash, else what is wrong."""
    if not path.is_file():
        return "missing"
    size = path.stat().st_size
    if size != remote.size:
        return f"size {size} != published {remote.size}"
    expected = remote.sha256 or remote.blob_id
    actual = file_digest(path, remote)
    if actual != expected:
        kind = "sha256" if remote.sha256 else "git blob id"
        return f"{kind} {actual} != published {expected}"
    return None


def safetensors_bytes_by_dtype(paths: Iterable[Path]) -> dict[str, int]:
    """Tensor bytes per safetensors dtype, read from the files' JSON headers only."""
    totals: dict[str, int] = {}
    for path in paths:
        with path.open("rb") as f:
            (length,) = struct.unpack("<Q", f.read(8))
            header = json.loads(f.read(length))
        for name, tensor in header.items():
            if name == "__metadata__":
                continue
            start, end = tensor["data_offsets"]
            totals[tensor["dtype"]] = totals.get(tensor["dtype"], 0) + end - start
    return totals


def _scalars(config: dict[str, Any]) -> dict[str, Any]:
    return {
        k: v
        for k, v in config.items()
        if v is None or isinstance(v, (bool, int, float)) or (isinstance(v, str) and len(v) <= 64)
    }


def trimmed_config(config: dict[str, Any]) -> dict[str, Any]:
    """config.json without lists and long strings (label maps, module lists): what sizing needs."""
    trimmed = _scalars(config)
    for key in ("text_config", "quantization_config", "compression_config", "rope_scaling"):
        if isinstance(config.get(key), dict):
            trimmed[key] = _scalars(config[key])
    if isinstance(config.get("architectures"), list):
        trimmed["architectures"] = [str(a) for a in config["architectures"][:2]]
    return trimmed


def model_facts(snapshot: Path, files: list[RemoteFile]) -> dict[str, Any]:
    """What the GPU-fit check needs from the fetched checkpoint."""
    facts: dict[str, Any] = {
        "weightFileBytes": sum(
            f.size for f in files if f.path.endswith((".safetensors", ".bin", ".pt", ".gguf"))
        )
    }
    config_path = snapshot / "config.json"
    if config_path.is_file():
        facts["config"] = trimmed_config(json.loads(config_path.read_text()))
    tensors = [snapshot / f.path for f in files if f.path.endswith(".safetensors")]
    if tensors:
        facts["weightBytesByDtype"] = safetensors_bytes_by_dtype(tensors)
    return facts


def summary_text(summary: dict[str, Any]) -> str:
    """The summary as compact JSON within the termination message limit (config dropped if needed)."""
    text = json.dumps(summary, separators=(",", ":"))
    if len(text.encode()) > TERMINATION_MESSAGE_LIMIT and "model" in summary:
        model = {k: v for k, v in summary["model"].items() if k != "config"}
        text = json.dumps({**summary, "model": model}, separators=(",", ":"))
    return text


class ProgressReporter:
    """Logs bytes on disk / bytes total every `interval` seconds from a background thread.

    It measures the cache itself (finished blobs plus `*.incomplete` partial ones), so it is
    right whatever downloads the files, and a resumed run starts from the bytes already there.
    """

    def __init__(self, entries: list[tuple[Path, int]], interval: float, source: str = "") -> None:
        """`entries`: each file's final path and published size."""
        self.entries, self.interval, self.source = entries, interval, source
        self.total = sum(size for _, size in entries)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="fetch-progress", daemon=True)
        self.started = time.monotonic()
        self.initial = self.done()

    def done(self) -> int:
        done = 0
        for path, size in self.entries:
            for candidate in (path, path.with_name(path.name + ".incomplete")):
                try:
                    done += min(candidate.stat().st_size, size)
                    break
                except OSError:
                    continue
        return done

    def report(self) -> None:
        done = self.done()
        elapsed = max(time.monotonic() - self.started, 1e-9)
        log(
            "progress",
            source=self.source,
            bytesDone=done,
            bytesTotal=self.total,
            # Since this run started; never negative (a corrupt partial file is dropped).
            bytesPerSecond=max(0, int((done - self.initial) / elapsed)),
        )

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self.report()

    def __enter__(self) -> ProgressReporter:
        self.report()  # at once: the operator shows "0 B of N" rather than nothing
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join()


class SourceChanged(FetchError):
    """The source changed while its file was fetched: fetching again now would not help."""


def download_resumable(
    path: Path,
    size: int,
    name: str,
    open_stream: Callable[[dict[str, str]], AbstractContextManager[Any]],
    verify: Callable[[Path], str | None],
) -> None:
    """Download to `<path>.incomplete`, continuing it with a Range request; verify; rename.

    `open_stream(range_headers)` opens the GET (raising for an error status); the hub and S3
    sources differ only in that and in how a file is verified.
    """
    partial = path.with_name(path.name + ".incomplete")
    offset = partial.stat().st_size if partial.is_file() else 0
    if offset > size:  # not a prefix of this file: start over
        partial.unlink()
        offset = 0
    if offset < size:
        range_headers = {"Range": f"bytes={offset}-"} if offset else {}
        if offset:
            log("resume", file=name, offset=offset)
        with open_stream(range_headers) as response:
            resumed = response.status_code == 206
            if offset and not resumed:
                log("resume-refused", file=name, offset=offset)
            with partial.open("ab" if resumed else "wb") as out:
                for chunk in response.iter_bytes(CHUNK):
                    out.write(chunk)
    problem = verify(partial)
    if problem is not None:
        partial.unlink(missing_ok=True)
        raise FetchError(f"{name}: {problem}")
    partial.replace(path)


def fetch_verified(
    path: Path, name: str, verify: Callable[[Path], str | None], download: Callable[[], None]
) -> None:
    """A verified file at `path`: kept, or fetched; a failed verification is fetched once more."""
    if path.is_file() and (problem := verify(path)) is not None:
        log("corrupt", file=name, problem=problem, action="refetch")
        path.unlink()
    for attempt in (1, 2):
        if not path.is_file():
            try:
                download()
            except FetchError as error:
                if attempt == 2 or isinstance(error, SourceChanged):
                    raise FetchError(f"verification failed after a re-fetch: {error}") from None
                log("corrupt", file=name, problem=str(error), action="refetch")
                continue
        break


def download_blob(url: str, blob: Path, remote: RemoteFile, headers: dict[str, str]) -> None:
    """Download one hub file to `blob` (resumable, verified)."""
    from huggingface_hub.utils import get_session

    @contextmanager
    def open_stream(range_headers: dict[str, str]) -> Iterator[Any]:
        request_headers = {**headers, "Accept-Encoding": "identity", **range_headers}
        with get_session().stream(
            "GET", url, headers=request_headers, follow_redirects=True, timeout=60
        ) as response:
            response.raise_for_status()
            yield response

    download_resumable(
        blob, remote.size, remote.path, open_stream, lambda path: verify_file(path, remote)
    )


def place_file(
    storage: Path, repo_id: str, commit: str, remote: RemoteFile, headers: dict[str, str]
) -> None:
    """Make snapshots/<commit>/<path> point at a verified blob, fetching it (twice at most) if needed."""
    from filelock import FileLock
    from huggingface_hub import hf_hub_url

    blob = storage / "blobs" / remote.cache_blob
    link = storage / "snapshots" / commit / remote.path
    blob.parent.mkdir(parents=True, exist_ok=True)
    link.parent.mkdir(parents=True, exist_ok=True)
    url = hf_hub_url(repo_id, remote.path, revision=commit)
    # Two Jobs sharing a cache (two ModelDeployments of one model) never write one blob at once;
    # the lock file is where huggingface_hub keeps its own (<cache>/.locks/<repo>/<blob>.lock).
    lock = storage.parent / ".locks" / storage.name / f"{remote.cache_blob}.lock"
    lock.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(lock)):
        fetch_verified(
            blob,
            remote.path,
            lambda path: verify_file(path, remote),
            lambda: download_blob(url, blob, remote, headers),
        )
    if link.is_symlink() or link.exists():
        link.unlink()
    link.symlink_to(os.path.relpath(blob, link.parent))


def fetch(
    source: Source, cache_dir: Path, *, progress_interval: float = 10.0, verify: bool = False
) -> dict[str, Any]:
    """Download, verify and mark one revision in the Hugging Face cache layout; returns the summary.

    The cache layout is huggingface_hub's (blobs/, snapshots/<commit>/, refs/<revision>) so
    offline readers find it, but the download is ours: huggingface_hub 2.x discards a partial
    file when its process dies, and a Job's pod may be evicted halfway through 140 GB.
    """
    from huggingface_hub import HfApi
    from huggingface_hub.errors import HfHubHTTPError
    from huggingface_hub.file_download import repo_folder_name
    from huggingface_hub.hf_api import RepoFile
    from huggingface_hub.utils import build_hf_headers

    api = HfApi()
    started = time.monotonic()
    try:
        commit = api.repo_info(source.repo_id, revision=source.revision).sha
        assert commit is not None
        files = [
            RemoteFile(
                path=f.path,
                size=f.size,
                blob_id=f.blob_id,
                sha256=f.lfs.sha256 if f.lfs is not None else None,
            )
            for f in api.list_repo_tree(source.repo_id, revision=commit, recursive=True)
            if isinstance(f, RepoFile)
        ]
    except HfHubHTTPError as error:
        raise FetchError(f"{source.repo_id}: {error}") from error
    storage = cache_dir / repo_folder_name(repo_id=source.repo_id, repo_type="model")
    snapshot = storage / "snapshots" / commit
    marker = storage / MARKER_DIR / f"{commit}.json"
    base = {
        "source": f"hf://{source.repo_id}",
        "revision": source.revision or "main",
        "commit": commit,
        "files": len(files),
        "bytes": sum(f.size for f in files),
    }
    log("start", **base)
    complete = (
        not verify
        and marker.is_file()
        and all(
            (snapshot / f.path).is_file() and (snapshot / f.path).stat().st_size == f.size
            for f in files
        )
    )
    if not complete:
        headers = build_hf_headers()  # HF_TOKEN, user agent
        (storage / "blobs").mkdir(parents=True, exist_ok=True)
        blobs = [(storage / "blobs" / f.cache_blob, f.size) for f in files]
        with ProgressReporter(blobs, progress_interval, f"hf://{source.repo_id}") as progress:
            try:
                with ThreadPoolExecutor(max_workers=PARALLEL_FILES) as pool:
                    list(
                        pool.map(
                            lambda f: place_file(storage, source.repo_id, commit, f, headers), files
                        )
                    )
            except HfHubHTTPError as error:
                raise FetchError(f"{source.repo_id}@{commit}: {error}") from error
            progress.report()
        marker.parent.mkdir(parents=True, exist_ok=True)
        marker.write_text(json.dumps(base) + "\n")
    if source.revision != commit:  # offline readers resolve a branch or tag through refs/
        ref = storage / "refs" / (source.revision or "main")
        ref.parent.mkdir(parents=True, exist_ok=True)
        staging = ref.with_name(f".{ref.name}.tmp")
        staging.write_text(commit)
        staging.replace(ref)
    summary = {**base, "noop": complete, "seconds": round(time.monotonic() - started, 3)}
    log("complete", **summary)
    summary["model"] = model_facts(snapshot, files)
    return summary


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m modelplane.server.fetch",
        description="Download and verify a model into the Hugging Face cache (no-op when complete).",
    )
    parser.add_argument(
        "sources",
        nargs="+",
        metavar="source",
        help="hf://org/name[@revision] or s3://bucket/prefix: the model, then any LoRA adapters"
        " (fetched in order).",
    )
    parser.add_argument(
        "--revision", help="Branch, tag or commit of the first source (overrides @revision)."
    )
    parser.add_argument(
        "--cache-dir",
        type=Path,
        help="Hugging Face hub cache directory (default: $HF_HUB_CACHE, i.e. $HF_HOME/hub).",
    )
    parser.add_argument(
        "--s3-dir",
        type=Path,
        help="Where s3://bucket/prefix objects go: DIR/bucket/prefix/... (the --model path).",
    )
    parser.add_argument(
        "--summary-file",
        type=Path,
        help="Also write the summary JSON here (e.g. /dev/termination-log).",
    )
    parser.add_argument("--progress-interval", type=float, default=10.0, help="Seconds.")
    parser.add_argument(
        "--verify", action="store_true", help="Re-check every hash even when marked complete."
    )
    return parser.parse_intermixed_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    from huggingface_hub import constants

    cache_dir = args.cache_dir or Path(constants.HF_HUB_CACHE)
    try:
        summaries = []
        for index, uri in enumerate(args.sources):
            if uri.startswith("s3://"):
                from modelplane.server.fetch_s3 import S3Source, fetch_s3

                if args.s3_dir is None:
                    raise FetchError("s3:// sources need --s3-dir (where the objects go)")
                summaries.append(
                    fetch_s3(
                        S3Source.parse(uri),
                        args.s3_dir,
                        progress_interval=args.progress_interval,
                        verify=args.verify,
                    )
                )
                continue
            source = Source.parse(uri, args.revision if index == 0 else None)
            summaries.append(
                fetch(
                    source, cache_dir, progress_interval=args.progress_interval, verify=args.verify
                )
            )
        # The model's summary (its facts size the GPUs); adapters by source, commit and bytes.
        summary = summaries[0]
        if len(summaries) > 1:
            summary["adapters"] = [
                {k: a[k] for k in ("source", "commit", "bytes")} for a in summaries[1:]
            ]
    except Exception as error:  # a Job's last words: one line, and the termination message
        message = (
            str(error) if isinstance(error, FetchError) else f"{type(error).__name__}: {error}"
        )
        log("failed", error=message)
        if args.summary_file:
            args.summary_file.write_text(
                json.dumps({"error": message[: TERMINATION_MESSAGE_LIMIT - 32]})
            )
        return 1
    if args.summary_file:
        args.summary_file.write_text(summary_text(summary))
    print(summary_text(summary), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
