"""Celery tasks: thin wrappers that take ids and call services (HOUSE_STYLE.md §13 to §15).

One retry policy (`retry_or_raise`): errors marked `retryable` (429, 5xx, timeouts, an exhausted call budget) come
back with jittered exponential backoff, never before a Retry-After; the rest (a bad token, a request Cloudflare
refuses) are raised at once, since repeating them cannot help. Periodic tasks never retry: the next period is
their retry. The attempt count and last error of a certificate in flight are kept on its row.
"""

from __future__ import annotations

import logging
import random
from datetime import timedelta
from typing import Any, NoReturn

from celery import Task, shared_task
from django.conf import settings
from django.contrib.auth import get_user_model
from django.db.models import Q
from django.utils import timezone

from certificates.cloudflare_client import get_zone_id
from certificates.enqueue import request_firewall_sync
from certificates.models import Certificate, FirewallState
from certificates.services import (
    AuthorityUnavailableError,
    Origin,
    authorities,
    certificate_confirm_revocation,
    certificate_reconcile_unconfirmed,
    crls,
    lifecycle,
    notifications,
    unconfirmed_grace,
)
from cloudflare.errors import CloudflareError

logger = logging.getLogger(__name__)

# A zone whose sync was requested this long after the debounce and is still not synced lost its queued sync.
REQUESTED_SYNC_GRACE_SECONDS = 10

MAX_RETRIES = 8
BACKOFF_SECONDS = 5.0
BACKOFF_MAX_SECONDS = 300.0


def retry_or_raise(task: Task[Any, Any], exc: Exception) -> NoReturn:
    """Retry `exc` later if repeating can help (`retryable`), else raise it now."""
    if not getattr(exc, "retryable", False):
        raise exc
    retry_later(task, exc=exc, countdown=backoff_seconds(task.request.retries, exc))


def retry_later(
    task: Task[Any, Any],
    *,
    exc: Exception | None = None,
    countdown: float,
    max_retries: int = MAX_RETRIES,
    args: tuple[Any, ...] | None = None,
) -> NoReturn:
    """`args`: what the retry runs with, when it has less left to do than the first run."""
    raise task.retry(exc=exc, countdown=countdown, max_retries=max_retries, args=args)


def backoff_seconds(retries: int, exc: Exception | None = None) -> float:
    """Full-jitter exponential backoff, but never sooner than the Retry-After the error carries."""
    ceiling = min(BACKOFF_MAX_SECONDS, BACKOFF_SECONDS * 2**retries)
    retry_after = getattr(exc, "retry_after", None) or 0.0
    return max(random.uniform(ceiling / 2, ceiling), retry_after)  # jitter, not security


def _zones() -> list[str]:
    # order_by(): with the model's ordering, DISTINCT would be over (zone_id, created_at), a row per certificate.
    zones = set(Certificate.objects.order_by().values_list("zone_id", flat=True).distinct())
    zones.add(get_zone_id())
    return sorted(zones)


# Periodic tasks (beat) do not retry: a failed run is repeated by the next period, not stacked on top of it.
@shared_task
def poll_certificates() -> dict[str, Any]:
    changed = {}
    for zone_id in _zones():
        result = lifecycle.certificates_poll(zone_id=zone_id)
        if result.changes:
            request_firewall_sync(zone_id)
        changed[zone_id] = [(c.certificate_id, c.old, c.new) for c in result.changes]
    return changed


@shared_task
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
            "calls": result.calls,
            "sweep_finished": result.finished,
        }
    return summary


@shared_task(bind=True, max_retries=MAX_RETRIES)
def reconcile_certificate(self: Task[Any, Any], certificate_id: int) -> str:
    """Settle one unconfirmed issuance: adopt what Cloudflare made, or mark it failed."""
    certificate = Certificate.objects.filter(pk=certificate_id, status=Certificate.Status.UNCONFIRMED).first()
    if certificate is None:
        return "not unconfirmed any more"
    Certificate.objects.filter(pk=certificate_id).update(
        attempts=certificate.attempts + 1, last_attempt_at=timezone.now()
    )
    try:
        settled = certificate_reconcile_unconfirmed(certificate=certificate, origin=lifecycle.SYSTEM)
    except CloudflareError as exc:
        Certificate.objects.filter(pk=certificate_id).update(last_error=str(exc)[:2000])
        retry_or_raise(self, exc)
    if settled.status == Certificate.Status.UNCONFIRMED:
        # Not listed yet: look again just after the grace period ends, when not being listed settles it.
        retry_later(self, countdown=_seconds_left_of_grace(settled) + 1, max_retries=20)
    if settled.status != Certificate.Status.FAILED:
        request_firewall_sync(certificate.zone_id)
    return settled.status


