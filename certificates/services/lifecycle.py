"""Keeping the portal's certificates equal to Cloudflare's: polling transitions, reconciliation, expiry.

Cloudflare revokes asynchronously (DELETE -> pending_revocation -> revoked, FACTS.md §2); the portal follows
with list calls filtered by status, 50 per page, never one GET per certificate (DESIGN.md, Budgets).
"""

from __future__ import annotations

import logging
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from django.conf import settings
from django.core.mail import send_mail
from django.db import transaction
from django.template.loader import render_to_string
from django.urls import reverse
from django.utils import timezone

from certificates.cloudflare_client import get_cloudflare_client
from certificates.enqueue import request_owner_emails
from certificates.models import AuditEvent, Certificate, UnknownCertificate
from certificates.services.audit import Origin, audit, audit_event
from certificates.services.issuance import certificate_reconcile_unconfirmed, same_request
from cloudflare.models import CertificateStatus, ClientCertificate

logger = logging.getLogger(__name__)

SYSTEM = Origin(actor=None)


def stuck_issuing_after() -> timedelta:
    """An issuance still `issuing` after this long lost its process mid-call: treat it as unconfirmed."""
    return timedelta(seconds=settings.CERTIFICATE_STUCK_ISSUING_SECONDS)


# Reconciliation lists every status by name: Cloudflare's schema declares no default for the filter.
ALL_STATUSES = "all"


@dataclass
class Change:
    certificate_id: int
    old: str
    new: str


@dataclass
class PollResult:
    changes: list[Change] = field(default_factory=list)
    pending: int = 0


def certificates_poll(*, zone_id: str) -> PollResult:
    """One pass over the certificates in flight at Cloudflare; returns what changed locally."""
    local = {
        row.cloudflare_id: row
        for row in Certificate.objects.filter(zone_id=zone_id, status__in=Certificate.PENDING).exclude(cloudflare_id="")
    }
    if not local:
        return PollResult()
    client = get_cloudflare_client()
    remote: dict[str, ClientCertificate] = {}
    # Revocation first: a certificate reactivated between the two listings then shows up in the second.
    for status in (CertificateStatus.PENDING_REVOCATION, CertificateStatus.PENDING_REACTIVATION):
        remote.update({c.id: c for c in client.iter_client_certificates(zone_id, status=status) if c.id in local})
    if any(cloudflare_id not in remote for cloudflare_id in local):
        # Gone from both pending lists: finished. Active certificates are few (the zone holds at most its
        # quota of them), revoked ones pile up forever, so list the active ones and infer the rest.
        active = {c.id for c in client.iter_client_certificates(zone_id, status=CertificateStatus.ACTIVE)}
    else:
        active = set()
    moves = []
    for cloudflare_id, row in local.items():
        if cloudflare_id in remote:
            new = remote[cloudflare_id].status.value
        else:
            new = Certificate.Status.ACTIVE if cloudflare_id in active else Certificate.Status.REVOKED
        if new != row.status:
            moves.append(Move(row, new))
    return PollResult(changes=_record_remote_statuses(moves, reason="polled"), pending=len(local))


@dataclass(frozen=True)
class Move:
    """A row as it was read, and the status Cloudflare reports for it."""

    row: Certificate
    new: str


# Statuses Cloudflare reports are recorded this many rows at a time: a few queries a page, whatever the page holds.
RECORD_PAGE = 50


def _record_remote_statuses(moves: list[Move], *, reason: str) -> list[Change]:
    """Record the statuses Cloudflare reports, a page at a time; returns the changes made."""
    changes: list[Change] = []
    for start in range(0, len(moves), RECORD_PAGE):
        changes += _record_page(moves[start : start + RECORD_PAGE], reason=reason)
    return changes


