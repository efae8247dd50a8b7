"""Celery tasks: thin wrappers that take ids and call services (HOUSE_STYLE.md §13 to §15).

Transient Cloudflare failures (429, 5xx, timeouts, an exhausted call budget) are retried with
exponential backoff; the attempt count and last error of a certificate in flight are kept on its row.
"""

from __future__ import annotations

import logging
from typing import Any

from celery import Task, shared_task
from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.cache import cache
from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from certificates import lifecycle
from certificates.models import Certificate
from certificates.services import Origin, certificate_confirm_revocation, certificate_reconcile_unconfirmed
from cloudflare.errors import CloudflareError

logger = logging.getLogger(__name__)

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
def sync_all_firewalls() -> None:
    for zone_id in _zones():
        sync_firewall.delay(zone_id)


@shared_task
def send_expiry_reminders() -> int:
    return lifecycle.expiry_reminders_send()


def _debounce_key(zone_id: str) -> str:
    return f"firewall-sync-queued:{zone_id}"


def request_firewall_sync(zone_id: str) -> None:
    """Queue a sync after the current transaction commits; triggers within the debounce window collapse."""

    def enqueue() -> None:
        delay = settings.FIREWALL_SYNC_DEBOUNCE_SECONDS
        # The marker lives exactly as long as the queued sync waits: that sync reads the database after it
        # expires, so it sees every change made meanwhile, and a later change queues a new sync.
        if delay <= 0 or cache.add(_debounce_key(zone_id), "1", timeout=delay):
            sync_firewall.apply_async(args=[zone_id], countdown=delay)

    transaction.on_commit(enqueue)


@shared_task(bind=True, max_retries=8)
def confirm_revocation(
    self: Task, certificate_id: int, reason: str = "", actor_id: int | None = None, remote_addr: str | None = None
) -> bool:
    """A web revocation lost its answer: record it, with the requester's reason, if Cloudflare carried it out."""
    certificate = Certificate.objects.filter(pk=certificate_id).first()
    if certificate is None or not certificate.is_revocable:
        return False
    actor = get_user_model().objects.filter(pk=actor_id).first() if actor_id is not None else None
    try:
        return certificate_confirm_revocation(
            certificate=certificate, origin=Origin(actor=actor, remote_addr=remote_addr), reason=reason
        )
    except TRANSIENT as exc:
        raise self.retry(exc=exc, countdown=min(300, 5 * 2**self.request.retries)) from exc


def request_revocation_check(certificate_id: int, *, reason: str, origin: Origin) -> None:
    actor_id = origin.actor.pk if origin.actor is not None and origin.actor.is_authenticated else None
    transaction.on_commit(lambda: confirm_revocation.delay(certificate_id, reason, actor_id, origin.remote_addr))


def request_reconcile(certificate_id: int) -> None:
    transaction.on_commit(lambda: reconcile_certificate.apply_async(args=[certificate_id], countdown=10))
