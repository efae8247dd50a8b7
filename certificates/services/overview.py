"""What staff see first in the admin: the zone at a glance (capacity, what expires, what waits, how the workers and
the firewall sync fare, the rule limit and the call budget), each figure a link into the admin list behind it.

Read-only and cheap at any size: every count is served by an index (certificates/models.py), the rest is one row
each (FirewallState, TaskRun, Zone) and one Redis round trip for the budget.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.conf import settings
from django.db.models import Count, Q

from certificates import cloudflare_client
from certificates.admission import issuing_zone, zone_used
from certificates.enqueue import POLL_CERTIFICATES, RECONCILE_ZONE
from certificates.firewall.status import RulesInZone, rules_after_last_sync
from certificates.models import Certificate, FirewallState, TaskRun, UnknownCertificate

# Horizons of the "expiring" figures: the admin's expiry filter offers the same two (certificates.admin).
EXPIRY_HORIZONS_DAYS = (7, 30)
# Statuses that mean something waits: on Cloudflare (a revocation or reactivation it has not finished) or on
# reconciliation (an issuance whose answer never came).
WATCHED_STATUSES = (
    Certificate.Status.PENDING_REVOCATION,
    Certificate.Status.PENDING_REACTIVATION,
    Certificate.Status.UNCONFIRMED,
)


# A limit used this far is shown as nearly reached (the meters turn amber), as the alert rules in
# deploy/prometheus-alerts.yml do.
NEARLY_FULL = 0.9


@dataclass(frozen=True)
class Usage:
    """Something used against a limit: the zone's slots, the custom rules, the call budget."""

    used: int
    limit: int

    @property
    def nearly_full_at(self) -> int:
        return math.ceil(self.limit * NEARLY_FULL)

    @property
    def nearly_full(self) -> bool:
        return self.used >= self.nearly_full_at


@dataclass(frozen=True)
class TaskHealth:
    """The last runs of one periodic task, as the workers recorded them (portal/celery.py)."""

    last_succeeded_at: datetime | None
    last_failed_at: datetime | None
    last_error: str

    @property
    def failing(self) -> bool:
        """The latest run failed (a success since then clears it)."""
        if self.last_failed_at is None:
            return False
        return self.last_succeeded_at is None or self.last_failed_at > self.last_succeeded_at


@dataclass(frozen=True)
class SyncHealth:
    last_synced_at: datetime | None
    last_error: str
    waiting_since: datetime | None  # a committed change not pushed yet
    rules: RulesInZone
    rules_used: Usage


@dataclass(frozen=True)
class ZoneOverview:
    zone_id: str
    # The managed CA's slots; None when a portal CA issues for the zone, which has no per-zone cap.
    capacity: Usage | None
    managed_in_use: int
    expiring: dict[int, int]  # days -> active certificates expiring within them
    unknown: int
    # Transitions Cloudflare has not finished, and issuances whose answer never came (reconciliation settles them).
    by_status: dict[str, int]
    poll: TaskHealth
    reconcile: TaskHealth
    sync: SyncHealth
    budget: Usage


def zone_overview(*, zone_id: str, now: datetime) -> ZoneOverview:
    budget = cloudflare_client.get_call_budget()
    used = zone_used(zone_id)
    return ZoneOverview(
        zone_id=zone_id,
        capacity=_capacity(zone_id, used),
        managed_in_use=used,
        expiring=_expiring(zone_id, now),
        unknown=UnknownCertificate.objects.filter(zone_id=zone_id).count(),
        by_status=_watched_counts(zone_id),
        poll=_task_health(POLL_CERTIFICATES),
        reconcile=_task_health(RECONCILE_ZONE),
        sync=_sync_health(zone_id),
        budget=Usage(used=budget.used(), limit=budget.limit),
    )


def _capacity(zone_id: str, used: int) -> Usage | None:
    zone = issuing_zone(zone_id)
    if zone is not None and zone.issuer_id is not None:
        return None
    return Usage(used=used, limit=settings.CLOUDFLARE_ZONE_CAPACITY)


def _expiring(zone_id: str, now: datetime) -> dict[int, int]:
    """Active certificates only, so that each figure equals the admin list it links to (status and expiry filters);
    every horizon counted in one query."""
    within = {
        # Counting a column the index holds (not id), so that the count is read from the index alone.
        f"d{days}": Count("expires_on", filter=Q(expires_on__lte=now + timedelta(days=days)))
        for days in EXPIRY_HORIZONS_DAYS
    }
    counts = Certificate.objects.filter(
        zone_id=zone_id,
        status=Certificate.Status.ACTIVE,
        expires_on__gt=now,
        expires_on__lte=now + timedelta(days=max(EXPIRY_HORIZONS_DAYS)),
    ).aggregate(**within)
    return {days: counts[f"d{days}"] for days in EXPIRY_HORIZONS_DAYS}


def _watched_counts(zone_id: str) -> dict[str, int]:
    counted = dict(
        Certificate.objects.filter(zone_id=zone_id, status__in=WATCHED_STATUSES)
        .values_list("status")
        .annotate(Count("id"))
        .order_by()
    )
    return {status: counted.get(status, 0) for status in WATCHED_STATUSES}


def _task_health(task: str) -> TaskHealth:
    run = TaskRun.objects.filter(task=task).first()
    if run is None:
        return TaskHealth(last_succeeded_at=None, last_failed_at=None, last_error="")
    return TaskHealth(
        last_succeeded_at=run.last_succeeded_at, last_failed_at=run.last_failed_at, last_error=run.last_error
    )


def _sync_health(zone_id: str) -> SyncHealth:
    state = FirewallState.objects.filter(zone_id=zone_id).first() or FirewallState(zone_id=zone_id)
    rules = rules_after_last_sync(state)
    return SyncHealth(
        last_synced_at=state.last_synced_at,
        last_error=state.last_error,
        waiting_since=state.sync_requested_at,
        rules=rules,
        rules_used=Usage(used=rules.total, limit=settings.CLOUDFLARE_CUSTOM_RULES_LIMIT),
    )
