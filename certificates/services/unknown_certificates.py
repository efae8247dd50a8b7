"""Certificates made outside the portal (admin: Unknown certificates): adopt or revoke them."""

from __future__ import annotations

from datetime import timedelta

from django.contrib.auth import get_user_model
from django.contrib.auth.models import User
from django.db import IntegrityError, transaction
from django.utils import timezone

from certificates.admission import held_by
from certificates.csr import CertificateFacts, CSRError, certificate_facts
from certificates.enqueue import request_firewall_sync
from certificates.models import AuditEvent, Certificate, UnknownCertificate
from certificates.policy import get_policy
from certificates.services.audit import Origin, audit
from certificates.services.cleaning import MAX_NAME_LENGTH, clean_note, has_control_characters
from certificates.services.errors import InvalidTransitionError, PolicyError, QuotaError, call_cloudflare
from cloudflare.models import ClientCertificate

ALREADY_IN_THE_PORTAL = (
    "This certificate is one of the portal's already (adopted meanwhile); the next reconciliation removes it "
    "from the unknown certificates. Manage it in the Certificates list."
)


GONE_FROM_THE_LIST = "This certificate was adopted or left the zone meanwhile; reload the list."


def unknown_certificate_adopt(*, unknown: UnknownCertificate, owner: User, origin: Origin) -> Certificate:
    """Give a certificate made outside the portal (Cloudflare's dashboard) to `owner`, as if they had issued it.

    Staff decide here, so the admission policy does not apply; the owner's maximum does, because slots are a
    quota and an owner must be able to manage all they hold. Everything recorded is read from the certificate
    Cloudflare returns now (the fingerprint from its DER), not from the listing the row came from.
    """
    if not owner.is_active:
        raise PolicyError(f"The account {owner} is deactivated; adopt the certificate for an active account.")
    issued = call_cloudflare(lambda client: client.get_client_certificate(unknown.zone_id, unknown.cloudflare_id))
    if issued.status.value not in Certificate.USABLE:
        raise InvalidTransitionError(
            f"Cloudflare has this certificate {issued.status.value.replace('_', ' ')}: "
            "a revoked certificate cannot be adopted."
        )
    facts = _adoptable_facts(unknown, issued)
    with transaction.atomic():
        # The owner's row lock orders this against their own issuance, as in _reserve_slot.
        get_user_model().objects.select_for_update().filter(pk=owner.pk).first()
        _check_room_to_adopt(owner)
        certificate = _claim_unknown(unknown, issued, facts, owner)
        audit(
            AuditEvent.Action.ADOPTED_BY_STAFF,
            origin,
            certificate=certificate,
            new=certificate.status,
            detail={
                "cloudflare_id": issued.id,
                "fingerprint_sha256": facts.fingerprint_sha256,
                "owner_id": owner.pk,
                "first_seen_at": unknown.first_seen_at.isoformat(),
            },
        )
        request_firewall_sync(certificate.zone_id)
    return certificate


def _adoptable_facts(unknown: UnknownCertificate, issued: ClientCertificate) -> CertificateFacts:
    try:
        facts = certificate_facts(issued.certificate, policy=get_policy())
    except CSRError as exc:
        raise PolicyError(f"This certificate cannot be adopted: {exc}") from exc
    reported = {issued.fingerprint_sha256, unknown.fingerprint_sha256} - {""}
    if reported != {facts.fingerprint_sha256} and reported:
        raise PolicyError(
            "The certificate Cloudflare returns does not have the fingerprint it reports (or the list showed); "
            "nothing was adopted."
        )
    if facts.not_after <= timezone.now():
        raise InvalidTransitionError("This certificate has expired; there is nothing left to adopt.")
    return facts


def _check_room_to_adopt(owner: User) -> None:
    held, maximum = held_by(owner), get_policy().max_active_per_user
    if held >= maximum:
        raise QuotaError(
            f"{owner} already holds {held} certificates, the most allowed (CERTIFICATE_MAX_ACTIVE_PER_USER). "
            "They must revoke one first; nothing was adopted."
        )


def _claim_unknown(
    unknown: UnknownCertificate, issued: ClientCertificate, facts: CertificateFacts, owner: User
) -> Certificate:
    """Replace the unknown row by the owner's Certificate, in the caller's transaction."""
    # Deleting the row is the compare-and-set: of two admins adopting it at once, one deletes it, the other 0 rows.
    deleted, _ = UnknownCertificate.objects.filter(pk=unknown.pk, cloudflare_id=issued.id).delete()
    if not deleted:
        raise InvalidTransitionError(GONE_FROM_THE_LIST)
    try:
        with transaction.atomic():
            return Certificate.objects.create(
                owner=owner,
                name=_adopted_name(facts.common_name),
                zone_id=unknown.zone_id,
                status=issued.status.value,
                cloudflare_id=issued.id,
                csr="",  # made outside the portal: there is no CSR to keep
                public_key_sha256=facts.public_key_sha256,
                key_type=facts.key_type.id,
                common_name=facts.common_name[:64],  # X.509's upper bound for a CN; the field's too
                validity_days=max(1, round((facts.not_after - facts.not_before) / timedelta(days=1))),
                certificate_pem=issued.certificate,
                fingerprint_sha256=facts.fingerprint_sha256,
                serial_number=facts.serial_number,
                issued_on=facts.not_before,
                expires_on=facts.not_after,
            )
    except IntegrityError as exc:
        # (zone_id, cloudflare_id) is unique: the certificate is the portal's already, and this row is stale
        # (a reconciliation that listed the zone before an adoption committed wrote it back). The caller's
        # transaction rolls the deletion back.
        raise InvalidTransitionError(ALREADY_IN_THE_PORTAL) from exc


def _adopted_name(common_name: str) -> str:
    printable = "".join(char for char in common_name if not has_control_characters(char)).strip()
    return f"adopted: {printable or 'certificate'}"[:MAX_NAME_LENGTH]


def unknown_certificate_revoke(*, unknown: UnknownCertificate, origin: Origin, reason: str) -> UnknownCertificate:
    """Revoke at Cloudflare a certificate the portal did not issue; its row keeps Cloudflare's new status."""
    reason = clean_note(reason)
    if not reason:
        raise PolicyError("Give a reason for the revocation; it goes into the audit log.")
    current = UnknownCertificate.objects.filter(pk=unknown.pk).first()
    if current is None:
        raise InvalidTransitionError(GONE_FROM_THE_LIST)
    if Certificate.objects.filter(zone_id=current.zone_id, cloudflare_id=current.cloudflare_id).exists():
        raise InvalidTransitionError(ALREADY_IN_THE_PORTAL)
    if current.status not in Certificate.USABLE:
        raise InvalidTransitionError(f"Cloudflare has this certificate {current.status.replace('_', ' ')} already.")
    result = call_cloudflare(lambda client: client.revoke_client_certificate(current.zone_id, current.cloudflare_id))
    # Compare-and-set: a reconciliation that saw a newer status meanwhile keeps it.
    UnknownCertificate.objects.filter(pk=current.pk, status=current.status).update(status=result.status.value)
    audit(
        AuditEvent.Action.UNKNOWN_REVOKED,
        origin,
        old=current.status,
        new=result.status.value,
        detail={
            "cloudflare_id": current.cloudflare_id,
            "fingerprint_sha256": current.fingerprint_sha256,
            "common_name": current.common_name,
            "reason": reason,
        },
    )
    request_firewall_sync(current.zone_id)
    current.refresh_from_db()
    return current