def _record_page(moves: list[Move], *, reason: str) -> list[Change]:
    """Compare-and-set a page of rows in bulk, write their events in one insert and queue one task that emails
    their owners.

    A row another process moved or touched since it was read (its status or updated_at differ) is left alone and
    not audited: what Cloudflare reported may be older than that change. The rows are locked from the check to
    the commit (on SQLite the database's single writer does the same), so no change slips in between.
    """
    now = timezone.now()
    with transaction.atomic():
        as_read = Certificate.objects.select_for_update().filter(pk__in=[move.row.pk for move in moves])
        current = set(as_read.values_list("pk", "status", "updated_at"))
        changes = [
            Change(move.row.pk, move.row.status, move.new)
            for move in moves
            if (move.row.pk, move.row.status, move.row.updated_at) in current
        ]
        by_transition: dict[tuple[str, str], list[int]] = defaultdict(list)
        for change in changes:
            by_transition[(change.old, change.new)].append(change.certificate_id)
        for (old, new), ids in by_transition.items():
            Certificate.objects.filter(pk__in=ids, status=old).update(status=new, updated_at=now)
        rows = {move.row.pk: move.row for move in moves}
        actions = {change.certificate_id: _audit_action(change) for change in changes}
        AuditEvent.objects.bulk_create(
            audit_event(
                actions[change.certificate_id],
                SYSTEM,
                certificate=rows[change.certificate_id],
                old=change.old,
                new=change.new,
                detail={"source": reason},
            )
            for change in changes
        )
        notices = [(pk, action) for pk, action in actions.items() if action in OWNER_IS_TOLD]
        if notices:
            request_owner_emails(notices)
    return changes


# The transitions an owner gets an email about.
OWNER_IS_TOLD = (AuditEvent.Action.REVOKED, AuditEvent.Action.REACTIVATED)


def _audit_action(change: Change) -> str:
    if change.new == Certificate.Status.REVOKED:
        return AuditEvent.Action.REVOKED
    if change.new == Certificate.Status.ACTIVE and change.old in Certificate.PENDING:
        return AuditEvent.Action.REACTIVATED
    return AuditEvent.Action.STATUS_CHANGED


@dataclass
class ReconcileResult:
    adopted: list[int] = field(default_factory=list)
    failed: list[int] = field(default_factory=list)
    drifted: list[Change] = field(default_factory=list)
    expired: list[int] = field(default_factory=list)
    unknown: int = 0
    missing: list[int] = field(default_factory=list)


def zone_reconcile(*, zone_id: str) -> ReconcileResult:
    """List every certificate of the zone once and bring the portal's rows in line with it."""
    result = ReconcileResult()
    now = timezone.now()
    certificates_mark_stuck(now=now, zone_id=zone_id)
    # Read the rows before listing: a row changed after this read (a revocation in the portal, say) is newer
    # than the listing, and the compare-and-set below on updated_at leaves it alone.
    rows = list(Certificate.objects.filter(zone_id=zone_id).exclude(cloudflare_id=""))
    remote = list(get_cloudflare_client().iter_client_certificates(zone_id, status=ALL_STATUSES))
    by_id = {c.id: c for c in remote}
    _adopt_unconfirmed(zone_id, remote, result)
    known_ids = set(Certificate.objects.filter(zone_id=zone_id).values_list("cloudflare_id", flat=True))
    drifts = []
    for row in rows:
        issued = by_id.get(row.cloudflare_id)
        if issued is None:
            if row.status in Certificate.REMOTE:
                result.missing.append(row.pk)
            continue
        if row.status == Certificate.Status.EXPIRED and issued.status is CertificateStatus.ACTIVE:
            continue  # Cloudflare keeps listing expired certificates as active
        if row.status in Certificate.REMOTE and issued.status.value != row.status:
            drifts.append(Move(row, issued.status.value))
    result.drifted = _record_remote_statuses(drifts, reason="changed outside the portal")
    if result.missing:
        logger.warning("zone %s: Cloudflare no longer lists certificates %s", zone_id, result.missing)
    result.unknown = _record_unknown(zone_id, [c for c in remote if c.id not in known_ids], now)
    result.expired = certificates_mark_expired(zone_id=zone_id, now=now)
    return result


