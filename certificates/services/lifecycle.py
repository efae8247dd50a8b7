"""Keeping the portal's certificates equal to Cloudflare's: polling transitions, reconciliation, expiry.

Cloudflare revokes asynchronously (DELETE -> pending_revocation -> revoked, FACTS.md §2); the portal follows
with list calls filtered by status, 50 per page (DESIGN.md, Budgets). Polling never reads a certificate on its own;
reconciliation does only for a row no listing of a whole sweep showed, within its calls per pass.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from django.conf import settings
from django.core.mail import send_mail
from django.db import transaction
from django.db.models import Q
from django.template.loader import render_to_string
from django.urls import reverse
from django.utils import timezone

from certificates.cloudflare_client import get_cloudflare_client
from certificates.enqueue import request_owner_emails
from certificates.models import AuditEvent, Certificate, ReconcileSeen, ReconcileSweep, UnknownCertificate
from certificates.services.audit import Origin, audit, audit_event
from certificates.services.issuance import certificate_reconcile_unconfirmed, same_request, unconfirmed_grace
from cloudflare import errors as cf_errors
from cloudflare.client import MAX_PER_PAGE, CloudflareClient, Page
from cloudflare.models import CertificateStatus, ClientCertificate

logger = logging.getLogger(__name__)

SYSTEM = Origin(actor=None)


def stuck_issuing_after() -> timedelta:
    """An issuance still `issuing` after this long lost its process mid-call: treat it as unconfirmed."""
    return timedelta(seconds=settings.CERTIFICATE_STUCK_ISSUING_SECONDS)


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


# Reconciliation lists only the statuses in which a certificate can still be used or come back: revoked ones pile up
# at Cloudflare for ever (FACTS.md §2) and cannot authenticate. In this order, so that a certificate revoked while
# the sweep reads the active listing shows up in the pending_revocation one, read after it.
LISTED = (
    CertificateStatus.ACTIVE.value,
    CertificateStatus.PENDING_REVOCATION.value,
    CertificateStatus.PENDING_REACTIVATION.value,
)
# A row changed this shortly before a page was listed may have changed after Cloudflare answered: the portal's
# processes do not share one clock (NTP keeps them within a second or so), and updated_at is their time.
CHANGED_TOO_RECENTLY = timedelta(seconds=10)
DRIFT = "changed outside the portal"


@dataclass
class ReconcileResult:
    adopted: list[int] = field(default_factory=list)
    failed: list[int] = field(default_factory=list)
    drifted: list[Change] = field(default_factory=list)
    expired: list[int] = field(default_factory=list)
    # Certificates the portal did not issue, recorded by this pass (admin → Unknown certificates).
    unknown: int = 0
    # Rows whose certificate Cloudflare no longer knows (a GET answered 404).
    missing: list[int] = field(default_factory=list)
    # Cloudflare calls this pass made: at most RECONCILE_CALLS_PER_PASS.
    calls: int = 0
    # This pass completed a sweep of the zone.
    finished: bool = False


@dataclass
class _Pass:
    """What one pass carries from page to page."""

    zone_id: str
    client: CloudflareClient
    calls_left: int
    # Issuances whose create may have reached Cloudflare, to match against what the pages list.
    unconfirmed: list[Certificate]
    result: ReconcileResult

    def spend_call(self) -> None:
        self.calls_left -= 1
        self.result.calls += 1


def zone_reconcile(*, zone_id: str) -> ReconcileResult:
    """One pass of the zone's reconciliation sweep: read Cloudflare's listings from where the last pass stopped, in
    at most RECONCILE_CALLS_PER_PASS calls, and bring the portal's rows in line a page at a time. What only a whole
    sweep can tell (a certificate no listing showed) is settled when the sweep completes."""
    now = timezone.now()
    certificates_mark_stuck(now=now, zone_id=zone_id)
    run = _Pass(
        zone_id=zone_id,
        client=get_cloudflare_client(),
        calls_left=settings.RECONCILE_CALLS_PER_PASS,
        unconfirmed=list(Certificate.objects.filter(zone_id=zone_id, status=Certificate.Status.UNCONFIRMED)),
        result=ReconcileResult(),
    )
    sweep: ReconcileSweep | None = _sweep_under_way(zone_id, now)
    while sweep is not None and sweep.listing and run.calls_left > 0:
        sweep = _read_page(sweep, run)
    if sweep is not None and not sweep.listing and _confirm_absent(sweep, run):
        _finish_sweep(sweep, run)
    if run.result.missing:
        logger.warning("zone %s: Cloudflare no longer knows certificates %s", zone_id, run.result.missing)
    run.result.expired = certificates_mark_expired(zone_id=zone_id, now=now)
    return run.result


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


def _sweep_under_way(zone_id: str, now: datetime) -> ReconcileSweep:
    """The zone's sweep, begun now if none is under way."""
    sweep, _ = ReconcileSweep.objects.get_or_create(zone_id=zone_id)
    # A listing this code does not read (stored by another version of it) cannot be resumed: the sweep begins anew.
    if sweep.started_at is None or sweep.listing not in (*LISTED, ""):
        with transaction.atomic():
            begun = ReconcileSweep.objects.filter(
                pk=sweep.pk, started_at=sweep.started_at, listing=sweep.listing
            ).update(started_at=now, listing=LISTED[0], page=1, listing_total=None, shifted=False)
            if begun:
                ReconcileSeen.objects.filter(sweep=sweep).delete()  # left by a pass that outlived the last sweep
        sweep.refresh_from_db()
    return sweep


