"""`modelplane-operator` / `python -m modelplane.operator`: flags -> settings -> kopf.

With leader election (the default) kopf starts only once this process holds the Lease.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import logging
import os
import sys
from collections.abc import Sequence

import kopf
from pydantic import ValidationError

from modelplane.operator import handlers, leader, metrics, rate_limit
from modelplane.operator.election import (
    ElectionConfig,
    LeaderElector,
    current_config_namespace,
    default_identity,
    election_namespace,
    timing_error,
)
from modelplane.operator.fetch_progress import FetchProgressMonitor
from modelplane.operator.handler_pool import HandlerPool
from modelplane.operator.kube import Kube
from modelplane.operator.lease import LeaseClient
from modelplane.operator.models_endpoint import ModelsEndpoint
from modelplane.operator.routing import RoutingDefaults, parse_gateway
from modelplane.operator.settings import OperatorSettings, seconds
from modelplane.operator.spec import GatewayRef

log = logging.getLogger(__name__)


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
    routing = parser.add_argument_group(
        "routing",
        "spec.routing: one OpenAI endpoint per Gateway (Gateway API Inference Extension).",
    )
    routing.add_argument(
        "--default-gateway",
        type=gateway_flag,
        default=env.routing.gateway,
        metavar="NAMESPACE/NAME",
        help="Gateway for ModelDeployments whose spec.routing names none "
        "(env MODELPLANE_DEFAULT_GATEWAY).",
    )
    routing.add_argument(
        "--endpoint-picker-image",
        default=env.routing.endpoint_picker_image,
        help="Endpoint picker (llm-d router EPP) image, pinned (default %(default)s; env "
        "MODELPLANE_ENDPOINT_PICKER_IMAGE).",
    )
    routing.add_argument(
        "--endpoint-picker-role",
        default=env.routing.endpoint_picker_role,
        help="ClusterRole bound to each endpoint picker in its namespace; the operator needs "
        "`bind` on it, and on NAME-leader-election for pickers with several replicas (default "
        "%(default)s; env MODELPLANE_ENDPOINT_PICKER_ROLE).",
    )
    routing.add_argument(
        "--models-port",
        type=int,
        default=0,
        help="Serve GET /v1/models of every Ready, routed model on the --default-gateway on this "
        "port (0: off), for the Gateway to route model-less GET /v1/models to.",
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
    election = parser.add_argument_group(
        "leader election", "Only the holder of a coordination.k8s.io/v1 Lease reconciles."
    )
    election.add_argument(
        "--leader-elect",
        action=argparse.BooleanOptionalAction,
        default=env.leader_elect,
        help="Elect a leader among replicas (default on; env MODELPLANE_LEADER_ELECT). "
        "--no-leader-elect for a single local process.",
    )
    election.add_argument(
        "--standalone",
        dest="leader_elect",
        action="store_false",
        help="Deprecated alias of --no-leader-elect.",
    )
    election.add_argument(
        "--leader-election-namespace",
        default=env.leader_election_namespace,
        help="Namespace of the Lease (default: $POD_NAMESPACE, else the first --namespace, "
        "else the kubeconfig's namespace or 'default').",
    )
    election.add_argument(
        "--leader-election-id",
        default=env.leader_election_id,
        help="Name of the Lease; replicas sharing it elect one leader (default %(default)s).",
    )
    election.add_argument(
        "--leader-elect-lease-duration",
        type=seconds,
        default=env.lease_duration,
        metavar="SECONDS",
        help="How long standbys wait after the last renewal before taking over (default 15s).",
    )
    election.add_argument(
        "--leader-elect-renew-deadline",
        type=seconds,
        default=env.renew_deadline,
        metavar="SECONDS",
        help="The leader exits when it could not renew for this long (default 10s).",
    )
    election.add_argument(
        "--leader-elect-retry-period",
        type=seconds,
        default=env.retry_period,
        metavar="SECONDS",
        help="Interval of renewals and of acquisition attempts (default 2s).",
    )
    parser.add_argument(
        "--fetch-progress-interval",
        type=seconds,
        default=env.fetch_progress_seconds,
        metavar="SECONDS",
        help="How often a running fetch Job's progress is read into WeightsCached (default 10s;"
        " env MODELPLANE_FETCH_PROGRESS_INTERVAL).",
    )
    parser.add_argument(
        "--max-workers",
        type=int,
        default=env.max_workers,
        help="Most handler threads at once: one per ModelDeployment (or child) being handled; "
        "idle ones exit (default 256).",
    )
    parser.add_argument(
        "--kube-api-qps",
        type=float,
        default=env.kube_api_qps,
        help="Average Kubernetes API requests a second of the handlers (client-go's QPS; "
        "0 = no limit; default 50; env MODELPLANE_KUBE_API_QPS).",
    )
    parser.add_argument(
        "--kube-api-burst",
        type=int,
        default=env.kube_api_burst,
        help="Requests the handlers may send at once above --kube-api-qps (client-go's burst; "
        "default 100; env MODELPLANE_KUBE_API_BURST).",
    )
    parser.add_argument("--log-format", choices=["json", "plain", "full"], default="json")
    parser.add_argument("-v", "--verbose", action="store_true", help="Debug logging.")
    return parser


def gateway_flag(text: str) -> GatewayRef:
    """argparse type of --default-gateway: a clear usage error instead of a trace."""
    try:
        return parse_gateway(text)
    except (ValueError, ValidationError) as exc:
        raise argparse.ArgumentTypeError(f"expected NAMESPACE/NAME of a Gateway: {exc}") from None


def settings_from_args(argv: Sequence[str] | None = None) -> OperatorSettings:
    parser = build_parser()
    args = parser.parse_args(argv)
    timings = (
        args.leader_elect_lease_duration,
        args.leader_elect_renew_deadline,
        args.leader_elect_retry_period,
    )
    problem = timing_error(*timings)
    if args.leader_elect and problem:
        parser.error(f"leader election: {problem}")
    if args.models_port and args.default_gateway is None:
        parser.error("--models-port needs --default-gateway: it lists the models on that Gateway")
    if args.kube_api_qps > 0 and args.kube_api_burst < 1:
        parser.error("--kube-api-burst must be at least 1 when --kube-api-qps is set")
    env = OperatorSettings.from_env()
    namespaces = tuple(args.namespaces) if args.namespaces else env.namespaces
    all_namespaces = bool(args.all_namespaces) or not namespaces
    return dataclasses.replace(
        env,
        namespaces=() if all_namespaces else namespaces,
        all_namespaces=all_namespaces,
        default_image=args.default_image,
        resync_seconds=args.resync_seconds,
        fetch_progress_seconds=max(args.fetch_progress_interval, 0.5),
        liveness_endpoint=args.liveness or None,
        metrics_port=args.metrics_port,
        leader_elect=args.leader_elect,
        leader_election_namespace=args.leader_election_namespace or None,
        leader_election_id=args.leader_election_id,
        lease_duration=args.leader_elect_lease_duration,
        renew_deadline=args.leader_elect_renew_deadline,
        retry_period=args.leader_elect_retry_period,
        max_workers=args.max_workers,
        kube_api_qps=args.kube_api_qps,
        kube_api_burst=args.kube_api_burst,
        routing=RoutingDefaults(
            gateway=args.default_gateway,
            endpoint_picker_image=args.endpoint_picker_image,
            endpoint_picker_role=args.endpoint_picker_role,
        ),
        models_port=args.models_port,
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
    if "--standalone" in (sys.argv[1:] if argv is None else argv):
        log.warning("--standalone is deprecated: use --no-leader-elect")
    registry = kopf.OperatorRegistry()
    # One bucket for every handler thread; the Lease client below has none.
    limit = rate_limit.bucket(settings.kube_api_qps, settings.kube_api_burst)
    kube = Kube(pool_size=settings.max_workers, rate_limit=limit)
    # One per operator: what the fetch Jobs' pods last reported, refreshed every interval.
    monitor = FetchProgressMonitor(interval=settings.fetch_progress_seconds)
    handlers.register(registry, settings, kube, monitor)
    metrics.serve(settings.metrics_port, settings.metrics_host)
    if settings.models_port:
        ModelsEndpoint(
            Kube(pool_size=4), settings.routing, settings.namespaces, settings.models_port
        ).start()
    if not settings.leader_elect:
        asyncio.run(run_operator(registry, settings))
        return
    config = election_config(settings)
    # Its own connection: a renewal never queues behind the handlers' API calls.
    client = LeaseClient(Kube(pool_size=1, retries=0), config.namespace, config.name)
    leader.run_as_leader(
        LeaderElector(client, config),
        lambda stop_flag, ready_flag: run_operator(registry, settings, stop_flag, ready_flag),
        settings.liveness_endpoint,
    )


def election_config(settings: OperatorSettings) -> ElectionConfig:
    """The Lease this process competes for, under a fresh identity."""
    return ElectionConfig(
        namespace=election_namespace(
            settings.leader_election_namespace,
            os.environ.get("POD_NAMESPACE"),
            settings.namespaces,
            current_config_namespace(),
        ),
        name=settings.leader_election_id,
        identity=default_identity(),
        lease_duration=settings.lease_duration,
        renew_deadline=settings.renew_deadline,
        retry_period=settings.retry_period,
    )


async def run_operator(
    registry: kopf.OperatorRegistry,
    settings: OperatorSettings,
    stop_flag: asyncio.Event | None = None,
    ready_flag: asyncio.Event | None = None,
) -> None:
    """kopf itself, standalone: leader election (if any) happened before it started.

    Returns once the handlers still running in kopf's thread pool have finished too, so a
    leader releases its Lease only when nothing of it is still acting.
    """
    kopf_settings = kopf.OperatorSettings()
    # A thread per handler in flight (kopf runs one per object at a time), not a fixed pool: an
    # object whose API calls hang holds only its own thread (handler_pool.py).
    kopf_settings.execution.executor = HandlerPool(settings.max_workers)
    with contextlib.suppress(asyncio.CancelledError):  # as kopf.run: cancelled = stopped
        await kopf.operator(
            registry=registry,
            settings=kopf_settings,
            clusterwide=settings.all_namespaces,
            namespaces=settings.namespaces,
            liveness_endpoint=settings.liveness_endpoint,
            standalone=True,
            stop_flag=stop_flag,
            ready_flag=ready_flag,
        )
    await asyncio.to_thread(kopf_settings.execution.executor.shutdown, wait=True)