def certificates_mark_stuck(*, now: datetime, zone_id: str | None = None) -> list[int]:
    """Issuances whose process died mid-call become unconfirmed, so that reconciliation settles them."""
    stuck = Certificate.objects.filter(status=Certificate.Status.ISSUING, updated_at__lt=now - stuck_issuing_after())
    if zone_id is not None:
        stuck = stuck.filter(zone_id=zone_id)
    ids = list(stuck.values_list("pk", flat=True))
    Certificate.objects.filter(pk__in=ids, status=Certificate.Status.ISSUING).update(
        status=Certificate.Status.UNCONFIRMED, last_error="the issuing process stopped mid-call", updated_at=now
    )
    return ids


def _adopt_unconfirmed(zone_id: str, remote: list[ClientCertificate], result: ReconcileResult) -> None:
    claimed = set(
        Certificate.objects.filter(zone_id=zone_id).exclude(cloudflare_id="").values_list("cloudflare_id", flat=True)
    )
    for row in Certificate.objects.filter(zone_id=zone_id, status=Certificate.Status.UNCONFIRMED):
        match = next((c for c in remote if c.id not in claimed and same_request(c, row)), None)
        if match is None:
            settled = certificate_reconcile_unconfirmed(certificate=row, origin=SYSTEM, listing=[])
            if settled.status == Certificate.Status.FAILED:
                result.failed.append(row.pk)
            continue
        claimed.add(match.id)
        certificate_reconcile_unconfirmed(certificate=row, origin=SYSTEM, listing=[match])
        result.adopted.append(row.pk)


def _record_unknown(zone_id: str, unknown: list[ClientCertificate], now: datetime) -> int:
    for issued in unknown:
        UnknownCertificate.objects.update_or_create(
            zone_id=zone_id,
            cloudflare_id=issued.id,
            defaults={
                "status": issued.status.value,
                "common_name": issued.common_name,
                "fingerprint_sha256": issued.fingerprint_sha256,
                "expires_on": issued.expires_on,
                "last_seen_at": now,
            },
        )
    UnknownCertificate.objects.filter(zone_id=zone_id).exclude(cloudflare_id__in=[c.id for c in unknown]).delete()
    return len(unknown)


def certificates_mark_expired(*, zone_id: str, now: datetime | None = None) -> list[int]:
    now = now or timezone.now()
    expired = []
    for row in Certificate.objects.filter(zone_id=zone_id, status__in=Certificate.USABLE, expires_on__lte=now):
        old = row.status
        if Certificate.objects.filter(pk=row.pk, status=old).update(status=Certificate.Status.EXPIRED, updated_at=now):
            audit(AuditEvent.Action.EXPIRED, SYSTEM, certificate=row, old=old, new=Certificate.Status.EXPIRED)
            expired.append(row.pk)
    return expired


def expiry_reminders_send(*, now: datetime | None = None) -> int:
    """Email owners N days before expiry (CERTIFICATE_EXPIRY_REMINDER_DAYS), each reminder once."""
    now = now or timezone.now()
    sent = 0
    for days in sorted(settings.CERTIFICATE_EXPIRY_REMINDER_DAYS):
        due = Certificate.objects.filter(
            status__in=Certificate.USABLE, expires_on__gt=now, expires_on__lte=now + timedelta(days=days)
        ).select_related("owner")
        sent += sum(_send_reminder(row, days) for row in due if days not in row.reminders_sent)
    return sent


def _send_reminder(row: Certificate, days: int) -> int:
    # Claim the reminder first (compare-and-set on the list) so two workers never both send it.
    claimed = Certificate.objects.filter(pk=row.pk, reminders_sent=row.reminders_sent).update(
        reminders_sent=[*row.reminders_sent, days]
    )
    if not claimed or not row.owner.email:
        return 0
    context = {
        "certificate": row,
        "days": row.days_left,
        "url": f"{settings.PORTAL_BASE_URL}{reverse('certificates:detail', args=[row.pk])}",
    }
    body = render_to_string("certificates/email/expiry_reminder.txt", context)
    send_mail(f"Certificate “{row.name}” expires in {row.days_left} days", body, None, [row.owner.email])
    audit(AuditEvent.Action.REMINDER_SENT, SYSTEM, certificate=row, detail={"days_before": days})
    return 1
