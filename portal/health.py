"""Readiness: is each service the portal needs reachable, and are beat and the workers doing their work?

One implementation with two entry points: the `/readyz` view (portal/views.py) and `manage.py readiness`, which
runs the same checks inside a worker's or beat's container (docker-compose.yml).

Each check costs one query or one round trip with a short timeout. Results name the check, say ok or failing and
give ages in seconds: never an error message, a URL or a host, since /readyz is public (probes have no session) and
an exception's text can carry a connection string. The exceptions go to the log.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from django.conf import settings
from django.core.cache import cache
from django.db import connection
from django.utils import timezone

from certificates.cloudflare_client import get_zone_id
from certificates.enqueue import POLL_CERTIFICATES
from certificates.models import FirewallState, TaskRun
from portal.celery import app

logger = logging.getLogger(__name__)

# The task whose runs show that beat and the workers are alive: the most frequent periodic one.
POLL_TASK = POLL_CERTIFICATES
# Seconds a broker connection may take before the broker counts as unreachable.
BROKER_TIMEOUT_SECONDS = 2
CACHE_PROBE_KEY = "portal:readyz"


@dataclass(frozen=True)
class Check:
    name: str
    ok: bool
    age_seconds: int | None = None
    max_age_seconds: int | None = None

    def as_dict(self) -> dict[str, Any]:
        answer: dict[str, Any] = {"status": "ok" if self.ok else "failing"}
        if self.max_age_seconds is not None:
            answer["age_seconds"] = self.age_seconds
            answer["max_age_seconds"] = self.max_age_seconds
        return answer


@dataclass(frozen=True)
class Readiness:
    checks: tuple[Check, ...]

    @property
    def ok(self) -> bool:
        return all(check.ok for check in self.checks)

    @property
    def failing(self) -> list[str]:
        return [check.name for check in self.checks if not check.ok]

    def as_dict(self) -> dict[str, Any]:
        return {
            "status": "ok" if self.ok else "failing",
            "failing": self.failing,
            "checks": {check.name: check.as_dict() for check in self.checks},
        }


def _reachable(name: str, probe: Callable[[], object]) -> Check:
    try:
        probe()
    except Exception:  # any failure means unreachable; which one is for the log, not for the public answer
        logger.warning("readiness: %s is unreachable", name, exc_info=True)
        return Check(name, ok=False)
    return Check(name, ok=True)


def _fresh(name: str, at: datetime | None, *, now: datetime, max_age: int) -> Check:
    """Ok when `at` is at most `max_age` seconds ago; never (None) is failing, with no age."""
    age = None if at is None else max(0, round((now - at).total_seconds()))
    return Check(name, ok=age is not None and age <= max_age, age_seconds=age, max_age_seconds=max_age)


def check_database(now: datetime) -> Check:
    def select_one() -> None:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")

    return _reachable("database", select_one)


def check_cache(now: datetime) -> Check:
    # A read of a key nobody writes: one round trip to Redis (with its 2 s socket timeouts, settings.CACHES).
    return _reachable("cache", lambda: cache.get(CACHE_PROBE_KEY))


def check_broker(now: datetime) -> Check:
    def connect() -> None:
        with app.connection_for_write() as broker:
            broker.ensure_connection(max_retries=1, interval_start=0, interval_step=0, timeout=BROKER_TIMEOUT_SECONDS)

    return _reachable("broker", connect)


def _poll_run() -> TaskRun | None:
    return TaskRun.objects.filter(task=POLL_TASK).first()


def check_beat(now: datetime) -> Check:
    """Beat queued the poll lately (it does every CERTIFICATE_POLL_SECONDS, whatever the workers do)."""
    run = _poll_run()
    return _fresh("beat", run.last_queued_at if run else None, now=now, max_age=settings.READY_BEAT_MAX_AGE_SECONDS)


def check_worker(now: datetime) -> Check:
    """A worker started the poll lately, however it ended: the workers are consuming. A worker with nothing to start
    (beat queued no poll since its last start: beat's own check fails then) is idle, not failing, so that a stopped
    beat does not mark the workers unhealthy too."""
    run = _poll_run()
    started, queued = (run.last_started_at, run.last_queued_at) if run else (None, None)
    check = _fresh("worker", started, now=now, max_age=settings.READY_POLL_MAX_AGE_SECONDS)
    idle = queued is None or (started is not None and queued <= started)
    return dataclasses.replace(check, ok=True) if idle else check


def check_poll(now: datetime) -> Check:
    """Polling succeeded lately: Cloudflare answers and what it finished is recorded."""
    run = _poll_run()
    return _fresh("poll", run.last_succeeded_at if run else None, now=now, max_age=settings.READY_POLL_MAX_AGE_SECONDS)


def check_sync(now: datetime) -> Check:
    """The zone's firewall rules were last synced successfully (FirewallState.last_synced_at) lately."""
    synced_at = FirewallState.objects.filter(zone_id=get_zone_id()).values_list("last_synced_at", flat=True).first()
    return _fresh("sync", synced_at, now=now, max_age=settings.READY_SYNC_MAX_AGE_SECONDS)


CHECKS: dict[str, Callable[[datetime], Check]] = {
    "database": check_database,
    "cache": check_cache,
    "broker": check_broker,
    "beat": check_beat,
    "worker": check_worker,
    "poll": check_poll,
    "sync": check_sync,
}

# What each process's healthcheck asks (docker-compose.yml), so that a container is marked unhealthy for its own
# fault only: web for the services it serves requests with, a worker for consuming, beat for scheduling. "all" is
# what a person or a monitor asks: everything, the last poll's and sync's success included.
SCOPES: dict[str, tuple[str, ...]] = {
    "all": tuple(CHECKS),
    "web": ("database", "cache", "broker"),
    "worker": ("database", "broker", "worker"),
    "beat": ("database", "broker", "beat"),
}


def readiness(*, scope: str = "all", now: datetime | None = None) -> Readiness:
    """Run the checks of `scope` (a key of SCOPES; KeyError otherwise)."""
    names: Iterable[str] = SCOPES[scope]
    now = now or timezone.now()
    return Readiness(checks=tuple(CHECKS[name](now) for name in names))
