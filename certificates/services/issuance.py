"""Issuance: validate, reserve a slot, ask Cloudflare, record; settle creates whose answer was lost."""

from __future__ import annotations

import math
from collections.abc import Iterable
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.contrib.auth.models import User
from django.db import transaction
from django.utils import timezone
from redis.exceptions import RedisError

from certificates.admission import admission_refusal, issuing_zone, zone_lock, zone_room
from certificates.cloudflare_client import get_cloudflare_client, get_zone_id
from certificates.csr import CSRError, ValidatedCSR, public_key_sha256_of_certificate, validate_csr
from certificates.enqueue import request_firewall_sync, request_reconcile
from certificates.models import AuditEvent, Certificate
from certificates.policy import CertificatePolicy, get_policy
from certificates.services.audit import Origin, audit
from certificates.services.cleaning import clean_name
from certificates.services.errors import (
    AdmissionError,
    CloudflareUnavailableError,
    PolicyError,
    QuotaError,
    ServiceError,
    first_message,
)
from certificates.services.quotas import lock_user_for_issuance, refuse_known_key
from certificates.services.rates import in_words
from certificates.services.signing import certificate_sign
from cloudflare import errors as cf_errors
from cloudflare.client import CloudflareClient
from cloudflare.models import ClientCertificate

DOWNLOAD_FORMATS = frozenset({"key", "certificate", "pkcs12", "zip", "certificate_pem"})
UNCONFIRMED_MESSAGE = (
    "Cloudflare did not confirm the certificate. The portal keeps checking: within a minute or two it appears "
    "on your dashboard if it was issued, or is marked failed if not. Keep this tab open, your key exists only here."
)
ZONE_FULL = (
    "The zone has no room for more certificates: every slot is in use. Ask staff for room on your dashboard; "
    "you get an email when they have made some."
)


def certificate_issue(*, user: User, csr: str, validity_days: int, name: str, origin: Origin) -> Certificate:
    """Validate, check quotas, record the intent, ask Cloudflare, record the result."""
    refusal = admission_refusal(user)
    if refusal is not None:
        raise AdmissionError(refusal.message)
    policy = get_policy()
    name = clean_name(name, what="certificate")
    validated = _validate_request(user=user, csr=csr, validity_days=validity_days, policy=policy)
    zone = issuing_zone(get_zone_id())
    if zone is not None and zone.issuer is not None:
        # A portal CA signs here and now: no Cloudflare call, nothing in flight.
        return certificate_sign(
            user=user,
            validated=validated,
            validity_days=validity_days,
            name=name,
            zone=zone,
            authority=zone.issuer,
            origin=origin,
        )
    certificate = _reserve_slot(user=user, validated=validated, validity_days=validity_days, name=name, policy=policy)
    try:
        return _create_reserved(certificate, validated=validated, validity_days=validity_days, origin=origin)
    except ServiceError:
        raise  # the row is settled already (failed, or unconfirmed and being reconciled)
    except RedisError as exc:
        # The call budget (Redis) could not be asked, so no call was made: nothing was issued. The error goes on
        # to the pages' and the API's 503.
        _record_failure(certificate, exc, origin)
        raise
    except Exception as exc:
        # Anything else may have come after Cloudflare made the certificate: reconciliation decides, as after a
        # timeout. Either way the row does not stay `issuing`, holding one of the user's slots.
        if _mark_unconfirmed(certificate, error=exc, origin=origin):
            request_reconcile(certificate.pk)
        if isinstance(exc, cf_errors.CloudflareError):
            raise CloudflareUnavailableError(UNCONFIRMED_MESSAGE) from exc
        raise


def _create_reserved(
    certificate: Certificate, *, validated: ValidatedCSR, validity_days: int, origin: Origin
) -> Certificate:
    """Ask Cloudflare for the certificate of a reserved (`issuing`) row and record the answer."""
    # Low priority: issuance leaves the budget's reserve to revocation and the firewall sync.
    client = get_cloudflare_client(wait_for_budget=False, low_priority=True)
    try:
        issued = client.create_client_certificate(certificate.zone_id, csr=validated.pem, validity_days=validity_days)
    except cf_errors.AmbiguousRequestError as exc:
        return _resolve_ambiguous_create(certificate, error=exc, origin=origin, client=client)
    except cf_errors.QuotaExceededError as exc:
        _record_failure(certificate, exc, origin)
        raise QuotaError(ZONE_FULL) from exc
    except (cf_errors.RateLimitedError, cf_errors.BudgetExhaustedError, cf_errors.TransportError) as exc:
        # Refused before Cloudflare did anything (429, budget, no connection): nothing was made.
        _record_failure(certificate, exc, origin)
        raise _busy_error(exc) from exc
    except cf_errors.APIError as exc:
        _record_failure(certificate, exc, origin)
        raise ServiceError(f"Cloudflare refused the certificate request: {first_message(exc)}") from exc
    certificate = _record_issued(certificate, issued, origin, action=AuditEvent.Action.ISSUED)
    request_firewall_sync(certificate.zone_id)
    return certificate


