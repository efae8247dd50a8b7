"""Emails to certificate owners about what happened to their certificates."""

from __future__ import annotations

import logging
import re
import smtplib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from django.conf import settings
from django.core.mail import send_mail
from django.template.loader import render_to_string
from django.urls import reverse

from certificates.models import AuditEvent, Certificate

logger = logging.getLogger(__name__)

# What a mail server that is down, slow or refusing raises: worth sending again later. Anything else (a template
# error, say) is a bug that a retry cannot fix.
TRANSIENT_MAIL_ERRORS = (smtplib.SMTPException, OSError)

# (certificate id, audit action): what happened to a certificate, to tell its owner.
Notice = tuple[int, str]


# The audit actions that carry the reason for a revocation (services.revocation writes it into their detail).
REVOCATION_ACTIONS = (AuditEvent.Action.REVOCATION_REQUESTED, AuditEvent.Action.REVOKED)
# Control characters (line breaks included) in a reason become spaces: the reason is one line of the email, and no
# text staff typed can make lines of its own that read as the portal's.
CONTROL_CHARACTERS = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]+")


@dataclass(frozen=True)
class Revocation:
    """Whether someone other than the owner (staff) asked for a certificate's revocation, and why."""

    by_staff: bool
    reason: str


# A certificate revoked with no request by a person in the audit (revoked in Cloudflare's dashboard, say).
NO_REQUEST = Revocation(by_staff=False, reason="")


def revocations_of(certificate_ids: Iterable[int]) -> dict[int, Revocation]:
    """The latest revocation a person asked for, per certificate, in one query. The portal's own record of
    Cloudflare finishing it (no actor, no reason) is not a request; certificates with none are absent."""
    found: dict[int, Revocation] = {}
    events = (
        AuditEvent.objects.filter(
            certificate_id__in=list(certificate_ids), action__in=REVOCATION_ACTIONS, actor__isnull=False
        )
        .order_by("certificate_id", "-created_at", "-id")
        .values_list("certificate_id", "actor_id", "certificate__owner_id", "detail")
    )
    for certificate_id, actor_id, owner_id, detail in events:
        if certificate_id in found:
            continue
        reason = detail.get("reason", "") if isinstance(detail, dict) else ""
        found[certificate_id] = Revocation(by_staff=actor_id != owner_id, reason=one_line(str(reason or "")))
    return found


def one_line(text: str) -> str:
    return CONTROL_CHARACTERS.sub(" ", text).strip()


def certificate_notify_owner(row: Certificate, action: str, *, revocation: Revocation | None = None) -> None:
    """Email the owner; a revocation's reason is read from the audit unless the caller has it already."""
    owner = row.owner
    if not owner.email:
        return
    revoked = action == AuditEvent.Action.REVOKED
    if revoked and revocation is None:
        revocation = revocations_of([row.pk]).get(row.pk)
    context = {
        "certificate": row,
        "revoked": revoked,
        # Only staff's revocations are explained: the owner knows why they revoked their own.
        "staff_revocation": revocation if revoked and revocation is not None and revocation.by_staff else None,
        "url": f"{settings.PORTAL_BASE_URL}{reverse('certificates:detail', args=[row.pk])}",
    }
    subject = f"Certificate “{row.name}” {'revoked' if context['revoked'] else 'reactivated'}"
    body = render_to_string("certificates/email/status_changed.txt", context)
    send_mail(subject, body, None, [owner.email])


def certificates_notify_owners(*, notices: Sequence[Notice]) -> list[Notice]:
    """Email the owners of many certificates, which are read with their owners in one query. Returns the notices
    whose email the mail server did not take, for the caller to try again: the ones sent are not sent twice."""
    actions = dict(notices)
    revocations = revocations_of(pk for pk, action in actions.items() if action == AuditEvent.Action.REVOKED)
    failed: list[Notice] = []
    for row in Certificate.objects.filter(pk__in=actions).select_related("owner").order_by("pk"):
        try:
            certificate_notify_owner(row, actions[row.pk], revocation=revocations.get(row.pk, NO_REQUEST))
        except TRANSIENT_MAIL_ERRORS as exc:
            logger.warning("could not email the owner of certificate %s about %s: %s", row.pk, actions[row.pk], exc)
            failed.append((row.pk, actions[row.pk]))
    return failed
