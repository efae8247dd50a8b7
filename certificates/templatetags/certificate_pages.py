"""What the certificate pages show the same way everywhere: dates, expiry, statuses and history lines.

Dates and times are in UTC, in one format (`2026-11-30 00:53 UTC`) inside a `<time>` element whose `datetime`
attribute is the ISO 8601 instant. UTC rather than the viewer's zone: the portal keeps no time zone per user, the
emails (sent to whoever reads them wherever) say UTC, and the tools people check a certificate with (openssl,
Cloudflare's dashboard and API) show UTC too, so the page, the email and `openssl x509 -enddate` agree.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from django import template
from django.conf import settings
from django.utils import timezone
from django.utils.html import format_html
from django.utils.safestring import SafeString

from certificates.models import AuditEvent, Certificate

register = template.Library()

DISPLAY_FORMAT = "%Y-%m-%d %H:%M UTC"

# What the audit's download formats (services.issuance.DOWNLOAD_FORMATS) are called on the page: every download
# used to read "Certificate downloaded", the private key and the PKCS#12 file alike.
DOWNLOAD_LABELS = {
    "key": "Private key saved from the browser",
    "certificate": "Certificate (PEM) downloaded",
    "certificate_pem": "Certificate (PEM) downloaded",
    "pkcs12": "PKCS#12 file downloaded",
    "zip": "Zip of key, certificate and PKCS#12 downloaded",
}


def in_utc(moment: dt.datetime) -> dt.datetime:
    return timezone.localtime(moment, dt.UTC) if timezone.is_aware(moment) else moment.replace(tzinfo=dt.UTC)


@register.filter
def when(moment: dt.datetime | None) -> SafeString | str:
    """`<time datetime="2026-11-30T00:53:06Z">2026-11-30 00:53 UTC</time>`, or a dash when there is no date."""
    if moment is None:
        return "\u2013"  # an en dash, as the pages show a missing value
    utc = in_utc(moment)
    return format_html(
        '<time datetime="{}">{}</time>', utc.strftime("%Y-%m-%dT%H:%M:%SZ"), utc.strftime(DISPLAY_FORMAT)
    )


@register.filter
def status_label(value: str) -> str:
    """A status slug (`pending_revocation`) as the pages name it (`Pending revocation`); an unknown one as is."""
    try:
        return str(Certificate.Status(value).label)
    except ValueError:
        return value


# Statuses in which the days left matter: a revoked or failed certificate's expiry date is no longer a deadline.
COUNTING_DOWN = Certificate.USABLE


@register.simple_tag
def days_left_note(certificate: Certificate) -> str:
    """ "(12 days left)" for a certificate still in use, "(expired)" once past its date, nothing otherwise."""
    if certificate.expires_on is None:
        return ""
    if certificate.is_expired:
        return "(expired)"
    if certificate.status not in COUNTING_DOWN:
        return ""
    days = certificate.days_left or 0
    return f"({days} day{'' if days == 1 else 's'} left)"


def reminder_window_days() -> int:
    """The in-page warning starts with the first expiry reminder email (CERTIFICATE_EXPIRY_REMINDER_DAYS)."""
    return max(settings.CERTIFICATE_EXPIRY_REMINDER_DAYS, default=0)


def expires_soon(certificate: Certificate, *, now: dt.datetime | None = None) -> bool:
    """Still usable, and its expiry falls within the reminder window."""
    if certificate.status not in COUNTING_DOWN or certificate.expires_on is None:
        return False
    now = now or timezone.now()
    return now < certificate.expires_on <= now + dt.timedelta(days=reminder_window_days())


register.filter("expires_soon", expires_soon)


@dataclass(frozen=True)
class HistoryLine:
    what: str
    transition: str  # "Active → Pending revocation", or ""
    reason: str  # the reason given with a revocation (staff-written text: the template escapes it), or ""


@register.filter
def history_line(event: AuditEvent) -> HistoryLine:
    what = event.get_action_display()
    if event.action == AuditEvent.Action.DOWNLOADED:
        what = DOWNLOAD_LABELS.get(str(event.detail.get("format", "")), what)
    transition = ""
    if event.old_status and event.new_status:
        transition = f"{status_label(event.old_status)} → {status_label(event.new_status)}"
    reason = event.detail.get("reason", "") if isinstance(event.detail, dict) else ""
    return HistoryLine(what=what, transition=transition, reason=str(reason) if reason else "")
