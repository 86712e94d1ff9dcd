"""Which weights a ModelDeployment pre-fetches into its cache (read by the Job and pod builders)."""

from __future__ import annotations

import hashlib

from modelplane.operator.spec import ModelDeploymentSpec

FETCHED_SCHEMES = ("hf", "s3")
S3_CACHE_DIR = "/cache/s3"  # the fetch Job's --s3-dir: <bucket>/<prefix>/... under it


def fetch_sources(spec: ModelDeploymentSpec) -> list[str]:
    """URIs the fetch Job downloads: the model (hf:// with @revision, or s3://) and hf://
    adapters."""
    sources = []
    if spec.uri_scheme == "hf":
        revision = f"@{spec.model.revision}" if spec.model.revision else ""
        sources.append(f"{spec.model.uri}{revision}")
    elif spec.uri_scheme == "s3":
        sources.append(spec.model.uri)
    sources += [a.uri for a in spec.adapters if a.uri.startswith("hf://")]
    return sources


def needs_fetch(spec: ModelDeploymentSpec) -> bool:
    """A cache volume is configured and the model comes from the Hugging Face Hub or S3.

    Without a cache, s3:// models are streamed by vLLM's Run:ai streamer straight from the
    bucket; pvc:// and file:// models are already local.
    """
    has_cache = bool(spec.cache.persistent_volume_claim or spec.cache.size)
    return has_cache and spec.uri_scheme in FETCHED_SCHEMES


def s3_cache_path(spec: ModelDeploymentSpec) -> str:
    """Where the fetch Job puts an s3://bucket/prefix model: the serving pods' --model."""
    return f"{S3_CACHE_DIR}/{spec.uri_path.strip('/')}"


def source_hash(spec: ModelDeploymentSpec) -> str:
    """Changes when what must be in the cache changes: a new model, revision or adapter."""
    return hashlib.sha256("\n".join(fetch_sources(spec)).encode()).hexdigest()[:16]
