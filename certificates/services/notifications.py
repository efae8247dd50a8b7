"""Emails to certificate owners about what happened to their certificates."""

from __future__ import annotations

import logging
import smtplib
from collections.abc import Sequence

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


def certificate_notify_owner(row: Certificate, action: str) -> None:
    owner = row.owner
    if not owner.email:
        return
    context = {
        "certificate": row,
        "revoked": action == AuditEvent.Action.REVOKED,
        "url": f"{settings.PORTAL_BASE_URL}{reverse('certificates:detail', args=[row.pk])}",
    }
    subject = f"Certificate “{row.name}” {'revoked' if context['revoked'] else 'reactivated'}"
    body = render_to_string("certificates/email/status_changed.txt", context)
    send_mail(subject, body, None, [owner.email])


def certificates_notify_owners(*, notices: Sequence[Notice]) -> list[Notice]:
    """Email the owners of many certificates, which are read with their owners in one query. Returns the notices
    whose email the mail server did not take, for the caller to try again: the ones sent are not sent twice."""
    actions = dict(notices)
    failed: list[Notice] = []
    for row in Certificate.objects.filter(pk__in=actions).select_related("owner").order_by("pk"):
        try:
            certificate_notify_owner(row, actions[row.pk])
        except TRANSIENT_MAIL_ERRORS as exc:
            logger.warning("could not email the owner of certificate %s about %s: %s", row.pk, actions[row.pk], exc)
            failed.append((row.pk, actions[row.pk]))
    return failed