def _read_page(sweep: ReconcileSweep, run: _Pass) -> ReconcileSweep | None:
    """List the sweep's next page and record it; returns the sweep moved past it, or None when another pass moved
    it first (that pass records the page)."""
    listed_at = timezone.now()
    page = run.client.list_client_certificates_page(
        run.zone_id, page=sweep.page, per_page=MAX_PER_PAGE, status=sweep.listing
    )
    run.spend_call()
    with transaction.atomic():
        # The cursor first: its row stays locked until the page is recorded, so a second pass on the same page waits
        # and then finds the cursor gone.
        if not _advance(sweep, page):
            return None
        if page.items:
            _record_listed(sweep, page.items, run, listed_at=listed_at)
    return sweep


def _advance(sweep: ReconcileSweep, page: Page) -> bool:
    """Move the cursor past `page` (compare-and-set); False when another pass moved it first."""
    total = page.info.total_count
    shrank = total is not None and sweep.listing_total is not None and total < sweep.listing_total
    if page.is_last(sweep.page, MAX_PER_PAGE):
        following = LISTED[LISTED.index(sweep.listing) + 1 :]
        after = {"listing": following[0] if following else "", "page": 1, "listing_total": None}
    else:
        after = {"listing": sweep.listing, "page": sweep.page + 1, "listing_total": total}
    after["shifted"] = sweep.shifted or shrank
    moved = ReconcileSweep.objects.filter(
        pk=sweep.pk, started_at=sweep.started_at, listing=sweep.listing, page=sweep.page
    ).update(**after)
    for name, value in after.items():
        setattr(sweep, name, value)
    return moved == 1


def _record_listed(
    sweep: ReconcileSweep, listed: Sequence[ClientCertificate], run: _Pass, *, listed_at: datetime
) -> None:
    """A page of Cloudflare's listing: the statuses of the portal's rows, adoptions, unknown certificates."""
    rows = {
        row.cloudflare_id: row
        for row in Certificate.objects.filter(zone_id=run.zone_id, cloudflare_id__in=[issued.id for issued in listed])
    }
    # A row changed just before the listing may have changed after Cloudflare answered: it is not counted as seen,
    # so the end of the sweep reads it on its own (unless it changed after the sweep began: the next sweep does).
    settled_before = listed_at - CHANGED_TOO_RECENTLY
    recent = {cloudflare_id for cloudflare_id, row in rows.items() if row.updated_at > settled_before}
    ReconcileSeen.objects.bulk_create(
        (ReconcileSeen(sweep=sweep, cloudflare_id=issued.id) for issued in listed if issued.id not in recent),
        ignore_conflicts=True,
    )
    moves = [
        Move(rows[issued.id], issued.status.value)
        for issued in listed
        if issued.id in rows and issued.id not in recent and _drifted(rows[issued.id], issued)
    ]
    run.result.drifted += _record_remote_statuses(moves, reason=DRIFT)
    strangers = _adopt_unconfirmed([issued for issued in listed if issued.id not in rows], run)
    run.result.unknown += _record_unknown(run.zone_id, strangers)


def _drifted(row: Certificate, issued: ClientCertificate) -> bool:
    # An expired row is not in REMOTE: Cloudflare keeps listing expired certificates as active.
    return row.status in Certificate.REMOTE and issued.status.value != row.status


def _adopt_unconfirmed(strangers: list[ClientCertificate], run: _Pass) -> list[ClientCertificate]:
    """Adopt the certificates of unconfirmed creates among `strangers`; returns the others."""
    left = []
    for issued in strangers:
        row = next((row for row in run.unconfirmed if same_request(issued, row)), None)
        if row is None:
            left.append(issued)
            continue
        run.unconfirmed.remove(row)
        settled = certificate_reconcile_unconfirmed(certificate=row, origin=SYSTEM, listing=[issued])
        if settled.cloudflare_id == issued.id:
            run.result.adopted.append(row.pk)
        else:
            left.append(issued)  # the row was settled otherwise meanwhile: the certificate is nobody's
    return left


def _record_unknown(zone_id: str, strangers: list[ClientCertificate]) -> int:
    now = timezone.now()
    UnknownCertificate.objects.bulk_create(
        (
            UnknownCertificate(
                zone_id=zone_id,
                cloudflare_id=issued.id,
                status=issued.status.value,
                common_name=issued.common_name,
                fingerprint_sha256=issued.fingerprint_sha256,
                expires_on=issued.expires_on,
                first_seen_at=now,
                last_seen_at=now,
            )
            for issued in strangers
        ),
        update_conflicts=True,
        unique_fields=("zone_id", "cloudflare_id"),
        update_fields=("status", "common_name", "fingerprint_sha256", "expires_on", "last_seen_at"),
    )
    return len(strangers)


