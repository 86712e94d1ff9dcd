"""`modelplane-operator` / `python -m modelplane.operator`: flags -> settings -> kopf.run."""

from __future__ import annotations

import argparse
import dataclasses
import logging
from collections.abc import Sequence

import kopf

from modelplane.operator import handlers, metrics
from modelplane.operator.kube import Kube
from modelplane.operator.settings import OperatorSettings


def build_parser() -> argparse.ArgumentParser:
    env = OperatorSettings.from_env()
    parser = argparse.ArgumentParser(
        prog="modelplane-operator",
        description="Reconcile ModelDeployments (modelplane.io/v1alpha1) into serving Deployments.",
    )
    scope = parser.add_mutually_exclusive_group()
    scope.add_argument(
        "-n",
        "--namespace",
        action="append",
        dest="namespaces",
        default=None,
        help="Namespace to watch (repeatable; globs like 'team-*' work). Env MODELPLANE_NAMESPACES=a,b.",
    )
    scope.add_argument(
        "-A",
        "--all-namespaces",
        action="store_true",
        default=env.all_namespaces,
        help="Watch the whole cluster (needs a ClusterRole).",
    )
    parser.add_argument(
        "--default-image",
        default=env.default_image,
        help="modelplane-server image for ModelDeployments without spec.image (env MODELPLANE_DEFAULT_IMAGE).",
    )
    parser.add_argument(
        "--resync-seconds",
        type=float,
        default=env.resync_seconds,
        help="Re-apply every ModelDeployment this often; 0 (default) relies on watch events only.",
    )
    parser.add_argument(
        "--liveness",
        default=OperatorSettings.liveness_endpoint,
        help="kopf liveness endpoint URL ('' disables), e.g. http://0.0.0.0:8080/healthz.",
    )
    parser.add_argument(
        "--metrics-port", type=int, default=env.metrics_port, help="Prometheus port (0 disables)."
    )
    parser.add_argument(
        "--peering",
        default=env.peering_name,
        help="kopf peering object name: with the KopfPeering CRD installed, only one replica acts.",
    )
    parser.add_argument(
        "--standalone", action="store_true", help="Ignore peering (a single replica only)."
    )
    parser.add_argument(
        "--max-workers", type=int, default=OperatorSettings.max_workers, help="Handler threads."
    )
    parser.add_argument("--log-format", choices=["json", "plain", "full"], default="json")
    parser.add_argument("-v", "--verbose", action="store_true", help="Debug logging.")
    return parser


def settings_from_args(argv: Sequence[str] | None = None) -> OperatorSettings:
    args = build_parser().parse_args(argv)
    env = OperatorSettings.from_env()
    namespaces = tuple(args.namespaces) if args.namespaces else env.namespaces
    all_namespaces = bool(args.all_namespaces) or not namespaces
    return dataclasses.replace(
        env,
        namespaces=() if all_namespaces else namespaces,
        all_namespaces=all_namespaces,
        default_image=args.default_image,
        resync_seconds=args.resync_seconds,
        liveness_endpoint=args.liveness or None,
        metrics_port=args.metrics_port,
        peering_name=args.peering,
        standalone=args.standalone,
        max_workers=args.max_workers,
        log_format=args.log_format,
        verbose=args.verbose,
    )


def main(argv: Sequence[str] | None = None) -> None:
    settings = settings_from_args(argv)
    log_format = {
        "json": kopf.LogFormat.JSON,
        "plain": kopf.LogFormat.PLAIN,
        "full": kopf.LogFormat.FULL,
    }[settings.log_format]
    kopf.configure(verbose=settings.verbose, log_format=log_format)
    logging.getLogger("modelplane").setLevel(logging.DEBUG if settings.verbose else logging.INFO)
    registry = kopf.OperatorRegistry()
    handlers.register(registry, settings, Kube(pool_size=settings.max_workers))
    metrics.serve(settings.metrics_port, settings.metrics_host)
    kopf.run(
        registry=registry,
        clusterwide=settings.all_namespaces,
        namespaces=settings.namespaces,
        liveness_endpoint=settings.liveness_endpoint,
        standalone=True if settings.standalone else None,
    )
