"""Revocation and reactivation of the portal's certificates."""

from __future__ import annotations

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from certificates.cloudflare_client import get_cloudflare_client
from certificates.enqueue import request_firewall_sync, request_owner_emails, request_revocation_check
from certificates.models import AuditEvent, Certificate
from certificates.services.audit import Origin, audit
from certificates.services.crls import crl_request_refresh
from certificates.services.errors import (
    CloudflareUnavailableError,
    InvalidTransitionError,
    RateLimitedError,
    call_cloudflare,
)
from certificates.services.rates import count_of, in_words, period_in_words, seconds_until_allowed
from cloudflare import errors as cf_errors
from cloudflare.client import CloudflareClient
from portal.env import Rate


def certificate_revoke(*, certificate: Certificate, origin: Origin, reason: str = "") -> Certificate:
    """Ask Cloudflare to revoke; the certificate is `pending_revocation` until Cloudflare finishes."""
    if not certificate.is_revocable:
        raise InvalidTransitionError(
            f"A certificate that is {certificate.get_status_display().lower()} cannot be revoked."
        )
    _check_revoke_rate(certificate=certificate, origin=origin)
    if certificate.authority_id is not None:
        return _revoke_by_portal_ca(certificate, authority_id=certificate.authority_id, origin=origin, reason=reason)
    old = certificate.status
    client = get_cloudflare_client(wait_for_budget=False)
    try:
        result = call_cloudflare(
            lambda client: client.revoke_client_certificate(certificate.zone_id, certificate.cloudflare_id),
            client=client,
        )
    except CloudflareUnavailableError as exc:
        if not _may_have_committed(exc.__cause__):
            raise
        # Timed out or failed after it was sent: the DELETE may have committed. Ask now (with what is left of
        # the web deadline), so the user learns the outcome and the revocation keeps their reason.
        return _revocation_outcome(certificate, client=client, origin=origin, reason=reason, error=exc)
    return _record_revocation(certificate, expected=old, status=result.status.value, origin=origin, reason=reason)


def _revoke_by_portal_ca(certificate: Certificate, *, authority_id: int, origin: Origin, reason: str) -> Certificate:
    """The portal is the authority: revoked at once (no pending state), in the CRL, and blocked at the edge by the
    deny rules of the sync queued here (Cloudflare checks no revocation for an uploaded CA, FACTS.md §3)."""
    now = timezone.now()
    with transaction.atomic():
        revoked = Certificate.objects.filter(pk=certificate.pk, status__in=Certificate.REVOCABLE).update(
            status=Certificate.Status.REVOKED, revoked_at=now, updated_at=now
        )
        certificate.refresh_from_db()
        if not revoked:
            return certificate  # revoked meanwhile by someone else
        audit(
            AuditEvent.Action.REVOKED,
            origin,
            certificate=certificate,
            old=Certificate.Status.ACTIVE,
            new=Certificate.Status.REVOKED,
            detail={"reason": reason[:500]} if reason else {},
        )
        request_firewall_sync(certificate.zone_id)
        crl_request_refresh(authority_ids=[authority_id])
        # From a task of its own after the commit, retried there: a slow or failing mail server never holds up
        # the request, and the revocation stands whatever happens to the email.
        request_owner_emails([(certificate.pk, AuditEvent.Action.REVOKED)])
    return certificate


def _record_revocation(
    certificate: Certificate, *, expected: str, status: str, origin: Origin, reason: str
) -> Certificate:
    return _record_transition(
        certificate,
        expected=expected,
        new=status,
        origin=origin,
        action=AuditEvent.Action.REVOCATION_REQUESTED,
        detail={"reason": reason[:500]} if reason else {},
    )


def _may_have_committed(error: BaseException | None) -> bool:
    if isinstance(error, cf_errors.AmbiguousRequestError):
        return True
    # A 5xx or a broken answer, after the client's retries: the last attempt may have been carried out.
    return (
        isinstance(error, cf_errors.APIError) and error.retryable and not isinstance(error, cf_errors.RateLimitedError)
    )


