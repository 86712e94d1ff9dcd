"""Leader election on a coordination.k8s.io/v1 Lease, with client-go's semantics.

Only the holder of the Lease runs kopf; the others stand by (serving liveness) and take over
when it is released or expires. The holder renews it every `retry_period`; when a renewal has
not succeeded for `renew_deadline` (or another holder shows up) the process exits non-zero at
once (crash-only, like controller-runtime) and Kubernetes restarts it as a standby. Every write
carries the `resourceVersion` it was based on, so of two candidates racing for one Lease the
API server lets exactly one win (409 Conflict for the other).
"""

from __future__ import annotations

import asyncio
import dataclasses
import datetime
import enum
import http.server
import logging
import os
import signal
import socket
import sys
import threading
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from typing import Any
from urllib.parse import urlsplit

import kubernetes

from modelplane.operator.lease import (
    LeaseClient,
    LeaseError,
    holder,
    is_expired,
    new_lease,
    observed_record,
    release_patch,
    renew_patch,
    takeover_patch,
)
from modelplane.operator.metrics import LEADER

log = logging.getLogger(__name__)
# The operator proper (kopf), given its stop flag and a flag it raises once it runs.
Operator = Callable[[asyncio.Event, asyncio.Event], Awaitable[None]]

DEFAULT_LEASE_NAME = "modelplane-operator"
# client-go's defaults (and kube-controller-manager's --leader-elect-* flags).
DEFAULT_LEASE_DURATION = 15.0
DEFAULT_RENEW_DEADLINE = 10.0
DEFAULT_RETRY_PERIOD = 2.0
# client-go's JitterFactor: the renew deadline must leave room for more than one retry.
RETRY_FACTOR = 1.2


@dataclasses.dataclass(frozen=True)
class ElectionConfig:
    namespace: str
    name: str
    identity: str
    lease_duration: float = DEFAULT_LEASE_DURATION
    renew_deadline: float = DEFAULT_RENEW_DEADLINE
    retry_period: float = DEFAULT_RETRY_PERIOD


def timing_error(lease_duration: float, renew_deadline: float, retry_period: float) -> str | None:
    """Why these timings are unsafe (client-go's NewLeaderElector checks), or None."""
    if min(lease_duration, renew_deadline, retry_period) <= 0:
        return "lease duration, renew deadline and retry period must be positive"
    if lease_duration <= renew_deadline:
        return "the lease duration must be greater than the renew deadline"
    if renew_deadline <= RETRY_FACTOR * retry_period:
        return f"the renew deadline must be greater than {RETRY_FACTOR} x the retry period"
    return None


def default_identity() -> str:
    """The pod name (downward API) or hostname, plus a random suffix: unique per process."""
    base = os.environ.get("POD_NAME") or socket.gethostname()
    return f"{base}_{uuid.uuid4().hex[:8]}"


def election_namespace(
    explicit: str | None,
    pod_namespace: str | None,
    watched: tuple[str, ...],
    config_namespace: str | None,
) -> str:
    """Where the Lease lives: the flag, the pod's namespace, the first watched one, the config's."""
    if explicit:
        return explicit
    if pod_namespace:
        return pod_namespace
    literal = [ns for ns in watched if not any(c in ns for c in "*?[!")]
    if literal:
        return literal[0]
    return config_namespace or "default"


def current_config_namespace() -> str | None:
    """The in-cluster ServiceAccount's namespace, else the kubeconfig context's."""
    path = "/var/run/secrets/kubernetes.io/serviceaccount/namespace"
    try:
        with open(path) as file:
            return file.read().strip() or None
    except OSError:
        pass
    try:
        _contexts, active = kubernetes.config.list_kube_config_contexts()
    except (kubernetes.config.ConfigException, OSError):
        return None
    namespace = ((active or {}).get("context") or {}).get("namespace")
    return str(namespace) if namespace else None


# --- the election -----------------------------------------------------------------------------


class Outcome(enum.Enum):
    LEADING = "leading"
    HELD_BY_OTHER = "held by another candidate"
    RETRY = "retry"  # a lost race (409) or an API error: try again after the retry period


def _utcnow() -> datetime.datetime:
    return datetime.datetime.now(datetime.timezone.utc)


