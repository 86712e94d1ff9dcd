"""Thin kopf handlers: parse the spec, plan the children, apply them through `kube`, set status.

`register()` binds them to a registry with the operator's settings (resync interval), so the
CLI builds one explicit registry instead of relying on import-time side effects.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Mapping
from typing import Any, cast

import kopf

from modelplane.operator import metrics, routed, workload
from modelplane.operator import spec as specmod
from modelplane.operator.engine_args import engine_flags
from modelplane.operator.fetch_progress import FetchProgressMonitor
from modelplane.operator.kube import Kube, KubeError, NotOwned, contains
from modelplane.operator.resources import RoutingPlan, plan_children
from modelplane.operator.resources import leaderworkerset as lws
from modelplane.operator.resources.meta import DEPLOYMENT_LABEL, MANAGED_BY, Owner, selector_string
from modelplane.operator.resources.servicemonitor import SERVICE_MONITOR_CRD
from modelplane.operator.routing import resolve_gateway
from modelplane.operator.settings import OperatorSettings
from modelplane.operator.status import (
    Phase,
    build_status,
    condition,
    failed_reconcile_status,
    now_rfc3339,
    status_changed,
)
from modelplane.operator.weights import sync_weights

log = logging.getLogger(__name__)

# Children whose deletion or edit triggers an immediate reconcile of their owner.
# Every kind the operator makes; kopf serves the optional ones (KEDA, prometheus-operator) once
# their CRDs exist in the cluster.
WATCHED_CHILDREN = (
    ("apps", "v1", "deployments"),
    ("", "v1", "services"),
    ("autoscaling", "v2", "horizontalpodautoscalers"),
    ("policy", "v1", "poddisruptionbudgets"),
    ("keda.sh", "v1alpha1", "scaledobjects"),
    ("monitoring.coreos.com", "v1", "servicemonitors"),
    ("", "v1", "persistentvolumeclaims"),
    # spec.routing: the pool, the route and the endpoint picker's config and identity.
    ("inference.networking.k8s.io", "v1", "inferencepools"),
    ("gateway.networking.k8s.io", "v1", "httproutes"),
    ("", "v1", "configmaps"),
    ("", "v1", "serviceaccounts"),
    ("rbac.authorization.k8s.io", "v1", "rolebindings"),
    ("leaderworkerset.x-k8s.io", "v1", "leaderworkersets"),
    ("batch", "v1", "jobs"),  # the fetch Job: its completion opens the rollout
)
# API errors are retried after ~1 s, doubling up to 5 minutes: most faults are brief (a restarting
# API server, a lost race), and a lasting one (a child name another controller owns, a missing
# RBAC rule) must not hammer the API server. +-20 % jitter spreads the retries of many objects
# that failed together.
RETRY_DELAY_SECONDS = 1
MAX_RETRY_DELAY_SECONDS = 300
RETRY_JITTER = 0.2
# How often a routed ModelDeployment looks again for the routing CRDs it is missing.
ROUTING_RETRY_SECONDS = 60


def retry_delay(retry: int, jitter: float | None = None) -> float:
    """Seconds before kopf retries a reconcile that failed `retry` times before.

    `jitter` in [-1, 1] scales the +-20 % spread (random when None); never above the cap.
    """
    spread = random.uniform(-1.0, 1.0) if jitter is None else jitter
    base = min(RETRY_DELAY_SECONDS * 2 ** min(retry, 10), MAX_RETRY_DELAY_SECONDS)
    return float(min(base * (1 + RETRY_JITTER * spread), MAX_RETRY_DELAY_SECONDS))


def validated_spec(
    body: Mapping[str, Any], settings: OperatorSettings | None = None
) -> specmod.ModelDeploymentSpec:
    """The typed spec, or SpecError naming the field (metadata.name included: it names the Service).

    With `settings`, also what only the operator knows: a gateway for `spec.routing`.
    """
    name = body["metadata"]["name"]
    if not specmod.is_dns_label(name) or not name[0].isalpha():
        raise specmod.SpecError("metadata.name", "must be a DNS-1035 label (it names the Service)")
    spec = specmod.parse_spec(dict(body.get("spec") or {}))
    if settings is not None:
        resolve_gateway(spec, settings.routing, body["metadata"].get("namespace", ""))
    return spec


def reconcile(
    kube: Kube,
    settings: OperatorSettings,
    fetch_monitor: FetchProgressMonitor,
    body: Mapping[str, Any],
    trigger: str,
    retry: int = 0,
) -> dict[str, Any]:
    """Bring one ModelDeployment's children to its spec and write its status; returns the status.

    API errors (in either path) become a kopf.TemporaryError retried with backoff, no stack
    trace; the first failure of a series is also a Warning Event on the ModelDeployment.
    """
    with metrics.DURATION.labels(trigger).time():
        try:
            status, result = _reconcile(
                kube, settings, fetch_monitor, body, prune=trigger != "create"
            )
            if result == "blocked":  # the LeaderWorkerSet API is missing: check again later
                metrics.RECONCILES.labels(trigger, result).inc()
                raise kopf.TemporaryError(
                    "the LeaderWorkerSet API is not installed", delay=retry_delay(retry)
                )
        except KubeError as error:
            metrics.ERRORS.labels(trigger).inc()
            metrics.RECONCILES.labels(trigger, "error").inc()
            report_failure(kube, body, error)
            raise kopf.TemporaryError(error.summary(), delay=retry_delay(retry)) from error
    metrics.RECONCILES.labels(trigger, result).inc()
    if result == "routing-pending":
        # Serving, but not routed: the Gateway API or InferencePool CRD is not installed yet.
        # Retried (not an error): the route appears once they are.
        message = next(c["message"] for c in status["conditions"] if c["type"] == "Routed")
        if retry == 0:
            kopf.warn(cast(kopf.Body, body), reason="RoutingUnavailable", message=message)
        raise kopf.TemporaryError(message, delay=ROUTING_RETRY_SECONDS)
    return status


def report_failure(kube: Kube, body: Mapping[str, Any], error: KubeError) -> None:
    """Say in the status why the children could not be applied; one Warning Event per cause.

    A child name held by an object this ModelDeployment does not control is `ChildConflict`
    (Ready=False too, naming the object); any other API error is `ApiError`. Best effort: the
    status write may fail for the same reason the reconcile did.
    """
    conflict = isinstance(error, NotOwned)
    reason, message = ("ChildConflict" if conflict else "ApiError"), error.summary()
    previous = dict(body.get("status") or {})
    reported = any(
        c.get("type") == "Reconciled" and c.get("reason") == reason and c.get("message") == message
        for c in previous.get("conditions") or []
    )
    if reported:
        return
    kopf.warn(
        cast(kopf.Body, body),
        reason=reason if conflict else "ReconcileFailed",
        message=message,
    )
    status = failed_reconcile_status(
        previous,
        reason=reason,
        message=message,
        generation=body["metadata"].get("generation"),
        not_ready=conflict,
    )
    meta = body["metadata"]
    try:
        kube.patch_status(meta["namespace"], meta["name"], status)
    except KubeError as write_error:
        log.warning(
            "Could not write the status of %s/%s: %s",
            meta["namespace"],
            meta["name"],
            write_error.summary(),
        )


def _reconcile(
    kube: Kube,
    settings: OperatorSettings,
    fetch_monitor: FetchProgressMonitor,
    body: Mapping[str, Any],
    *,
    prune: bool,
) -> tuple[dict[str, Any], str]:
    """(status, result): apply the planned children, or reject an invalid spec untouched."""
    owner = Owner.from_body(body)
    generation = body["metadata"].get("generation")
    try:
        spec = validated_spec(body, settings)
    except specmod.SpecError as error:
        return _reject(kube, settings, body, owner, generation, error), "invalid"
    if spec.multi_node and not kube.crd_exists(lws.CRD_NAME):
        return _lws_missing(kube, body, owner, generation, spec), "blocked"
    monitor = spec.monitoring.service_monitor.enabled and kube.crd_exists(SERVICE_MONITOR_CRD)
    crds_missing = routed.missing_crds(kube) if spec.routing is not None else []
    prune_routing = prune and spec.routing is None and routed.routing_children_exist(kube, owner)
    plan = plan_children(
        owner,
        spec,
        default_image=settings.default_image,
        service_monitor_available=monitor,
        routing=RoutingPlan(settings.routing, not crds_missing, prune_routing),
    )
    for manifest in plan.create:  # first: the pod mounts the cache claim
        kube.create(manifest)
    # The fetch Job fills the cache first; the Deployment waits for it (and for a GPU fit).
    weights = sync_weights(
        kube, owner, spec, default_image=settings.default_image, monitor=fetch_monitor
    )
    deployment: dict[str, Any] | None = None
    for manifest in plan.apply:
        serving = (
            manifest["kind"] in workload.WORKLOAD_KINDS
            and manifest["metadata"]["name"] == owner.name
        )
        if serving and not weights.rollout_allowed:
            # Held: a workload serving the previous spec keeps serving it meanwhile.
            deployment = kube.get(
                manifest["apiVersion"], manifest["kind"], owner.namespace, owner.name
            )
            continue
        live = kube.apply(manifest)
        if serving:
            deployment = live
    if prune:  # a new ModelDeployment has no stale children to remove
        for ref in plan.delete:
            if ref.kind in workload.WORKLOAD_KINDS and not weights.rollout_allowed:
                continue  # the other workload keeps serving until the held one may roll out
            kube.delete(ref, owner.namespace, owner_uid=owner.uid)
    status = sync_status(
        kube,
        settings,
        body,
        deployment,
        observed_generation=generation,
        weights=weights.conditions,
        hold=weights.hold_reason,
        engine=engine_flags(spec, owner.name),
    )
    return status, "routing-pending" if crds_missing else "applied"


def _reject(
    kube: Kube,
    settings: OperatorSettings,
    body: Mapping[str, Any],
    owner: Owner,
    generation: int | None,
    error: specmod.SpecError,
) -> dict[str, Any]:
    """Invalid spec: no child changes; SpecValid=False naming the field and one Warning Event."""
    already_reported = any(
        c.get("type") == "SpecValid"
        and c.get("status") == "False"
        and c.get("message") == str(error)
        for c in (body.get("status") or {}).get("conditions") or []
    )
    _kind, deployment = workload.live_workload(kube, owner.namespace, owner.name, None)
    status = sync_status(kube, settings, body, deployment, observed_generation=generation)
    if not already_reported:
        kopf.warn(cast(kopf.Body, body), reason="InvalidSpec", message=str(error))
    return status


def _lws_missing(
    kube: Kube,
    body: Mapping[str, Any],
    owner: Owner,
    generation: int | None,
    spec: specmod.ModelDeploymentSpec,
) -> dict[str, Any]:
    """nodes > 1 without the LWS API: no child changes (a Deployment keeps serving); Ready=False
    saying what to install, one Warning Event."""
    message = workload.lws_missing_message(spec)
    previous = dict(body.get("status") or {})
    old_conditions = list(previous.get("conditions") or [])
    already_reported = any(
        c.get("type") == "Ready" and c.get("reason") == workload.LWS_MISSING_REASON
        for c in old_conditions
    )
    kind, serving = workload.live_workload(kube, owner.namespace, owner.name, None)
    status = build_status(
        name=owner.name,
        namespace=owner.namespace,
        served_model_name=specmod.served_model_name(spec, owner.name),
        selector=selector_string(owner),
        deployment=serving,
        spec_error=None,
        observed_generation=generation,
        previous=previous,
        workload_kind=kind,
    )
    status["conditions"][0] = condition(
        old_conditions,
        "Ready",
        False,
        workload.LWS_MISSING_REASON,
        message,
        generation,
        now_rfc3339(),
    )
    status["phase"] = Phase.failed.value
    if status_changed(previous, status):
        kube.patch_status(owner.namespace, owner.name, status)
    if not already_reported:
        kopf.warn(cast(kopf.Body, body), reason=workload.LWS_MISSING_REASON, message=message)
    return status


def sync_status(
    kube: Kube,
    settings: OperatorSettings,
    owner_body: Mapping[str, Any],
    deployment: Mapping[str, Any] | None,
    observed_generation: int | None = None,
    weights: list[tuple[str, str, str, str]] | None = None,
    hold: tuple[str, str] | None = None,
    engine: list[str] | None = None,
) -> dict[str, Any]:
    """Write the status computed from the owner and its Deployment, optimistically.

    The write carries the owner's resourceVersion, so a stale view (a reconcile racing a
    Deployment event) never overwrites a newer one: on a conflict both are read again.
    """
    status: dict[str, Any] = {}
    for _attempt in range(5):
        owner = Owner.from_body(owner_body)
        previous = dict(owner_body.get("status") or {})
        spec: specmod.ModelDeploymentSpec | None
        try:
            spec = validated_spec(owner_body, settings)
            error, served = None, specmod.served_model_name(spec, owner.name)
        except specmod.SpecError as exc:
            spec, error, served = None, str(exc), None
        generation = observed_generation or previous.get("observedGeneration")
        kind = (deployment or {}).get("kind") or (
            workload.workload_kind(spec) if spec else "Deployment"
        )
        status = build_status(
            name=owner.name,
            namespace=owner.namespace,
            served_model_name=served,
            selector=selector_string(owner),
            deployment=None if deployment is None else dict(deployment),
            spec_error=error,
            observed_generation=generation,
            previous=previous,
            workload_kind=kind,
            weights=weights,
            hold=hold,
            engine=engine,
        )
        routed_now, gateway = routed.routing_status(
            kube, owner, spec, settings.routing, previous, generation, now_rfc3339()
        )
        if routed_now is not None:
            status["conditions"].append(routed_now)
        status["gatewayEndpoint"] = gateway  # None removes it (merge patch)
        if not status_changed(previous, status):
            return status
        version = owner_body["metadata"].get("resourceVersion")
        if kube.patch_status(owner.namespace, owner.name, status, resource_version=version):
            return status
        fresh = kube.get(specmod.API_VERSION, specmod.KIND, owner.namespace, owner.name)
        if fresh is None:
            return status
        owner_body = fresh
        try:
            fresh_spec: specmod.ModelDeploymentSpec | None = validated_spec(fresh, settings)
        except specmod.SpecError:
            fresh_spec = None
        _kind, deployment = workload.live_workload(kube, owner.namespace, owner.name, fresh_spec)
    return status


def on_child_event(
    kube: Kube,
    settings: OperatorSettings,
    fetch_monitor: FetchProgressMonitor,
    event: Mapping[str, Any],
    body: Mapping[str, Any],
) -> None:
    """A child changed: restore it when deleted or edited by hand; the Deployment drives status."""
    meta = body.get("metadata") or {}
    owner_name = (meta.get("labels") or {}).get(DEPLOYMENT_LABEL)
    namespace = meta.get("namespace")
    if not owner_name or not namespace:
        return
    owner_body = kube.get(specmod.API_VERSION, specmod.KIND, namespace, owner_name)
    if owner_body is None or owner_body["metadata"].get("deletionTimestamp"):
        return  # the owner is gone: garbage collection takes the children
    try:
        spec = validated_spec(owner_body, settings)
    except specmod.SpecError:
        return  # an invalid spec changes no children
    if body.get("kind") == "Job":  # the fetch Job progressed: re-plan (it gates the Deployment)
        reconcile(kube, settings, fetch_monitor, owner_body, trigger="fetch")
        return
    owner = Owner.from_body(owner_body)
    # An event for a ServiceMonitor (an InferencePool, an HTTPRoute) means its CRD exists.
    plan = plan_children(
        owner,
        spec,
        default_image=settings.default_image,
        service_monitor_available=True,
        routing=RoutingPlan(settings.routing),
    )

    def planned(manifests: list[dict[str, Any]]) -> dict[str, Any] | None:
        return next(
            (
                m
                for m in manifests
                if m["kind"] == body.get("kind") and m["metadata"]["name"] == meta.get("name")
            ),
            None,
        )

    create_only = planned(plan.create)  # the cache PVC: recreated when deleted, never patched
    if create_only is not None:
        if event.get("type") == "DELETED":
            log.info(
                "%s %s/%s was deleted: recreating it", body.get("kind"), namespace, meta.get("name")
            )
            kube.create(create_only)
            metrics.RECONCILES.labels("drift", "applied").inc()
        return
    desired = planned(plan.apply)
    if desired is None:
        return
    live: Mapping[str, Any] = body
    if event.get("type") == "DELETED":
        log.info(
            "%s %s/%s was deleted: restoring it", body.get("kind"), namespace, meta.get("name")
        )
        live = kube.apply(desired)
        metrics.RECONCILES.labels("drift", "applied").inc()
    elif not contains(body, desired):
        log.info(
            "%s %s/%s drifted from its spec: patching it",
            body.get("kind"),
            namespace,
            meta.get("name"),
        )
        live = kube.apply(desired)
        metrics.RECONCILES.labels("drift", "applied").inc()
    if body.get("kind") in workload.WORKLOAD_KINDS and meta.get("name") == owner.name:
        sync_status(kube, settings, owner_body, live)
    elif body.get("kind") in ("Deployment", "InferencePool"):  # the picker's, or the pool: Routed
        _kind, server = workload.live_workload(kube, namespace, owner.name, spec)
        sync_status(kube, settings, owner_body, server)


def refresh_fetch_status(
    kube: Kube,
    settings: OperatorSettings,
    fetch_monitor: FetchProgressMonitor,
    namespace: str,
    name: str,
) -> bool:
    """While the fetch Job runs: WeightsCached with its latest progress (written only if changed).

    Returns False once it no longer runs; the Job's own event then reconciles (the rollout).
    """
    body = kube.get(specmod.API_VERSION, specmod.KIND, namespace, name)
    if body is None or body["metadata"].get("deletionTimestamp"):
        return False
    try:
        spec = validated_spec(body, settings)
    except specmod.SpecError:
        return False
    weights = sync_weights(
        kube,
        Owner.from_body(body),
        spec,
        default_image=settings.default_image,
        monitor=fetch_monitor,
    )
    if not weights.fetching:
        return False
    _kind, live = workload.live_workload(kube, namespace, name, spec)
    sync_status(kube, settings, body, live, weights=weights.conditions, hold=weights.hold_reason)
    return True


def register(
    registry: kopf.OperatorRegistry,
    settings: OperatorSettings,
    kube: Kube,
    fetch_monitor: FetchProgressMonitor,
) -> None:
    """Bind the handlers to `registry` with these settings; `fetch_monitor` follows fetch Jobs."""
    md = (specmod.API_VERSION, specmod.PLURAL)

    @kopf.on.login(registry=registry, id="login")
    def login(**kwargs: Any) -> kopf.ConnectionInfo | None:
        # An explicit registry has no default login handlers: in-cluster first, then kubeconfig.
        return kopf.login_with_service_account(**kwargs) or kopf.login_with_kubeconfig(**kwargs)

    @kopf.on.startup(registry=registry, id="configure")
    def configure(settings: kopf.OperatorSettings, **_: Any) -> None:
        # Progress and diff-base in our own annotations: the status stays ours alone
        # (the CRD's structural schema would prune kopf's status fields anyway).
        settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(
            prefix=specmod.GROUP
        )
        settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(
            prefix=specmod.GROUP, key="last-handled-configuration"
        )
        settings.persistence.finalizer = f"{specmod.GROUP}/finalizer"
        # Events are posted explicitly (kopf.warn: InvalidSpec, ReconcileFailed); log lines are
        # not (posting.loggers stays off), so a retried failure is one Event, not one per retry.
        settings.posting.level = logging.WARNING
        # No kopf peering: replicas elect a leader on a Lease before kopf starts (leader.py).
        settings.peering.standalone = True
        # Watch streams are re-opened every 10 minutes so a silently dropped connection heals.
        settings.watching.server_timeout = 600
        # kopf waits this long for more events of one object before handling them (default 0.1 s);
        # a ModelDeployment rarely gets bursts, and this is pure latency before its Deployment.
        settings.batching.batch_window = 0.02

    operator_settings = settings

    @kopf.on.resume(*md, registry=registry, id="reconcile")
    @kopf.on.create(*md, registry=registry, id="reconcile")
    @kopf.on.update(*md, registry=registry, id="reconcile")
    def apply_model_deployment(body: kopf.Body, reason: str, retry: int, **_: Any) -> None:
        # kopf passes a str-based Reason enum: its value is "create", "update" or "resume".
        trigger = str(getattr(reason, "value", reason))
        reconcile(kube, operator_settings, fetch_monitor, body, trigger=trigger, retry=retry)

    if settings.resync_seconds > 0:
        # Optional periodic re-apply of every child: a safety net behind the watch events.
        # kopf timers put a finalizer on every ModelDeployment, hence off by default.
        @kopf.timer(
            *md,
            interval=settings.resync_seconds,
            initial_delay=settings.resync_seconds,
            registry=registry,
            id="resync",
        )
        def resync_model_deployment(body: kopf.Body, **_: Any) -> None:
            reconcile(kube, operator_settings, fetch_monitor, body, trigger="resync")

    # The fetch Job's progress: refreshed in WeightsCached every fetch_monitor.interval while it
    # runs (fetch_progress.py says why a loop of our own rather than a kopf timer).
    @kopf.on.startup(registry=registry, id="fetch-progress")
    async def start_fetch_progress(**_: Any) -> None:
        fetch_monitor.start(
            lambda namespace, name: refresh_fetch_status(
                kube, operator_settings, fetch_monitor, namespace, name
            )
        )

    @kopf.on.cleanup(registry=registry, id="fetch-progress")
    async def stop_fetch_progress(**_: Any) -> None:
        await fetch_monitor.stop()

    for group, version, plural in WATCHED_CHILDREN:
        selector = (f"{group}/{version}", plural) if group else (version, plural)

        @kopf.on.event(
            *selector,
            labels={"app.kubernetes.io/managed-by": MANAGED_BY},
            registry=registry,
            id=f"child-{plural}",
        )
        def child_changed(event: kopf.RawEvent, body: kopf.Body, **_: Any) -> None:
            on_child_event(kube, operator_settings, fetch_monitor, event, body)
