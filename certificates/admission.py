"""Who may issue, and whether the zone has room: read-only checks the issuance service and the pages share.

The admission policy (PORTAL_ADMISSION) decides which accounts may issue at all, because sign-up is open and a
zone holds only CLOUDFLARE_ZONE_CAPACITY certificates: `open` (any verified account), `email_domain` (an account
with a verified address at one of PORTAL_ADMISSION_EMAIL_DOMAINS) or `approval` (staff approve each account in
the admin). Staff are always admitted.
"""

from __future__ import annotations

from dataclasses import dataclass

from allauth.account.models import EmailAddress
from django.conf import settings
from django.contrib.auth.models import User

from certificates.models import AccessRequest, Certificate, Zone
from certificates.policy import get_policy

OPEN, EMAIL_DOMAIN, APPROVAL = "open", "email_domain", "approval"


@dataclass(frozen=True)
class Refusal:
    """Why a user may not issue, in words for them, and whether asking staff is the way forward."""

    message: str
    can_request: bool = False


def admission_refusal(user: User) -> Refusal | None:
    """None when the user may issue certificates under the admission policy."""
    if getattr(user, "is_staff", False) or settings.PORTAL_ADMISSION == OPEN:
        return None
    if settings.PORTAL_ADMISSION == EMAIL_DOMAIN:
        return None if has_admitted_address(user) else _domain_refusal()
    return _approval_refusal(user)


def email_domain_admitted(email: str) -> bool:
    domain = email.rpartition("@")[2].lower()
    return domain in settings.PORTAL_ADMISSION_EMAIL_DOMAINS


def has_admitted_address(user: User) -> bool:
    verified = EmailAddress.objects.filter(user=user, verified=True).values_list("email", flat=True)
    return any(email_domain_admitted(email) for email in verified)


def _domain_refusal() -> Refusal:
    domains = ", ".join(settings.PORTAL_ADMISSION_EMAIL_DOMAINS)
    return Refusal(
        f"Certificates are issued to accounts with a verified email address at {domains}. "
        "Add and confirm such an address under Email, then try again."
    )


def _approval_refusal(user: User) -> Refusal | None:
    latest = AccessRequest.objects.filter(user=user, kind=AccessRequest.Kind.ADMISSION).first()
    if latest is None:
        return Refusal(
            "Staff approve each account before it may issue certificates. Ask for approval on your dashboard.",
            can_request=True,
        )
    if latest.status == AccessRequest.Status.APPROVED:
        return None
    if latest.status == AccessRequest.Status.PENDING:
        return Refusal(
            f"Your account is waiting for approval by staff (asked {latest.created_at:%Y-%m-%d %H:%M} UTC). "
            "You will get an email when they decide."
        )
    return Refusal(
        f"Staff did not approve your account ({latest.decided_at:%Y-%m-%d}). You may ask again with a note "
        "on your dashboard.",
        can_request=True,
    )


def zone_lock(zone_id: str) -> None:
    """Lock the zone's row until the surrounding transaction ends: issuances into one zone take turns."""
    Zone.objects.get_or_create(zone_id=zone_id)
    Zone.objects.select_for_update().filter(zone_id=zone_id).first()


def issuing_zone(zone_id: str) -> Zone | None:
    """The zone's row with the portal CA that issues its new certificates (issuer None, or no row yet: Cloudflare's
    managed CA), in one query. The CA's CRL stays in the database: it grows with every revocation (375 kB for 10,000)
    and issuance never reads it."""
    return Zone.objects.select_related("issuer").defer("issuer__crl_der").filter(zone_id=zone_id).first()


def zone_used(zone_id: str) -> int:
    """Slots of Cloudflare's managed CA in use: only its certificates count against the zone's quota (FACTS.md §3)."""
    return Certificate.objects.filter(
        zone_id=zone_id, authority__isnull=True, status__in=Certificate.HOLDS_A_SLOT
    ).count()


def zone_room(zone_id: str) -> int | None:
    """Certificates the zone can still take (CLOUDFLARE_ZONE_CAPACITY minus those holding a slot); None when a portal
    CA issues for the zone, which has no per-zone cap."""
    if Zone.objects.filter(zone_id=zone_id, issuer__isnull=False).exists():
        return None
    return max(0, get_policy().zone_capacity - zone_used(zone_id))


def held_by(user: User) -> int:
    return Certificate.objects.filter(owner=user, status__in=Certificate.HOLDS_A_SLOT).count()


def pending_request(user: User, kind: str) -> AccessRequest | None:
    return AccessRequest.objects.filter(user=user, kind=kind, status=AccessRequest.Status.PENDING).first()
