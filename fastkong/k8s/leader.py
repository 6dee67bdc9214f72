"""Leader election on a ``coordination.k8s.io/v1`` Lease, with client-go's rules.

Every replica runs :meth:`LeaderElector.run`. Every ``retry_period`` it reads the Lease:

- absent: create it with itself as holder (a 409 means another replica was faster);
- held by another replica whose record has not changed for ``leaseDurationSeconds`` *as
  measured on our own clock since we first saw that record* (never the remote
  ``renewTime``, so clock skew between nodes does not matter), or released (empty holder):
  take it over, bumping ``leaseTransitions``;
- held by us: renew ``renewTime``.

Writes are updates (PUT) of the object as read, with its ``metadata.resourceVersion``, so two
replicas that read the same record cannot both win: the second gets 409 Conflict (client-go's
``Update``; the Role grants get, create and update). A leader that has not renewed for
``renew_deadline`` (shorter than the lease duration) steps down by itself, before anyone else
may take over. On shutdown the leader releases the Lease (empty holder, 1 s duration), so a
standby takes over at its next retry instead of after a full lease duration.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from kubernetes.aio.client import CoordinationV1Api, V1Lease, V1LeaseSpec, V1ObjectMeta
from kubernetes.aio.client.exceptions import ApiException

log = logging.getLogger("fastkong.k8s.leader")


def micro(dt: datetime) -> datetime:
    """A time the client serialises as a valid ``metav1.MicroTime``: it writes datetimes with
    ``isoformat()``, which drops a zero fraction, and the API server requires six digits."""
    return dt.astimezone(UTC).replace(microsecond=max(1, dt.microsecond))


class LeaderElector:
    """One candidate for the Lease ``namespace/name``; :attr:`is_leader` tells the outcome.

    ``on_change(is_leader)`` is called on every transition (from the election task).
    """

    def __init__(
        self,
        api: CoordinationV1Api,
        namespace: str,
        name: str,
        identity: str,
        *,
        lease_duration: float = 15.0,
        renew_deadline: float = 10.0,
        retry_period: float = 2.0,
        on_change: Callable[[bool], None] | None = None,
        clock: Callable[[], float] = time.monotonic,
        rng: random.Random | None = None,
    ) -> None:
        if not retry_period < renew_deadline < lease_duration:
            raise ValueError("need retry_period < renew_deadline < lease_duration")
        self.api = api
        self.namespace = namespace
        self.name = name
        self.identity = identity
        self.lease_duration = lease_duration
        self.renew_deadline = renew_deadline
        self.retry_period = retry_period
        self.on_change = on_change
        self.clock = clock
        self.rng = rng or random.Random()
        self.is_leader = False
        #: The holder we last saw (``None`` before the first read).
        self.observed_holder: str | None = None
        self._observed_record: tuple[Any, ...] | None = None
        self._observed_at = 0.0
        self._renewed_at = 0.0
        self.transitions = 0

    def __repr__(self) -> str:
        role = "leader" if self.is_leader else f"follower of {self.observed_holder or '-'}"
        return f"<LeaderElector {self.namespace}/{self.name} {self.identity} {role}>"

    async def run(self) -> None:
        """Campaign and renew until cancelled; then release the Lease if we hold it."""
        try:
            while True:
                try:
                    ok = await self.try_acquire_or_renew()
                except ApiException as exc:
                    log.warning("lease %s/%s: %s %s", self.namespace, self.name, exc.status, exc)
                    ok = False
                except (OSError, TimeoutError) as exc:
                    log.warning("lease %s/%s: %s", self.namespace, self.name, exc)
                    ok = False
                now = self.clock()
                if ok:
                    self._renewed_at = now
                    self._set(True)
                elif self.is_leader and now - self._renewed_at >= self.renew_deadline:
                    log.error(
                        "lease %s/%s: could not renew; stepping down", self.namespace, self.name
                    )
                    self._set(False)
                delay = self.retry_period
                if not self.is_leader:
                    delay *= 1 + 0.2 * self.rng.random()  # client-go's JitterFactor 1.2
                await asyncio.sleep(delay)
        finally:
            if self.is_leader:
                await asyncio.shield(self.release())

    def _set(self, leader: bool) -> None:
        if leader == self.is_leader:
            return
        self.is_leader = leader
        log.warning(
            "lease %s/%s: %s %s leadership",
            self.namespace,
            self.name,
            self.identity,
            "acquired" if leader else "lost",
        )
        if self.on_change is not None:
            self.on_change(leader)

    async def try_acquire_or_renew(self) -> bool:
        now_wall = micro(datetime.now(UTC))
        try:
            lease = await self.api.read_namespaced_lease(self.name, self.namespace)
        except ApiException as exc:
            if exc.status != 404:
                raise
            return await self._create(now_wall)
        spec = lease.spec or V1LeaseSpec()
        holder = spec.holder_identity or ""
        record = (holder, spec.renew_time, spec.lease_duration_seconds, spec.lease_transitions)
        now = self.clock()
        if record != self._observed_record:
            self._observed_record, self._observed_at = record, now
        self.observed_holder = holder
        duration = spec.lease_duration_seconds or self.lease_duration
        if holder and holder != self.identity and self._observed_at + duration > now:
            if self.is_leader:
                self._set(False)  # somebody else holds it: we are not leading, whatever we think
            return False
        ours = holder == self.identity
        transitions = (spec.lease_transitions or 0) + (0 if ours or not holder else 1)
        acquired = spec.acquire_time if ours and spec.acquire_time else now_wall
        lease.spec = V1LeaseSpec(
            holder_identity=self.identity,
            lease_duration_seconds=max(1, round(self.lease_duration)),
            acquire_time=micro(acquired),
            renew_time=now_wall,
            lease_transitions=transitions,
        )
        if not await self._update(lease):
            return False
        self.observed_holder = self.identity
        self.transitions = transitions
        return True

    async def _create(self, now_wall: datetime) -> bool:
        lease = V1Lease(
            metadata=V1ObjectMeta(name=self.name, namespace=self.namespace),
            spec=V1LeaseSpec(
                holder_identity=self.identity,
                lease_duration_seconds=max(1, round(self.lease_duration)),
                acquire_time=now_wall,
                renew_time=now_wall,
                lease_transitions=0,
            ),
        )
        try:
            await self.api.create_namespaced_lease(self.namespace, lease)
        except ApiException as exc:
            if exc.status == 409:
                return False
            raise
        self.observed_holder = self.identity
        return True

    async def _update(self, lease: V1Lease) -> bool:
        """PUT with the resourceVersion we read: 409 when someone else wrote in between."""
        try:
            await self.api.replace_namespaced_lease(self.name, self.namespace, lease)
        except ApiException as exc:
            if exc.status == 409:
                return False
            raise
        return True

    async def release(self) -> None:
        """Give the Lease up (no holder, 1 s duration) if we hold it."""
        if not self.is_leader:
            return
        now = micro(datetime.now(UTC))
        try:
            lease = await self.api.read_namespaced_lease(self.name, self.namespace)
            spec = lease.spec or V1LeaseSpec()
            if spec.holder_identity == self.identity:
                lease.spec = V1LeaseSpec(
                    lease_duration_seconds=1,
                    acquire_time=now,
                    renew_time=now,
                    lease_transitions=spec.lease_transitions,
                )
                await self._update(lease)
        except (ApiException, OSError, TimeoutError) as exc:
            log.warning("lease %s/%s: release failed: %s", self.namespace, self.name, exc)
        finally:
            self._set(False)