def _busy_error(error: cf_errors.CloudflareError) -> CloudflareUnavailableError:
    wait = getattr(error, "retry_after", None)  # set by the budget and by Cloudflare's 429
    if wait is None:
        return CloudflareUnavailableError("Cloudflare is busy right now; nothing was issued. Try again in a minute.")
    seconds = max(1, math.ceil(wait))
    return CloudflareUnavailableError(
        f"Cloudflare is busy right now; nothing was issued. Try again in {in_words(seconds)}.", retry_after=seconds
    )


def _validate_request(*, user: User, csr: str, validity_days: int, policy: CertificatePolicy) -> ValidatedCSR:
    if isinstance(validity_days, bool) or not isinstance(validity_days, int):
        raise PolicyError("validity_days must be a whole number of days.")
    if not policy.is_allowed_validity(validity_days):
        choices = ", ".join(str(d) for d in policy.validity_choices)
        raise PolicyError(f"A certificate can be valid for {choices} days, not {validity_days}.")
    try:
        return validate_csr(csr, policy=policy, subject=policy.subject_for(user))
    except CSRError as exc:
        raise PolicyError(str(exc)) from exc


def _reserve_slot(
    *, user: User, validated: ValidatedCSR, validity_days: int, name: str, policy: CertificatePolicy
) -> Certificate:
    zone_id = get_zone_id()
    with transaction.atomic():
        lock_user_for_issuance(user=user, policy=policy)
        # Then one issuance per zone at a time (always after the user's lock, so the two never deadlock): the
        # zone's last free slot goes to one request, whoever else asks at the same moment.
        zone_lock(zone_id)
        room = zone_room(zone_id)
        if room is not None and room <= 0:
            raise QuotaError(ZONE_FULL)
        refuse_known_key(zone_id=zone_id, validated=validated)
        return Certificate.objects.create(
            owner=user,
            name=name.strip(),
            zone_id=zone_id,
            status=Certificate.Status.ISSUING,
            csr=validated.pem,
            public_key_sha256=validated.public_key_sha256,
            key_type=validated.key_type.id,
            common_name=validated.common_name,
            validity_days=validity_days,
        )


def _resolve_ambiguous_create(
    certificate: Certificate, *, error: cf_errors.CloudflareError, origin: Origin, client: CloudflareClient
) -> Certificate:
    """The create may have happened: look for it before anyone tries again (DESIGN.md, Budgets)."""
    _mark_unconfirmed(certificate, error=error, origin=origin)
    try:
        # The web request's own client: what is left of its deadline bounds the look, the workers do the rest.
        settled = certificate_reconcile_unconfirmed(certificate=certificate, origin=origin, client=client)
    except cf_errors.CloudflareError:
        settled = certificate
    if settled.status not in Certificate.IN_FLIGHT | {Certificate.Status.FAILED}:
        request_firewall_sync(settled.zone_id)
        return settled
    # Not listed (yet) or Cloudflare cannot be asked: the workers settle the row within a few minutes.
    request_reconcile(certificate.pk)
    raise CloudflareUnavailableError(UNCONFIRMED_MESSAGE) from error


def _mark_unconfirmed(certificate: Certificate, *, error: Exception, origin: Origin) -> bool:
    """`issuing` → `unconfirmed` (compare-and-set); False when the row had left `issuing` already."""
    return _settle(
        certificate,
        old=Certificate.Status.ISSUING,
        new=Certificate.Status.UNCONFIRMED,
        action=AuditEvent.Action.ISSUE_UNCONFIRMED,
        origin=origin,
        last_error=str(error),
    )