def _seconds_left_of_grace(certificate: Certificate) -> float:
    ends = certificate.updated_at + unconfirmed_grace()
    return max(0.0, (ends - timezone.now()).total_seconds())


@shared_task
def sweep_stuck() -> int:
    """Re-queue rows stuck in flight: issuances whose process died, unconfirmed ones nobody is settling."""
    now = timezone.now()
    newly_stuck = lifecycle.certificates_mark_stuck(now=now)
    # Plus rows nobody has tried for a while: a row being retried by its own task is left to it.
    idle = now - lifecycle.stuck_issuing_after()
    forgotten = (
        Certificate.objects.filter(status=Certificate.Status.UNCONFIRMED, updated_at__lt=idle)
        .filter(Q(last_attempt_at__isnull=True) | Q(last_attempt_at__lt=idle))
        .values_list("pk", flat=True)
    )
    stuck = sorted({*newly_stuck, *forgotten})
    for certificate_id in stuck:
        reconcile_certificate.delay(certificate_id)
    return len(stuck)


@shared_task(bind=True, max_retries=MAX_RETRIES)
def sync_firewall(self: Task[Any, Any], zone_id: str, follow_up: int = 0) -> dict[str, Any]:
    from certificates.firewall.sync import SyncBusy, firewall_sync

    try:
        plan = firewall_sync(zone_id=zone_id, follow_up=follow_up)
    except SyncBusy as exc:
        # The running sync may have read the database before our change: run again after it, for as long
        # as a lease can last.
        retry_later(self, exc=exc, countdown=10, max_retries=40)
    except CloudflareError as exc:
        retry_or_raise(self, exc)
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
    waiting = set(
        FirewallState.objects.filter(sync_requested_at__lte=settled)
        .exclude(lease_until__gt=now)
        .values_list("zone_id", flat=True)
    )
    # A zone no sync has pushed yet (a new deployment) has no base rule: mTLS is not required until the first sync.
    zone_id = get_zone_id()
    if not FirewallState.objects.filter(zone_id=zone_id, last_synced_at__isnull=False).exists():
        waiting.add(zone_id)
    return sorted(waiting)


@shared_task(bind=True, max_retries=MAX_RETRIES)
def notify_owners(self: Task[Any, Any], notices: list[notifications.Notice]) -> int:
    """Email owners what polling or reconciliation recorded, one task per page of changes. The emails the mail server
    refused are tried again later on their own (with backoff), never the ones it took; returns how many this run
    handled."""
    failed = notifications.certificates_notify_owners(notices=notices)
    if failed:
        retry_later(self, countdown=backoff_seconds(self.request.retries), args=(failed,))
    return len(notices)


@shared_task
def send_expiry_reminders() -> int:
    return lifecycle.expiry_reminders_send()


@shared_task(bind=True, max_retries=MAX_RETRIES)
def confirm_revocation(
    self: Task[Any, Any],
    certificate_id: int,
    reason: str = "",
    actor_id: int | None = None,
    remote_addr: str | None = None,
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
    except CloudflareError as exc:
        retry_or_raise(self, exc)


@shared_task
def build_crl(authority_id: int) -> bool:
    """After a change the CA's CRL must show. Not retried: the CA stays marked, and beat and the CRL's URL rebuild a
    marked CRL (a missing encryption key is logged there again until it is set)."""
    try:
        crls.crl_refresh(authority_id=authority_id)
    except AuthorityUnavailableError as exc:
        logger.error("portal CA %s: the CRL cannot be signed: %s", authority_id, exc.message)
        return False
    return True


@shared_task
def refresh_crls() -> list[int]:
    """Beat: every CRL is rebuilt once half of its validity has passed, or when a change is waiting for it."""
    try:
        return crls.crls_refresh_due()
    except AuthorityUnavailableError as exc:
        logger.error("the portal CAs' CRLs cannot be signed: %s", exc.message)
        return []


@shared_task
def send_rotation_notices() -> int:
    """Queued when a portal CA stops being a zone's issuer: its certificates' owners are told to renew."""
    return authorities.rotation_notices_send()


@shared_task
def retire_authorities() -> dict[str, Any]:
    """Hourly: the rotation notices not sent yet, retired portal CAs removed once their last certificate is gone,
    and a warning in the log for each CA about to expire."""
    return {
        "notices": authorities.rotation_notices_send(),
        "removed": authorities.authorities_retire(),
        "expiring": len(authorities.authorities_expiry_warnings()),
    }
