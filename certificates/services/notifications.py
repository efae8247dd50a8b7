"""Emails to certificate owners about what happened to their certificates."""

from __future__ import annotations

from django.conf import settings
from django.core.mail import send_mail
from django.template.loader import render_to_string
from django.urls import reverse

from certificates.models import AuditEvent, Certificate


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