def _settle(
    certificate: Certificate,
    *,
    old: str,
    new: str,
    action: str,
    origin: Origin,
    last_error: str,
    detail: dict[str, Any] | None = None,
    unchanged_since: datetime | None = None,
) -> bool:
    """Move an issuance from `old` to `new` only if it is still `old` (and, given `unchanged_since`, has not
    changed since then), auditing the move; False when another request or worker settled it first."""
    rows = Certificate.objects.filter(pk=certificate.pk, status=old)
    if unchanged_since is not None:
        rows = rows.filter(updated_at__lte=unchanged_since)
    if not rows.update(status=new, last_error=last_error[:2000], updated_at=timezone.now()):
        return False
    audit(action, origin, certificate=certificate, old=old, new=new, detail=detail or {})
    return True


def unconfirmed_grace() -> timedelta:
    """A certificate still missing from the listing this long after an ambiguous create was never made.

    Cloudflare's create answers within seconds; CERTIFICATE_UNCONFIRMED_GRACE_SECONDS says why 60 s is enough.
    """
    return timedelta(seconds=settings.CERTIFICATE_UNCONFIRMED_GRACE_SECONDS)


def certificate_reconcile_unconfirmed(
    *,
    certificate: Certificate,
    origin: Origin,
    listing: Iterable[ClientCertificate] | None = None,
    client: CloudflareClient | None = None,
) -> Certificate:
    """Find the certificate made from this CSR in the zone's listing (fetched if not given) and adopt it.

    Returns the row as it is now: adopted (active), still unconfirmed (not listed yet, within the grace
    period), or failed (not listed after it: the create never happened and the user may try again).
    """
    if listing is None:
        listing = (client or get_cloudflare_client()).iter_client_certificates(certificate.zone_id)
    match = next((issued for issued in listing if same_request(issued, certificate)), None)
    if match is not None:
        return _record_issued(
            certificate, match, origin, action=AuditEvent.Action.ADOPTED, expected=Certificate.Status.UNCONFIRMED
        )
    _settle(
        certificate,
        old=Certificate.Status.UNCONFIRMED,
        new=Certificate.Status.FAILED,
        action=AuditEvent.Action.ISSUE_FAILED,
        origin=origin,
        last_error="Cloudflare has no certificate for this request; nothing was issued.",
        unchanged_since=timezone.now() - unconfirmed_grace(),
    )
    certificate.refresh_from_db()
    return certificate


def same_request(issued: ClientCertificate, certificate: Certificate) -> bool:
    if issued.csr and issued.csr.strip() == certificate.csr.strip():
        return True
    try:
        return (
            bool(issued.certificate)
            and public_key_sha256_of_certificate(issued.certificate) == certificate.public_key_sha256
        )
    except ValueError:
        return False


def _record_issued(
    certificate: Certificate,
    issued: ClientCertificate,
    origin: Origin,
    *,
    action: str,
    expected: str = Certificate.Status.ISSUING,
) -> Certificate:
    now = timezone.now()
    updated = Certificate.objects.filter(pk=certificate.pk, status=expected).update(
        status=issued.status.value,
        cloudflare_id=issued.id,
        certificate_pem=issued.certificate,
        fingerprint_sha256=issued.fingerprint_sha256,
        serial_number=issued.serial_number,
        issued_on=issued.issued_on,
        expires_on=issued.expires_on,
        last_error="",
        updated_at=now,
    )
    certificate.refresh_from_db()
    if updated:
        audit(
            action,
            origin,
            certificate=certificate,
            old=expected,
            new=certificate.status,
            detail={"cloudflare_id": issued.id, "fingerprint_sha256": issued.fingerprint_sha256},
        )
    return certificate


def _record_failure(certificate: Certificate, error: Exception, origin: Origin) -> None:
    # A row settled meanwhile (recorded as issued, say) did not fail: _settle leaves it alone.
    _settle(
        certificate,
        old=Certificate.Status.ISSUING,
        new=Certificate.Status.FAILED,
        action=AuditEvent.Action.ISSUE_FAILED,
        origin=origin,
        last_error=str(error),
        detail={"error": str(error)[:500]},
    )


def certificate_record_download(*, certificate: Certificate, file_format: str, origin: Origin) -> None:
    if file_format not in DOWNLOAD_FORMATS:
        raise PolicyError(f"Unknown download format {file_format!r}.")
    audit(AuditEvent.Action.DOWNLOADED, origin, certificate=certificate, detail={"format": file_format})