def _revocation_outcome(
    certificate: Certificate, *, client: CloudflareClient, origin: Origin, reason: str, error: Exception
) -> Certificate:
    try:
        revoked = certificate_confirm_revocation(certificate=certificate, origin=origin, reason=reason, client=client)
    except cf_errors.CloudflareError:
        # No time left or still no answer: a worker asks Cloudflare at once and records it with the reason.
        request_revocation_check(certificate.pk, reason=reason, origin=origin)
        raise CloudflareUnavailableError(
            "Cloudflare is slow right now, and the revocation may have gone through. The portal is checking: "
            "within a minute this certificate shows as pending revocation if it did; if not, try again."
        ) from error
    if revoked:
        certificate.refresh_from_db()
        return certificate
    raise CloudflareUnavailableError("Cloudflare is slow right now; nothing changed. Try again soon.") from error


def certificate_confirm_revocation(
    *, certificate: Certificate, origin: Origin, reason: str = "", client: CloudflareClient | None = None
) -> bool:
    """After a revocation whose answer was lost: read the certificate at Cloudflare and, if the revocation did
    happen, record it with the requester's reason. True when Cloudflare has it revoked (or revoking)."""
    remote = (client or get_cloudflare_client()).get_client_certificate(certificate.zone_id, certificate.cloudflare_id)
    if remote.status.value not in (Certificate.Status.PENDING_REVOCATION, Certificate.Status.REVOKED):
        return False
    current = Certificate.objects.get(pk=certificate.pk)
    if current.is_revocable:
        _record_revocation(current, expected=current.status, status=remote.status.value, origin=origin, reason=reason)
    return True


def _check_revoke_rate(*, certificate: Certificate, origin: Origin) -> None:
    """Fair use for owners revoking their own certificates (pages, API); staff revoking others' are not limited.

    The default limit covers every certificate a user can hold in a period (portal/settings.py), so it never
    stops an owner revoking a compromised one; it bounds the calls should that ever stop being true.
    """
    owner_id = certificate.owner_id
    if origin.actor is None or origin.actor.pk != owner_id:
        return
    rate: Rate = settings.CERTIFICATE_REVOKE_RATE_LIMIT
    # A portal CA revokes at once (REVOKED, by the owner); Cloudflare's managed CA first records the request.
    revocations = AuditEvent.objects.filter(
        actor_id=owner_id,
        certificate__owner_id=owner_id,
        action__in=(AuditEvent.Action.REVOCATION_REQUESTED, AuditEvent.Action.REVOKED),
    )
    wait = seconds_until_allowed(rate, revocations)
    if wait:
        raise RateLimitedError(
            f"You have revoked {count_of(rate.count, 'certificate')} in the last {period_in_words(rate.period)}, "
            f"the most allowed. Nothing changed; try again in {in_words(wait)}, "
            "or ask an administrator to revoke it now.",
            retry_after=wait,
        )


def certificate_reactivate(*, certificate: Certificate, origin: Origin) -> Certificate:
    """Undo a revocation while Cloudflare still has it pending (FACTS.md §2)."""
    if not certificate.is_reactivatable:
        raise InvalidTransitionError("Only a certificate pending revocation can be reactivated.")
    if certificate.authority_id is not None:  # never true today: a portal CA's revocation is never pending
        raise InvalidTransitionError("A certificate revoked by a portal CA stays revoked; issue a new one.")
    result = call_cloudflare(
        lambda client: client.reactivate_client_certificate(certificate.zone_id, certificate.cloudflare_id)
    )
    return _record_transition(
        certificate,
        expected=Certificate.Status.PENDING_REVOCATION,
        new=result.status.value,
        origin=origin,
        action=AuditEvent.Action.REACTIVATION_REQUESTED,
    )


def _record_transition(
    certificate: Certificate,
    *,
    expected: str,
    new: str,
    origin: Origin,
    action: str,
    detail: dict[str, object] | None = None,
) -> Certificate:
    updated = Certificate.objects.filter(pk=certificate.pk, status=expected).update(
        status=new, updated_at=timezone.now()
    )
    certificate.refresh_from_db()
    if updated:
        audit(action, origin, certificate=certificate, old=expected, new=new, detail=detail or {})
        request_firewall_sync(certificate.zone_id)
    return certificate
