"""Leader election on a coordination.k8s.io/v1 Lease, with client-go's semantics.

One `LeaderElector` per candidate: it acquires the Lease (or waits while another holds it),
renews it every `retry_period`, reports leadership lost once no renewal has succeeded for
`renew_deadline` (or another holder shows up), and releases it. Every write carries the
`resourceVersion` it was based on, so of two candidates racing for one Lease the API server lets
exactly one win (409 Conflict for the other). Time comes from a `Clock`, so tests can let it pass
without waiting; what to do on a loss is the caller's (leader.py exits the process).
"""

from __future__ import annotations

import dataclasses
import datetime
import enum
import logging
import os
import socket
import threading
import time
import uuid
from collections.abc import Callable
from typing import Any, Protocol

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

log = logging.getLogger(__name__)

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


class Clock(Protocol):
    """Time as the election sees it: deadlines and expiry on `monotonic`, Lease fields on `now`."""

    def monotonic(self) -> float: ...

    def now(self) -> datetime.datetime:
        """UTC wall-clock time, for the Lease's MicroTime fields."""
        ...

    def wait(self, event: threading.Event, seconds: float) -> bool:
        """Return once `event` is set or `seconds` have passed: whether it is set."""
        ...


class SystemClock:
    """The real time."""

    def monotonic(self) -> float:
        return time.monotonic()

    def now(self) -> datetime.datetime:
        return datetime.datetime.now(datetime.timezone.utc)

    def wait(self, event: threading.Event, seconds: float) -> bool:
        return event.wait(seconds)


class Outcome(enum.Enum):
    LEADING = "leading"
    HELD_BY_OTHER = "held by another candidate"
    RETRY = "retry"  # a lost race (409) or an API error: try again after the retry period


class LeaderElector:
    """One candidate: acquire the Lease, keep renewing it, release it."""

    def __init__(
        self, client: LeaseClient, config: ElectionConfig, clock: Clock | None = None
    ) -> None:
        self.client = client
        self.config = config
        self.clock: Clock = clock or SystemClock()
        self.lease: dict[str, Any] = {}  # the last version seen
        self.renewed_at = 0.0  # clock.monotonic() before the last successful write
        # client-go's observedRecord/observedTime: another holder's Lease expires on our clock.
        self.observed: tuple[str, str, str] | None = None
        self.observed_at = 0.0

    def remaining(self) -> float:
        """Seconds left before the renew deadline of the last successful write."""
        return self.renewed_at + self.config.renew_deadline - self.clock.monotonic()

    def _observe(self, lease: dict[str, Any]) -> None:
        record = observed_record(lease)
        if record != self.observed:
            self.observed, self.observed_at = record, self.clock.monotonic()

    @property
    def where(self) -> str:
        return f"{self.config.namespace}/{self.config.name}"

    def try_acquire(self, timeout: float) -> Outcome:
        """One attempt: create the Lease, or take it over when free; renew it when already ours."""
        started = self.clock.monotonic()
        now = self.clock.now()
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
            elif not is_expired(lease, self.observed_at, self.clock.monotonic()):
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
        started = self.clock.monotonic()
        identity, duration = self.config.identity, self.config.lease_duration
        patch = renew_patch(self.lease, identity, duration, self.clock.now())
        written = self.client.patch(patch, timeout)
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
            self.clock.wait(stopping, self.config.retry_period)
        return False

    def keep_leading(self, stopping: threading.Event, on_lost: Callable[[str], None]) -> None:
        """Renew every retry period until `stopping`; call `on_lost` once leadership is gone.

        A watchdog thread enforces the renew deadline on its own: an HTTP call can hang past
        its timeout, and a renewal stuck in one must not keep a leader acting beyond it.
        """
        over = threading.Event()  # leadership lost, or renewing stopped on `stopping`
        once = threading.Lock()

        def lose(reason: str) -> None:
            with once:
                if over.is_set():
                    return
                over.set()
            on_lost(reason)

        watchdog = threading.Thread(
            target=self._enforce_deadline,
            args=(stopping, over, lose),
            name="lease-watchdog",
            daemon=True,
        )
        watchdog.start()
        self._renew_until(stopping, over, lose)
        if stopping.is_set():
            with once:
                over.set()
        watchdog.join()  # it ends on `stopping` or once leadership is lost

    def _renew_until(
        self, stopping: threading.Event, over: threading.Event, lose: Callable[[str], None]
    ) -> None:
        """Renew every retry period; the deadline itself is the watchdog's to enforce."""
        while not over.is_set() and not self.clock.wait(stopping, self.config.retry_period):
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
        self, stopping: threading.Event, over: threading.Event, lose: Callable[[str], None]
    ) -> None:
        tick = min(0.1, self.config.retry_period / 4)
        while not self.clock.wait(over, tick) and not stopping.is_set():
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
                patch = release_patch(self.lease, self.clock.now())
                if self.client.patch(patch, timeout) is not None:
                    log.info("Released leadership (lease %s)", self.where)
                    return
                self.lease = self.client.get(timeout) or {}
        except LeaseError as error:
            log.warning("Leader election: releasing lease %s: %s", self.where, error)