class LeaderElector:
    """One candidate: acquire the Lease, keep renewing it, release it."""

    def __init__(self, client: LeaseClient, config: ElectionConfig) -> None:
        self.client = client
        self.config = config
        self.lease: dict[str, Any] = {}  # the last version seen
        self.renewed_at = 0.0  # time.monotonic() before the last successful write
        # client-go's observedRecord/observedTime: another holder's Lease expires on our clock.
        self.observed: tuple[str, str, str] | None = None
        self.observed_at = 0.0

    def remaining(self) -> float:
        """Seconds left before the renew deadline of the last successful write."""
        return self.renewed_at + self.config.renew_deadline - time.monotonic()

    def _observe(self, lease: dict[str, Any]) -> None:
        record = observed_record(lease)
        if record != self.observed:
            self.observed, self.observed_at = record, time.monotonic()

    @property
    def where(self) -> str:
        return f"{self.config.namespace}/{self.config.name}"

    def try_acquire(self, timeout: float) -> Outcome:
        """One attempt: create the Lease, or take it over when free; renew it when already ours."""
        started = time.monotonic()
        now = _utcnow()
        lease = self.client.get(timeout)
        if lease is None:
            config = self.config
            lease_record = new_lease(
                config.namespace, config.name, config.identity, config.lease_duration, now
            )
            written = self.client.create(lease_record, timeout)
        else:
            self.lease = lease
            self._observe(lease)
            current = holder(lease)
            if current == self.config.identity:
                patch = renew_patch(lease, current, self.config.lease_duration, now)
            elif not is_expired(lease, self.observed_at, time.monotonic()):
                return Outcome.HELD_BY_OTHER
            else:
                patch = takeover_patch(lease, self.config.identity, self.config.lease_duration, now)
            written = self.client.patch(patch, timeout)
        if written is None:
            return Outcome.RETRY
        self.lease, self.renewed_at = written, started
        return Outcome.LEADING

    def try_renew(self, timeout: float) -> Outcome:
        """One renewal: patch the version last seen; on a conflict read it again."""
        started = time.monotonic()
        identity, duration = self.config.identity, self.config.lease_duration
        written = self.client.patch(renew_patch(self.lease, identity, duration, _utcnow()), timeout)
        if written is None:
            fresh = self.client.get(max(self.remaining(), 0.1))
            if fresh is None or holder(fresh) != identity:
                self.lease = fresh or {}
                return Outcome.HELD_BY_OTHER
            self.lease = fresh
            return Outcome.RETRY
        self.lease, self.renewed_at = written, started
        return Outcome.LEADING

    def acquire(self, stopping: threading.Event) -> bool:
        """Block until this candidate leads (True) or `stopping` is set (False)."""
        logged_holder: str | None = None
        while not stopping.is_set():
            try:
                outcome = self.try_acquire(timeout=self.config.renew_deadline)
            except LeaseError as error:
                log.warning("Leader election: %s", error)
                outcome = Outcome.RETRY
            if outcome is Outcome.LEADING and self.remaining() <= 0:
                # The write landed after a slow round trip: the Lease may already look expired to
                # others. Renew it before acting on it.
                log.warning("Leader election: acquiring lease %s took too long", self.where)
                continue
            if outcome is Outcome.LEADING:
                log.info(
                    "Acquired leadership (lease %s, identity %s)", self.where, self.config.identity
                )
                return True
            current = holder(self.lease)
            if outcome is Outcome.HELD_BY_OTHER and current != logged_holder:
                log.info("Waiting for leadership (lease %s held by %s)", self.where, current)
                logged_holder = current
            stopping.wait(self.config.retry_period)
        return False

    def keep_leading(self, stopping: threading.Event, on_lost: Callable[[str], None]) -> None:
        """Renew every retry period until `stopping`; call `on_lost` once leadership is gone.

        A watchdog thread enforces the renew deadline on its own: an HTTP call can hang past
        its timeout, and a renewal stuck in one must not keep a leader acting beyond it.
        """
        lost = threading.Event()
        once = threading.Lock()

        def lose(reason: str) -> None:
            with once:
                if lost.is_set():
                    return
                lost.set()
            on_lost(reason)

        watchdog = threading.Thread(
            target=self._enforce_deadline, args=(stopping, lost, lose), name="lease-watchdog"
        )
        watchdog.daemon = True
        watchdog.start()
        self._renew_until(stopping, lost, lose)
        watchdog.join()  # it ends on `stopping`, or once leadership is lost

    def _renew_until(
        self, stopping: threading.Event, lost: threading.Event, lose: Callable[[str], None]
    ) -> None:
        """Renew every retry period; the deadline itself is the watchdog's to enforce."""
        while not stopping.wait(self.config.retry_period) and not lost.is_set():
            budget = self.remaining()
            if budget <= 0:
                return  # too late to renew: the watchdog ends the leadership
            try:
                outcome = self.try_renew(timeout=budget)
            except LeaseError as error:
                log.warning("Leader election: renewing lease %s: %s", self.where, error)
                outcome = Outcome.RETRY
            except Exception:  # anything else: stop leading rather than run unrenewed
                log.exception("Leader election: renewing lease %s failed", self.where)
                lose(f"renewing lease {self.where} failed")
                return
            if outcome is Outcome.HELD_BY_OTHER:
                lose(f"lease {self.where} is held by {holder(self.lease) or 'nobody'}")
                return

    def _enforce_deadline(
        self, stopping: threading.Event, lost: threading.Event, lose: Callable[[str], None]
    ) -> None:
        tick = min(0.1, self.config.retry_period / 4)
        while not stopping.wait(tick) and not lost.is_set():
            if self.remaining() <= 0:
                lose(f"not renewed for {self.config.renew_deadline:g} s")
                return

    def release(self) -> None:
        """Clear the holder so a standby takes over within its retry period; best effort."""
        timeout = min(self.config.renew_deadline, 5.0)
        try:
            for _attempt in range(2):
                if holder(self.lease) != self.config.identity:
                    return
                if self.client.patch(release_patch(self.lease, _utcnow()), timeout) is not None:
                    log.info("Released leadership (lease %s)", self.where)
                    return
                self.lease = self.client.get(timeout) or {}
        except LeaseError as error:
            log.warning("Leader election: releasing lease %s: %s", self.where, error)


