"""Celery tasks: thin wrappers that take ids and call services (HOUSE_STYLE.md §13 to §15).

Transient Cloudflare failures (429, 5xx, timeouts, an exhausted call budget) are retried with
exponential backoff; the attempt count and last error of a certificate in flight are kept on its row.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import timedelta
from typing import Any

from celery import Task, shared_task
from django.conf import settings
from django.core.cache import cache
from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from certificates import lifecycle
from certificates.models import Certificate, FirewallState
from certificates.services import certificate_reconcile_unconfirmed
from cloudflare.errors import CloudflareError

logger = logging.getLogger(__name__)

# A zone whose sync was requested this long after the debounce and is still not synced lost its queued sync.
REQUESTED_SYNC_GRACE_SECONDS = 10

TRANSIENT = (CloudflareError,)
RETRY = {
    "autoretry_for": TRANSIENT,
    "retry_backoff": 5,
    "retry_backoff_max": 300,
    "retry_jitter": True,
    "max_retries": 8,
}


def _zones() -> list[str]:
    zones = set(Certificate.objects.values_list("zone_id", flat=True).distinct())
    zones.add(settings.CLOUDFLARE_ZONE_ID)
    return sorted(zones)


@shared_task(**RETRY)
def poll_certificates() -> dict[str, Any]:
    changed = {}
    for zone_id in _zones():
        result = lifecycle.certificates_poll(zone_id=zone_id)
        if result.changes:
            request_firewall_sync(zone_id)
        changed[zone_id] = [(c.certificate_id, c.old, c.new) for c in result.changes]
    return changed


@shared_task(**RETRY)
def reconcile_zone() -> dict[str, Any]:
    summary = {}
    for zone_id in _zones():
        result = lifecycle.zone_reconcile(zone_id=zone_id)
        if result.adopted or result.drifted or result.expired:
            request_firewall_sync(zone_id)
        summary[zone_id] = {
            "adopted": result.adopted,
            "drifted": len(result.drifted),
            "expired": result.expired,
            "unknown": result.unknown,
        }
    return summary


@shared_task(bind=True, max_retries=8)
def reconcile_certificate(self: Task, certificate_id: int) -> str:
    """Settle one unconfirmed issuance: adopt what Cloudflare made, or mark it failed."""
    certificate = Certificate.objects.filter(pk=certificate_id, status=Certificate.Status.UNCONFIRMED).first()
    if certificate is None:
        return "not unconfirmed any more"
    Certificate.objects.filter(pk=certificate_id).update(
        attempts=certificate.attempts + 1, last_attempt_at=timezone.now()
    )
    try:
        settled = certificate_reconcile_unconfirmed(certificate=certificate, origin=lifecycle.SYSTEM)
    except TRANSIENT as exc:
        Certificate.objects.filter(pk=certificate_id).update(last_error=str(exc)[:2000])
        raise self.retry(exc=exc, countdown=min(300, 5 * 2**self.request.retries)) from exc
    if settled.status == Certificate.Status.UNCONFIRMED:
        # Not listed yet: look again after the grace period has had time to pass.
        raise self.retry(countdown=60, max_retries=20)
    if settled.status != Certificate.Status.FAILED:
        request_firewall_sync(certificate.zone_id)
    return settled.status


@shared_task
def sweep_stuck() -> int:
    """Re-queue rows stuck in flight: issuances whose process died, unconfirmed ones nobody is settling."""
    now = timezone.now()
    newly_stuck = lifecycle.certificates_mark_stuck(now=now)
    # Plus rows nobody has tried for a while: a row being retried by its own task is left to it.
    idle = now - lifecycle.STUCK_ISSUING_AFTER
    forgotten = (
        Certificate.objects.filter(status=Certificate.Status.UNCONFIRMED, updated_at__lt=idle)
        .filter(Q(last_attempt_at__isnull=True) | Q(last_attempt_at__lt=idle))
        .values_list("pk", flat=True)
    )
    stuck = sorted({*newly_stuck, *forgotten})
    for certificate_id in stuck:
        reconcile_certificate.delay(certificate_id)
    return len(stuck)


@shared_task(bind=True, max_retries=8)
def sync_firewall(self: Task, zone_id: str) -> dict[str, Any]:
    from certificates.firewall.sync import SyncBusy, firewall_sync

    try:
        plan = firewall_sync(zone_id=zone_id)
    except SyncBusy as exc:
        # The running sync may have read the database before our change: run again after it, for as long
        # as a lease can last.
        raise self.retry(exc=exc, countdown=10, max_retries=40) from exc
    except TRANSIENT as exc:
        raise self.retry(exc=exc, countdown=min(300, 5 * 2**self.request.retries)) from exc
    return {"added": len(plan.add), "updated": len(plan.update), "deleted": len(plan.delete)}


@shared_task
def sync_all_firewalls(requested_only: bool = False) -> list[str]:
    """Queue a sync of every zone (drift repair), or with `requested_only` of the zones with a change no sync has
    pushed yet (FirewallState.sync_requested_at) whose own queued sync was lost; returns the zones queued."""
    zones = _zones_waiting_for_sync() if requested_only else _zones()
    for zone_id in zones:
        sync_firewall.delay(zone_id)
    return zones


def _zones_waiting_for_sync() -> list[str]:
    now = timezone.now()
    # A younger mark is left to the sync queued with it (after the debounce); a zone being synced now is left to
    # that sync, which keeps the mark if it read the database before the change (see firewall_sync).
    settled = now - timedelta(seconds=settings.FIREWALL_SYNC_DEBOUNCE_SECONDS + REQUESTED_SYNC_GRACE_SECONDS)
    waiting = FirewallState.objects.filter(sync_requested_at__lte=settled).exclude(lease_until__gt=now)
    return sorted(waiting.values_list("zone_id", flat=True))


@shared_task
def send_expiry_reminders() -> int:
    return lifecycle.expiry_reminders_send()


def _debounce_key(zone_id: str) -> str:
    return f"firewall-sync-queued:{zone_id}"


def request_firewall_sync(zone_id: str) -> None:
    """Mark the zone as needing a sync, in the caller's transaction, and queue one after it commits.

    The mark commits or rolls back with the change, so a committed change always has its sync: the one queued
    here, or, if queueing fails (Redis down), the one beat queues for marked zones (sync_all_firewalls). Syncs
    requested within the debounce window collapse into one.
    """
    FirewallState.objects.get_or_create(zone_id=zone_id)
    FirewallState.objects.filter(zone_id=zone_id).update(sync_requested_at=timezone.now())

    def enqueue() -> None:
        delay = settings.FIREWALL_SYNC_DEBOUNCE_SECONDS
        # The marker lives exactly as long as the queued sync waits: that sync reads the database after it
        # expires, so it sees every change made meanwhile, and a later change queues a new sync.
        if delay <= 0 or cache.add(_debounce_key(zone_id), "1", timeout=delay):
            sync_firewall.apply_async(args=[zone_id], countdown=delay)

    transaction.on_commit(lambda: _enqueue_quietly(enqueue, f"a firewall sync of zone {zone_id}"))


def request_reconcile(certificate_id: int) -> None:
    # sweep_stuck re-queues an unconfirmed row nobody settles, so a lost message only delays it.
    transaction.on_commit(
        lambda: _enqueue_quietly(
            lambda: reconcile_certificate.apply_async(args=[certificate_id], countdown=10),
            f"the reconciliation of certificate {certificate_id}",
        )
    )


def _enqueue_quietly(enqueue: Callable[[], None], what: str) -> None:
    """Queue after a commit without ever failing the request that committed: the database already holds what
    makes the work happen later (a mark, a row in flight), so a broker or cache error is logged, not raised."""
    try:
        enqueue()
    except Exception:  # redis, kombu, or anything else between us and the broker: the commit stands either way
        logger.exception("Could not queue %s; the periodic tasks will pick it up", what)