def _confirm_absent(sweep: ReconcileSweep, run: _Pass) -> bool:
    """Read one by one, within the pass's calls, the rows the listings did not show: revoked outside the portal, or a
    listing that shifted while it was paged. True once none is left."""
    seen = ReconcileSeen.objects.filter(sweep=sweep).values("cloudflare_id")
    # A row changed since the sweep began is newer than its listings: the next sweep looks at it.
    absent = list(
        Certificate.objects.filter(zone_id=run.zone_id, status__in=LISTED, updated_at__lt=sweep.started_at)
        .exclude(cloudflare_id="")
        .exclude(cloudflare_id__in=seen)
        .order_by("pk")[: run.calls_left + 1]
    )
    readable = absent[: run.calls_left]
    for start in range(0, len(readable), RECORD_PAGE):
        if not _confirm(sweep, readable[start : start + RECORD_PAGE], run):
            return False
    return len(absent) == len(readable)


def _confirm(sweep: ReconcileSweep, rows: list[Certificate], run: _Pass) -> bool:
    """One GET per row, then its status recorded; False when the sweep ended or began anew meanwhile."""
    moves = []
    for row in rows:
        try:
            issued = run.client.get_client_certificate(run.zone_id, row.cloudflare_id)
        except cf_errors.NotFoundError:
            run.result.missing.append(row.pk)
        else:
            if issued.status.value != row.status:
                moves.append(Move(row, issued.status.value))
        finally:
            run.spend_call()
    with transaction.atomic():
        if not ReconcileSweep.objects.select_for_update().filter(pk=sweep.pk, started_at=sweep.started_at).exists():
            return False
        run.result.drifted += _record_remote_statuses(moves, reason=DRIFT)
        ReconcileSeen.objects.bulk_create(
            (ReconcileSeen(sweep=sweep, cloudflare_id=row.cloudflare_id) for row in rows), ignore_conflicts=True
        )
    return True


def _finish_sweep(sweep: ReconcileSweep, run: _Pass) -> None:
    """Every certificate in use is accounted for: forget the unknown ones no listing showed (revoked or gone) and those
    adopted since, and fail the unconfirmed issuances Cloudflare never made."""
    with transaction.atomic():
        finished = ReconcileSweep.objects.filter(pk=sweep.pk, started_at=sweep.started_at).update(
            started_at=None, listing="", page=1, listing_total=None, shifted=False
        )
        if not finished:
            return
        seen = ReconcileSeen.objects.filter(sweep=sweep).values("cloudflare_id")
        # Also a row written back by a pass that listed the certificate before staff adopted it.
        portal_ids = Certificate.objects.filter(zone_id=run.zone_id).exclude(cloudflare_id="").values("cloudflare_id")
        UnknownCertificate.objects.filter(zone_id=run.zone_id).filter(
            ~Q(cloudflare_id__in=seen) | Q(cloudflare_id__in=portal_ids)
        ).delete()
        ReconcileSeen.objects.filter(sweep=sweep).delete()
    run.result.finished = True
    if sweep.started_at is not None and not sweep.shifted:
        _fail_never_made(run, unconfirmed_before=sweep.started_at - unconfirmed_grace())


def _fail_never_made(run: _Pass, *, unconfirmed_before: datetime) -> None:
    """Unconfirmed since before the sweep began, past their grace: had Cloudflare made the certificate, it was in the
    zone before the first page was listed, and a listing that did not shift would have shown it."""
    for row in Certificate.objects.filter(
        zone_id=run.zone_id, status=Certificate.Status.UNCONFIRMED, updated_at__lte=unconfirmed_before
    ):
        settled = certificate_reconcile_unconfirmed(certificate=row, origin=SYSTEM, listing=[])
        if settled.status == Certificate.Status.FAILED:
            run.result.failed.append(row.pk)


def certificates_mark_expired(*, zone_id: str, now: datetime | None = None) -> list[int]:
    """Usable certificates past their expiry become expired: one UPDATE and one audit insert, whatever their number.
    The rows are locked from the read to the commit, so each event says the status its row really left."""
    now = now or timezone.now()
    with transaction.atomic():
        due = list(
            Certificate.objects.select_for_update()
            .filter(zone_id=zone_id, status__in=Certificate.USABLE, expires_on__lte=now)
            .only("pk", "status")
        )
        if not due:
            return []
        Certificate.objects.filter(pk__in=[row.pk for row in due], status__in=Certificate.USABLE).update(
            status=Certificate.Status.EXPIRED, updated_at=now
        )
        AuditEvent.objects.bulk_create(
            audit_event(
                AuditEvent.Action.EXPIRED, SYSTEM, certificate=row, old=row.status, new=Certificate.Status.EXPIRED
            )
            for row in due
        )
    return [row.pk for row in due]


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