# --- the process around it --------------------------------------------------------------------


def exit_on_lost(reason: str) -> None:
    """Crash-only: stop acting at once; Kubernetes restarts the pod, which then stands by."""
    log.critical("Lost leadership: exiting (%s)", reason)
    for handler in logging.getLogger().handlers:
        handler.flush()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(1)


class _Healthz(http.server.BaseHTTPRequestHandler):
    path_served = "/healthz"

    def do_GET(self) -> None:
        found = self.path.split("?")[0] == self.path_served
        body = b"{}" if found else b'{"error": "not found"}'
        self.send_response(200 if found else 404)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        pass  # the kubelet probes every few seconds: no log line per probe


@contextmanager
def standby_liveness(endpoint: str | None) -> Iterator[None]:
    """Answer the liveness endpoint while standing by; kopf serves it once this one closes."""
    if not endpoint:
        yield
        return
    parts = urlsplit(endpoint)
    handler = type("StandbyHealthz", (_Healthz,), {"path_served": parts.path or "/"})
    server = http.server.ThreadingHTTPServer((parts.hostname or "", parts.port or 80), handler)
    thread = threading.Thread(target=server.serve_forever, name="standby-liveness", daemon=True)
    thread.start()
    try:
        yield
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


async def _operate(operator: Operator, stopping: threading.Event) -> None:
    """Run the operator, stopped through its stop flag by SIGTERM/SIGINT at any moment.

    kopf installs its own signal handlers when it starts; they would leave the stop-flag waiter
    hanging for kopf's 5 s grace period, so ours are put back once kopf is ready.
    """
    stop_flag, ready_flag = asyncio.Event(), asyncio.Event()
    loop = asyncio.get_running_loop()

    def handle_signals() -> None:
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, stop_flag.set)

    async def reclaim_signals() -> None:
        await ready_flag.wait()
        handle_signals()

    handle_signals()
    if stopping.is_set():  # a signal before the loop handled them
        stop_flag.set()
    reclaim = asyncio.create_task(reclaim_signals())
    try:
        await operator(stop_flag, ready_flag)
    finally:
        reclaim.cancel()


def run_as_leader(
    elector: LeaderElector,
    operator: Operator,
    liveness_endpoint: str | None,
    on_lost: Callable[[str], None] = exit_on_lost,
) -> bool:
    """Stand by until leader, run `operator` while renewing, then release the Lease.

    False when stopped (SIGTERM/SIGINT) while standing by. The Lease is released only after the
    operator has stopped, so the next leader never overlaps with this one.
    """
    stopping = threading.Event()

    def on_signal(signum: int, _frame: Any) -> None:
        log.info("Signal %s received: stopping", signal.Signals(signum).name)
        stopping.set()

    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        with standby_liveness(liveness_endpoint):
            if not elector.acquire(stopping):
                return False
        renewing_done = threading.Event()
        renewer = threading.Thread(
            target=elector.keep_leading,
            args=(renewing_done, on_lost),
            name="lease-renewer",
            daemon=True,
        )
        renewer.start()
        LEADER.set(1)
        try:
            asyncio.run(_operate(operator, stopping))
        except asyncio.CancelledError:
            pass  # as kopf.run: a cancelled operator has stopped
        finally:
            for sig in previous:  # the closed event loop reset them to the defaults
                signal.signal(sig, on_signal)
            renewing_done.set()
            renewer.join()
            elector.release()
            LEADER.set(0)
        return True
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
